"""Seeded sparse-depth input patterns simulated from a dense (or semi-dense) depth map.

All functions take a float32 HxW depth map in metres where 0 marks an invalid pixel, a
``seed`` (int or ``np.random.Generator``) and return a new float32 HxW map with 0 = missing.
Only pixels that are valid in the input can ever be valid in the output.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

Seed = int | np.random.Generator
Intrinsics = tuple[float, float, float, float]

# Camera vertical field of view assumed by lidar_scanlines when no intrinsics are given.
ASSUMED_CAMERA_VFOV_DEG = 45.0


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _as_depth(depth: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(depth)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D HxW depth map, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real-valued depth map, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def valid_mask(depth: np.ndarray) -> np.ndarray:
    """Boolean mask of valid depth pixels (finite and > 0)."""
    arr = np.asarray(depth)
    return np.isfinite(arr) & (arr > 0)


def _keep(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(depth.shape, dtype=np.float32)
    out[mask] = depth[mask]
    return out


def random_points(
    depth: np.ndarray,
    *,
    count: int | None = None,
    ratio: float | None = None,
    seed: Seed,
) -> np.ndarray:
    """Keep a uniformly random subset of the valid pixels of ``depth``.

    Give exactly one of ``count`` (number of points; more than the valid pixels keeps all of
    them) or ``ratio`` (share of the valid pixels, in [0, 1], rounded to the nearest count).
    """
    d = _as_depth(depth, "depth")
    if (count is None) == (ratio is None):
        raise ValueError("give exactly one of count or ratio")
    valid_idx = np.flatnonzero(valid_mask(d))
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"count must be a non-negative int, got {count!r}")
        n = min(int(count), valid_idx.size)
    else:
        if not (_is_real(ratio) and 0.0 <= ratio <= 1.0):
            raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}")
        n = int(round(ratio * valid_idx.size))
    chosen = _rng(seed).choice(valid_idx, size=n, replace=False)
    mask = np.zeros(d.size, dtype=bool)
    mask[chosen] = True
    return _keep(d, mask.reshape(d.shape))


def _camera_model(shape: tuple[int, int], intrinsics: Intrinsics | None) -> Intrinsics:
    height, width = shape
    if intrinsics is None:
        fy = (height / 2.0) / math.tan(math.radians(ASSUMED_CAMERA_VFOV_DEG) / 2.0)
        return fy, fy, (width - 1) / 2.0, (height - 1) / 2.0
    if len(intrinsics) != 4 or not all(_is_real(v) for v in intrinsics):
        raise ValueError(f"intrinsics must be four finite numbers (fx, fy, cx, cy), got {intrinsics!r}")
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    if fx <= 0 or fy <= 0:
        raise ValueError(f"intrinsics focal lengths fx, fy must be > 0, got fx={fx}, fy={fy}")
    return fx, fy, cx, cy


def _beam_elevations(
    lines: int, height: int, fy: float, cy: float, vertical_fov_deg: tuple[float, float] | None
) -> np.ndarray:
    if vertical_fov_deg is None:
        # Elevation of the top and bottom image rows at the principal column (y points down).
        low, high = math.atan((cy - (height - 0.5)) / fy), math.atan((cy + 0.5) / fy)
    else:
        if len(vertical_fov_deg) != 2:
            raise ValueError(f"vertical_fov_deg must be (lowest, highest) in degrees, got {vertical_fov_deg!r}")
        low, high = (math.radians(float(v)) for v in vertical_fov_deg)
        if not (-90.0 < math.degrees(low) < math.degrees(high) < 90.0):
            raise ValueError(
                f"vertical_fov_deg must satisfy -90 < lowest < highest < 90, got {vertical_fov_deg!r}"
            )
    # Beams at the centres of `lines` equal elevation bins over [low, high], top beam first.
    return high - (np.arange(lines) + 0.5) * (high - low) / lines


def lidar_scanlines(
    depth: np.ndarray,
    *,
    lines: int,
    seed: Seed,
    intrinsics: Intrinsics | None = None,
    vertical_fov_deg: tuple[float, float] | None = None,
    horizontal_subsample: int = 1,
) -> np.ndarray:
    """Simulate a spinning multi-beam LiDAR (e.g. 4..128 lines) seen by the camera.

    Model: the LiDAR sits at the camera centre with its axes aligned to the camera, and its
    ``lines`` beams are evenly spaced in elevation angle. ``vertical_fov_deg = (lowest, highest)``
    gives the beams' elevation range in degrees (positive = up; a Velodyne HDL-64E is roughly
    (-24.8, 2.0)); by default it spans the image's own vertical field of view. A beam at
    elevation theta sweeps a cone; a point at azimuth phi projects to column
    ``u = cx + fx * tan(phi)`` and row ``v = cy - fy * tan(theta) / cos(phi)``, i.e.
    ``v = cy - fy * tan(theta) * sqrt(1 + ((u - cx) / fx) ** 2)``. So each beam is a 1-pixel
    band that bends away from the horizon towards the image sides (flat at the horizon).
    ``intrinsics = (fx, fy, cx, cy)`` in pixels; without them the camera is assumed to have a
    vertical field of view of ``ASSUMED_CAMERA_VFOV_DEG``, square pixels and a centred
    principal point.

    Valid depth pixels on the beam rows are kept. With ``horizontal_subsample = k`` only every
    k-th column of each beam is kept, starting at a random column offset per beam; the seed only
    drives that offset, so with ``k = 1`` the pattern is deterministic.
    """
    d = _as_depth(depth, "depth")
    if isinstance(lines, bool) or not isinstance(lines, (int, np.integer)) or lines < 1:
        raise ValueError(f"lines must be a positive int, got {lines!r}")
    if (
        isinstance(horizontal_subsample, bool)
        or not isinstance(horizontal_subsample, (int, np.integer))
        or horizontal_subsample < 1
    ):
        raise ValueError(f"horizontal_subsample must be a positive int, got {horizontal_subsample!r}")
    rng = _rng(seed)
    height, width = d.shape
    fx, fy, cx, cy = _camera_model((height, width), intrinsics)
    elevations = _beam_elevations(int(lines), height, fy, cy, vertical_fov_deg)

    cols = np.arange(width)
    stretch = np.sqrt(1.0 + ((cols - cx) / fx) ** 2)
    offsets = rng.integers(0, horizontal_subsample, size=elevations.size)
    beam = np.zeros(d.shape, dtype=bool)
    for theta, offset in zip(elevations, offsets):
        rows = np.rint(cy - fy * math.tan(theta) * stretch).astype(np.int64)
        on_beam = (rows >= 0) & (rows < height) & ((cols - offset) % horizontal_subsample == 0)
        beam[rows[on_beam], cols[on_beam]] = True
    return _keep(d, beam & valid_mask(d))


def add_noise(sparse: np.ndarray, *, sigma_relative: float, seed: Seed) -> np.ndarray:
    """Multiply each valid point by ``1 + sigma_relative * N(0, 1)``; invalid pixels stay 0.

    The factor is floored at 1% so a noisy point never turns negative or becomes "missing":
    the validity mask of the output equals that of the input.
    """
    s = _as_depth(sparse, "sparse")
    if not (_is_real(sigma_relative) and sigma_relative >= 0):
        raise ValueError(f"sigma_relative must be a finite number >= 0, got {sigma_relative!r}")
    mask = valid_mask(s)
    factor = 1.0 + sigma_relative * _rng(seed).standard_normal(int(mask.sum()))
    out = np.zeros(s.shape, dtype=np.float32)
    out[mask] = s[mask] * np.maximum(factor, 0.01)
    return out


def add_outliers(
    sparse: np.ndarray,
    *,
    ratio: float,
    seed: Seed,
    max_factor: float = 4.0,
    min_factor: float = 1.25,
) -> np.ndarray:
    """Replace ``round(ratio * n_valid)`` random valid points by wrong depths.

    A wrong depth is the true one multiplied or divided (50/50) by a factor drawn
    log-uniformly from ``[min_factor, max_factor]``, so every outlier is off by at least
    ``min_factor`` and stays positive. Other pixels are unchanged.
    """
    s = _as_depth(sparse, "sparse")
    if not (_is_real(ratio) and 0.0 <= ratio <= 1.0):
        raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}")
    if not (_is_real(min_factor) and _is_real(max_factor) and 1.0 <= min_factor <= max_factor):
        raise ValueError(
            f"min_factor and max_factor must satisfy 1 <= min_factor <= max_factor < inf, "
            f"got min_factor={min_factor!r}, max_factor={max_factor!r}"
        )
    rng = _rng(seed)
    valid_idx = np.flatnonzero(valid_mask(s))
    chosen = rng.choice(valid_idx, size=int(round(ratio * valid_idx.size)), replace=False)
    log_factor = rng.uniform(math.log(min_factor), math.log(max_factor), size=chosen.size)
    sign = rng.choice(np.array([-1.0, 1.0]), size=chosen.size)
    out = np.where(valid_mask(s), s, np.float32(0.0)).astype(np.float32)
    flat = out.reshape(-1)
    flat[chosen] = flat[chosen] * np.exp(sign * log_factor)
    return out
