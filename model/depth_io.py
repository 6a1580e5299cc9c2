"""Reading and writing RGB images and 16-bit depth PNGs (depth colouring for previews: :mod:`jarrn_deploy.model.visualize`)."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from jarrn_deploy.model.atomic import atomic_path

PathLike = str | os.PathLike[str]

KITTI_DEPTH_SCALE = 256.0
TUM_DEPTH_SCALE = 5000.0
MILLIMETRE_DEPTH_SCALE = 1000.0

USUAL_DEPTH_SCALES = {"KITTI": KITTI_DEPTH_SCALE, "TUM RGB-D": TUM_DEPTH_SCALE, "millimetres": MILLIMETRE_DEPTH_SCALE}
"""The PNG depth scales (units per metre) met in practice, suggested when a depth map looks mis-scaled."""
DENSE_SENSOR_FRACTION = 0.3
"""A depth map with at least this fraction of valid pixels comes from a depth camera (LiDAR and sparse points stay
far below: KITTI's raw LiDAR has about 4%, its accumulated ground truth about 20%)."""
DEPTH_CAMERA_RANGE_M = (0.2, 10.0)
"""Working range of depth cameras (Kinect, RealSense, TUM RGB-D). A dense map whose median is 4x beyond it and whose
nearest points (1st percentile) are 2x beyond it is mis-scaled (dense outdoor maps, e.g. completed KITTI depth, keep
near points on the road), as is one whose median is 4x below its near end."""
PLAUSIBLE_POINT_RANGE_M = (0.1, 100.0)
"""Any sensor: when most points are nearer than the first or farther than the second value, the scale is wrong."""
SENSOR_RANGE_TOLERANCE = 4.0
"""How far outside a sensor family's range (as a factor) a map must lie to be called mis-scaled."""
_CHECKED_POINTS = 10_000
"""The check looks at an even subsample of at most this many points: cheap enough to run on every frame read."""


class DepthScaleWarning(UserWarning):
    """A depth map whose values are implausible in metres: most likely read with the wrong scale."""


_SCALES_WARNED: set[float] = set()
"""Scales that :func:`read_depth_png` has warned about in this process: once each, not once per frame of a dataset."""


def depth_scale_warning(depth_m: np.ndarray, scale: float | None = None) -> str | None:
    """One line saying why ``depth_m`` (metres, 0 = missing) looks mis-scaled and which scale would fit, or None.

    Fires when most points are beyond 100 m or below 0.1 m, or when a dense map (a depth camera's) lies 4x outside a
    depth camera's 0.2..10 m (see ``DEPTH_CAMERA_RANGE_M``). ``scale`` (PNG units per metre the map was read with)
    lets the line say what each usual scale (KITTI 256, TUM 5000, millimetres 1000) would give instead.
    """
    d = np.asarray(depth_m, dtype=np.float64)
    points = d[np.isfinite(d) & (d > 0)]
    if points.size == 0:
        return None
    dense = points.size >= DENSE_SENSOR_FRACTION * d.size
    points = points[:: max(1, points.size // _CHECKED_POINTS)]
    median = float(np.median(points))
    near, far = PLAUSIBLE_POINT_RANGE_M
    camera_lo, camera_hi = DEPTH_CAMERA_RANGE_M
    if float((points > far).mean()) > 0.5:
        reason = f"most points are beyond {far:g} m"
    elif float((points < near).mean()) > 0.5:
        reason = f"most points are nearer than {near:g} m"
    elif dense and ((median > SENSOR_RANGE_TOLERANCE * camera_hi and np.percentile(points, 1) > 2 * camera_hi)
                    or median < camera_lo / SENSOR_RANGE_TOLERANCE):
        reason = (f"a dense map like this comes from a depth camera ({camera_lo:g}..{camera_hi:g} m), yet its median "
                  f"is {median:.3g} m")
    else:
        return None
    lo, hi = (float(v) for v in np.percentile(points, [1, 99]))
    usual = ", ".join(f"{name} {value:g}" for name, value in USUAL_DEPTH_SCALES.items())
    message = f"depth {lo:.3g}..{hi:.3g} m looks mis-scaled: {reason}."
    if scale is None:
        return f"{message} Are the values metres? Usual PNG scales (units per metre): {usual}."
    fits = [
        f"{value:g} ({name}: {lo * scale / value:.3g}..{hi * scale / value:.3g} m)"
        for name, value in USUAL_DEPTH_SCALES.items()
        if value != scale and near <= median * scale / value <= (camera_hi if dense else far)
    ]
    hint = f" Try scale {' or '.join(fits)}." if fits else ""
    return f"{message} It was read with scale {scale:g}; usual scales (units per metre): {usual}.{hint}"


_UINT16_MAX = np.iinfo(np.uint16).max
# Pillow reports a 16-bit greyscale PNG as one of these modes (byte order varies by version).
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _existing_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return p


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def read_rgb(path: PathLike) -> np.ndarray:
    """Read an 8-bit colour or greyscale image as uint8 HxWx3 RGB (alpha is dropped)."""
    p = _existing_file(path)
    with Image.open(p) as im:
        if im.mode not in ("RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr"):
            raise ValueError(f"{p}: expected an 8-bit colour or greyscale image, found mode {im.mode!r}")
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def read_depth_png(path: PathLike, *, scale: float) -> np.ndarray:
    """Read a 16-bit single-channel depth PNG as float32 metres = value / scale (0 = missing).

    A map that does not look like metres at this scale gets a :class:`DepthScaleWarning` (once per scale and process)
    naming the usual scales; see :func:`depth_scale_warning`.
    """
    scale = _check_scale(scale)
    p = _existing_file(path)
    with Image.open(p) as im:
        if im.format != "PNG":
            raise ValueError(f"{p}: expected a 16-bit single-channel PNG, found a {im.format} file")
        if im.mode not in _SIXTEEN_BIT_MODES and im.mode != "I":
            raise ValueError(
                f"{p}: expected a 16-bit single-channel depth PNG, found mode {im.mode!r}"
                + (" (8-bit: depth saved as an 8-bit image loses its range)" if im.mode in ("L", "P") else "")
            )
        raw = np.asarray(im)
    if raw.ndim != 2 or raw.min(initial=0) < 0 or raw.max(initial=0) > _UINT16_MAX:
        raise ValueError(f"{p}: expected a 16-bit single-channel depth PNG, found mode 'I' with out-of-range values")
    depth = (raw.astype(np.float32) / np.float32(scale)).astype(np.float32)
    warning = depth_scale_warning(depth, scale) if scale not in _SCALES_WARNED else None
    if warning is not None:
        _SCALES_WARNED.add(scale)
        warnings.warn(f"{p}: {warning}", DepthScaleWarning, stacklevel=2)
    return depth


def read_kitti_depth(path: PathLike) -> np.ndarray:
    """KITTI depth PNG (uint16, metres = value / 256)."""
    return read_depth_png(path, scale=KITTI_DEPTH_SCALE)


def read_tum_depth(path: PathLike) -> np.ndarray:
    """TUM RGB-D depth PNG (uint16, metres = value / 5000)."""
    return read_depth_png(path, scale=TUM_DEPTH_SCALE)


def read_millimetre_depth(path: PathLike) -> np.ndarray:
    """Depth PNG in millimetres (uint16, metres = value / 1000), e.g. Kinect v2 / RealSense."""
    return read_depth_png(path, scale=MILLIMETRE_DEPTH_SCALE)


def _to_uint16(depth_m: np.ndarray, scale: float) -> np.ndarray:
    d = np.asarray(depth_m, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth_m must be a 2-D HxW depth map, got shape {d.shape}")
    # Non-finite and negative depths are not measurements: store them as missing (0).
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0)
    return np.clip(np.rint(d * scale), 0, _UINT16_MAX).astype(np.uint16)


def _atomic_save(image: Image.Image, path: PathLike) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        image.save(handle, format="PNG")
    return Path(path)


def write_depth_png(path: PathLike, depth_m: np.ndarray, *, scale: float = KITTI_DEPTH_SCALE) -> Path:
    """Write metres as a uint16 PNG (value = round(depth * scale), clipped to 0..65535).

    Non-finite or <= 0 depths are written as 0 (missing). Depths above 65535 / scale are
    clipped (255.996 m at the default KITTI scale). The file appears atomically.
    """
    scale = _check_scale(scale)
    return _atomic_save(Image.fromarray(_to_uint16(depth_m, scale)), path)


def write_rgb_png(path: PathLike, rgb: np.ndarray) -> Path:
    """Write a uint8 HxWx3 image as PNG, atomically (e.g. the output of model.visualize.colorize_depth)."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb must be a uint8 HxWx3 array, got dtype {arr.dtype} shape {arr.shape}")
    return _atomic_save(Image.fromarray(arr), path)
