"""The ``rgbd_extra`` developer set: real RGB-D frames in ``<set>/<frame>/{rgb.png, depth_mm.png, meta.json}``.

``rgb.png`` is 8-bit RGB, ``depth_mm.png`` uint16 millimetres (0 = invalid) of the same size, ``meta.json`` says at
least ``scene`` (indoor/outdoor) and ``kind`` (``dense_sensor``, ``dense_gt`` or ``lidar_sparse``).

The split is by set: every frame of a set sits on one side (frames of a set come from one sequence or viewpoint).
:data:`HELD_OUT_SETS` are never trained on; they give the validation and the held-out evaluation cases:

- indoor (dense depth): 500 and 100 random GT points as the input, every valid GT pixel scored (``<set>/<frame>@500``);
- LiDAR (``lidar_sparse``, ``dense_gt``): a random 20% of the real points as the input, the other 80% as the GT
  (``<set>/<frame>@lidar20``), so the score is on measured depth the input did not contain.

Training (:class:`RgbdExtraSamples`) draws indoor or outdoor (50/50), then a training set, then one of its frames, and
applies: a random integer down-scale (1-3x, LiDAR points binned nearest-wins), the sparse pattern on the whole frame
(indoor: 100 or 500 points, or 30-3000 log-uniform; LiDAR: keep 10-40% of the points, 20% most often, the rest being the
GT), a depth scale jitter (x 0.8-1.25, input and GT together), a random crop that holds GT and input points, a
horizontal flip (no vertical one: the softmax over image rows expects skies on top) and colour jitter.
:class:`MixedSamples` mixes those with the synthetic samples at ``real_fraction``.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from model.datasets import DatasetError

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


def _read_meta(path: Path) -> dict[str, Any]:
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
    meta = _read_meta(folder / META_FILE)
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
    """One held-out evaluation input (same fields as :class:`model.real_frames.EvalCase`, plus its set)."""

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
    from model.sparse import random_points

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


def validation_cases(root: str | Path, max_side: int = 0, seed: int = 0, frames_per_set: int = 3) -> list:
    """Training-time validation: :class:`model.train.ValCase` on a few frames per held-out set, down-scaled."""
    from model.baselines import linear_interpolation
    from model.metrics import depth_metrics
    from model.train import ValCase, downscale_case

    cases = []
    for case in held_out_cases(root, seed, frames_per_set=frames_per_set):
        factor = math.ceil(max(case.gt.shape) / max_side) if max_side else 1
        rgb, sparse, gt = downscale_case(case.rgb, case.sparse, case.gt, factor)
        if factor > 1 and (gt > 0).mean() < 0.3:  # sparse GT: bin it nearest-wins instead of sub-sampling it
            gt = bin_nearest(case.gt, factor)
        linear = depth_metrics(linear_interpolation(sparse), gt).rmse
        cases.append(ValCase(case.name, rgb, sparse, gt, linear))
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


def _downscale(frame: ExtraFrame, factor: int) -> tuple[np.ndarray, np.ndarray]:
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
    from model.sparse import random_points

    if is_lidar:
        fraction = LIDAR_INPUT_FRACTION if rng.random() < 0.5 else float(rng.uniform(0.1, 0.4))
        return split_lidar(frame_depth, fraction, rng)
    count = int(rng.choice(INDOOR_POINT_COUNTS)) if rng.random() < 0.6 else int(round(_log_uniform(rng, 30, 3000)))
    count = max(3, min(count, int((frame_depth > 0).sum())))
    return random_points(frame_depth, count=count, seed=rng), frame_depth


class RgbdExtraSamples(Dataset):
    """Augmented training crops from the training sets, as :class:`model.train.TrainingSamples` items.

    Sample ``i`` of epoch ``e`` draws all its randomness from ``(seed, e, i)``: reproducible and resumable. Frames are
    read once per process and kept (the whole set is about 50 MB).
    """

    def __init__(self, folders: Sequence[Path], crop: tuple[int, int], *, normalisation: str, seed: int,
                 epoch_samples: int, jitter: float = 0.2,
                 depth_scale_jitter: tuple[float, float] = (0.8, 1.25)) -> None:
        if not folders:
            raise DatasetError("rgbd_extra: no training frames (every set is held out?)")
        self.folders, self.crop, self.normalisation = list(folders), crop, normalisation
        self.seed, self.epoch_samples, self.jitter = int(seed), int(epoch_samples), jitter
        self.depth_scale_jitter = depth_scale_jitter
        self.epoch = 0
        self._frames: dict[int, ExtraFrame] = {}
        self._groups: dict[str, dict[str, list[int]]] | None = None

    def __len__(self) -> int:
        return self.epoch_samples

    def frame(self, index: int) -> ExtraFrame:
        if index not in self._frames:
            self._frames[index] = load_frame(self.folders[index])
        return self._frames[index]

    def groups(self) -> dict[str, dict[str, list[int]]]:
        """scene -> set -> frame indices (reads only the meta files)."""
        if self._groups is None:
            groups: dict[str, dict[str, list[int]]] = {}
            for i, folder in enumerate(self.folders):
                scene = _read_meta(folder / META_FILE)["scene"]
                groups.setdefault(scene, {}).setdefault(folder.parent.name, []).append(i)
            self._groups = groups
        return self._groups

    def pick(self, rng: np.random.Generator) -> int:
        """Scene (indoor/outdoor) uniformly, then a set of it uniformly, then one of its frames."""
        groups = self.groups()
        scene = sorted(groups)[int(rng.integers(len(groups)))]
        sets = sorted(groups[scene])
        frames = groups[scene][sets[int(rng.integers(len(sets)))]]
        return frames[int(rng.integers(len(frames)))]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from model.train import colour_jitter, normalise_sample

        rng = np.random.default_rng([self.seed, 104729, self.epoch, int(index)])
        frame = self.frame(self.pick(rng))
        ch, cw = self.crop
        h, w = frame.depth.shape
        max_factor = max(1, min(3, h // ch, w // cw))
        rgb, depth = _downscale(frame, int(rng.integers(1, max_factor + 1)))
        sparse, gt = training_pattern(depth, frame.is_lidar, rng)
        scale = _log_uniform(rng, *self.depth_scale_jitter)
        sparse, gt = sparse * np.float32(scale), gt * np.float32(scale)
        top, left = self._crop_origin(sparse, gt, rng)
        window = (slice(top, top + ch), slice(left, left + cw))
        rgb_t = torch.from_numpy(np.ascontiguousarray(rgb[window])).permute(2, 0, 1).float().div_(255.0)
        sparse_t = torch.from_numpy(np.ascontiguousarray(sparse[window]))[None]
        gt_t = torch.from_numpy(np.ascontiguousarray(gt[window]))[None]
        if rgb_t.shape[-2:] != (ch, cw):  # frame smaller than the crop: scale up (depth nearest)
            import torch.nn.functional as F

            rgb_t = F.interpolate(rgb_t[None], size=(ch, cw), mode="bilinear", align_corners=False)[0].clamp(0, 1)
            sparse_t = F.interpolate(sparse_t[None], size=(ch, cw), mode="nearest")[0]
            gt_t = F.interpolate(gt_t[None], size=(ch, cw), mode="nearest")[0]
        if rng.random() < 0.5:
            rgb_t, sparse_t, gt_t = rgb_t.flip(-1), sparse_t.flip(-1), gt_t.flip(-1)
        if self.jitter > 0:
            rgb_t = colour_jitter(rgb_t, rng, self.jitter)
        sparse_n, mask, gt_n, gt_valid = normalise_sample(sparse_t, gt_t, self.normalisation)
        return {"rgb": rgb_t.contiguous(), "sparse": sparse_n.contiguous(), "mask": mask.contiguous(),
                "gt": gt_n.contiguous(), "gt_valid": gt_valid.contiguous()}

    def _crop_origin(self, sparse: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """A crop with at least 3 input points and some GT (up to 8 tries; else the last one)."""
        ch, cw = self.crop
        h, w = gt.shape
        top = left = 0
        for _ in range(8):
            top, left = int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))
            window = (slice(top, top + ch), slice(left, left + cw))
            if (sparse[window] > 0).sum() >= 3 and (gt[window] > 0).sum() >= 16:
                break
        return top, left


class MixedSamples(Dataset):
    """Sample ``i`` is real (from ``real``) with probability ``real_fraction``, else synthetic; deterministic in
    ``(seed, epoch, i)``. Setting ``epoch`` sets it on both parts."""

    def __init__(self, real: Dataset, synthetic: Dataset, real_fraction: float, seed: int) -> None:
        self.real, self.synthetic, self.real_fraction, self.seed = real, synthetic, float(real_fraction), int(seed)
        self._epoch = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = int(value)
        self.real.epoch = int(value)  # type: ignore[attr-defined]
        self.synthetic.epoch = int(value)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.synthetic)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 3571, self._epoch, int(index)])
        part = self.real if rng.random() < self.real_fraction else self.synthetic
        return part[index]


def mixed_training_samples(args: Any, crop: tuple[int, int], synthetic: Dataset) -> MixedSamples:
    """``--data rgbd_extra``: the training sets' crops mixed with ``synthetic`` at ``--real-fraction``."""
    from jarrn.errors import UsageError

    if args.data_root is None:
        raise UsageError("--data rgbd_extra needs --data-root (the folder holding <set>/<frame>/meta.json)")
    fraction = getattr(args, "real_fraction", 0.5)
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
        raise UsageError(f"--real-fraction: expected a number in [0, 1], got {fraction}")
    sets = discover_sets(args.data_root)
    train_sets, held = split_sets(list(sets))
    folders = [f for s in train_sets for f in sets[s]]
    real = RgbdExtraSamples(folders, crop, normalisation=args.depth_normalisation, seed=args.seed,
                            epoch_samples=len(synthetic), jitter=args.jitter)  # type: ignore[arg-type]
    for i in range(len(folders)):  # read every frame now: a bad file fails here, naming it; workers inherit them
        real.frame(i)
    print(f"rgbd_extra: training on {len(folders)} frames of {', '.join(train_sets)}; held out (validation): "
          f"{', '.join(held)}; real fraction {fraction:g}", flush=True)
    return MixedSamples(real, synthetic, fraction, args.seed)
