import math

import numpy as np
import pytest

from jarrn_deploy.model.sparse import add_noise, add_outliers, lidar_scanlines, random_points


def _depth(height: int = 60, width: int = 80, invalid_share: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.uniform(1.0, 10.0, size=(height, width)).astype(np.float32)
    d[rng.random((height, width)) < invalid_share] = 0.0
    return d


# --- random_points -----------------------------------------------------------------------


def test_random_points_keeps_exact_count_of_valid_pixels_with_their_depth():
    d = _depth()
    s = random_points(d, count=100, seed=0)
    assert s.dtype == np.float32 and s.shape == d.shape
    assert int((s > 0).sum()) == 100
    np.testing.assert_array_equal(s[s > 0], d[s > 0])


def test_random_points_never_samples_invalid_pixels():
    d = _depth(invalid_share=0.9)
    s = random_points(d, count=200, seed=1)
    assert np.all(d[s > 0] > 0)


def test_random_points_count_above_valid_pixels_returns_all_valid():
    d = _depth()
    s = random_points(d, count=10**6, seed=0)
    np.testing.assert_array_equal(s, d)


def test_random_points_ratio_rounds_share_of_valid_pixels():
    d = _depth()
    n_valid = int((d > 0).sum())
    s = random_points(d, ratio=0.1, seed=0)
    assert int((s > 0).sum()) == round(0.1 * n_valid)


def test_random_points_same_seed_gives_same_pattern():
    d = _depth()
    np.testing.assert_array_equal(random_points(d, count=50, seed=7), random_points(d, count=50, seed=7))


def test_random_points_different_seed_gives_different_pattern():
    d = _depth()
    assert not np.array_equal(random_points(d, count=50, seed=1), random_points(d, count=50, seed=2))


def test_random_points_accepts_generator_and_advances_it():
    d = _depth()
    rng = np.random.default_rng(3)
    first = random_points(d, count=50, seed=rng)
    second = random_points(d, count=50, seed=rng)
    np.testing.assert_array_equal(first, random_points(d, count=50, seed=np.random.default_rng(3)))
    assert not np.array_equal(first, second)


def test_random_points_does_not_modify_input():
    d = _depth()
    before = d.copy()
    random_points(d, count=10, seed=0)
    np.testing.assert_array_equal(d, before)


@pytest.mark.parametrize("kwargs", [{}, {"count": 5, "ratio": 0.1}])
def test_random_points_requires_exactly_one_of_count_and_ratio(kwargs):
    with pytest.raises(ValueError, match="exactly one of count or ratio"):
        random_points(_depth(), seed=0, **kwargs)


@pytest.mark.parametrize("kwargs, name", [({"count": -1}, "count"), ({"ratio": 1.5}, "ratio")])
def test_random_points_rejects_out_of_range_amount(kwargs, name):
    with pytest.raises(ValueError, match=name):
        random_points(_depth(), seed=0, **kwargs)


def test_random_points_rejects_non_2d_depth():
    with pytest.raises(ValueError, match="depth must be a 2-D"):
        random_points(np.ones((2, 3, 4), np.float32), count=1, seed=0)


def test_random_points_rejects_non_integer_seed():
    with pytest.raises(ValueError, match="seed"):
        random_points(_depth(), count=1, seed=1.5)


# --- lidar_scanlines ---------------------------------------------------------------------

KITTI_INTRINSICS = (721.5377, 721.5377, 609.5593, 172.854)


def _rows_hit(sparse: np.ndarray, col: int) -> np.ndarray:
    return np.flatnonzero(sparse[:, col] > 0)


def test_lidar_scanlines_has_one_pixel_per_line_in_the_centre_column():
    dense = np.ones((240, 320), np.float32)
    s = lidar_scanlines(dense, lines=16, seed=0)
    assert _rows_hit(s, 160).size == 16


def test_lidar_scanlines_lines_are_evenly_spaced_in_elevation():
    fx, fy, cx, cy = 300.0, 300.0, 160.0, 120.0
    dense = np.ones((240, 321), np.float32)
    s = lidar_scanlines(dense, lines=8, seed=0, intrinsics=(fx, fy, cx, cy), vertical_fov_deg=(-20.0, 20.0))
    rows = _rows_hit(s, 160)
    elevations = np.degrees(np.arctan((cy - rows) / fy))
    expected = 20.0 - (np.arange(8) + 0.5) * 5.0
    # One pixel of rounding is at most ~0.2 degrees at this focal length.
    np.testing.assert_allclose(elevations, expected, atol=0.2)


@pytest.mark.parametrize("elevation_deg", [-10.0, 0.0, 5.0])
def test_lidar_scanlines_beam_follows_projected_cone(elevation_deg):
    fx, fy, cx, cy = KITTI_INTRINSICS
    dense = np.ones((375, 1242), np.float32)
    fov = (elevation_deg - 1.0, elevation_deg + 1.0)
    s = lidar_scanlines(dense, lines=1, seed=0, intrinsics=KITTI_INTRINSICS, vertical_fov_deg=fov)
    tan_el = math.tan(math.radians(elevation_deg))
    for col in (0, 300, 609, 1241):
        expected = round(cy - fy * tan_el * math.sqrt(1 + ((col - cx) / fx) ** 2))
        assert _rows_hit(s, col).tolist() == [expected]


def test_lidar_scanlines_bend_away_from_horizon_towards_image_sides():
    dense = np.ones((375, 1242), np.float32)
    below = lidar_scanlines(dense, lines=1, seed=0, intrinsics=KITTI_INTRINSICS, vertical_fov_deg=(-11.0, -9.0))
    above = lidar_scanlines(dense, lines=1, seed=0, intrinsics=KITTI_INTRINSICS, vertical_fov_deg=(4.0, 6.0))
    assert _rows_hit(below, 0)[0] > _rows_hit(below, 609)[0]
    assert _rows_hit(above, 0)[0] < _rows_hit(above, 609)[0]


def test_lidar_scanlines_only_keeps_valid_depth():
    d = _depth(240, 320, invalid_share=0.5)
    s = lidar_scanlines(d, lines=32, seed=0)
    kept = s > 0
    assert kept.any()
    np.testing.assert_array_equal(s[kept], d[kept])
    assert np.all(d[kept] > 0)


def test_lidar_scanlines_more_lines_give_more_points():
    dense = np.ones((240, 320), np.float32)
    counts = [int((lidar_scanlines(dense, lines=n, seed=0) > 0).sum()) for n in (4, 16, 64)]
    assert counts[0] < counts[1] < counts[2]


def test_lidar_scanlines_horizontal_subsample_keeps_about_one_in_k():
    dense = np.ones((240, 320), np.float32)
    full = int((lidar_scanlines(dense, lines=16, seed=0) > 0).sum())
    quarter = int((lidar_scanlines(dense, lines=16, seed=0, horizontal_subsample=4) > 0).sum())
    assert abs(quarter - full / 4) <= 16


def test_lidar_scanlines_same_seed_gives_same_pattern():
    d = _depth(240, 320)
    a = lidar_scanlines(d, lines=16, seed=5, horizontal_subsample=3)
    b = lidar_scanlines(d, lines=16, seed=5, horizontal_subsample=3)
    np.testing.assert_array_equal(a, b)


def test_lidar_scanlines_fov_above_image_gives_no_points():
    dense = np.ones((240, 320), np.float32)
    s = lidar_scanlines(dense, lines=8, seed=0, intrinsics=(300.0, 300.0, 160.0, 120.0), vertical_fov_deg=(60.0, 80.0))
    assert not s.any()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lines": 0}, "lines"),
        ({"lines": 8, "horizontal_subsample": 0}, "horizontal_subsample"),
        ({"lines": 8, "vertical_fov_deg": (10.0, -10.0)}, "vertical_fov_deg"),
        ({"lines": 8, "intrinsics": (0.0, 300.0, 160.0, 120.0)}, "intrinsics"),
        ({"lines": 8, "intrinsics": (300.0, 300.0, 160.0)}, "intrinsics"),
    ],
)
def test_lidar_scanlines_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        lidar_scanlines(np.ones((240, 320), np.float32), seed=0, **kwargs)


# --- add_noise ---------------------------------------------------------------------------


def test_add_noise_keeps_validity_mask_and_non_negative_values():
    s = random_points(_depth(), count=300, seed=0)
    noisy = add_noise(s, sigma_relative=0.5, seed=0)
    np.testing.assert_array_equal(noisy > 0, s > 0)
    assert np.all(noisy >= 0)
    assert noisy.dtype == np.float32


def test_add_noise_relative_spread_matches_sigma():
    s = np.full((200, 200), 5.0, np.float32)
    noisy = add_noise(s, sigma_relative=0.05, seed=0)
    rel = noisy / s - 1.0
    assert abs(rel.mean()) < 0.002
    assert abs(rel.std() - 0.05) < 0.002


def test_add_noise_zero_sigma_is_identity():
    s = random_points(_depth(), count=300, seed=0)
    np.testing.assert_array_equal(add_noise(s, sigma_relative=0.0, seed=0), s)


def test_add_noise_same_seed_gives_same_result():
    s = random_points(_depth(), count=300, seed=0)
    np.testing.assert_array_equal(add_noise(s, sigma_relative=0.1, seed=4), add_noise(s, sigma_relative=0.1, seed=4))


def test_add_noise_rejects_negative_sigma():
    with pytest.raises(ValueError, match="sigma_relative"):
        add_noise(np.ones((4, 4), np.float32), sigma_relative=-0.1, seed=0)


# --- add_outliers ------------------------------------------------------------------------


def test_add_outliers_changes_exactly_the_requested_share_of_points():
    s = random_points(_depth(), count=1000, seed=0)
    out = add_outliers(s, ratio=0.1, seed=0)
    changed = out != s
    assert int(changed.sum()) == 100
    assert np.all(s[changed] > 0)
    np.testing.assert_array_equal(out > 0, s > 0)


def test_add_outliers_wrong_depths_are_off_by_factor_within_bounds():
    s = random_points(_depth(), count=1000, seed=0)
    out = add_outliers(s, ratio=0.5, seed=1, min_factor=1.5, max_factor=3.0)
    changed = out != s
    factor = np.maximum(out[changed] / s[changed], s[changed] / out[changed])
    assert np.all(factor >= 1.5 * (1 - 1e-5))
    assert np.all(factor <= 3.0 * (1 + 1e-5))
    # Both too-near and too-far outliers occur.
    assert np.any(out[changed] > s[changed]) and np.any(out[changed] < s[changed])


def test_add_outliers_same_seed_gives_same_result():
    s = random_points(_depth(), count=500, seed=0)
    np.testing.assert_array_equal(add_outliers(s, ratio=0.2, seed=9), add_outliers(s, ratio=0.2, seed=9))


def test_add_outliers_does_not_modify_input():
    s = random_points(_depth(), count=500, seed=0)
    before = s.copy()
    add_outliers(s, ratio=0.5, seed=0)
    np.testing.assert_array_equal(s, before)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"ratio": -0.1}, "ratio"), ({"ratio": 0.1, "max_factor": 0.5}, "max_factor"), ({"ratio": math.nan}, "ratio")],
)
def test_add_outliers_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        add_outliers(np.ones((4, 4), np.float32), seed=0, **kwargs)
