"""The benchmark report's PNG charts: latency per configuration, accuracy per case, and one depth panel per case."""

from __future__ import annotations

import math

import numpy as np

from jarrn_deploy.benchmarks.report_format import BASELINE_METHODS, config_keys, config_title, ok_rows
from jarrn_deploy.model.visualize import Tile, dilate_points, figure_png, tile_grid_png


def latency_chart(report: dict) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = config_keys(report)
    rows = [r for r in ok_rows(report) if r.get("configs")]
    if not keys or not rows:
        return None
    ncols = 1 if len(keys) == 1 else 2
    nrows = math.ceil(len(keys) / ncols)
    height = 0.45 * len(rows) + 1.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, height * nrows), dpi=100, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, key in zip(axes.flat, keys):
        labels, y = [], 0
        xmax = 0.0
        any_cut = False
        title = None
        for i, row in enumerate(rows):
            cfg = row["configs"].get(key)
            if not cfg or "latency" not in cfg:
                continue
            title = title or config_title(cfg)
            lat = cfg["latency"].get("e2e") or cfg["latency"].get("graph")
            mode = "e2e" if "e2e" in cfg["latency"] else "graph"
            p50, p90, p99 = lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]
            # A few disturbed calls must not squash the other bars: whiskers beyond 2.5x the largest p50 are cut
            # (arrow head) and their value written out.
            limit = 2.5 * max(r["configs"][key]["latency"].get(mode, {}).get("p50_ms", 0) for r in rows
                              if "latency" in r["configs"].get(key, {}))
            ax.barh(y, p50, color=colours(i % 10), alpha=0.85, height=0.6)
            cut = p99 > limit
            end = min(p99, limit)
            ax.errorbar(p50, y, xerr=[[0], [max(end - p50, 0)]], fmt="none", ecolor="black", capsize=0 if cut else 4,
                        lw=1)
            if cut:
                ax.plot([end], [y], marker=">", color="black", markersize=5)
            if p90 <= limit:
                ax.plot([p90], [y], marker="|", color="black", markersize=10)
            graph = cfg["latency"].get("graph")
            if graph and mode == "e2e":
                ax.plot([graph["p50_ms"]], [y], marker="D", color="black", markersize=4)
            speed = (cfg.get("speedup") or {}).get(mode)
            text = f" {p50:.1f} ms" + (f"  ({speed:.2f}x)" if speed is not None else "")
            if cut:
                text += f"  [p90 {p90:.0f}, p99 {p99:.0f} ms]"
                any_cut = True
            ax.text(end, y, text, va="center", fontsize=8)
            xmax = max(xmax, end)
            labels.append(row["label"])
            y += 1
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, xmax * (1.9 if any_cut else 1.45) if xmax > 0 else 1)
        ax.set_xlabel("latency per call (ms)")
        ax.set_title(title or key, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"JARRN latency on {report['machine']['machine_tag']} ({report['settings']['threads']} threads): "
                 "bar = e2e p50, | = p90, whisker = p99, diamond = graph-only p50; (speed-up vs PyTorch eager FP32)",
                 fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def accuracy_chart(report: dict) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cases = [c["name"] for c in report["cases"]]
    rows = [r for r in ok_rows(report) if r.get("accuracy")]
    if not cases or not rows:
        return None
    ncols = min(3, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    n_bars = len(BASELINE_METHODS) + len(rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, (0.32 * n_bars + 1.2) * nrows), dpi=100,
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, name in zip(axes.flat, cases):
        labels, values, cols = [], [], []
        for method in BASELINE_METHODS:
            m = (report["baselines"].get(method) or {}).get(name) or {}
            if "rmse" in m:
                labels.append(f"{method} interp.")
                values.append(m["rmse"])
                cols.append("0.65")
        for i, row in enumerate(rows):
            m = (row["accuracy"].get(name) or {}).get("vs_gt")
            if m:
                labels.append(row["label"])
                values.append(m["rmse"])
                cols.append(colours(i % 10))
        ax.barh(range(len(values)), values, color=cols, height=0.65)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(values) * 1.3 if values else 1)
        ax.set_xlabel("RMSE vs ground truth (m)")
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    fig.suptitle("RMSE per case: interpolation baselines (grey) and each backend / precision", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def _dot_size(sparse: np.ndarray) -> int:
    """Display size of a sparse point: big for a few hundred random points, small for dense LiDAR scan lines."""
    width, points = sparse.shape[1], int((sparse > 0).sum())
    return max(3, width // 110) if points < 2000 else max(1, width // 400)


def panel_chart(case, reference: np.ndarray, others: dict[str, np.ndarray], labels: dict[str, str],  # noqa: ANN001
                reference_label: str) -> bytes:
    """RGB | sparse | GT | prediction | |prediction - GT|, then |row - reference| for the other rows."""
    height, width = case.gt.shape
    valid = case.gt > 0
    depths = case.gt[valid]
    lo, hi = (float(v) for v in np.percentile(depths, [1, 99])) if depths.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-3
    err = np.where(valid, np.abs(reference - case.gt), np.nan)
    err_max = float(np.nanpercentile(err, 99)) if valid.any() else 1.0
    rmse = float(np.sqrt(np.nanmean(err**2))) if valid.any() else float("nan")
    tiles = [
        Tile("RGB", case.rgb),
        Tile(f"sparse input ({int((case.sparse > 0).sum())} points, dilated for display)",
             np.ma.masked_less_equal(dilate_points(case.sparse, _dot_size(case.sparse)), 0), "turbo", (lo, hi)),
        Tile("ground truth", np.ma.masked_less_equal(case.gt, 0), "turbo", (lo, hi)),
        Tile(f"prediction: {reference_label}", reference, "turbo", (lo, hi)),
        Tile(f"|prediction - GT| on GT pixels (RMSE {rmse:.3f} m)", np.ma.masked_invalid(err), "magma",
             (0.0, max(err_max, 1e-6)), "|error| (m)"),
    ]
    for key, pred in others.items():
        diff = np.abs(pred.astype(np.float64) - reference.astype(np.float64))
        vmax = float(np.percentile(diff, 99.9)) or float(diff.max()) or 1e-6
        tiles.append(Tile(f"|{labels.get(key, key)} - reference| (max {diff.max():.2g} m, mean {diff.mean():.2g} m)",
                          diff, "viridis", (0.0, vmax), "|difference| (m)"))
    return tile_grid_png(tiles, f"{case.name} ({height}x{width})")
