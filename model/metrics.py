"""Standard depth-completion metrics (KITTI depth-completion conventions)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

# Predictions are clamped to this (metres) before inverting, so pred <= 0 gives a large but
# finite inverse error instead of inf / nan.
PRED_FLOOR_FOR_INVERSE_M = 1e-3

HEADLINE_METRICS = ("rmse", "mae", "absrel", "delta1")
"""The metrics every evaluation, validation and report shows, in this order."""


@dataclass(frozen=True)
class DepthMetrics:
    """Depth errors averaged over the valid ground-truth pixels."""

    rmse: float
    """Root mean squared error in metres."""
    mae: float
    """Mean absolute error in metres."""
    absrel: float
    """Mean of |pred - gt| / gt."""
    irmse: float
    """Root mean squared error of inverse depth in 1/km."""
    imae: float
    """Mean absolute error of inverse depth in 1/km."""
    delta1: float
    """Share of pixels with max(pred/gt, gt/pred) < 1.25."""
    delta2: float
    """Share of pixels with max(pred/gt, gt/pred) < 1.25**2."""
    delta3: float
    """Share of pixels with max(pred/gt, gt/pred) < 1.25**3."""
    count: int
    """Number of valid ground-truth pixels the metrics were computed on."""

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    def headline(self) -> dict[str, float]:
        """The metrics every report shows (:data:`HEADLINE_METRICS`), by name."""
        return {name: float(getattr(self, name)) for name in HEADLINE_METRICS}


def _valid_gt_mask(gt: np.ndarray, min_depth: float, max_depth: float | None) -> np.ndarray:
    mask = np.isfinite(gt) & (gt > min_depth)
    if max_depth is not None:
        mask &= gt <= max_depth
    return mask


def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
) -> DepthMetrics:
    """Compare ``pred`` with ``gt`` (metres, HxW or BxHxW) on pixels with min_depth < gt <= max_depth.

    Pixels where gt is 0 or not finite never count. Raises ValueError when the shapes differ,
    no pixel is valid, or ``pred`` is not finite on a valid pixel.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got pred {p.shape} and gt {g.shape}")
    if g.ndim not in (2, 3):
        raise ValueError(f"pred and gt must be HxW or BxHxW, got shape {g.shape}")
    if not (np.isfinite(min_depth) and min_depth >= 0):
        raise ValueError(f"min_depth must be a finite number >= 0, got {min_depth!r}")
    if max_depth is not None and not max_depth > min_depth:
        raise ValueError(f"max_depth must be > min_depth ({min_depth}), got {max_depth!r}")

    mask = _valid_gt_mask(g, min_depth, max_depth)
    count = int(mask.sum())
    if count == 0:
        raise ValueError(
            f"gt has no valid pixels (need min_depth={min_depth} < gt <= max_depth={max_depth})"
        )
    p, g = p[mask], g[mask]
    if not np.all(np.isfinite(p)):
        raise ValueError("pred must be finite on every valid gt pixel, found nan or inf")

    err = p - g
    p_pos = np.maximum(p, PRED_FLOOR_FOR_INVERSE_M)
    inv_err_per_km = (1.0 / p_pos - 1.0 / g) * 1000.0
    ratio = np.maximum(p_pos / g, g / p_pos)
    return DepthMetrics(
        rmse=float(np.sqrt(np.mean(err**2))),
        mae=float(np.mean(np.abs(err))),
        absrel=float(np.mean(np.abs(err) / g)),
        irmse=float(np.sqrt(np.mean(inv_err_per_km**2))),
        imae=float(np.mean(np.abs(inv_err_per_km))),
        delta1=float(np.mean(ratio < 1.25)),
        delta2=float(np.mean(ratio < 1.25**2)),
        delta3=float(np.mean(ratio < 1.25**3)),
        count=count,
    )
