"""Evaluate a model on the bundled real frames against nearest and linear interpolation (issue 3's table).

    python -m model.evaluate                        # the bundled default model -> reports/evaluation/
    python -m model.evaluate --model runs/x/best.safetensors --out reports/x

Cases are :func:`model.real_frames.evaluation_cases`: KITTI with its real LiDAR, the indoor frames with 500 and 100
random GT points (``--seed``). Metrics are on every valid GT pixel, in metres. For a model that fills its sparse
channel (``sparse_fill='pushpull'``) the fill alone is reported too, so the table shows what the network adds.
Writes ``evaluation.md``, ``evaluation.json``, ``evaluation.png`` (RMSE per case and method) and
``panel_<case>.png`` (RGB, GT, prediction, linear interpolation, both error maps), each atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from model.atomic import atomic_write_bytes, atomic_write_text

METHODS = ("model", "pushpull fill", "nearest", "linear")
METRICS = ("rmse", "mae", "absrel", "delta1")


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

    from model.contract import pushpull_fill

    tensor = torch.from_numpy(np.ascontiguousarray(sparse, dtype=np.float32))[None, None]
    return pushpull_fill(tensor, (tensor > 0).float())[0, 0].numpy()


def evaluate(network, cases, log: Callable[[str], None] = print,  # noqa: ANN001
             ) -> tuple[list[CaseResult], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metrics per case and method, plus ``(model prediction, linear interpolation)`` keyed by case name."""
    from model.baselines import linear_interpolation, nearest_interpolation
    from model.metrics import depth_metrics

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
            m = depth_metrics(pred, case.gt)
            metrics[method] = {"rmse": m.rmse, "mae": m.mae, "absrel": m.absrel, "delta1": m.delta1}
        result = CaseResult(case.name, case.gt.shape, int((case.sparse > 0).sum()), metrics, seconds)
        results.append(result)
        predictions[case.name] = (prediction, dense["linear"])
        log(f"[{index}/{len(cases)}] {case.name}: model RMSE {metrics['model']['rmse']:.3f} m, linear "
            f"{metrics['linear']['rmse']:.3f} m ({result.ratio_to_linear:.2f}x), {seconds:.1f} s")
    return results, predictions


def render_markdown(results: Sequence[CaseResult], model_label: str, command: str) -> str:
    methods = [m for m in METHODS if m in results[0].metrics]
    lines = [f"# Evaluation on the bundled real frames: {model_label}", "", f"Command: `{command}`", "",
             "Metres on every valid GT pixel. `ratio` = model RMSE / linear-interpolation RMSE (below 1 beats it).", "",
             "| case | size | points | " + " | ".join(f"{m} RMSE" for m in methods) + " | ratio | model MAE | "
             "model AbsRel | model delta1 | linear MAE | linear AbsRel | linear delta1 |",
             "|---|---|---|" + "---|" * (len(methods) + 7)]
    for r in results:
        model, linear = r.metrics["model"], r.metrics["linear"]
        lines.append(
            f"| {r.name} | {r.size[0]}x{r.size[1]} | {r.points} | "
            + " | ".join(f"{r.metrics[m]['rmse']:.3f}" for m in methods)
            + f" | {r.ratio_to_linear:.2f} | {model['mae']:.3f} | {model['absrel']:.3f} | {model['delta1']:.3f} | "
              f"{linear['mae']:.3f} | {linear['absrel']:.3f} | {linear['delta1']:.3f} |")
    ratios = [r.ratio_to_linear for r in results]
    lines += ["", f"Mean ratio {np.mean(ratios):.3f}, worst {max(ratios):.3f}; the model beats linear interpolation on "
              f"{sum(x < 1 for x in ratios)} of {len(ratios)} cases.", ""]
    return "\n".join(lines)


def _png(fig) -> bytes:  # noqa: ANN001
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


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
    return _png(fig)


def panel(case, prediction: np.ndarray, linear: np.ndarray) -> bytes:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = case.gt > 0
    vmin, vmax = np.percentile(case.gt[valid], [1, 99])
    errors = [np.where(valid, np.abs(p - case.gt), np.nan) for p in (prediction, linear)]
    emax = float(np.nanpercentile(np.concatenate([e[valid] for e in errors]), 99))
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5 * case.gt.shape[0] / case.gt.shape[1] + 1))
    images = [("RGB", case.rgb, None, None, None), ("ground truth", np.where(valid, case.gt, np.nan), "turbo", vmin, vmax),
              ("model", prediction, "turbo", vmin, vmax), ("linear interpolation", linear, "turbo", vmin, vmax),
              ("|model - GT| (m)", errors[0], "magma", 0, emax), ("|linear - GT| (m)", errors[1], "magma", 0, emax)]
    for ax, (title, image, cmap, lo, hi) in zip(axes.flat, images):
        shown = ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
        if cmap:
            fig.colorbar(shown, ax=ax, fraction=0.03)
    fig.suptitle(case.name)
    return _png(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the bundled default model)")
    parser.add_argument("--out", type=Path, default=Path("reports/evaluation"), help="report folder (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the indoor random points (default 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-panels", action="store_true", help="skip the per-case PNG panels")
    args = parser.parse_args(argv)

    import torch

    from model.checkpoint import CheckpointError, load_model
    from model.real_frames import evaluation_cases, load_real_frames

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        network = load_model(args.model)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        print(f"error: --model: {exc}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: --out: cannot create {args.out} ({exc.strerror})", file=sys.stderr)
        return 2
    label = Path(getattr(network, "source_path", "model")).name
    cases = evaluation_cases(load_real_frames(), seed=args.seed)
    print(f"evaluating {label} on {len(cases)} cases", flush=True)
    results, predictions = evaluate(network, cases, log=lambda line: print(line, flush=True))

    command = "python -m model.evaluate" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    atomic_write_text(args.out / "evaluation.md", render_markdown(results, label, command))
    payload = {"model": str(getattr(network, "source_path", "")), "config": network.config.to_dict(),
               "seed": args.seed, "command": command,
               "cases": [{"name": r.name, "size": list(r.size), "points": r.points, "metrics": r.metrics,
                          "ratio_to_linear": r.ratio_to_linear, "model_seconds": r.model_seconds} for r in results]}
    atomic_write_text(args.out / "evaluation.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_bytes(args.out / "evaluation.png", rmse_chart(results, f"RMSE on the real frames: {label}"))
    if not args.no_panels:
        for case in cases:
            prediction, linear = predictions[case.name]
            safe = case.name.replace("@", "_at_")
            atomic_write_bytes(args.out / f"panel_{safe}.png", panel(case, prediction, linear))
    print(f"wrote {args.out}/evaluation.md (.json, .png{'' if args.no_panels else ', panel_*.png'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
