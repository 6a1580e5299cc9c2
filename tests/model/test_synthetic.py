"""Tests for the procedural synthetic RGB-D scene generator (model/synthetic/)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jarrn_deploy.model.synthetic import (
    SceneConfig,
    SyntheticSample,
    generate_batch,
    generate_scene,
)


def _depth_jumps_on_colour_edges(sample: SyntheticSample, colour_step: int = 6) -> tuple[int, int]:
    """(number of depth discontinuities, how many of them also have a colour step) over horizontal and vertical
    neighbour pairs.

    Inverse depth is affine in pixel coordinates on any plane, so a discontinuity is a neighbour difference of
    inverse depth that is large (> 10 % of the inverse depth) and much larger than the differences on both sides.
    This ignores steep but smooth depth changes (floors and facades at grazing angles).
    """
    total = on_edge = 0
    depth = sample.depth.astype(np.float64)
    rgb = sample.rgb.astype(np.int16)
    for d, c in ((depth, rgb), (depth.T, rgb.transpose(1, 0, 2))):
        inv = np.where(d > 0, 1.0 / np.maximum(d, 1e-9), np.nan)
        g = np.diff(inv, axis=1)
        mid, left, right = np.abs(g[:, 1:-1]), np.abs(g[:, :-2]), np.abs(g[:, 2:])
        near = np.minimum(inv[:, 1:-2], inv[:, 2:-1])
        with np.errstate(invalid="ignore"):
            jump = (mid > 0.1 * near) & (mid > 4 * left) & (mid > 4 * right)
        colour = np.abs(c[:, 1:-2] - c[:, 2:-1]).max(axis=-1) >= colour_step
        total += int(jump.sum())
        on_edge += int((jump & colour).sum())
    return total, on_edge


@pytest.mark.parametrize("kind", ["indoor", "outdoor", "random"])
def test_same_seed_is_bit_identical(kind: str) -> None:
    a = generate_scene(7, 64, 80, kind)
    b = generate_scene(7, 64, 80, kind)
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.depth, b.depth)
    assert a.intrinsics == b.intrinsics
    assert a.kind == b.kind


def test_different_seeds_differ() -> None:
    samples = [generate_scene(seed, 48, 48) for seed in range(4)]
    for i in range(len(samples)):
        for j in range(i + 1, len(samples)):
            assert not np.array_equal(samples[i].rgb, samples[j].rgb)
            assert not np.array_equal(samples[i].depth, samples[j].depth)


def test_shapes_and_dtypes() -> None:
    s = generate_scene(3, 40, 72)
    assert isinstance(s, SyntheticSample)
    assert s.rgb.shape == (40, 72, 3) and s.rgb.dtype == np.uint8
    assert s.depth.shape == (40, 72) and s.depth.dtype == np.float32
    assert len(s.intrinsics) == 4 and all(isinstance(v, float) for v in s.intrinsics)
    assert s.kind in ("indoor", "outdoor")
    assert np.isfinite(s.depth).all() and (s.depth >= 0).all()
    with pytest.raises(AttributeError):
        s.kind = "indoor"  # type: ignore[misc]


def test_random_kind_matches_the_explicit_kind() -> None:
    for seed in range(4):
        r = generate_scene(seed, 32, 32)
        e = generate_scene(seed, 32, 32, r.kind)
        assert np.array_equal(r.rgb, e.rgb) and np.array_equal(r.depth, e.depth)


def test_both_kinds_appear() -> None:
    kinds = {generate_scene(seed, 16, 16).kind for seed in range(24)}
    assert kinds == {"indoor", "outdoor"}


@pytest.mark.parametrize(
    ("kind", "lo", "hi"),
    [("indoor", *SceneConfig().indoor_depth_range), ("outdoor", *SceneConfig().outdoor_depth_range)],
)
def test_valid_depths_lie_in_the_configured_range(kind: str, lo: float, hi: float) -> None:
    for seed in range(6):
        s = generate_scene(seed, 64, 64, kind)
        assert s.kind == kind
        valid = s.depth[s.depth > 0]
        assert valid.min() >= lo and valid.max() <= hi
        if kind == "indoor":  # a closed room: almost every pixel hits something in range
            assert valid.size >= 0.9 * s.depth.size
        else:  # sky (and far street) is invalid, but most of the image has depth
            assert 0.3 * s.depth.size <= valid.size < s.depth.size
            assert np.median(valid) > 3.0


def test_custom_config_is_respected() -> None:
    cfg = SceneConfig(indoor_depth_range=(1.0, 4.0), hfov_deg_range=(60.0, 60.0 + 1e-6), principal_point_jitter=0.0)
    s = generate_scene(1, 50, 60, "indoor", cfg)
    valid = s.depth[s.depth > 0]
    assert valid.min() >= 1.0 and valid.max() <= 4.0
    fx, _, cx, cy = s.intrinsics
    assert fx == pytest.approx(30.0 / math.tan(math.radians(30.0)), rel=1e-6)
    assert (cx, cy) == (29.5, 24.5)


def test_intrinsics_are_plausible_and_vary() -> None:
    cfg = SceneConfig()
    fxs = []
    for seed in range(8):
        fx, fy, cx, cy = generate_scene(seed, 60, 100).intrinsics
        lo, hi = (50.0 / math.tan(math.radians(a / 2)) for a in reversed(cfg.hfov_deg_range))
        assert lo <= fx <= hi
        assert abs(fy / fx - 1.0) <= cfg.focal_aspect_jitter + 1e-9
        assert abs(cx - 49.5) <= cfg.principal_point_jitter * 100 + 1e-9
        assert abs(cy - 29.5) <= cfg.principal_point_jitter * 60 + 1e-9
        fxs.append(fx)
    assert len(set(fxs)) == len(fxs)


@pytest.mark.parametrize("kind", ["indoor", "outdoor"])
def test_depth_edges_coincide_with_image_edges(kind: str) -> None:
    total = on_edge = 0
    for seed in range(6):
        t, e = _depth_jumps_on_colour_edges(generate_scene(seed, 96, 96, kind))
        total, on_edge = total + t, on_edge + e
    assert total > 200  # the scenes do have occlusion boundaries
    assert on_edge / total > 0.9


def test_images_are_textured_and_shaded() -> None:
    s = generate_scene(5, 64, 64, "indoor")
    assert len(np.unique(s.rgb.reshape(-1, 3), axis=0)) > 50
    assert s.rgb.std() > 10


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"height": 0}, "height"),
        ({"height": 15}, "height"),
        ({"height": 32.0}, "height"),
        ({"height": True}, "height"),
        ({"width": -64}, "width"),
        ({"width": "64"}, "width"),
        ({"kind": "street"}, "kind"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    args = {"seed": 0, "height": 32, "width": 32, "kind": "random", **kwargs}
    with pytest.raises(ValueError, match=name):
        generate_scene(**args)


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="outdoor_depth_range"):
        SceneConfig(outdoor_depth_range=(80.0, 2.0))
    with pytest.raises(ValueError, match="config"):
        generate_scene(0, 32, 32, config="indoor")  # type: ignore[arg-type]


def test_torch_path_matches_numpy_path() -> None:
    seeds = [0, 1, 2, 3, 11]
    batch = generate_batch(seeds, 48, 64, device="cpu")
    assert batch.rgb.shape == (5, 3, 48, 64) and batch.rgb.dtype == torch.float32
    assert batch.depth.shape == (5, 1, 48, 64) and batch.depth.dtype == torch.float32
    assert batch.intrinsics.shape == (5, 4)
    for i, seed in enumerate(seeds):
        ref = generate_scene(seed, 48, 64)
        assert batch.kinds[i] == ref.kind
        np.testing.assert_allclose(batch.intrinsics[i].numpy(), ref.intrinsics, rtol=1e-6)
        depth = batch.depth[i, 0].numpy()
        close = np.isclose(depth, ref.depth, rtol=1e-4, atol=1e-5)
        assert close.mean() > 0.995
        rgb = batch.rgb[i].permute(1, 2, 0).numpy() * 255.0
        diff = np.abs(rgb - ref.rgb.astype(np.float32)).max(axis=-1)
        assert (diff <= 2.01).mean() > 0.995


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_numpy_path() -> None:
    batch = generate_batch([0, 1], 64, 64, device="cuda")
    assert batch.depth.device.type == "cuda"
    for i, seed in enumerate([0, 1]):
        ref = generate_scene(seed, 64, 64)
        assert np.isclose(batch.depth[i, 0].cpu().numpy(), ref.depth, rtol=1e-4, atol=1e-5).mean() > 0.995


@pytest.mark.parametrize("seeds", [[], [0, -1], "012", 5])
def test_generate_batch_rejects_bad_seeds(seeds: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_batch(seeds, 32, 32)  # type: ignore[arg-type]


def test_training_source_items_are_generated_scenes_as_tensors() -> None:
    # The training loop's synthetic source is what production uses; its items must be the generator's output as
    # float tensors (rgb /255 in [3,H,W], depth [1,H,W] metres) with the scene's intrinsics.
    from jarrn_deploy.model.training.samples import SyntheticSource

    source = SyntheticSource(3, (32, 40), seed=5, render_scale=(1.0, 1.0), kind="indoor")
    item = source[1]
    rgb, depth = item["rgb"], item["depth"]
    h, w = rgb.shape[1:]
    assert rgb.dtype == torch.float32 and rgb.shape[0] == 3 and depth.shape == (1, h, w)
    scene_seed = int(np.random.default_rng([5, 1]).integers(0, 2**31 - 1))
    ref = generate_scene(scene_seed, h, w, "indoor")
    assert np.array_equal((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), ref.rgb)
    assert np.array_equal(depth[0].numpy(), ref.depth)
    assert item["intrinsics"] == ref.intrinsics
    assert torch.equal(source[1]["depth"], depth)
