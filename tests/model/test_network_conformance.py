"""The PyTorch network reproduces the paper's code: key names, shapes, parameter count and golden outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jarrn_deploy.model import Jarrn, JarrnConfig, load_model
from jarrn_deploy.model.checkpoint import save_training_checkpoint
from jarrn_deploy.model.network import count_parameters

GOLDEN_SIZES = ("64x128", "128x192")
OUTPUT_TO_GOLDEN = {"depth": "depth", "coarse": "dense_depth", "scale": "scale", "offset": "offset", "prob": "prob"}


def test_full_config_has_exactly_the_official_keys_and_shapes(official_full_keys):
    network = Jarrn(JarrnConfig.full())
    shapes = {k: list(v.shape) for k, v in network.state_dict().items()}
    assert len(shapes) == 602
    assert shapes == official_full_keys


def test_full_config_has_the_official_parameter_count():
    assert count_parameters(Jarrn(JarrnConfig.full())) == 36_323_346


@pytest.mark.parametrize("size", GOLDEN_SIZES)
def test_golden_checkpoint_reproduces_official_outputs(tmp_path, golden_state_dict, golden_io, golden_widths, size):
    path = save_training_checkpoint(tmp_path / "official.pt", {"epoch": 3, "network_state_dict": golden_state_dict})
    network = load_model(path)
    assert network.config.widths == golden_widths
    with torch.no_grad():
        out = network(*(torch.from_numpy(golden_io[f"{size}/{k}"]) for k in ("rgb", "point", "hole_point")))
    for field, golden_key in OUTPUT_TO_GOLDEN.items():
        error = np.abs(getattr(out, field).numpy() - golden_io[f"{size}/{golden_key}"]).max()
        assert error <= 1e-5, f"{field} at {size}: max abs error {error}"


def test_softmax_height_prob_sums_to_one_over_each_column():
    network = Jarrn(JarrnConfig.small()).eval()
    with torch.no_grad():
        out = network(torch.rand(1, 3, 64, 128), torch.zeros(1, 1, 64, 128), torch.zeros(1, 1, 64, 128))
    torch.testing.assert_close(out.prob.sum(dim=2), torch.ones(1, 1, 128), atol=1e-5, rtol=0)


def test_sigmoid_prob_is_per_pixel_and_in_unit_range():
    network = Jarrn(JarrnConfig.small(prob_activation="sigmoid")).eval()
    with torch.no_grad():
        out = network(torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))
    assert float(out.prob.min()) > 0.0 and float(out.prob.max()) < 1.0
    assert not torch.allclose(out.prob.sum(dim=2), torch.ones(1, 1, 64))


def test_rectification_combines_coarse_with_scale_offset_and_prob():
    from jarrn_deploy.model.rectification import Rectification

    coarse = torch.full((1, 1, 2, 2), 0.5)
    maps = torch.zeros(1, 3, 2, 2)
    maps[:, 1] = 3.0  # offset clamps to 0.5
    out = Rectification("sigmoid")(coarse, maps)
    # scale = 2*sigmoid(0) = 1, prob = 0.5 -> (0.5*1 + 0.5)*0.5 + 0.5*0.5 = 0.75
    torch.testing.assert_close(out.depth, torch.full((1, 1, 2, 2), 0.75))


def test_unknown_config_values_are_rejected_with_the_argument_name():
    with pytest.raises(ValueError, match="prob_activation"):
        JarrnConfig.small(prob_activation="softmax")
    with pytest.raises(ValueError, match="widths"):
        JarrnConfig((64, 32))
    with pytest.raises(ValueError, match="depth_normalisation"):
        JarrnConfig.small(depth_normalisation="median")
    with pytest.raises(ValueError, match="sparse_fill"):
        JarrnConfig.small(sparse_fill="linear")


def test_configs_recorded_before_sparse_fill_existed_load_without_fill():
    recorded = {"widths": list(JarrnConfig.small().widths), "prob_activation": "softmax_height",
                "depth_normalisation": "minmax"}
    assert JarrnConfig.from_dict(recorded).sparse_fill == "none"
