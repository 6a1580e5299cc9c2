"""Evaluation on the held-out sets of ``rgbd_extra`` (:mod:`jarrn_deploy.model.rgbd_extra`), per frame and per set.

``python -m jarrn_deploy.model.evaluate --held-out-root DIR`` calls :func:`evaluate_held_out` after the bundled frames and writes
``heldout.md`` / ``heldout.json`` / ``heldout.png`` and one ``panel_heldout_<set>_at_<pattern>.png`` per set and
pattern (its first frame), plus ``summary.md``: one table of the bundled cases and the held-out sets with the model,
its fill alone, nearest and linear interpolation, the model's ratio to linear and its gain over its fill.

A set's row averages its frames' metrics (mean of the per-frame RMSE, etc.), so every frame weighs the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jarrn_deploy.model.frame_evaluation import METHODS, CaseResult, evaluate, panel, rmse_chart


@dataclass(frozen=True)
class HeldOutReport:
    """Per-frame and per-set results on the held-out sets."""

    frames: list[CaseResult]
    """One result per held-out case (frame and pattern)."""
    sets: list[CaseResult]
    """One result per ``<set>@<pattern>``: the mean over its frames."""
    panels: dict[str, bytes]
    """``<set>@<pattern>`` -> PNG panel of its first frame (empty without panels)."""


def gain_over_fill(result: CaseResult) -> float | None:
    """``1 - model RMSE / fill RMSE`` (positive: the network improves on its fill), or None without a fill."""
    fill = result.metrics.get("pushpull fill")
    return None if fill is None else 1.0 - result.metrics["model"]["rmse"] / fill["rmse"]


def average_groups(results: Sequence[CaseResult], groups: Sequence[str]) -> list[CaseResult]:
    """Mean of every metric per group, in first-seen group order."""
    order: list[str] = []
    members: dict[str, list[CaseResult]] = {}
    for result, group in zip(results, groups):
        if group not in members:
            order.append(group)
        members.setdefault(group, []).append(result)
    averaged = []
    for group in order:
        rs = members[group]
        metrics = {method: {k: float(np.mean([r.metrics[method][k] for r in rs])) for k in rs[0].metrics[method]}
                   for method in rs[0].metrics}
        averaged.append(CaseResult(f"{group} (n={len(rs)})", rs[0].size, int(round(np.mean([r.points for r in rs]))),
                                   metrics, float(np.sum([r.model_seconds for r in rs]))))
    return averaged


def evaluate_held_out(network, root: str | Path, *, seed: int = 0, panels: bool = True,  # noqa: ANN001
                      log: Callable[[str], None] = print) -> HeldOutReport:
    """Run the model and the baselines on every frame of the held-out sets under ``root``."""
    from jarrn_deploy.model.rgbd_extra import held_out_cases

    cases = held_out_cases(root, seed)
    log(f"held-out sets: {len(cases)} cases from {root}")
    frames, predictions = evaluate(network, cases, log=log)
    sets = average_groups(frames, [c.group for c in cases])
    pictures: dict[str, bytes] = {}
    if panels:
        for case in cases:
            if case.group not in pictures:
                prediction, linear = predictions[case.name]
                pictures[case.group] = panel(case, prediction, linear)
    return HeldOutReport(frames, sets, pictures)


def _row(r: CaseResult, methods: Sequence[str]) -> str:
    gain = gain_over_fill(r)
    return (f"| {r.name} | {r.points} | " + " | ".join(f"{r.metrics[m]['rmse']:.3f}" for m in methods)
            + f" | {r.ratio_to_linear:.3f} | {'' if gain is None else f'{gain * 100:+.1f}%'} |")


def render_table(results: Sequence[CaseResult]) -> list[str]:
    """Markdown rows: RMSE of every method, model / linear, and the model's gain over its fill."""
    methods = [m for m in METHODS if m in results[0].metrics]
    return (["| case | points | " + " | ".join(f"{m} RMSE" for m in methods) + " | model / linear | gain over fill |",
             "|---|---|" + "---|" * (len(methods) + 2)] + [_row(r, methods) for r in results])


def _summary_lines(results: Sequence[CaseResult]) -> list[str]:
    ratios = [r.ratio_to_linear for r in results]
    gains = [g for g in (gain_over_fill(r) for r in results) if g is not None]
    line = (f"Model / linear: mean {np.mean(ratios):.3f}, worst {max(ratios):.3f} (target <= 0.90 on every case, "
            f"aim 0.80).")
    if gains:
        line += f" Gain over the fill: mean {np.mean(gains) * 100:+.1f}% (target >= +5%)."
    return [line, ""]


def render_markdown(report: HeldOutReport, bundled: Sequence[CaseResult], label: str, command: str) -> str:
    """``summary.md``: bundled cases, held-out sets (averaged) and held-out frames."""
    lines = [f"# Evaluation summary: {label}", "", f"Command: `{command}`", "",
             "RMSE in metres on every scored GT pixel. Held-out sets (never trained on, "
             "jarrn_deploy.model.rgbd_extra.HELD_OUT_SETS): indoor with 500 / 100 random GT points, LiDAR with 20% of the "
             "points as input and the other 80% scored. `gain over fill` = 1 - model RMSE / fill RMSE.", ""]
    if bundled:
        lines += ["## Bundled real frames (data/real)", ""] + render_table(bundled) + [""] + _summary_lines(bundled)
    lines += ["## Held-out sets (mean over their frames)", ""] + render_table(report.sets) + [""]
    lines += _summary_lines(report.sets)
    lines += ["## Held-out frames", ""] + render_table(report.frames) + [""]
    return "\n".join(lines)


def payload(report: HeldOutReport) -> dict:
    """JSON-ready per-set and per-frame metrics."""
    def one(r: CaseResult) -> dict:
        return {"name": r.name, "size": list(r.size), "points": r.points, "metrics": r.metrics,
                "ratio_to_linear": r.ratio_to_linear, "gain_over_fill": gain_over_fill(r),
                "model_seconds": r.model_seconds}

    return {"sets": [one(r) for r in report.sets], "frames": [one(r) for r in report.frames]}


def write_report(stage: Path, report: HeldOutReport, bundled: Sequence[CaseResult], label: str, command: str) -> None:
    """Write summary.md, heldout.json, heldout.png and the panels into ``stage`` (atomically, file by file)."""
    from jarrn_deploy.model.atomic import atomic_write_bytes, atomic_write_text

    atomic_write_text(stage / "summary.md", render_markdown(report, bundled, label, command))
    atomic_write_text(stage / "heldout.json", json.dumps(payload(report), indent=2) + "\n")
    atomic_write_bytes(stage / "heldout.png", rmse_chart(report.sets, f"RMSE on the held-out sets: {label}"))
    for group, png in report.panels.items():
        safe = group.replace("@", "_at_").replace("/", "_")
        atomic_write_bytes(stage / f"panel_heldout_{safe}.png", png)
