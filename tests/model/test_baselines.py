import numpy as np
import pytest

from jarrn_deploy.model.baselines import linear_interpolation, nearest_interpolation
from jarrn_deploy.model.sparse import random_points


def _plane(height: int = 40, width: int = 50) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return (2.0 + 0.05 * rows + 0.03 * cols).astype(np.float32)


def test_linear_interpolation_reproduces_a_plane_inside_the_hull():
    plane = _plane()
    sparse = np.zeros_like(plane)
    for r, c in [(0, 0), (0, 49), (39, 0), (39, 49), (20, 25)]:
        sparse[r, c] = plane[r, c]
    dense = linear_interpolation(sparse)
    np.testing.assert_allclose(dense, plane, rtol=1e-5)


def test_linear_interpolation_keeps_sample_values():
    rough = _plane() + np.random.default_rng(0).random((40, 50)).astype(np.float32)
    sparse = random_points(rough, count=60, seed=0)
    dense = linear_interpolation(sparse)
    np.testing.assert_allclose(dense[sparse > 0], sparse[sparse > 0], rtol=1e-6)


def test_linear_interpolation_fills_outside_hull_with_nearest_point():
    sparse = np.zeros((10, 10), np.float32)
    sparse[4, 4], sparse[4, 6], sparse[6, 5] = 1.0, 2.0, 3.0
    dense = linear_interpolation(sparse)
    assert dense.dtype == np.float32 and dense.shape == (10, 10)
    assert np.all(np.isfinite(dense)) and np.all(dense > 0)
    assert dense[0, 0] == 1.0  # closest to (4, 4)
    assert dense[0, 9] == 2.0  # closest to (4, 6)
    assert dense[9, 5] == 3.0  # closest to (6, 5)


def test_linear_interpolation_rejects_fewer_than_three_points():
    sparse = np.zeros((10, 10), np.float32)
    sparse[1, 1], sparse[5, 5] = 1.0, 2.0
    with pytest.raises(ValueError, match="at least 3 valid sparse points.*got 2"):
        linear_interpolation(sparse)


def test_linear_interpolation_rejects_collinear_points():
    sparse = np.zeros((10, 10), np.float32)
    sparse[3, 1], sparse[3, 5], sparse[3, 8] = 1.0, 2.0, 3.0
    with pytest.raises(ValueError, match="not all on one line"):
        linear_interpolation(sparse)


def test_nearest_interpolation_takes_closest_point_value():
    sparse = np.zeros((5, 9), np.float32)
    sparse[2, 0], sparse[2, 8] = 1.0, 5.0
    dense = nearest_interpolation(sparse)
    np.testing.assert_array_equal(dense[:, :4], 1.0)
    np.testing.assert_array_equal(dense[:, 5:], 5.0)


def test_nearest_interpolation_works_with_a_single_point():
    sparse = np.zeros((4, 4), np.float32)
    sparse[1, 2] = 3.5
    np.testing.assert_array_equal(nearest_interpolation(sparse), np.full((4, 4), 3.5, np.float32))


def test_nearest_interpolation_rejects_empty_input():
    with pytest.raises(ValueError, match="at least 1 valid sparse points.*got 0"):
        nearest_interpolation(np.zeros((4, 4), np.float32))


@pytest.mark.parametrize("fn", [nearest_interpolation, linear_interpolation])
def test_baselines_treat_negative_and_nan_as_missing(fn):
    sparse = np.zeros((8, 8), np.float32)
    sparse[0, 0], sparse[0, 7], sparse[7, 0], sparse[7, 7] = 2.0, 2.0, 2.0, 2.0
    sparse[3, 3], sparse[4, 4] = -5.0, np.nan
    np.testing.assert_allclose(fn(sparse), 2.0)


@pytest.mark.parametrize("fn", [nearest_interpolation, linear_interpolation])
def test_baselines_reject_non_2d_input(fn):
    with pytest.raises(ValueError, match="sparse must be a 2-D"):
        fn(np.ones((1, 4, 4), np.float32))


@pytest.mark.parametrize("fn", [nearest_interpolation, linear_interpolation])
def test_baselines_do_not_modify_input(fn):
    sparse = random_points(_plane(), count=30, seed=1)
    before = sparse.copy()
    fn(sparse)
    np.testing.assert_array_equal(sparse, before)
