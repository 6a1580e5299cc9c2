"""load_model reads official and project checkpoints and refuses anything else with a clear message."""

from __future__ import annotations

import pytest
import torch

from jarrn_deploy.model import CheckpointError, Jarrn, JarrnConfig, load_model, save_model
from jarrn_deploy.model.checkpoint import infer_widths, save_training_checkpoint, strip_prefixes
from tests.support import TINY_WIDTHS


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_official_checkpoint_loads_with_any_wrapper_prefix(tmp_path, golden_state_dict, golden_widths, prefix):
    state = {prefix + k: v for k, v in golden_state_dict.items()}
    path = save_training_checkpoint(tmp_path / "ckpt.pt", {"epoch": 1, "network_state_dict": state,
                                                           "optimizer_state_dict": {}, "scaler_state_dict": {}})
    network = load_model(path)
    assert network.config.widths == golden_widths
    assert not network.training
    torch.testing.assert_close(network.state_dict()["sfmap_block.4.bias"], golden_state_dict["sfmap_block.4.bias"])


def test_widths_are_inferred_from_tensor_shapes():
    for config in (JarrnConfig.small(), JarrnConfig(TINY_WIDTHS)):
        assert infer_widths(Jarrn(config).state_dict()) == config.widths


def test_project_format_records_config_and_loads_without_arguments(tmp_path):
    config = JarrnConfig((16, 16, 16, 16, 8, 8, 8), prob_activation="sigmoid", depth_normalisation="minmax",
                         sparse_fill="pushpull")
    network = Jarrn(config)
    path = save_model(network, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == config
    for key, value in network.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_half_precision_project_file_loads_as_float32(tmp_path):
    path = save_model(Jarrn(JarrnConfig(TINY_WIDTHS)), tmp_path / "m.safetensors", half=True)
    assert all(p.dtype == torch.float32 for p in load_model(path).parameters())


def test_overrides_replace_recorded_activation(tmp_path, golden_state_dict):
    path = save_training_checkpoint(tmp_path / "c.pt", {"network_state_dict": golden_state_dict})
    assert load_model(path, prob_activation="sigmoid").config.prob_activation == "sigmoid"


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_model(path)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_model(bad)


def test_missing_file_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")


def test_other_architecture_error_lists_missing_and_unexpected_keys(tmp_path, golden_state_dict):
    state = dict(golden_state_dict)
    del state["sfmap_block.4.weight"]
    state["extra_head.weight"] = torch.zeros(3)
    path = save_training_checkpoint(tmp_path / "other.pt", {"network_state_dict": state})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "other.pt" in message and "sfmap_block.4.weight" in message and "extra_head.weight" in message


def test_unrelated_state_dict_error_names_file_and_missing_key(tmp_path):
    path = save_training_checkpoint(tmp_path / "resnet.pt", {"conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(CheckpointError, match="resnet.pt.*rgb_x_block.0.weight"):
        load_model(path)


def test_strip_prefixes_leaves_plain_keys_alone():
    assert list(strip_prefixes({"module._orig_mod.a": 1, "b": 2})) == ["a", "b"]
