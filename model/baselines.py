"""Classical depth-completion baselines: interpolate the sparse points over the whole image."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import QhullError


def _sparse_points(sparse: np.ndarray, min_points: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(sparse)
    if s.ndim != 2:
        raise ValueError(f"sparse must be a 2-D HxW depth map, got shape {s.shape}")
    mask = np.isfinite(s) & (s > 0)
    count = int(mask.sum())
    if count < min_points:
        raise ValueError(
            f"{method} interpolation needs at least {min_points} valid sparse points (> 0), got {count}"
        )
    return s.astype(np.float32, copy=False), mask


def _nearest_fill(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # The Euclidean distance transform of ~mask gives, per pixel, the index of the closest
    # valid pixel: exact nearest neighbour in O(HW) instead of a KD-tree query per pixel.
    _, (rows, cols) = ndimage.distance_transform_edt(~mask, return_indices=True)
    return values[rows, cols].astype(np.float32)


def nearest_interpolation(sparse: np.ndarray) -> np.ndarray:
    """Dense float32 HxW map: each pixel takes the depth of its nearest valid sparse point."""
    s, mask = _sparse_points(sparse, 1, "nearest")
    return _nearest_fill(s, mask)


def linear_interpolation(sparse: np.ndarray) -> np.ndarray:
    """Dense float32 HxW map: piecewise-linear interpolation over the Delaunay triangulation
    of the valid sparse points; pixels outside their convex hull take the nearest point's depth.
    """
    s, mask = _sparse_points(sparse, 3, "linear")
    rows, cols = np.nonzero(mask)
    try:
        interpolator = LinearNDInterpolator(np.column_stack([rows, cols]), s[rows, cols])
    except QhullError as exc:
        raise ValueError(
            "linear interpolation needs sparse points that are not all on one line "
            f"(Delaunay triangulation failed): {exc.args[0].splitlines()[0] if exc.args else exc}"
        ) from exc
    height, width = s.shape
    grid_r, grid_c = np.mgrid[0:height, 0:width]
    dense = interpolator(grid_r, grid_c).astype(np.float32)
    outside = np.isnan(dense)
    if outside.any():
        dense[outside] = _nearest_fill(s, mask)[outside]
    return dense
