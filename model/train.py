"""Train JARRN: the paper's recipe (loss, schedule, sparse-input mix) on synthetic scenes or real RGB-D datasets.

``python -m model.train --help`` shows every option (the command line lives in ``model/train_options.py``, so that
``--help`` answers without importing torch). A run directory (``--out``) receives:

- ``last.pt``: the training checkpoint (official layout ``epoch``, ``network_state_dict``, ``optimizer_state_dict``,
  ``scaler_state_dict`` plus ``jarrn_config``, ``step``, ``lr_scheduler``, RNG states and the history), written
  atomically every ``--checkpoint-every`` steps, at the end and on Ctrl-C / SIGTERM; ``--resume`` continues from it.
- ``best.safetensors``: the weights with the best validation score so far (project format, :func:`save_model`).
- ``log.csv`` (training losses), ``val.csv`` (validation metrics per case), ``history.json`` and ``curves.png``.

Data (``--data``): ``synthetic`` renders procedural indoor/outdoor scenes (:mod:`model.synthetic`) at random sizes and
crops them; ``kitti``, ``nyu``, ``diode`` and ``folder`` read real datasets through :mod:`model.datasets`.

Sparse input mixes (``--sparse-mix``), drawn per sample on the full frame before cropping:

- ``official``: the paper's mix, scaled to 80%, plus 20% LiDAR lines: 32% none (relative mode), 16% keep a random
  0-10% of the GT pixels, 16% keep 10-100%, 16% the dense GT with noise (sigma 0.01-0.1 of the depth range, p=0.3)
  and down/up-sampling blur (x2..x16, p=0.3), 20% LiDAR scanlines (4..128 lines).
- ``eval``: emphasises the sparse regimes of the real-frame evaluation (random points, LiDAR): 5% none, 45% random
  points (3..2000 per frame, log-uniform), 30% LiDAR scanlines (4..128 lines, some with sensor noise and outliers),
  10% keep 0-10% of the GT, 10% noisy/blurred dense GT.

In both, every non-empty pattern gets random hole masks (1-3 rectangles or ellipses) with p=0.5. ``--outlier-prob P``
adds, with probability P, 0-3% outliers (depth multiplied or divided by up to 2..20) to random-point patterns: real
depth maps (whose points the indoor evaluation samples) carry flying pixels, and one wrong point also moves the
per-image normalisation range.

Normalisation matches inference exactly: the sparse input goes through :func:`model.metric_jarrn.normalise_sparse` with
the config's ``depth_normalisation`` and the GT uses the same low/range; a sample without sparse points gets its GT
min-max normalised (the paper's relative mode).

Sparse fill (``--sparse-fill pushpull``): the network's sparse channel carries the contract's push-pull interpolation
of the points (:func:`model.metric_jarrn.pushpull_fill`, applied in :func:`train_step` exactly as at inference) and the
exported file records it. ``--start-as-fill`` initialises the network so that it returns that fill
(:func:`start_as_fill`); training then learns corrections on top of it. ``--ema DECAY`` validates and exports an
exponential moving average of the weights, which damps the step-to-step drift of the output offset.

Multi-GPU: ``torchrun --nproc_per_node=N -m model.train ...`` (DistributedDataParallel, one DistributedSampler shard
per rank, rank 0 writes every file). Schedule: Adam (lr 2e-4), linear warm-up over the first epoch, the learning rate
halved at epochs 20 and 40 (MultiStepLR milestones [20, 40], gamma 0.5); an "epoch" of synthetic data is
``--epoch-samples`` samples.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__":  # `python -m model.train`: parse (and answer --help) before the heavy imports below
    from model.train_options import main as _parse_then_train

    sys.exit(_parse_then_train())

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from jarrn.cli import command
from jarrn.errors import OutputError, UsageError

from model.atomic import atomic_path, atomic_write_text, check_writable_folder, remove_stale_temp_files
from model.checkpoint import (
    CheckpointError,
    read_training_checkpoint,
    save_model,
    save_training_checkpoint,
    strip_prefixes,
)
from model.metric_jarrn import network_sparse_input, normalise_sparse
from model.losses import LossTerms, jarrn_loss
from model.network import DOWNSAMPLING_FACTOR, Jarrn, JarrnConfig
from model.sparse import add_noise, add_outliers, lidar_scanlines, random_points, valid_mask
from model.train_options import SPARSE_MIXES, VALIDATION_SCORES, build_parser  # noqa: F401 - build_parser re-exported

# ---------------------------------------------------------------------------------------------------------------------
# Sparse input patterns

HOLE_PROBABILITY = 0.5
DENSE_NOISE_PROBABILITY = 0.3
DENSE_NOISE_SIGMA = (0.01, 0.1)
DENSE_BLUR_PROBABILITY = 0.3
DENSE_BLUR_FACTORS = (2, 16)
LIDAR_LINES = (4, 128)
POINT_COUNTS = (3, 2000)
OUTLIER_RATIO_MAX = 0.03
OUTLIER_MAX_FACTOR = (2.0, 20.0)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _blur_depth(depth: np.ndarray, factor: int) -> np.ndarray:
    """Down-sample by ``factor`` (mean of the valid pixels of each cell) and up-sample back (bilinear)."""
    d = torch.from_numpy(depth)[None, None]
    m = (d > 0).float()
    h, w = depth.shape
    small_h, small_w = max(1, h // factor), max(1, w // factor)
    num = F.adaptive_avg_pool2d(d * m, (small_h, small_w))
    den = F.adaptive_avg_pool2d(m, (small_h, small_w))
    small = torch.where(den > 0, num / den.clamp(min=1e-6), torch.zeros_like(num))
    up = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    up_valid = F.interpolate((den > 0).float(), size=(h, w), mode="bilinear", align_corners=False) > 0.999
    return (up * up_valid * m)[0, 0].numpy().astype(np.float32)


def _dense_noisy(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = depth.astype(np.float32, copy=True)
    valid = valid_mask(out)
    if not valid.any():
        return out
    if rng.random() < DENSE_BLUR_PROBABILITY:
        out = _blur_depth(out, int(rng.integers(DENSE_BLUR_FACTORS[0], DENSE_BLUR_FACTORS[1] + 1)))
        valid = valid_mask(out)
    if rng.random() < DENSE_NOISE_PROBABILITY and valid.any():
        lo, hi = float(out[valid].min()), float(out[valid].max())
        sigma = rng.uniform(*DENSE_NOISE_SIGMA) * max(hi - lo, 1e-3)
        noisy = out[valid] + sigma * rng.standard_normal(int(valid.sum())).astype(np.float32)
        out[valid] = np.maximum(noisy, 0.01 * max(lo, 1e-3))
    return out


def _hole_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """True where a random hole (1-3 rectangles or ellipses, 5-35% of each side) removes the sparse input."""
    h, w = shape
    holes = np.zeros(shape, dtype=bool)
    rows, cols = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(1, 4))):
        hh, hw = rng.uniform(0.05, 0.35) * h, rng.uniform(0.05, 0.35) * w
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.5:
            holes |= (np.abs(rows - cy) < hh / 2) & (np.abs(cols - cx) < hw / 2)
        else:
            holes |= ((rows - cy) / (hh / 2)) ** 2 + ((cols - cx) / (hw / 2)) ** 2 < 1.0
    return holes


def sample_sparse(
    depth: np.ndarray,
    rng: np.random.Generator,
    mix: dict[str, float],
    intrinsics: tuple[float, float, float, float] | None = None,
    outlier_probability: float = 0.0,
) -> tuple[np.ndarray, str]:
    """One sparse input (float32 HxW metres, 0 = missing) drawn from ``mix``, and the regime's name.

    ``outlier_probability``: chance that a random-point pattern (points, ratio_low, ratio_high) gets 0-3% of its points
    replaced by wrong depths (x or / a factor up to 2..20), like the flying pixels and dropouts of real depth sensors
    whose GT the evaluation samples its points from. 0 (default) draws nothing extra, so runs stay reproducible.
    """
    names = list(mix)
    probs = np.asarray([mix[n] for n in names], dtype=np.float64)
    regime = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    depth = np.asarray(depth, dtype=np.float32)
    if regime == "none":
        return np.zeros_like(depth), regime
    if regime == "ratio_low":
        sparse = random_points(depth, ratio=float(rng.uniform(0.0, 0.1)), seed=rng)
    elif regime == "ratio_high":
        sparse = random_points(depth, ratio=float(rng.uniform(0.1, 1.0)), seed=rng)
    elif regime == "points":
        sparse = random_points(depth, count=int(round(_log_uniform(rng, *POINT_COUNTS))), seed=rng)
    elif regime == "dense":
        sparse = _dense_noisy(depth, rng)
    elif regime == "lidar":
        lines = int(round(_log_uniform(rng, *LIDAR_LINES)))
        fov = None if rng.random() < 0.5 else (float(rng.uniform(-30.0, -8.0)), float(rng.uniform(-3.0, 5.0)))
        sparse = lidar_scanlines(
            depth, lines=lines, seed=rng, intrinsics=intrinsics, vertical_fov_deg=fov,
            horizontal_subsample=int(rng.integers(1, 5)),
        )
        if rng.random() < 0.3 and valid_mask(sparse).any():
            sparse = add_noise(sparse, sigma_relative=float(rng.uniform(0.003, 0.03)), seed=rng)
        if rng.random() < 0.3 and valid_mask(sparse).any():
            sparse = add_outliers(sparse, ratio=float(rng.uniform(0.0, 0.02)), seed=rng)
    else:
        raise ValueError(f"unknown sparse regime {regime!r}")
    if outlier_probability > 0 and regime in ("points", "ratio_low", "ratio_high") and valid_mask(sparse).any():
        if rng.random() < outlier_probability:
            sparse = add_outliers(sparse, ratio=float(rng.uniform(0.0, OUTLIER_RATIO_MAX)), seed=rng,
                                  max_factor=_log_uniform(rng, *OUTLIER_MAX_FACTOR))
    if rng.random() < HOLE_PROBABILITY:
        sparse = np.where(_hole_mask(depth.shape, rng), np.float32(0.0), sparse).astype(np.float32)
    return sparse, regime


# ---------------------------------------------------------------------------------------------------------------------
# Data: sources give full frames, TrainingSamples turns them into normalised training crops


class SyntheticSource(Dataset):
    """Procedural scenes rendered at a random size (``render_scale`` x the crop, random aspect) for every sample.

    Item ``i`` is deterministic in ``(seed, i)``; indices beyond ``length`` give new scenes, so every epoch can see
    fresh data (see :class:`TrainingSamples`). Items: {"rgb" [3,H,W] in [0,1], "depth" [1,H,W] m, "intrinsics"}.
    """

    def __init__(self, length: int, crop: tuple[int, int], seed: int = 0,
                 render_scale: tuple[float, float] = (1.0, 2.0), kind: str = "random") -> None:
        self.length, self.crop, self.seed = int(length), crop, int(seed)
        self.render_scale, self.kind = render_scale, kind

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        from model.synthetic import generate_scene

        rng = np.random.default_rng([self.seed, 7919, int(index)])
        scale = rng.uniform(*self.render_scale)
        h = max(self.crop[0], int(round(self.crop[0] * scale)))
        w = max(self.crop[1], int(round(h * rng.uniform(1.0, 1.6))))
        scene_seed = int(np.random.default_rng([self.seed, int(index)]).integers(0, 2**31 - 1))
        s = generate_scene(scene_seed, h, w, self.kind)
        rgb = torch.from_numpy(s.rgb).permute(2, 0, 1).float().div_(255.0)
        return {"rgb": rgb.contiguous(), "depth": torch.from_numpy(s.depth)[None], "intrinsics": s.intrinsics}


def colour_jitter(rgb: torch.Tensor, rng: np.random.Generator, strength: float = 0.2) -> torch.Tensor:
    """Brightness, contrast and saturation jitter (each factor in [1-s, 1+s], random order) on ``[3,H,W]`` in [0,1]."""
    gray_weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype)[:, None, None]
    for op in rng.permutation(3):
        factor = float(rng.uniform(1.0 - strength, 1.0 + strength))
        if op == 0:
            rgb = rgb * factor
        elif op == 1:
            mean = (rgb * gray_weights).sum(0).mean()
            rgb = (rgb - mean) * factor + mean
        else:
            gray = (rgb * gray_weights).sum(0, keepdim=True)
            rgb = (rgb - gray) * factor + gray
        rgb = rgb.clamp(0.0, 1.0)
    return rgb


def normalise_sample(sparse: torch.Tensor, gt: torch.Tensor, method: str) -> tuple[torch.Tensor, ...]:
    """``(sparse_n, mask, gt_n, gt_valid)`` for ``[1,H,W]`` metres, exactly as inference normalises the input.

    The GT uses the sparse input's low/range; without sparse points it is min-max normalised itself (relative mode).
    """
    mask = (sparse > 0).float()
    gt_valid = (gt > 0).float()
    sparse_n, low, value_range = normalise_sparse(sparse[None], mask[None], method)
    low, value_range = low[0], value_range[0]
    if not bool(mask.any()) and bool(gt_valid.any()):
        g = gt[gt_valid > 0]
        low = g.min().reshape(1, 1, 1)
        value_range = (g.max() - g.min()).clamp(min=1e-6).reshape(1, 1, 1)
    gt_n = (gt - low) / value_range * gt_valid
    return sparse_n[0], mask, gt_n, gt_valid


class TrainingSamples(Dataset):
    """Random crop + flip + colour jitter + sparse pattern + normalisation on top of a frame source.

    Sample ``i`` of epoch ``e`` reads source item ``e * len + i`` (wrapped when the source is finite: ``source_cycles``)
    and draws its randomness from ``(seed, e, i)``, so runs are reproducible and resumable. Items: {"rgb" [3,h,w],
    "sparse" [1,h,w] normalised, "mask", "gt" [1,h,w] normalised like the sparse input, "gt_valid"}.
    """

    def __init__(self, source: Dataset, crop: tuple[int, int], *, mix: str, normalisation: str, seed: int,
                 epoch_samples: int | None = None, fresh_source_per_epoch: bool = False,
                 real_sparse_probability: float = 0.5, jitter: float = 0.2, outlier_probability: float = 0.0) -> None:
        if mix not in SPARSE_MIXES:
            raise ValueError(f"sparse mix: expected one of {sorted(SPARSE_MIXES)}, got {mix!r}")
        self.source, self.crop, self.mix = source, crop, SPARSE_MIXES[mix]
        self.normalisation, self.seed = normalisation, int(seed)
        self.epoch_samples = int(epoch_samples or len(source))  # type: ignore[arg-type]
        self.fresh = fresh_source_per_epoch
        self.real_sparse_probability, self.jitter = real_sparse_probability, jitter
        self.outlier_probability = outlier_probability
        self.epoch = 0

    def __len__(self) -> int:
        return self.epoch_samples

    def _source_index(self, index: int) -> int:
        if self.fresh:
            return self.epoch * self.epoch_samples + index
        return (self.epoch * self.epoch_samples + index) % len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        item = self.source[self._source_index(int(index))]
        rgb, depth = item["rgb"].float(), item["depth"].float()
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
        real = item.get("sparse")
        if real is not None and rng.random() < self.real_sparse_probability:
            sparse = real.float()
        else:
            sparse_np, _ = sample_sparse(depth[0].numpy(), rng, self.mix, item.get("intrinsics"),
                                         self.outlier_probability)
            sparse = torch.from_numpy(sparse_np)[None]
        rgb, depth, sparse = self._crop(rgb, depth, sparse, rng)
        if rng.random() < 0.5:
            rgb, depth, sparse = rgb.flip(-1), depth.flip(-1), sparse.flip(-1)
        if self.jitter > 0:
            rgb = colour_jitter(rgb, rng, self.jitter)
        sparse_n, mask, gt_n, gt_valid = normalise_sample(sparse, depth, self.normalisation)
        return {"rgb": rgb.contiguous(), "sparse": sparse_n.contiguous(), "mask": mask.contiguous(),
                "gt": gt_n.contiguous(), "gt_valid": gt_valid.contiguous()}

    def _crop(self, rgb: torch.Tensor, depth: torch.Tensor, sparse: torch.Tensor, rng: np.random.Generator):
        ch, cw = self.crop
        h, w = rgb.shape[-2:]
        if h < ch or w < cw:  # too small: scale up so the crop fits (depth by nearest neighbour)
            factor = max(ch / h, cw / w)
            size = (max(ch, math.ceil(h * factor)), max(cw, math.ceil(w * factor)))
            rgb = F.interpolate(rgb[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
            depth = F.interpolate(depth[None], size=size, mode="nearest")[0]
            sparse = F.interpolate(sparse[None], size=size, mode="nearest")[0]
            h, w = size
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        window = (..., slice(top, top + ch), slice(left, left + cw))
        return rgb[window], depth[window], sparse[window]


# ---------------------------------------------------------------------------------------------------------------------
# Validation on the real frames


@dataclass(frozen=True, eq=False)
class ValCase:
    name: str
    rgb: np.ndarray
    sparse: np.ndarray
    gt: np.ndarray
    linear_rmse: float


def downscale_case(rgb: np.ndarray, sparse: np.ndarray, gt: np.ndarray, factor: int):
    """Integer downscale: RGB by area, GT by sub-sampling, sparse points moved to their low-res pixel (nearest wins)."""
    if factor <= 1:
        return rgb, sparse, gt
    from PIL import Image

    h, w = gt.shape
    sh, sw = h // factor, w // factor
    rgb_small = np.asarray(Image.fromarray(rgb[: sh * factor, : sw * factor]).resize((sw, sh), Image.BOX))
    gt_small = gt[: sh * factor : factor, : sw * factor : factor].copy()
    rows, cols = np.nonzero(sparse > 0)
    keep = (rows // factor < sh) & (cols // factor < sw)
    rows, cols = rows[keep], cols[keep]
    values = sparse[rows, cols]
    order = np.argsort(-values)  # write far first, so the nearest point of a cell wins
    sparse_small = np.zeros((sh, sw), dtype=np.float32)
    sparse_small[rows[order] // factor, cols[order] // factor] = values[order]
    return rgb_small, sparse_small, gt_small


def build_val_cases(max_side: int = 0, seed: int = 0) -> list[ValCase]:
    """The real-frame evaluation cases, optionally down-scaled so the longer side is at most ``max_side`` (0: full)."""
    from model.baselines import linear_interpolation
    from model.metrics import depth_metrics
    from model.real_frames import evaluation_cases, load_real_frames

    cases = []
    for case in evaluation_cases(load_real_frames(), seed=seed):
        factor = math.ceil(max(case.gt.shape) / max_side) if max_side else 1
        rgb, sparse, gt = downscale_case(case.rgb, case.sparse, case.gt, factor)
        linear = depth_metrics(linear_interpolation(sparse), gt).rmse
        cases.append(ValCase(case.name, rgb, sparse, gt, linear))
    return cases


def validate(network: Jarrn, cases: list[ValCase]) -> dict[str, dict[str, float]]:
    """Metric RMSE/MAE/AbsRel/delta1 per case through ``network.complete`` (metres), plus the linear baseline."""
    from model.metrics import depth_metrics

    was_training = network.training
    network.eval()
    results = {}
    try:
        for case in cases:
            m = depth_metrics(network.complete(case.rgb, case.sparse), case.gt)
            results[case.name] = {"rmse": m.rmse, "mae": m.mae, "absrel": m.absrel, "delta1": m.delta1,
                                  "linear_rmse": case.linear_rmse, "ratio": m.rmse / case.linear_rmse}
    finally:
        network.train(was_training)
    return results


def validation_score(results: dict[str, dict[str, float]], how: str = "mean") -> float:
    """Mean ('mean') or largest ('worst') over the cases of RMSE / linear-interpolation RMSE (below 1 = better)."""
    ratios = [r["ratio"] for r in results.values()]
    if how not in VALIDATION_SCORES:
        raise ValueError(f"validation score: expected one of {VALIDATION_SCORES}, got {how!r}")
    return float(np.mean(ratios) if how == "mean" else np.max(ratios))


# ---------------------------------------------------------------------------------------------------------------------
# Schedule, step, checkpoints, logs


def start_as_fill(network: Jarrn) -> Jarrn:
    """Set the weights so that the untrained network returns its (filled) sparse channel unchanged.

    With the rezero alphas at 0 every bottleneck is its skip path, and a non-negative input passes the LeakyReLUs
    unchanged. So one channel carries the sparse input from the visual branch's stem to its head (stem, the outer
    level's skip concatenation, the 1x1 skip of the last Stacked). The other weights keep their random initialisation,
    the head reads only that channel, and the refine branch's head is zero (scale 1, offset 0), so the rectified depth
    equals the coarse depth. Training then learns corrections on top of the fill rather than the fill itself.
    """
    unet = network.rgb_x_block
    stem, last_stacked, head = unet[0], unet[3], unet[4]
    sparse_channel = 3  # the visual branch reads cat(rgb[3], sparse, mask)
    with torch.no_grad():
        stem.weight[0].zero_()
        stem.weight[0, sparse_channel, 1, 1] = 1.0
        stem.bias[0] = 0.0
        skip = last_stacked.block[0].right
        skip.weight[0].zero_()
        skip.weight[0, 0, 0, 0] = 1.0
        skip.bias[0] = 0.0
        head.weight.zero_()
        head.weight[0, 0, 1, 1] = 1.0
        head.bias.zero_()
        refine_head = network.sfmap_block[4]
        refine_head.weight.zero_()
        refine_head.bias.zero_()
    return network


def learning_rate(step: int, *, base_lr: float, steps_per_epoch: int, milestones: list[int], gamma: float,
                  warmup_epochs: float = 1.0) -> float:
    """Linear warm-up over ``warmup_epochs`` then MultiStepLR (``gamma`` at every milestone epoch reached)."""
    warmup_steps = max(1, int(round(warmup_epochs * steps_per_epoch)))
    warm = min(1.0, (step + 1) / warmup_steps)
    epoch = step // max(1, steps_per_epoch)
    return base_lr * warm * gamma ** sum(epoch >= m for m in milestones)


def train_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, *, device: torch.device, amp: bool,
               dense_absolute_weight: float = 0.0, grad_clip: float = 0.0, sparse_fill: str = "none") -> LossTerms:
    """One optimisation step on a batch from :class:`TrainingSamples`; returns the detached loss terms.

    ``sparse_fill``: the config's fill, applied here exactly as :class:`model.metric_jarrn.MetricJarrn` applies it.
    """
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    sparse_input = network_sparse_input(batch["sparse"], batch["mask"], sparse_fill)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        out = model(batch["rgb"], sparse_input, batch["mask"])
    terms = jarrn_loss(out.depth, batch["gt"], batch["gt_valid"], batch["mask"],
                       dense_absolute_weight=dense_absolute_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms.total).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return LossTerms(*(t.detach() for t in terms))


LOSS_TERM_NAMES = ("loss", "absolute", "relative", "gradient", "dense_absolute")
"""Column names in log.csv of the :class:`model.losses.LossTerms` fields, in their order."""


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:  # pid-tagged temp: see model.atomic
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _flatten_val(step: int, epoch: int, results: dict[str, dict[str, float]], how: str = "mean") -> dict[str, Any]:
    row: dict[str, Any] = {"step": step, "epoch": epoch, "score": validation_score(results, how)}
    for name, r in results.items():
        row[f"{name}/rmse"] = r["rmse"]
        row[f"{name}/linear_rmse"] = r["linear_rmse"]
        row[f"{name}/ratio"] = r["ratio"]
    return row


def plot_curves(path: Path, train_rows: list[dict[str, Any]], val_rows: list[dict[str, Any]]) -> None:
    """Training loss (with its parts) and validation RMSE / linear-interpolation RMSE per case, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if val_rows else 1, figsize=(17 if val_rows else 6, 4.5), squeeze=False)
    ax = axes[0, 0]
    if train_rows:
        steps = [r["step"] for r in train_rows]
        for key in ("loss", "absolute", "relative", "gradient", "dense_absolute"):
            if key in train_rows[0]:
                ax.plot(steps, [r[key] for r in train_rows], label=key, linewidth=1.2 if key == "loss" else 0.8)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if val_rows:
        names = [k[: -len("/ratio")] for k in val_rows[0] if k.endswith("/ratio")]
        vsteps = [r["step"] for r in val_rows]
        ax = axes[0, 1]
        for name in names:
            ax.plot(vsteps, [r[f"{name}/ratio"] for r in val_rows], marker=".", label=name)
        ax.plot(vsteps, [r["score"] for r in val_rows], "k--", linewidth=2, label="score")
        ax.axhline(1.0, color="grey", linewidth=1)
        ax.set_title("validation RMSE / linear interpolation RMSE")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax = axes[0, 2]
        for i, name in enumerate(names):
            line = ax.plot(vsteps, [r[f"{name}/rmse"] for r in val_rows], marker=".", label=name)[0]
            ax.axhline(val_rows[-1][f"{name}/linear_rmse"], color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_title("validation RMSE (m); dotted: linear interpolation")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------------
# Command line


# ---------------------------------------------------------------------------------------------------------------------
# Main


class _Stop(Exception):
    """Raised by the SIGTERM handler so the run checkpoints and exits like on Ctrl-C."""


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _build_source(args: argparse.Namespace, crop: tuple[int, int]) -> tuple[Dataset, bool]:
    """The frame source and whether it is unbounded (fresh frames every epoch)."""
    if args.data in ("synthetic", "rgbd_extra"):  # rgbd_extra: main() mixes real frames into these
        if args.epoch_samples <= 0:
            raise UsageError(f"--data {args.data} needs --epoch-samples N (samples per epoch)")
        return SyntheticSource(args.epoch_samples, crop, seed=args.seed, render_scale=args.render_scale), True
    if args.data_root is None:
        raise UsageError(f"--data {args.data} needs --data-root")
    from model import datasets

    if args.data == "kitti":
        source = datasets.KittiDepthCompletion(args.data_root)
    elif args.data == "nyu":
        source = datasets.NyuV2(args.data_root, depth_scale=args.depth_scale)
    elif args.data == "diode":
        source = datasets.Diode(args.data_root)
    else:
        source = datasets.DepthFolder(args.data_root, depth_scale=args.depth_scale)
    source[0]  # a corrupt or mismatched first frame fails now, with its file name, not inside the first batch
    return source, False


def _positive(args: argparse.Namespace, name: str, *, allow_zero: bool = False, integer: bool = False,
              upper: float | None = None) -> None:
    """:class:`UsageError` naming ``--name`` unless its value is finite and > 0 (>= 0 with ``allow_zero``)."""
    value = getattr(args, name)
    flag = "--" + name.replace("_", "-")
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if ok and upper is not None:
        ok = value <= upper if allow_zero or integer else value < upper
    if not ok:
        kind = "integer" if integer else "number"
        bound = f" <= {upper:g}" if upper is not None else ""
        raise UsageError(f"{flag}: expected a {'non-negative' if allow_zero else 'positive'} {kind}{bound}, got {value}")


def check_args(args: argparse.Namespace) -> None:
    """Every value checked before any work (and before ``--out`` is touched): one :class:`UsageError` line naming the
    option and what it accepts."""
    for name in ("batch_size", "checkpoint_every", "log_every", "epochs"):
        _positive(args, name, integer=True)
    for name in ("workers", "threads", "epoch_samples", "val_max_side"):
        _positive(args, name, allow_zero=True, integer=True)
    for name in ("lr", "gamma", "depth_scale"):
        _positive(args, name)
    for name in ("warmup_epochs", "grad_clip", "jitter", "time_limit_min", "dense_absolute_weight"):
        _positive(args, name, allow_zero=True)
    for name in ("real_sparse_prob", "outlier_prob"):
        _positive(args, name, allow_zero=True, upper=1.0)
    if args.val_every < -1:
        raise UsageError(f"--val-every: expected steps >= 1, 0 (only at the end) or -1 (never), got {args.val_every}")
    scales = tuple(args.render_scale)
    if len(scales) != 2 or not all(math.isfinite(v) and v > 0 for v in scales) or scales[0] > scales[1]:
        raise UsageError(f"--render-scale: expected LOW,HIGH with 0 < LOW <= HIGH, got {','.join(map(str, scales))}")
    if any(m < 0 for m in args.milestones):
        raise UsageError(f"--milestones: expected non-negative epochs, got {args.milestones}")
    if args.widths is not None:
        try:
            JarrnConfig(tuple(args.widths))
        except ValueError as exc:
            raise UsageError(f"--widths: {str(exc).split(': ', 1)[-1]}") from None
    for flag, path in (("--data-root", args.data_root), ("--init", args.init)):
        if path is not None and not Path(path).exists():
            raise UsageError(f"{flag}: no such {'file' if flag == '--init' else 'folder'} {path}")
    if args.export is not None:
        export = Path(args.export)
        if export.suffix != ".safetensors":
            raise UsageError(f"--export: expected a file name ending in .safetensors, got {export}")
        if export.is_dir():
            raise OutputError(f"--export: {export} is a folder; give a file name such as {export / 'model.safetensors'}")
        check_writable_folder(export.parent, "--export", create=False)


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    from model.datasets import DatasetError
    crop = tuple(args.crop)
    if len(crop) != 2 or any(c <= 0 or c % DOWNSAMPLING_FACTOR for c in crop):
        raise UsageError(f"--crop: expected HxW, multiples of {DOWNSAMPLING_FACTOR}, got {args.crop}")
    if not 0.0 <= args.ema < 1.0:
        raise UsageError(f"--ema: expected a decay in [0, 1) (0 = off), got {args.ema}")
    rank, local_rank, world = _distributed()
    from jarrn.devices import resolve_device
    from jarrn.errors import JarrnError

    try:  # one process per GPU under torchrun: each takes cuda:<LOCAL_RANK>
        device = torch.device(resolve_device(args.device, local_rank=local_rank if world > 1 else None))
    except JarrnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if device.type == "cuda":
        torch.cuda.set_device(device.index)  # an index: set_device rejects a bare torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # fixed crop and batch: let cuDNN pick the fastest convolutions once
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    amp = (device.type == "cuda") if args.amp is None else bool(args.amp and device.type == "cuda")
    is_main = rank == 0
    out: Path = args.out
    if is_main:
        check_writable_folder(out, "--out")
        stale_files = [f for name in ("last.pt", "best.safetensors", "history.json", "log.csv", "val.csv", "curves.png")
                       for f in remove_stale_temp_files(out / name)]
        for stale in stale_files:
            print(f"removed {stale.name}, left by a run that was killed while saving", flush=True)
    torch.manual_seed(args.seed + rank)

    widths = args.widths or (JarrnConfig.small().widths if args.config == "small" else JarrnConfig.full().widths)
    config = JarrnConfig(tuple(widths), args.prob_activation, args.depth_normalisation, args.sparse_fill)
    if args.start_as_fill and (args.sparse_fill == "none" or args.init is not None):
        raise UsageError("--start-as-fill: needs --sparse-fill pushpull and no --init")
    network = Jarrn(config)
    if args.start_as_fill and not args.resume:
        start_as_fill(network)
    if args.init is not None and not args.resume:
        from model.checkpoint import load_model

        try:
            network.load_state_dict(load_model(args.init).state_dict())
        except CheckpointError as exc:
            raise CheckpointError(f"--init: {exc}") from None
        except RuntimeError as exc:  # load_state_dict: another architecture than --config/--widths
            raise CheckpointError(f"--init: {args.init} does not fit the requested model {config.to_dict()} "
                                  f"({str(exc).splitlines()[0]}); pass the same --config/--widths") from None
    network.to(device)
    channels_last = device.type == "cuda" if args.channels_last is None else bool(args.channels_last)
    if channels_last:  # NHWC: what cuDNN's FP16 tensor-core convolutions work in, so no layout transposes per layer
        network.to(memory_format=torch.channels_last)
    ema = None
    if args.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True)
    evaluated: Jarrn = ema.module if ema is not None else network  # what validation and the exports see
    optimizer = torch.optim.Adam(network.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    source, fresh = _build_source(args, crop)
    samples = TrainingSamples(source, crop, mix=args.sparse_mix, normalisation=args.depth_normalisation,
                              seed=args.seed, epoch_samples=args.epoch_samples or None,
                              fresh_source_per_epoch=fresh, real_sparse_probability=args.real_sparse_prob,
                              jitter=args.jitter, outlier_probability=args.outlier_prob)
    if args.data == "rgbd_extra":  # the training sets' real frames, mixed with the synthetic samples above
        from model.rgbd_extra import mixed_training_samples

        samples = mixed_training_samples(args, crop, samples)
    sampler = ResumableDistributedSampler(samples, num_replicas=world, rank=rank, shuffle=True, seed=args.seed,
                                          drop_last=True)
    steps_per_epoch = len(sampler) // args.batch_size
    if steps_per_epoch < 1:
        raise UsageError(f"an epoch of {len(samples)} samples over {world} process(es) gives no full batch of "
                         f"{args.batch_size}; raise --epoch-samples or lower --batch-size")
    total_steps = args.epochs * steps_per_epoch

    step, history, best_score = 0, {"train": [], "val": []}, math.inf
    last_path = out / "last.pt"
    if args.resume and last_path.is_file():
        payload = read_training_checkpoint(last_path)
        saved = payload["jarrn_config"]
        if saved != config:
            raise UsageError(f"{last_path}: saved config {saved.to_dict()} differs from the requested "
                             f"{config.to_dict()}; use the same --config/--widths/--prob-activation/"
                             "--depth-normalisation/--sparse-fill")
        try:
            network.load_state_dict(strip_prefixes(payload["network_state_dict"]))
            optimizer.load_state_dict(payload["optimizer_state_dict"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"--resume: {last_path} does not fit this run "
                                  f"({str(exc).splitlines()[0]}); delete it or use another --out") from None
        if payload.get("scaler_state_dict"):
            scaler.load_state_dict(payload["scaler_state_dict"])
        if ema is not None and payload.get("ema_state_dict"):
            ema.load_state_dict(payload["ema_state_dict"])
        step = int(payload["step"])
        history = payload.get("history", history)
        best_score = float(payload.get("best_score", math.inf))
        _set_rng_state(payload.get("rng", {}))
        if is_main:
            print(f"resumed from {last_path} at step {step} (epoch {payload['epoch']})", flush=True)
    elif args.resume and is_main:
        print(f"--resume: no {last_path}, starting a new run", flush=True)

    model: torch.nn.Module = network
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)

    val_cases = build_val_cases(args.val_max_side) if (is_main and args.val_every >= 0
                                                        and args.data != "rgbd_extra") else []
    if is_main and args.val_every >= 0 and args.data == "rgbd_extra":  # the held-out sets, not the reported frames
        from model.rgbd_extra import validation_cases

        val_cases = validation_cases(args.data_root, args.val_max_side, seed=args.seed)

    def lr_at(s: int) -> float:
        return learning_rate(s, base_lr=args.lr, steps_per_epoch=steps_per_epoch, milestones=args.milestones,
                             gamma=args.gamma, warmup_epochs=args.warmup_epochs)

    def payload_at(s: int) -> dict[str, Any]:
        return {
            "epoch": s // steps_per_epoch,
            "step": s,
            "network_state_dict": network.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "scaler_state_dict": scaler.state_dict(),
            **({"ema_state_dict": ema.state_dict()} if ema is not None else {}),
            "jarrn_config": config.to_dict(),
            "lr_scheduler": {"kind": "linear_warmup_multistep", "base_lr": args.lr, "lr": lr_at(max(s - 1, 0)),
                             "steps_per_epoch": steps_per_epoch, "milestones": list(args.milestones),
                             "gamma": args.gamma, "warmup_epochs": args.warmup_epochs, "last_step": s},
            "rng": _rng_state(),
            "history": history,
            "best_score": best_score,
            "args": {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                     for k, v in vars(args).items() if v is not None},
        }

    def write_logs() -> None:
        try:
            _write_csv(out / "log.csv", history["train"])
            _write_csv(out / "val.csv", history["val"])
            atomic_write_text(out / "history.json", json.dumps(history, indent=1))
            plot_curves(out / "curves.png", history["train"], history["val"])
        except OSError as exc:  # a full disk: one line, last.pt (written before) is intact
            raise OutputError(f"--out: could not write the logs in {out} ({exc.strerror or exc})") from None

    def run_validation(s: int) -> None:
        nonlocal best_score
        results = validate(evaluated, val_cases)
        row = _flatten_val(s, s // steps_per_epoch, results, args.val_score)
        history["val"].append(row)
        summary = "  ".join(f"{n} {r['rmse']:.3f} ({r['ratio']:.2f}x)" for n, r in results.items())
        print(f"\n[val step {s}] score {row['score']:.3f}  {summary}", flush=True)
        if row["score"] < best_score:
            best_score = row["score"]
            save_model(evaluated, out / "best.safetensors",
                       extra_metadata={"step": str(s), "val_score": f"{best_score:.5f}"})

    if is_main:
        (out / "args.json").write_text(json.dumps(payload_at(step)["args"], indent=1))
        print(f"training {config.to_dict()} on {args.data} ({args.sparse_mix} mix), crop {crop[0]}x{crop[1]}, "
              f"batch {args.batch_size} x {world}, {steps_per_epoch} steps/epoch, {total_steps} steps, device "
              f"{device}{' (AMP)' if amp else ''}{' (channels-last)' if channels_last else ''}", flush=True)

    stop_requested = False
    previous_handler = None

    def on_sigterm(signum, frame):  # noqa: ANN001, ARG001
        raise _Stop()

    if threading_main():
        previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    progress = None
    if is_main and args.progress:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True,
                        mininterval=1.0 if sys.stderr.isatty() else 30.0)
    started = time.monotonic()
    # The loss terms of the steps since the last log row, summed on the device: reading them on the host every step
    # would wait for the GPU five times a step (the step itself is a few ms on a big GPU).
    window: torch.Tensor | None = None
    window_count, window_start = 0, time.monotonic()
    network.train()
    try:
        while step < total_steps:
            epoch = step // steps_per_epoch
            samples.epoch = epoch
            sampler.set_epoch(epoch)
            sampler.start_index = (step % steps_per_epoch) * args.batch_size
            loader = DataLoader(samples, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                                drop_last=True, pin_memory=device.type == "cuda",
                                persistent_workers=False, prefetch_factor=4 if args.workers > 0 else None)
            for batch in loader:
                lr = lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                terms = train_step(model, batch, optimizer, scaler, device=device, amp=amp,
                                   dense_absolute_weight=args.dense_absolute_weight, grad_clip=args.grad_clip,
                                   sparse_fill=config.sparse_fill)
                if ema is not None:
                    ema.update_parameters(network)
                step += 1
                step_terms = torch.stack([t.float() for t in terms])
                window = step_terms if window is None else window + step_terms
                window_count += 1
                if progress is not None:
                    progress.update(1)
                val_due = args.val_every > 0 and step % args.val_every == 0
                log_due = step % args.log_every == 0 or step == total_steps
                if log_due or val_due or step % args.checkpoint_every == 0:  # check the loss before saving anything
                    means = dict(zip(LOSS_TERM_NAMES, (window / window_count).tolist()))
                    if not math.isfinite(means["loss"]):
                        raise FloatingPointError(f"loss is {means['loss']} in steps {step - window_count + 1}..{step}")
                    if progress is not None:
                        progress.set_postfix(loss=f"{means['loss']:.3f}", lr=f"{lr:.1e}", refresh=False)
                    if log_due:
                        if is_main:
                            elapsed = time.monotonic() - window_start
                            history["train"].append({
                                "step": step, "epoch": step / steps_per_epoch, "lr": lr, **means,
                                "samples_per_s": window_count * args.batch_size * world / max(elapsed, 1e-9),
                                "elapsed_s": time.monotonic() - started})
                        window, window_count, window_start = None, 0, time.monotonic()
                if is_main and val_due and step < total_steps:
                    run_validation(step)
                if is_main and (step % args.checkpoint_every == 0 or val_due):
                    save_training_checkpoint(last_path, payload_at(step))
                    write_logs()
                if args.time_limit_min > 0 and _time_up(started, args.time_limit_min, world, device):
                    if is_main:
                        print(f"\ntime limit of {args.time_limit_min} min reached at step {step}", flush=True)
                    stop_requested = True
                    break
                if step >= total_steps:
                    break
            if stop_requested:
                break
    except DatasetError as exc:  # from a DataLoader worker it carries the worker's traceback: keep the message
        if progress is not None:
            progress.close()
        _cleanup(world, previous_handler)
        raise DatasetError.from_loader(exc) from None
    except (KeyboardInterrupt, _Stop):
        if progress is not None:
            progress.close()
        if is_main:
            save_training_checkpoint(last_path, payload_at(step))
            write_logs()
            print(f"\ninterrupted at step {step}: saved {last_path}; continue with --resume", flush=True)
        _cleanup(world, previous_handler)
        return 130
    if progress is not None:
        progress.close()
    if is_main:
        if args.val_every >= 0 and val_cases:
            if not history["val"] or history["val"][-1]["step"] != step:
                run_validation(step)
        save_training_checkpoint(last_path, payload_at(step))
        write_logs()
        minutes = (time.monotonic() - started) / 60
        print(f"finished at step {step} in {minutes:.1f} min; best validation score {best_score:.4f}", flush=True)
        if args.export is not None:
            source_path = out / "best.safetensors"
            if args.export_which == "best" and source_path.is_file():
                from model.checkpoint import load_model

                exported = load_model(source_path)
            else:
                exported = evaluated
            save_model(exported, args.export, half=args.half,
                       extra_metadata={"trained_steps": str(step), "weights": args.export_which,
                                       "val_score": f"{best_score:.5f}"})
            print(f"exported {args.export_which} weights to {args.export}", flush=True)
    _cleanup(world, previous_handler)
    return 0


def _time_up(started: float, limit_min: float, world: int, device: torch.device) -> bool:
    """Whether the time limit is reached; with several processes rank 0 decides for all, so they stop together."""
    up = time.monotonic() - started > limit_min * 60
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([1.0 if up else 0.0], device=device)
        dist.broadcast(flag, src=0)
        up = bool(flag.item() > 0)
    return up


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _cleanup(world: int, previous_handler: Callable | int | None) -> None:
    if previous_handler is not None:
        signal.signal(signal.SIGTERM, previous_handler)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way into an epoch (``start_index``), for exact mid-epoch resume."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_index = 0

    def __iter__(self):  # noqa: ANN204
        return iter(list(super().__iter__())[self.start_index:])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


if __name__ == "__main__":
    sys.exit(main())
