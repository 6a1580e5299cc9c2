"""The ``rgbd_extra`` developer set: real RGB-D frames in ``<set>/<frame>/{rgb.png, depth_mm.png, meta.json}``.

``rgb.png`` is 8-bit RGB, ``depth_mm.png`` uint16 millimetres (0 = invalid) of the same size, ``meta.json`` says at
least ``scene`` (indoor/outdoor) and ``kind`` (``dense_sensor``, ``dense_gt`` or ``lidar_sparse``).

The split is by set: every frame of a set sits on one side (frames of a set come from one sequence or viewpoint).
:data:`HELD_OUT_SETS` are never trained on; they give the validation and the held-out evaluation cases:

- indoor (dense depth): 500 and 100 random GT points as the input, every valid GT pixel scored (``<set>/<frame>@500``);
- LiDAR (``lidar_sparse``, ``dense_gt``): a random 20% of the real points as the input, the other 80% as the GT
  (``<set>/<frame>@lidar20``), so the score is on measured depth the input did not contain.

Training (:class:`jarrn_deploy.model.training.rgbd_extra_samples.RgbdExtraSamples`) draws indoor or outdoor (50/50), then a training set, then one of its frames, and
applies: a random integer down-scale (1-3x, LiDAR points binned nearest-wins), the sparse pattern on the whole frame
(indoor: 100 or 500 points, or 30-3000 log-uniform; LiDAR: keep 10-40% of the points, 20% most often, the rest being the
GT), a depth scale jitter (x 0.8-1.25, input and GT together), a random crop that holds GT and input points, a
horizontal flip (no vertical one: the softmax over image rows expects skies on top) and colour jitter.
:class:`~jarrn_deploy.model.training.rgbd_extra_samples.MixedSamples` mixes those with the synthetic samples at ``real_fraction``.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jarrn_deploy.model.datasets import DatasetError

HELD_OUT_SETS = ("slambook2_ch7_tum", "tsdf_old_realsense", "kitti_object_kuixu", "sensorscalib_lidar2cam")
"""Sets never trained on: a TUM office desk (Kinect v1) and a RealSense tabletop indoors; KITTI street frames
(a domain the training also sees, other drives) and another vehicle's LiDAR and camera (a sensor never seen)
outdoors."""
INDOOR_POINT_COUNTS = (500, 100)
"""Random GT points of the indoor evaluation cases."""
LIDAR_INPUT_FRACTION = 0.2
"""Share of the real LiDAR points given as input in the LiDAR evaluation cases; the rest is the ground truth."""
LIDAR_KINDS = ("lidar_sparse", "dense_gt")
"""Kinds whose depth is itself sparse measured depth: the input is a subset of it and the rest is the GT."""
KINDS = ("dense_sensor", "dense_gt", "lidar_sparse")
DEPTH_FILE, RGB_FILE, META_FILE = "depth_mm.png", "rgb.png", "meta.json"


@dataclass(frozen=True, eq=False)
class ExtraFrame:
    """One frame of the set, loaded."""

    set: str
    """Set (folder) name, e.g. "7scenes_redkitchen"."""
    frame: str
    """Frame (sub-folder) name."""
    rgb: np.ndarray
    """Colour image, uint8 HxWx3."""
    depth: np.ndarray
    """Depth in metres, float32 HxW, 0 = invalid."""
    scene: str
    """"indoor" or "outdoor"."""
    kind: str
    """"dense_sensor", "dense_gt" or "lidar_sparse"."""
    intrinsics: tuple[float, float, float, float] | None
    """(fx, fy, cx, cy) in pixels of the stored image, when the meta gives them."""

    @property
    def name(self) -> str:
        return f"{self.set}/{self.frame}"

    @property
    def is_lidar(self) -> bool:
        return self.kind in LIDAR_KINDS


def read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"missing {META_FILE}: {path}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("scene") not in ("indoor", "outdoor"):
        raise DatasetError(f"{path}: 'scene' must be 'indoor' or 'outdoor', got {meta.get('scene')!r}")
    if meta.get("kind") not in KINDS:
        raise DatasetError(f"{path}: 'kind' must be one of {', '.join(KINDS)}, got {meta.get('kind')!r}")
    return meta


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DatasetError(f"missing RGB image: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode not in ("RGB", "RGBA", "L", "P"):
                raise DatasetError(f"{path}: expected an 8-bit RGB image, got PIL mode {mode}")
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises several types for corrupt files
        raise DatasetError(f"cannot read RGB image {path}: {type(exc).__name__}: {exc}") from None


def _read_depth_mm(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DatasetError(f"missing depth PNG: {path}")
    try:
        with Image.open(path) as image:
            raw = np.asarray(image)
    except Exception as exc:
        raise DatasetError(f"cannot read depth PNG {path}: {type(exc).__name__}: {exc}") from None
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DatasetError(f"{path}: expected a 16-bit single-channel depth PNG (uint16 millimetres), got "
                           f"{raw.dtype} with shape {raw.shape}")
    return raw.astype(np.float32) / np.float32(1000.0)


def load_frame(folder: str | Path) -> ExtraFrame:
    """Read ``folder/{rgb.png, depth_mm.png, meta.json}``; :class:`DatasetError` naming the file on any problem."""
    folder = Path(folder)
    meta = read_meta(folder / META_FILE)
    rgb = _read_rgb(folder / RGB_FILE)
    depth = _read_depth_mm(folder / DEPTH_FILE)
    if rgb.shape[:2] != depth.shape:
        raise DatasetError(f"{folder / DEPTH_FILE}: depth is {depth.shape[0]}x{depth.shape[1]} but "
                           f"{folder / RGB_FILE} is {rgb.shape[0]}x{rgb.shape[1]} (HxW); they must match")
    raw_k = meta.get("intrinsics")
    intrinsics = tuple(float(v) for v in raw_k) if isinstance(raw_k, list) and len(raw_k) == 4 else None
    return ExtraFrame(folder.parent.name, folder.name, rgb, depth, meta["scene"], meta["kind"], intrinsics)


def discover_sets(root: str | Path) -> dict[str, list[Path]]:
    """Set name -> sorted frame folders (those holding a ``meta.json``) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"rgbd_extra root is not a folder: {root}")
    sets = {}
    for set_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        frames = sorted(p for p in set_dir.iterdir() if p.is_dir() and (p / META_FILE).is_file())
        if frames:
            sets[set_dir.name] = frames
    if not sets:
        raise DatasetError(f"{root}: no <set>/<frame>/{META_FILE} found (expected the rgbd_extra layout)")
    return sets


def split_sets(sets: Sequence[str], held_out: Sequence[str] = HELD_OUT_SETS) -> tuple[list[str], list[str]]:
    """``(training sets, held-out sets)``: whole sets, never a set on both sides."""
    held = [s for s in sets if s in set(held_out)]
    return [s for s in sets if s not in set(held_out)], held


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation cases on the held-out sets


@dataclass(frozen=True, eq=False)
class HeldOutCase:
    """One held-out evaluation input (same fields as :class:`jarrn_deploy.model.real_frames.EvalCase`, plus its set)."""

    name: str
    """"<set>/<frame>@500", "@100" or "@lidar20"."""
    group: str
    """"<set>@<pattern>": the per-set row the case is averaged into."""
    rgb: np.ndarray
    """Colour image, uint8 HxWx3."""
    sparse: np.ndarray
    """Sparse depth input, float32 HxW metres, 0 = missing."""
    gt: np.ndarray
    """Ground truth, float32 HxW metres, 0 = not scored."""


def _frame_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def split_lidar(depth: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(input, gt)``: a random ``fraction`` of the valid points as the input and the others as the GT."""
    valid = depth > 0
    keep = valid & (rng.random(depth.shape) < fraction)
    zero = np.float32(0.0)
    return np.where(keep, depth, zero).astype(np.float32), np.where(valid & ~keep, depth, zero).astype(np.float32)


def frame_cases(frame: ExtraFrame, seed: int = 0) -> list[HeldOutCase]:
    """The evaluation cases of one frame (indoor: 500 and 100 random GT points; LiDAR: 20% in, 80% scored)."""
    from jarrn_deploy.model.sparse import random_points

    rng = _frame_rng(seed, frame.name)
    if frame.is_lidar:
        sparse, gt = split_lidar(frame.depth, LIDAR_INPUT_FRACTION, rng)
        tag = f"lidar{round(LIDAR_INPUT_FRACTION * 100)}"
        return [HeldOutCase(f"{frame.name}@{tag}", f"{frame.set}@{tag}", frame.rgb, sparse, gt)]
    return [HeldOutCase(f"{frame.name}@{n}", f"{frame.set}@{n}", frame.rgb,
                        random_points(frame.depth, count=n, seed=rng), frame.depth) for n in INDOOR_POINT_COUNTS]


def held_out_cases(root: str | Path, seed: int = 0, held_out: Sequence[str] = HELD_OUT_SETS,
                   frames_per_set: int = 0) -> list[HeldOutCase]:
    """Cases of every frame of the held-out sets (``frames_per_set`` > 0: that many, evenly spaced, per set)."""
    sets = discover_sets(root)
    _, held = split_sets(list(sets), held_out)
    cases = []
    for name in held:
        folders = sets[name]
        if frames_per_set and len(folders) > frames_per_set:
            folders = [folders[i] for i in np.linspace(0, len(folders) - 1, frames_per_set).round().astype(int)]
        for folder in folders:
            cases += frame_cases(load_frame(folder), seed)
    return cases


# ---------------------------------------------------------------------------------------------------------------------
# Training samples


def bin_nearest(depth: np.ndarray, factor: int) -> np.ndarray:
    """Integer down-scale of a sparse depth map: each output pixel keeps the nearest valid point of its cell."""
    h, w = depth.shape[0] // factor, depth.shape[1] // factor
    cells = depth[: h * factor, : w * factor].reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, -1)
    cells = np.where(cells > 0, cells, np.inf)
    out = cells.min(axis=-1)
    return np.where(np.isfinite(out), out, 0.0).astype(np.float32)


def downscale_frame(frame: ExtraFrame, factor: int) -> tuple[np.ndarray, np.ndarray]:
    if factor <= 1:
        return frame.rgb, frame.depth
    from PIL import Image

    h, w = frame.depth.shape[0] // factor, frame.depth.shape[1] // factor
    rgb = np.asarray(Image.fromarray(frame.rgb[: h * factor, : w * factor]).resize((w, h), Image.BOX))
    if frame.is_lidar:
        depth = bin_nearest(frame.depth, factor)
    else:
        depth = frame.depth[: h * factor: factor, : w * factor: factor]
    return rgb, np.ascontiguousarray(depth, dtype=np.float32)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def training_pattern(frame_depth: np.ndarray, is_lidar: bool, rng: np.random.Generator,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(sparse input, gt)`` of one training sample on a whole (down-scaled) frame, like the evaluation patterns."""
    from jarrn_deploy.model.sparse import random_points

    if is_lidar:
        fraction = LIDAR_INPUT_FRACTION if rng.random() < 0.5 else float(rng.uniform(0.1, 0.4))
        return split_lidar(frame_depth, fraction, rng)
    count = int(rng.choice(INDOOR_POINT_COUNTS)) if rng.random() < 0.6 else int(round(_log_uniform(rng, 30, 3000)))
    count = max(3, min(count, int((frame_depth > 0).sum())))
    return random_points(frame_depth, count=count, seed=rng), frame_depth
