"""Checkpoints are validated on load: recorded config schema, contract version, format tag, dtype and finiteness."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from jarrn_deploy.errors import EXIT_INPUT, EXIT_UNAVAILABLE, InputError, UnavailableError
from jarrn_deploy.model import CheckpointError, Jarrn, JarrnConfig, load_model, save_model
from jarrn_deploy.model.checkpoint import (
    CheckpointNotFoundError,
    read_training_checkpoint,
    save_training_checkpoint,
)

from tests.support import TINY_WIDTHS  # noqa: E402

TINY = JarrnConfig(TINY_WIDTHS)


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in Jarrn(TINY).state_dict().items()}


def _safetensors(path, state, metadata):
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def test_checkpoint_errors_are_input_errors_and_value_errors():
    assert issubclass(CheckpointError, InputError) and issubclass(CheckpointError, ValueError)
    assert CheckpointError.exit_code == EXIT_INPUT
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)


@pytest.mark.parametrize("config,needle", [
    ("[1, 2, 3]", "must be a JSON object, got list"),
    ('{"prob_activation": "sigmoid"}', "needs 'widths'"),
    ('{"widths": ["8", "8", "8", "8", "8", "8", "8"]}', "needs 'widths'"),
    ('{"widths": [8, 8, 8]}', "not a valid JARRN config"),
    ("not json at all", "not valid JSON"),
    ('{"widths": [8, 8, 8, 8, 8, 8, 8], "colour": "red"}', "unknown fields"),
    ('{"widths": [8, 8, 8, 8, 8, 8, 8], "prob_activation": 3}', "must be a string"),
])
def test_malformed_recorded_config_is_a_checkpoint_error(tmp_path, tiny_state, config, needle):
    path = _safetensors(tmp_path / "m.safetensors", tiny_state,
                        {"format": "jarrn-deploy", "contract_version": "1", "config": config})
    with pytest.raises(CheckpointError, match=needle) as info:
        load_model(path)
    assert "m.safetensors" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("jarrn_config", [[8] * 7, "widths", {"depth": 1}, {"widths": "8,8"}])
def test_training_checkpoint_with_bad_jarrn_config_is_refused(tmp_path, tiny_state, jarrn_config):
    path = save_training_checkpoint(tmp_path / "last.pt", {"network_state_dict": tiny_state,
                                                           "jarrn_config": jarrn_config})
    with pytest.raises(CheckpointError, match="last.pt"):
        load_model(path)


def test_other_contract_version_is_refused(tmp_path, tiny_state):
    path = _safetensors(tmp_path / "m.safetensors", tiny_state, {"format": "jarrn-deploy", "contract_version": "99",
                                                                   "config": json.dumps(TINY.to_dict())})
    with pytest.raises(CheckpointError, match="contract version '99'"):
        load_model(path)


def test_foreign_format_tag_is_refused_but_plain_pt_state_dict_loads(tmp_path, tiny_state):
    foreign = _safetensors(tmp_path / "f.safetensors", tiny_state,
                           {"format": "someone-else", "config": json.dumps(TINY.to_dict())})
    with pytest.raises(CheckpointError, match="format tag 'someone-else'"):
        load_model(foreign)
    plain = _safetensors(tmp_path / "p.safetensors", tiny_state, {"format": "pt"})
    assert load_model(plain).config.widths == TINY.widths


def test_integer_weights_are_refused(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["sfmap_block.4.weight"] = state["sfmap_block.4.weight"].to(torch.int32)
    path = save_training_checkpoint(tmp_path / "int.pt", {"network_state_dict": state})
    with pytest.raises(CheckpointError, match="'sfmap_block.4.weight' has dtype int32"):
        load_model(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, tiny_state, bad):
    state = dict(tiny_state)
    weight = state["rgb_x_block.0.weight"].clone()
    weight[0, 0, 0, 0] = bad
    state["rgb_x_block.0.weight"] = weight
    path = save_model(Jarrn(TINY), tmp_path / "ok.safetensors")  # a valid file, then the same with one bad value
    _safetensors(path, state, {"format": "jarrn-deploy", "contract_version": "1", "config": json.dumps(TINY.to_dict())})
    with pytest.raises(CheckpointError, match="1 NaN or infinite value"):
        load_model(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no such file"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(tmp_path)


def test_cuda_device_without_cuda_is_unavailable_not_assertion(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = save_model(Jarrn(TINY), tmp_path / "m.safetensors")
    with pytest.raises(UnavailableError, match="device cuda") as info:
        load_model(path, device="cuda")
    assert info.value.exit_code == EXIT_UNAVAILABLE
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu'"):
        load_model(path, device="bogus")


def test_training_checkpoint_reader_refuses_truncated_and_foreign_files(tmp_path, tiny_state):
    good = save_training_checkpoint(tmp_path / "last.pt", {
        "network_state_dict": tiny_state, "optimizer_state_dict": {}, "step": 3, "jarrn_config": TINY.to_dict()})
    payload = read_training_checkpoint(good)
    assert payload["jarrn_config"] == TINY and payload["step"] == 3 and payload["contract_version"] == "1"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt: could not be read"):
        read_training_checkpoint(truncated)
    foreign = save_training_checkpoint(tmp_path / "foreign.pt", {"network_state_dict": tiny_state})
    with pytest.raises(CheckpointError, match="missing"):
        read_training_checkpoint(foreign)


def test_a_failed_save_is_one_output_error_and_keeps_the_previous_file(tmp_path, monkeypatch, tiny_state):
    from jarrn_deploy.errors import OutputError

    path = save_training_checkpoint(tmp_path / "last.pt", {"network_state_dict": tiny_state, "step": 1})
    before = path.read_bytes()

    def disk_full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match="last.pt: could not be written \\(No space left on device\\)"):
        save_training_checkpoint(path, {"network_state_dict": tiny_state, "step": 2})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("message", ["[enforce fail at inline_container.cc:603] . unexpected pos 512 vs 64",
                                     "PytorchStreamWriter failed writing file data/3: file write failed"])
def test_a_full_disk_in_torch_save_is_an_output_error_whatever_its_wording(tmp_path, monkeypatch, tiny_state,
                                                                           message):
    from jarrn_deploy.errors import OutputError

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OutputError, match="last.pt: could not be written .*is the disk full"):
        save_training_checkpoint(tmp_path / "last.pt", {"network_state_dict": tiny_state, "step": 2})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_save_model_is_an_output_error(tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    from jarrn_deploy.errors import OutputError

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OutputError, match="m.safetensors: could not be written .*StorageFull"):
        save_model(Jarrn(TINY), tmp_path / "m.safetensors")


def test_malicious_pickle_message_names_the_global_and_gives_no_unsafe_advice(tmp_path):
    import os

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    torch.save({"network_state_dict": Evil()}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "GLOBAL posix.system" in message or "GLOBAL nt.system" in message, message
    assert "weights_only" not in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("name", ["model.pt", "model"])
def test_safetensors_file_under_another_name_is_sniffed_by_content(tmp_path, name):
    torch.manual_seed(0)
    network = Jarrn(TINY)
    saved = save_model(network, tmp_path / "m.safetensors")
    renamed = tmp_path / name
    renamed.write_bytes(saved.read_bytes())
    loaded = load_model(renamed)
    assert loaded.config == TINY
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), network.state_dict().values()))


def test_official_checkpoint_whose_state_dict_holds_floats_is_a_checkpoint_error(tmp_path, tiny_state):
    path = tmp_path / "floats.pth"
    torch.save({"network_state_dict": {k: 1.0 for k in tiny_state}}, path)
    with pytest.raises(CheckpointError, match="is a float, expected a tensor"):
        load_model(path)


def test_an_edited_config_or_tensor_is_noticed_by_the_content_hash(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    torch.manual_seed(0)
    path = save_model(Jarrn(TINY), tmp_path / "m.safetensors")
    assert load_model(path).config == TINY  # an untouched file loads
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(path))
    config = json.loads(metadata["config"])
    edited = _safetensors(tmp_path / "config.safetensors", state,
                          {**metadata, "config": json.dumps({**config, "depth_normalisation": "minmax" if config["depth_normalisation"] == "max" else "max"})})
    with pytest.raises(CheckpointError, match="config or weights were changed after it was saved"):
        load_model(edited)
    key = sorted(state)[0]
    tampered = _safetensors(tmp_path / "weights.safetensors", {**state, key: state[key] + 1.0}, metadata)
    with pytest.raises(CheckpointError, match="content hash"):
        load_model(tampered)
