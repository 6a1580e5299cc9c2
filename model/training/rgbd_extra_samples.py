"""Training on the ``rgbd_extra`` developer set (:mod:`jarrn_deploy.model.rgbd_extra`, ``--data rgbd_extra``): augmented crops of
its training sets (:class:`RgbdExtraSamples`), mixed with synthetic samples (:class:`MixedSamples`), and validation
on a few frames of its held-out sets (:func:`validation_cases`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from jarrn_deploy.errors import UsageError
from jarrn_deploy.model.datasets import DatasetError
from jarrn_deploy.model.rgbd_extra import (
    META_FILE,
    ExtraFrame,
    bin_nearest,
    discover_sets,
    downscale_frame,
    held_out_cases,
    load_frame,
    read_meta,
    split_sets,
    training_pattern,
)
from jarrn_deploy.model.training.samples import flip_jitter_normalise
from jarrn_deploy.model.training.sparse_sampling import log_uniform
from jarrn_deploy.model.training.validation import ValCase, downscale_case


def validation_cases(root: str | Path, max_side: int = 0, seed: int = 0, frames_per_set: int = 3) -> list:
    """Training-time validation: :class:`~jarrn_deploy.model.training.validation.ValCase` on a few frames per held-out set,
    down-scaled."""
    from jarrn_deploy.model.baselines import linear_interpolation
    from jarrn_deploy.model.metrics import depth_metrics

    cases = []
    for case in held_out_cases(root, seed, frames_per_set=frames_per_set):
        factor = math.ceil(max(case.gt.shape) / max_side) if max_side else 1
        rgb, sparse, gt = downscale_case(case.rgb, case.sparse, case.gt, factor)
        if factor > 1 and (gt > 0).mean() < 0.3:  # sparse GT: bin it nearest-wins instead of sub-sampling it
            gt = bin_nearest(case.gt, factor)
        linear = depth_metrics(linear_interpolation(sparse), gt).rmse
        cases.append(ValCase(case.name, rgb, sparse, gt, linear))
    return cases


class RgbdExtraSamples(Dataset):
    """Augmented training crops from the training sets, as :class:`jarrn_deploy.model.training.samples.TrainingSamples` items.

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
                scene = read_meta(folder / META_FILE)["scene"]
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
        rng = np.random.default_rng([self.seed, 104729, self.epoch, int(index)])
        frame = self.frame(self.pick(rng))
        ch, cw = self.crop
        h, w = frame.depth.shape
        max_factor = max(1, min(3, h // ch, w // cw))
        rgb, depth = downscale_frame(frame, int(rng.integers(1, max_factor + 1)))
        sparse, gt = training_pattern(depth, frame.is_lidar, rng)
        scale = log_uniform(rng, *self.depth_scale_jitter)
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
        return flip_jitter_normalise(rgb_t, sparse_t, gt_t, rng, jitter=self.jitter, normalisation=self.normalisation)

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
