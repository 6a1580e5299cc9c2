"""The tensor contract: user numpy inputs, normalisation, padding and metric output, identical for every size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support import tiny_network as build_tiny_network
from jarrn_deploy.model import CONTRACT, Jarrn, JarrnConfig, MetricJarrn, prepare_inputs
from jarrn_deploy.errors import EXIT_CHECK_FAILED, EXIT_INPUT
from jarrn_deploy.memory import MemoryGuardError
from jarrn_deploy.model.contract import EmptySparseDepthError, NonFiniteDepthError, depth_to_user
from jarrn_deploy.model.metric_jarrn import normalise_sparse, pushpull_fill

TINY = JarrnConfig((16, 16, 16, 16, 8, 8, 8))


@pytest.fixture(scope="module")
def tiny_network() -> Jarrn:
    return build_tiny_network(TINY.widths)


def _sparse(h: int, w: int, seed: int = 0, count: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sparse = np.zeros((h, w), np.float32)
    sparse[rng.integers(0, h, count), rng.integers(0, w, count)] = rng.uniform(1.0, 20.0, count)
    return sparse


def test_graph_names_are_the_documented_ones():
    assert (CONTRACT.rgb_name, CONTRACT.sparse_name, CONTRACT.depth_name) == ("rgb", "sparse_depth", "depth")
    assert CONTRACT.pad_multiple == 64


def test_prepare_inputs_converts_uint8_hwc_to_float_nchw():
    rgb = np.full((5, 7, 3), 255, np.uint8)
    rgb_nchw, sparse_nchw, batched = prepare_inputs(rgb, _sparse(5, 7))
    assert rgb_nchw.shape == (1, 3, 5, 7) and rgb_nchw.dtype == np.float32 and rgb_nchw.max() == 1.0
    assert sparse_nchw.shape == (1, 1, 5, 7) and not batched


@pytest.mark.parametrize("method", ["max", "minmax"])
def test_normalisation_maps_sparse_into_unit_range_and_back(method):
    sparse = torch.from_numpy(_sparse(32, 32))[None, None]
    mask = (sparse > 0).float()
    normalised, low, value_range = normalise_sparse(sparse, mask, method)
    valid = mask > 0
    assert float(normalised[valid].min()) >= 0.0 and float(normalised[valid].max()) == pytest.approx(1.0)
    torch.testing.assert_close((normalised * value_range + low)[valid], sparse[valid])


def test_empty_sparse_map_is_relative_mode_with_identity_normalisation():
    sparse = torch.zeros(1, 1, 8, 8)
    normalised, low, value_range = normalise_sparse(sparse, sparse, "minmax")
    assert float(low) == 0.0 and float(value_range) == 1.0 and float(normalised.abs().max()) == 0.0


@pytest.mark.parametrize("height,width", [(64, 64), (75, 130), (37, 200)])
def test_metric_wrapper_equals_manual_pad_and_crop(tiny_network, height, width):
    rgb = torch.rand(1, 3, height, width)
    sparse = torch.from_numpy(_sparse(height, width))[None, None]
    with torch.no_grad():
        depth, coarse, *_ = MetricJarrn(tiny_network, aux_outputs=True)(rgb, sparse)
        mask = (sparse > 0).float()
        normalised = sparse / sparse.max() * mask
        ph, pw = (-height) % 64, (-width) % 64
        out = tiny_network(torch.nn.functional.pad(rgb, (0, pw, 0, ph), mode="replicate"),
                           torch.nn.functional.pad(normalised, (0, pw, 0, ph)),
                           torch.nn.functional.pad(mask, (0, pw, 0, ph)))
    expected = torch.clamp(out.depth[:, :, :height, :width] * sparse.max(), min=0)
    assert depth.shape == (1, 1, height, width)
    torch.testing.assert_close(depth, expected)
    torch.testing.assert_close(coarse, out.coarse[:, :, :height, :width])


def test_complete_returns_float32_metres_of_input_size_single_and_batch(tiny_network):
    rgb = np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    sparse = _sparse(50, 90)
    single = tiny_network.complete(rgb, sparse)
    assert single.shape == (50, 90) and single.dtype == np.float32 and single.max() > 0
    batch = tiny_network.complete(np.stack([rgb, rgb]), np.stack([sparse, sparse]))
    assert batch.shape == (2, 50, 90)
    np.testing.assert_allclose(batch[0], single, rtol=1e-4, atol=1e-4)


def test_output_scales_with_the_sparse_depth_under_max_normalisation(tiny_network):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    sparse = _sparse(64, 64)
    np.testing.assert_allclose(tiny_network.complete(rgb, 2 * sparse), 2 * tiny_network.complete(rgb, sparse),
                               rtol=1e-4, atol=1e-5)


def test_sparse_map_without_points_is_refused_naming_the_argument(tiny_network):
    with pytest.raises(EmptySparseDepthError, match="sparse_depth: the map has no valid point .*at least one measured"):
        tiny_network.complete(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.float32))


def test_batch_with_one_empty_item_is_refused_naming_the_item():
    sparse = np.stack([_sparse(8, 8), np.zeros((8, 8), np.float32), _sparse(8, 8, seed=2)])
    with pytest.raises(EmptySparseDepthError, match="batch item 1 of 3 has no valid point") as info:
        prepare_inputs(np.zeros((3, 8, 8, 3), np.uint8), sparse)
    assert info.value.items == (1,) and info.value.exit_code == EXIT_INPUT


def test_empty_map_is_reported_after_shape_errors():
    with pytest.raises(ValueError, match="sizes differ"):
        prepare_inputs(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.float32))


@pytest.mark.parametrize("batched", [False, True])
def test_sparse_with_a_channel_axis_is_read_as_one_map_not_a_batch(batched):
    rgb, sparse = np.zeros((64, 48, 3), np.uint8), _sparse(64, 48)[..., None]
    if batched:
        rgb, sparse = rgb[None], sparse[None]
    rgb_nchw, sparse_nchw, was_batched = prepare_inputs(rgb, sparse)
    assert sparse_nchw.shape == (1, 1, 64, 48) and was_batched == batched


def test_non_finite_depth_is_an_error_naming_the_model_file(tiny_network):
    import torch

    with torch.no_grad():
        network = build_tiny_network(TINY.widths)
        next(network.parameters()).fill_(float("nan"))
    network.source_path = "weights/broken.safetensors"
    with pytest.raises(NonFiniteDepthError, match="the model file weights/broken.safetensors produces non-finite"):
        network.complete(np.zeros((64, 64, 3), np.uint8), _sparse(64, 64))
    with pytest.raises(NonFiniteDepthError) as info:
        depth_to_user(np.full((1, 1, 2, 2), np.inf, np.float32), False)
    assert info.value.exit_code == EXIT_CHECK_FAILED


def test_model_complete_has_the_memory_guard(tiny_network, monkeypatch):
    import jarrn_deploy.memory
    import jarrn_deploy.model.metric_jarrn

    monkeypatch.setattr(jarrn_deploy.memory, "available_host_bytes", lambda: 2**20)
    monkeypatch.setattr(jarrn_deploy.model.metric_jarrn, "_GUARDS", type(jarrn_deploy.model.metric_jarrn._GUARDS)())
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (6000, 6000, 3))  # no memory for the test itself
    with pytest.raises(MemoryGuardError, match="input 6000x6000"):
        tiny_network.complete(huge, np.broadcast_to(np.float32(1.0), (6000, 6000)))


@pytest.mark.parametrize(
    "rgb,sparse,match",
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.float32), "rgb: expected HxWx3"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 2, 2), np.float32), "sparse_depth: expected HxW"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.float32), "sizes differ"),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), np.nan, np.float32), "sparse_depth: contains NaN"),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), np.inf, np.float32), "sparse_depth: contains NaN or inf"),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), -1.0, np.float32), "sparse_depth: negative"),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 5000, np.uint16), "sparse_depth: expected float metres"),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 25000.0, np.float32), "raw sensor units"),
        (np.full((4, 4, 3), 2.0, np.float32), np.zeros((4, 4), np.float32), r"rgb: float input must lie in \[0,1\]"),
        (np.zeros((4, 4, 3), np.int32), np.zeros((4, 4), np.float32), "rgb: expected uint8"),
        ([[0]], np.zeros((4, 4), np.float32), "rgb: expected a numpy array"),
    ],
)
def test_bad_inputs_get_errors_naming_the_argument(rgb, sparse, match):
    with pytest.raises((ValueError, TypeError), match=match):
        prepare_inputs(rgb, sparse)


# ---------------------------------------------------------------------------------------------------------------------
# push-pull fill (sparse_fill='pushpull')


@pytest.mark.parametrize("height,width", [(64, 64), (75, 130), (1, 9)])
def test_pushpull_fill_keeps_measured_pixels_and_fills_every_empty_one(height, width):
    sparse = torch.from_numpy(_sparse(height, width, count=max(1, height * width // 50)))[None, None]
    mask = (sparse > 0).float()
    filled = pushpull_fill(sparse, mask)
    assert filled.shape == sparse.shape
    torch.testing.assert_close(filled[mask > 0], sparse[mask > 0])
    valid = sparse[mask > 0]
    assert float(filled.min()) >= float(valid.min()) - 1e-5 and float(filled.max()) <= float(valid.max()) + 1e-5


def test_pushpull_fill_is_local_and_affine_in_depth():
    sparse = torch.zeros(1, 1, 64, 64)
    sparse[0, 0, 5, 5], sparse[0, 0, 60, 60] = 2.0, 10.0
    mask = (sparse > 0).float()
    filled = pushpull_fill(sparse, mask)
    assert abs(float(filled[0, 0, 7, 7]) - 2.0) < 0.5 and abs(float(filled[0, 0, 58, 58]) - 10.0) < 0.5
    # commutes with the normalisation: fill(a * d + b) == a * fill(d) + b
    torch.testing.assert_close(pushpull_fill((sparse * 0.5 + 3.0) * mask, mask), filled * 0.5 + 3.0)


def test_pushpull_fill_of_an_empty_map_stays_empty_and_batch_items_are_independent():
    sparse = torch.zeros(2, 1, 32, 48)
    sparse[1, 0, 10, 10] = 4.0
    filled = pushpull_fill(sparse, (sparse > 0).float())
    assert float(filled[0].abs().max()) == 0.0
    torch.testing.assert_close(filled[1], torch.full_like(filled[1], 4.0))


def test_wrapper_feeds_the_filled_sparse_channel_for_pushpull_models():
    network = build_tiny_network(TINY.widths, depth_normalisation="minmax", sparse_fill="pushpull")
    rgb, sparse = torch.rand(1, 3, 64, 128), torch.from_numpy(_sparse(64, 128))[None, None]
    seen = {}
    network.rgb_x_block.register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))
    with torch.no_grad():
        MetricJarrn(network)(rgb, sparse)
    mask = (sparse > 0).float()
    normalised, _, _ = normalise_sparse(sparse, mask, "minmax")
    torch.testing.assert_close(seen["x"][:, 3:4], pushpull_fill(normalised, mask))
    torch.testing.assert_close(seen["x"][:, 4:5], mask)
    assert float((seen["x"][:, 3:4] > 0).float().mean()) > 0.9  # dense, unlike the 50 points it came from
