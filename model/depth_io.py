"""Reading and writing RGB images and 16-bit depth PNGs, plus depth colouring for previews."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from model.atomic import atomic_path

PathLike = str | os.PathLike[str]

KITTI_DEPTH_SCALE = 256.0
TUM_DEPTH_SCALE = 5000.0
MILLIMETRE_DEPTH_SCALE = 1000.0

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
    """Read a 16-bit single-channel depth PNG as float32 metres = value / scale (0 = missing)."""
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
    return (raw.astype(np.float32) / np.float32(scale)).astype(np.float32)


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


def colorize_depth(
    depth_m: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    *,
    cmap: str = "turbo",
) -> np.ndarray:
    """Colour a depth map (metres, HxW) as uint8 HxWx3; invalid pixels (<= 0, nan) are black.

    The range defaults to the min / max of the valid pixels; near = low end of the colormap.
    """
    d = np.asarray(depth_m, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth_m must be a 2-D HxW depth map, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape + (3,), dtype=np.uint8)
    if not valid.any():
        return out
    lo = float(d[valid].min()) if vmin is None else float(vmin)
    hi = float(d[valid].max()) if vmax is None else float(vmax)
    if not hi >= lo:
        raise ValueError(f"vmax must be >= vmin, got vmin={lo}, vmax={hi}")
    normed = np.clip((d[valid] - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    out[valid] = colormaps[cmap](normed, bytes=True)[:, :3]
    return out


def write_rgb_png(path: PathLike, rgb: np.ndarray) -> Path:
    """Write a uint8 HxWx3 image as PNG, atomically (e.g. the output of colorize_depth)."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb must be a uint8 HxWx3 array, got dtype {arr.dtype} shape {arr.shape}")
    return _atomic_save(Image.fromarray(arr), path)
