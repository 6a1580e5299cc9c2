"""Sparse training inputs drawn from a dense depth map on the host (numpy): the regimes of the ``--sparse-mix`` mixes
(none, random subsets, random points, noisy/blurred dense depth, LiDAR lines), random hole masks and outliers.

:mod:`jarrn_deploy.model.training.device_batches` draws the same regimes with torch on the training device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from jarrn_deploy.model.sparse import add_noise, add_outliers, lidar_scanlines, random_points, valid_mask

HOLE_PROBABILITY = 0.5
DENSE_NOISE_PROBABILITY = 0.3
DENSE_NOISE_SIGMA = (0.01, 0.1)
DENSE_BLUR_PROBABILITY = 0.3
DENSE_BLUR_FACTORS = (2, 16)
LIDAR_LINES = (4, 128)
POINT_COUNTS = (3, 2000)
OUTLIER_RATIO_MAX = 0.03
OUTLIER_MAX_FACTOR = (2.0, 20.0)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def blur_depth(depth: torch.Tensor, factor: int) -> torch.Tensor:
    """Down-sample ``[N,1,H,W]`` by ``factor`` (mean of the valid pixels of each cell), up-sample back (bilinear);
    pixels that were invalid, or whose cell neighbourhood had no valid pixel, stay 0."""
    m = (depth > 0).to(depth.dtype)
    h, w = depth.shape[-2:]
    small_h, small_w = max(1, h // factor), max(1, w // factor)
    num = F.adaptive_avg_pool2d(depth * m, (small_h, small_w))
    den = F.adaptive_avg_pool2d(m, (small_h, small_w))
    small = torch.where(den > 0, num / den.clamp(min=1e-6), torch.zeros_like(num))
    up = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    up_valid = F.interpolate((den > 0).to(depth.dtype), size=(h, w), mode="bilinear", align_corners=False) > 0.999
    return up * up_valid * m


def _dense_noisy(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = depth.astype(np.float32, copy=True)
    valid = valid_mask(out)
    if not valid.any():
        return out
    if rng.random() < DENSE_BLUR_PROBABILITY:
        factor = int(rng.integers(DENSE_BLUR_FACTORS[0], DENSE_BLUR_FACTORS[1] + 1))
        out = blur_depth(torch.from_numpy(out)[None, None], factor)[0, 0].numpy().astype(np.float32)
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
        sparse = random_points(depth, count=int(round(log_uniform(rng, *POINT_COUNTS))), seed=rng)
    elif regime == "dense":
        sparse = _dense_noisy(depth, rng)
    elif regime == "lidar":
        lines = int(round(log_uniform(rng, *LIDAR_LINES)))
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
                                  max_factor=log_uniform(rng, *OUTLIER_MAX_FACTOR))
    if rng.random() < HOLE_PROBABILITY:
        sparse = np.where(_hole_mask(depth.shape, rng), np.float32(0.0), sparse).astype(np.float32)
    return sparse, regime

