"""A model against interpolation on evaluation cases (real frames with ground truth): metrics per case and method,
the RMSE chart and the per-case panel. Shared by ``python -m jarrn_deploy.model.evaluate`` (the bundled frames) and
:mod:`jarrn_deploy.model.heldout_eval` (held-out RGB-D sets), so neither imports the other."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from jarrn_deploy.model.visualize import Tile, figure_png, tile_grid_png

METHODS = ("model", "pushpull fill", "nearest", "linear")


@dataclass(frozen=True)
class CaseResult:
    """Metrics of every method on one evaluation case."""

    name: str
    """Case name, e.g. "tum_desk@500"."""
    size: tuple[int, int]
    """Frame height and width in pixels."""
    points: int
    """Number of sparse input points."""
    metrics: dict[str, dict[str, float]]
    """Method -> {rmse, mae, absrel, delta1} (metres for rmse and mae)."""
    model_seconds: float
    """Wall time of the model's ``complete`` call."""

    @property
    def ratio_to_linear(self) -> float:
        return self.metrics["model"]["rmse"] / self.metrics["linear"]["rmse"]


def fill_only(sparse: np.ndarray) -> np.ndarray:
    """The contract's push-pull fill of ``sparse`` (HxW metres), without any network."""
    import torch

    from jarrn_deploy.model.metric_jarrn import pushpull_fill

    tensor = torch.from_numpy(np.ascontiguousarray(sparse, dtype=np.float32))[None, None]
    return pushpull_fill(tensor, (tensor > 0).float())[0, 0].numpy()


def evaluate(network, cases, log: Callable[[str], None] = print,  # noqa: ANN001
             ) -> tuple[list[CaseResult], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metrics per case and method, plus ``(model prediction, linear interpolation)`` keyed by case name."""
    from jarrn_deploy.model.baselines import linear_interpolation, nearest_interpolation
    from jarrn_deploy.model.metrics import depth_metrics

    results, predictions = [], {}
    for index, case in enumerate(cases, 1):
        started = time.perf_counter()
        prediction = network.complete(case.rgb, case.sparse)
        seconds = time.perf_counter() - started
        dense = {"model": prediction, "nearest": nearest_interpolation(case.sparse),
                 "linear": linear_interpolation(case.sparse)}
        if network.config.sparse_fill == "pushpull":
            dense["pushpull fill"] = fill_only(case.sparse)
        metrics = {}
        for method, pred in dense.items():
            metrics[method] = depth_metrics(pred, case.gt).headline()
        result = CaseResult(case.name, case.gt.shape, int((case.sparse > 0).sum()), metrics, seconds)
        results.append(result)
        predictions[case.name] = (prediction, dense["linear"])
        log(f"[{index}/{len(cases)}] {case.name}: model RMSE {metrics['model']['rmse']:.3f} m, linear "
            f"{metrics['linear']['rmse']:.3f} m ({result.ratio_to_linear:.2f}x), {seconds:.1f} s")
    return results, predictions


def rmse_chart(results: Sequence[CaseResult], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in METHODS if m in results[0].metrics]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(methods)
    x = np.arange(len(results))
    for i, method in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, [r.metrics[method]["rmse"] for r in results], width,
               label=method)
    ax.set_xticks(x, [r.name for r in results], rotation=15)
    ax.set_ylabel("RMSE (m)")
    ax.set_title(title)
    ax.legend()
    return figure_png(fig, dpi=110)


def panel(case, prediction: np.ndarray, linear: np.ndarray) -> bytes:  # noqa: ANN001
    """RGB | ground truth | model, then linear interpolation and both error maps, each with a colour bar in metres."""
    valid = case.gt > 0
    vmin, vmax = (float(v) for v in np.percentile(case.gt[valid], [1, 99]))
    errors = [np.where(valid, np.abs(p - case.gt), np.nan) for p in (prediction, linear)]
    emax = float(np.nanpercentile(np.concatenate([e[valid] for e in errors]), 99))
    depth_range = (vmin, vmax)
    tiles = [Tile("RGB", case.rgb), Tile("ground truth", np.where(valid, case.gt, np.nan), "turbo", depth_range),
             Tile("model", prediction, "turbo", depth_range), Tile("linear interpolation", linear, "turbo", depth_range),
             Tile("|model - GT| (m)", errors[0], "magma", (0.0, emax), "|error| (m)"),
             Tile("|linear - GT| (m)", errors[1], "magma", (0.0, emax), "|error| (m)")]
    return tile_grid_png(tiles, case.name, ncols=3, tile_width_in=5.0, dpi=110, palette=False)
