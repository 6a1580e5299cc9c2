"""Representative inputs for INT8 calibration: the built-in set, or the user's .npz files.

The built-in set (:func:`default_calibration_set`, 12 samples) mixes the bundled real frames and synthetic scenes so
that the activation ranges cover both deployment domains, outdoor LiDAR and indoor random points:

* the 4 bundled real frames (``jarrn_deploy.model.real_frames``: kitti_02, kitti_03, tum_desk, kinect2_lounge), each as one
  horizontally flipped crop (KITTI 256x768 from the bottom, where the LiDAR is; indoor 320x416) with its real LiDAR
  (KITTI) or 300 random ground-truth points (indoor, seed 1000 + index). These are other crops and other sparse draws
  than the validation cases (full frames, 500/100 points with seed 0), but the same images: the validation of an INT8
  graph on the real frames is therefore not fully independent of its calibration (see export/README.md);
* 8 synthetic scenes (``jarrn_deploy.model.synthetic.generate_scene``, seeds 9000..9007, 256x320): 4 indoor rooms with 500 random
  points and 4 outdoor streets with a simulated 64-line LiDAR.

With a static graph size every sample is cropped (or padded: RGB by edge replication, sparse depth with zeros) to it.

User data: a ``.npz`` file, or a directory of them, each holding ``rgb`` (``[N,3,H,W]`` float32 in [0,1], or uint8
0..255) and ``sparse_depth`` (``[N,1,H,W]`` or ``[N,H,W]`` float32 metres, 0 = missing), i.e. the graph inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jarrn_deploy.export.export_errors import ExportError
from jarrn_deploy.model import CONTRACT
from jarrn_deploy.model.crop import crop_or_pad

REAL_SEED_BASE = 1000
SYNTHETIC_SEEDS = tuple(range(9000, 9008))
SYNTHETIC_HW = (256, 320)
KITTI_CROP_HW = (256, 768)
INDOOR_CROP_HW = (320, 416)
INDOOR_POINTS = 300
SYNTHETIC_INDOOR_POINTS = 500
SYNTHETIC_LIDAR_LINES = 64


@dataclass(frozen=True)
class CalibrationSet:
    """Graph-ready calibration batches and a description of where they came from."""

    batches: tuple[tuple[np.ndarray, np.ndarray], ...]
    """``(rgb [B,3,H,W] float32, sparse_depth [B,1,H,W] float32)`` pairs, fed to the graph one by one."""
    description: str
    """Human-readable origin, recorded in the ONNX metadata."""

    @property
    def sample_count(self) -> int:
        return sum(rgb.shape[0] for rgb, _ in self.batches)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for rgb, sparse in self.batches:
            digest.update(np.ascontiguousarray(rgb).tobytes())
            digest.update(np.ascontiguousarray(sparse).tobytes())
        return digest.hexdigest()

    def feeds(self) -> list[dict[str, np.ndarray]]:
        return [{CONTRACT.rgb_name: rgb, CONTRACT.sparse_name: sparse} for rgb, sparse in self.batches]


def _sample(rgb_hwc: np.ndarray, sparse_hw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rgb = rgb_hwc.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(rgb), np.ascontiguousarray(sparse_hw.astype(np.float32)[None, None])


def _real_samples(static_hw: tuple[int, int] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    from jarrn_deploy.model.real_frames import load_real_frames
    from jarrn_deploy.model.sparse import random_points

    samples = []
    for index, frame in enumerate(load_real_frames()):
        height, width = frame.gt.shape
        if static_hw:
            crop = static_hw  # padded where the frame is smaller
        else:
            crop = KITTI_CROP_HW if frame.sparse is not None else INDOOR_CROP_HW
            crop = (min(crop[0], height), min(crop[1], width))
        top = max(height - crop[0], 0) if frame.sparse is not None else max((height - crop[0]) // 2, 0)
        left = max((width - crop[1]) // 3, 0)
        rgb = crop_or_pad(frame.rgb[:, ::-1], crop, mode="edge", top=top, left=left)
        gt = crop_or_pad(frame.gt[:, ::-1], crop, top=top, left=left)
        if frame.sparse is not None:
            sparse = crop_or_pad(frame.sparse[:, ::-1], crop, top=top, left=left)
        else:
            sparse = random_points(gt, count=INDOOR_POINTS, seed=REAL_SEED_BASE + index)
        samples.append(_sample(rgb, sparse))
    return samples


def _synthetic_samples(static_hw: tuple[int, int] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    from jarrn_deploy.model.sparse import lidar_scanlines, random_points
    from jarrn_deploy.model.synthetic import generate_scene

    height, width = static_hw or SYNTHETIC_HW
    samples = []
    for i, seed in enumerate(SYNTHETIC_SEEDS):
        kind = "indoor" if i % 2 == 0 else "outdoor"
        scene = generate_scene(seed, height, width, kind)
        if kind == "indoor":
            sparse = random_points(scene.depth, count=SYNTHETIC_INDOOR_POINTS, seed=seed)
        else:
            sparse = lidar_scanlines(scene.depth, lines=SYNTHETIC_LIDAR_LINES, seed=seed, intrinsics=scene.intrinsics)
        samples.append(_sample(scene.rgb, sparse))
    return samples


Pair = tuple[np.ndarray, np.ndarray]


def _group(samples: list[Pair], batch: int | None) -> tuple[Pair, ...]:
    """Single samples as they are (dynamic batch), or stacked into batches of ``batch`` same-size samples."""
    if not batch or batch == 1:
        return tuple(samples)
    by_size: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for rgb, sparse in samples:
        by_size.setdefault(rgb.shape[-2:], []).append((rgb, sparse))
    batches = []
    for group in by_size.values():
        # Cycle through the group so that every sample is used and every batch is full.
        count = -(-len(group) // batch) * batch
        picked = [group[i % len(group)] for i in range(count)]
        for start in range(0, count, batch):
            chunk = picked[start:start + batch]
            batches.append((np.concatenate([c[0] for c in chunk]), np.concatenate([c[1] for c in chunk])))
    return tuple(batches)


def default_calibration_set(
    static_hw: tuple[int, int] | None = None, static_batch: int | None = None
) -> CalibrationSet:
    """The documented built-in set (module docstring): 4 real-frame crops + 8 synthetic scenes."""
    samples = _real_samples(static_hw) + _synthetic_samples(static_hw)
    if static_batch and static_batch > 1 and not static_hw:
        # Stacking needs one size: use the synthetic size for everything.
        samples = _real_samples(SYNTHETIC_HW) + _synthetic_samples(SYNTHETIC_HW)
    size = f"{static_hw[0]}x{static_hw[1]}" if static_hw else "native crops"
    description = (
        f"built-in: 4 bundled real frames (flipped crops; KITTI real LiDAR, indoor {INDOOR_POINTS} GT points) + "
        f"8 synthetic scenes (seeds {SYNTHETIC_SEEDS[0]}..{SYNTHETIC_SEEDS[-1]}, indoor {SYNTHETIC_INDOOR_POINTS} "
        f"points / outdoor {SYNTHETIC_LIDAR_LINES}-line LiDAR), {size}"
    )
    return CalibrationSet(_group(samples, static_batch), description)


def _load_npz(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile / numpy raise many types for a corrupt file; all mean the same here
        raise ExportError(f"calibration: cannot read {path} as .npz ({type(exc).__name__}: {exc})") from None
    rgb_name, sparse_name = CONTRACT.rgb_name, CONTRACT.sparse_name
    missing = [k for k in (rgb_name, sparse_name) if k not in arrays]
    if missing:
        raise ExportError(
            f"calibration: {path} lacks array(s) {missing}; expected '{rgb_name}' [N,3,H,W] and "
            f"'{sparse_name}' [N,1,H,W] (found {sorted(arrays)})"
        )
    rgb, sparse = arrays[rgb_name], arrays[sparse_name]
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ExportError(
            f"calibration: {path}: '{rgb_name}' must be [N,3,H,W] (channels first), got shape {tuple(rgb.shape)}"
        )
    if sparse.ndim == 3:
        sparse = sparse[:, None]
    if sparse.ndim != 4 or sparse.shape[1] != 1 or sparse.shape[0] != rgb.shape[0] or sparse.shape[2:] != rgb.shape[2:]:
        raise ExportError(
            f"calibration: {path}: '{sparse_name}' must be [N,1,H,W] matching '{rgb_name}' {tuple(rgb.shape)}, "
            f"got shape {tuple(arrays[sparse_name].shape)}"
        )
    if rgb.shape[0] == 0:
        raise ExportError(f"calibration: {path} holds no samples")
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) / 255.0
    elif np.issubdtype(rgb.dtype, np.floating):
        rgb = rgb.astype(np.float32)
        if not np.isfinite(rgb).all() or rgb.min() < 0.0 or rgb.max() > 1.0:
            raise ExportError(f"calibration: {path}: '{rgb_name}' must lie in [0,1] (or be uint8 0..255)")
    else:
        raise ExportError(f"calibration: {path}: '{rgb_name}' must be float in [0,1] or uint8, got {rgb.dtype}")
    if not np.issubdtype(sparse.dtype, np.floating):
        raise ExportError(f"calibration: {path}: '{sparse_name}' must be float metres, got {sparse.dtype}")
    sparse = sparse.astype(np.float32)
    if not np.isfinite(sparse).all() or sparse.min() < 0.0 or sparse.max() > CONTRACT.max_plausible_depth_m:
        raise ExportError(
            f"calibration: {path}: '{sparse_name}' must be finite metres in [0, {CONTRACT.max_plausible_depth_m:g}] "
            "(0 = missing)"
        )
    if min(rgb.shape[2:]) < 1:
        raise ExportError(f"calibration: {path}: empty images {tuple(rgb.shape)}")
    return [(np.ascontiguousarray(rgb[i:i + 1]), np.ascontiguousarray(sparse[i:i + 1])) for i in range(rgb.shape[0])]


def load_calibration(
    source: str | Path | None,
    *,
    static_hw: tuple[int, int] | None = None,
    static_batch: int | None = None,
) -> CalibrationSet:
    """The built-in set (``source`` None) or the .npz file / directory of .npz files at ``source``, checked."""
    if source is None:
        return default_calibration_set(static_hw, static_batch)
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise ExportError(f"calibration: no .npz files in {path}")
    elif path.is_file():
        if path.suffix != ".npz":
            raise ExportError(f"calibration: expected a .npz file or a directory of them, got {path}")
        files = [path]
    else:
        raise ExportError(f"calibration: no such file or directory {path}")
    samples = [s for f in files for s in _load_npz(f)]
    if static_hw:
        wrong = sorted({tuple(r.shape[2:]) for r, _ in samples if tuple(r.shape[2:]) != tuple(static_hw)})
        if wrong:
            raise ExportError(
                f"calibration: the graph is static {static_hw[0]}x{static_hw[1]} but the data has sizes "
                f"{', '.join(f'{h}x{w}' for h, w in wrong)}"
            )
    description = f"user: {', '.join(str(f) for f in files)} ({len(samples)} samples)"
    return CalibrationSet(_group(samples, static_batch), description)
