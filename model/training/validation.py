"""Validation during training: real-frame cases (down-scaled for speed), metrics through ``network.complete``, the
score that picks ``best.safetensors``, and the flat row written to val.csv."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jarrn_deploy.model.train_options import VALIDATION_SCORES

if TYPE_CHECKING:
    from jarrn_deploy.model.network import Jarrn


@dataclass(frozen=True, eq=False)
class ValCase:
    """One validation frame: inputs, ground truth and the linear-interpolation baseline's RMSE on it."""

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
    from jarrn_deploy.model.baselines import linear_interpolation
    from jarrn_deploy.model.metrics import depth_metrics
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    cases = []
    for case in evaluation_cases(load_real_frames(), seed=seed):
        factor = math.ceil(max(case.gt.shape) / max_side) if max_side else 1
        rgb, sparse, gt = downscale_case(case.rgb, case.sparse, case.gt, factor)
        linear = depth_metrics(linear_interpolation(sparse), gt).rmse
        cases.append(ValCase(case.name, rgb, sparse, gt, linear))
    return cases


def validate(network: Jarrn, cases: list[ValCase]) -> dict[str, dict[str, float]]:
    """Metric RMSE/MAE/AbsRel/delta1 per case through ``network.complete`` (metres), plus the linear baseline."""
    from jarrn_deploy.model.contract import NonFiniteDepthError
    from jarrn_deploy.model.metrics import HEADLINE_METRICS, depth_metrics

    was_training = network.training
    network.eval()
    results = {}
    try:
        for case in cases:
            try:
                metrics = depth_metrics(network.complete(case.rgb, case.sparse), case.gt).headline()
            except NonFiniteDepthError:  # diverged weights: a NaN score, never the best, and the run goes on
                metrics = {name: float("nan") for name in HEADLINE_METRICS}
            results[case.name] = {**metrics, "linear_rmse": case.linear_rmse,
                                  "ratio": metrics["rmse"] / case.linear_rmse}
    finally:
        network.train(was_training)
    return results


def validation_score(results: dict[str, dict[str, float]], how: str = "mean") -> float:
    """Mean ('mean') or largest ('worst') over the cases of RMSE / linear-interpolation RMSE (below 1 = better)."""
    ratios = [r["ratio"] for r in results.values()]
    if how not in VALIDATION_SCORES:
        raise ValueError(f"validation score: expected one of {VALIDATION_SCORES}, got {how!r}")
    return float(np.mean(ratios) if how == "mean" else np.max(ratios))


def validation_row(step: int, epoch: int, results: dict[str, dict[str, float]], how: str = "mean") -> dict[str, Any]:
    """One val.csv row: the step, the score and each case's RMSE, baseline RMSE and their ratio."""
    row: dict[str, Any] = {"step": step, "epoch": epoch, "score": validation_score(results, how)}
    for name, r in results.items():
        row[f"{name}/rmse"] = r["rmse"]
        row[f"{name}/linear_rmse"] = r["linear_rmse"]
        row[f"{name}/ratio"] = r["ratio"]
    return row
