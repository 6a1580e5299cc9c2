"""Evaluate a model on the bundled real frames against nearest and linear interpolation.

    python -m jarrn_deploy.model.evaluate                        # the bundled default model -> reports/evaluation/
    python -m jarrn_deploy.model.evaluate --model runs/x/best.safetensors --out reports/x

Cases are :func:`jarrn_deploy.model.real_frames.evaluation_cases`: KITTI with its real LiDAR, the indoor frames with 500 and 100
random GT points (``--seed``). Metrics are on every valid GT pixel, in metres. For a model that fills its sparse
channel (``sparse_fill='pushpull'``) the fill alone is reported too, so the table shows what the network adds.
Writes ``evaluation.md``, ``evaluation.json``, ``evaluation.png`` (RMSE per case and method) and
``panel_<case>.png`` (RGB, GT, prediction, linear interpolation, both error maps), each atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from jarrn_deploy.cli import command
from jarrn_deploy.durations import Span, about, on_this_machine
from jarrn_deploy.errors import InputError, OutputError, UsageError
from jarrn_deploy.options import repeated_options
from jarrn_deploy.model.atomic import (atomic_write_bytes, atomic_write_text, check_writable_folder, refuse_overwriting_inputs,
                          staged_outputs)
from jarrn_deploy.model.frame_evaluation import METHODS, CaseResult, evaluate, panel, rmse_chart


EVALUATE_S: Span = (37.5, 42.5)
"""Wall seconds of ``jarrn evaluate`` (bundled model, CPU) on the shared 2-core machine, with and without
``--no-panels`` (load average 1.3 and 2.1): the six cases take 1 to 21 s each, the panels little."""


def plan_line(args: argparse.Namespace) -> str:
    """The line printed before the work starts: what is evaluated, about how long it takes, what can be skipped."""
    model = args.model or "the bundled model"
    size = " for the bundled model; larger models take longer" if args.model else ""
    held_out = f", then the held-out sets in {args.held_out_root} (longer)" if args.held_out_root else ""
    skip = [] if args.no_panels else ["--no-panels skips the pictures"]
    if args.held_out_root:
        skip.append("without --held-out-root only the bundled frames")
    return (f"evaluating {model} on the bundled real frames against interpolation{held_out}, report in "
            f"{args.out}: {about(EVALUATE_S)} {on_this_machine()}{size}" + (f" ({'; '.join(skip)})" if skip else ""))


REPORT_FILES = ("evaluation.md", "evaluation.json", "evaluation.png", "summary.md", "heldout.json", "heldout.png")
"""The files every evaluation writes into ``--out`` (plus ``panel_<case>.png``)."""


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


HELP_DESCRIPTION = """\
Measure how accurate a model is on the real frames that come with the project (a KITTI street scene with
its LiDAR, two indoor scenes with 500 and 100 random depth points) and compare it with plain nearest and
linear interpolation of the same points. Errors are in metres against the measured depth."""

HELP_EPILOG = """\
output:
  evaluation.md (the table), evaluation.json, evaluation.png (a bar chart of the errors) and one
  panel_<case>.png per frame (image, measured depth, prediction, interpolation, error maps).

examples:
  python -m jarrn_deploy.model.evaluate                                         # the bundled model -> reports/evaluation/
  python -m jarrn_deploy.model.evaluate --model runs/kitti/best.safetensors --out reports/kitti
  jarrn evaluate --no-panels
"""


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jarrn evaluate", description=HELP_DESCRIPTION,
                                     epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None,
                        help="model file to evaluate (.safetensors, .pth); default: the bundled model")
    parser.add_argument("--out", type=Path, default=Path("reports/evaluation"),
                        help="folder for the report (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random indoor depth points (default 0)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (0, the default: all cores)")
    parser.add_argument("--device", default="auto",
                        help="'auto' (the first CUDA GPU when PyTorch sees one, else the CPU; default), 'cpu', 'cuda' "
                             "(= cuda:0) or 'cuda:N'")
    parser.add_argument("--no-panels", action="store_true", help="skip the per-frame picture panels (faster)")
    parser.add_argument("--held-out-root", type=Path, default=None,
                        help="also evaluate the held-out sets of an rgbd_extra folder (jarrn_deploy.model.rgbd_extra) and write "
                             "summary.md with the bundled cases and those sets (model, fill, nearest, linear, gain)")
    args = parser.parse_args(argv)
    if args.threads < 0:
        raise UsageError(f"--threads: expected a non-negative integer (0: torch's default), got {args.threads}")
    if args.model is not None and args.model.is_dir():
        raise InputError(f"--model: {args.model} is a folder, expected a checkpoint file")
    if args.held_out_root is not None and not args.held_out_root.is_dir():
        raise InputError(f"--held-out-root: expected an rgbd_extra folder, got {args.held_out_root}")
    repeated_options(parser, argv)
    from jarrn_deploy.memory import guard_disabled

    guard_disabled()  # a junk JARRN_MEMORY_GUARD value: a usage error before the work
    refuse_overwriting_inputs([args.out / name for name in REPORT_FILES], {"--model": args.model}, "--out")
    from jarrn_deploy.devices import resolve_device

    device = resolve_device(args.device)  # a bad or missing device fails before anything is written
    check_writable_folder(args.out, "--out")  # before the minutes of evaluation, not after
    print(plan_line(args), flush=True)

    import torch

    from jarrn_deploy.model.checkpoint import CheckpointError, load_model
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        network = load_model(args.model, device=device)
    except (FileNotFoundError, CheckpointError) as exc:
        raise InputError(f"--model: {exc}") from None
    label = Path(network.source_path or "model").name
    cases = evaluation_cases(load_real_frames(), seed=args.seed)
    print(f"evaluating {label} on {len(cases)} cases on {device}", flush=True)
    results, predictions = evaluate(network, cases, log=lambda line: print(line, flush=True))
    held_out = None
    if args.held_out_root is not None:
        from jarrn_deploy.model.heldout_eval import evaluate_held_out

        held_out = evaluate_held_out(network, args.held_out_root, seed=args.seed, panels=not args.no_panels,
                                     log=lambda line: print(line, flush=True))

    command = "python -m jarrn_deploy.model.evaluate" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    try:
        # All or nothing: every file is written into a hidden staging folder first, then moved in.
        with staged_outputs(args.out) as stage:
            _write_outputs(stage, args, network, label, command, device, results, cases, predictions)
            if held_out is not None:
                from jarrn_deploy.model.heldout_eval import write_report

                write_report(stage, held_out, results, label, command)
    except OSError as exc:
        raise OutputError(f"--out: could not write the report to {args.out} ({exc.strerror or exc}); "
                          "nothing was written") from None
    print(f"wrote {args.out}/evaluation.md (.json, .png{'' if args.no_panels else ', panel_*.png'})")
    return 0


def _write_outputs(stage: Path, args: argparse.Namespace, network, label: str, command: str,  # noqa: ANN001
                   device: str, results, cases, predictions) -> None:  # noqa: ANN001
    atomic_write_text(stage / "evaluation.md", render_markdown(results, label, command))
    payload = {"model": network.source_path or "", "config": network.config.to_dict(),
               "seed": args.seed, "device": device, "command": command,
               "cases": [{"name": r.name, "size": list(r.size), "points": r.points, "metrics": r.metrics,
                          "ratio_to_linear": r.ratio_to_linear, "model_seconds": r.model_seconds} for r in results]}
    atomic_write_text(stage / "evaluation.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_bytes(stage / "evaluation.png", rmse_chart(results, f"RMSE on the real frames: {label}"))
    if not args.no_panels:
        for case in cases:
            prediction, linear = predictions[case.name]
            safe = case.name.replace("@", "_at_")
            atomic_write_bytes(stage / f"panel_{safe}.png", panel(case, prediction, linear))


if __name__ == "__main__":
    raise SystemExit(main())
