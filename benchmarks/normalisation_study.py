"""Which per-image depth normalisation should the tensor contract use? Measured on the bundled real frames.

Training normalises each crop's ground truth to [0, 1]; at inference only the sparse points are known, so the
contract normalises by statistics of the sparse depth. This script measures, for each candidate ('max': divide by
the largest sparse depth; 'minmax': map [min, max] of the sparse depth to [0, 1]):

* input fit (needs no weights): where the frame's ground truth lands after that normalisation, i.e. how far the
  network's inputs and targets stray from the [0, 1] range it was trained on (share of GT pixels below 0 / above 1,
  and the 1st and 99th percentiles);
* accuracy (with ``--model``): RMSE in metres of the model run with each normalisation.

    python benchmarks/normalisation_study.py [--model CHECKPOINT] [--out reports/normalisation]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from jarrn_deploy.model.checkpoint import load_model  # noqa: E402
from jarrn_deploy.model.metric_jarrn import normalise_sparse  # noqa: E402
from jarrn_deploy.model.metrics import depth_metrics  # noqa: E402
from jarrn_deploy.model.metric_jarrn import DEPTH_NORMALISATIONS  # noqa: E402
from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames  # noqa: E402


@dataclass(frozen=True)
class InputFit:
    """Where the ground truth of one case lands after a sparse-derived normalisation."""

    case: str
    """Evaluation case name (frame@points)."""
    method: str
    """Normalisation method."""
    below_zero: float
    """Share of valid GT pixels normalised below 0."""
    above_one: float
    """Share of valid GT pixels normalised above 1."""
    p01: float
    """1st percentile of the normalised GT."""
    p99: float
    """99th percentile of the normalised GT."""


def input_fit(case_name: str, sparse: np.ndarray, gt: np.ndarray, method: str) -> InputFit:
    sparse_t = torch.from_numpy(sparse)[None, None]
    _, low, value_range = normalise_sparse(sparse_t, (sparse_t > 0).float(), method)
    normalised = (gt[gt > 0] - float(low)) / float(value_range)
    return InputFit(
        case_name, method, float((normalised < 0).mean()), float((normalised > 1).mean()),
        float(np.percentile(normalised, 1)), float(np.percentile(normalised, 99)),
    )


def model_rmse(checkpoint: str, cases, method: str) -> dict[str, float]:
    network = load_model(checkpoint, depth_normalisation=method)
    return {case.name: depth_metrics(network.complete(case.rgb, case.sparse), case.gt).rmse for case in cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint to also measure RMSE with each normalisation (default: fit only)")
    parser.add_argument("--out", default="reports/normalisation", help="directory for normalisation.md and .json")
    args = parser.parse_args(argv)

    cases = evaluation_cases(load_real_frames())
    methods = sorted(DEPTH_NORMALISATIONS)
    fits = [input_fit(c.name, c.sparse, c.gt, m) for c in cases for m in methods]
    lines = ["# Depth normalisation: measured on the bundled real frames", "",
             "Input fit: valid ground truth after normalising by the sparse input's statistics (training range [0, 1]).",
             "", "| case | method | GT < 0 | GT > 1 | p1 | p99 |", "|---|---|---|---|---|---|"]
    lines += [f"| {f.case} | {f.method} | {f.below_zero:.1%} | {f.above_one:.1%} | {f.p01:.3f} | {f.p99:.3f} |" for f in fits]
    results: dict = {"input_fit": [asdict(f) for f in fits]}
    if args.model:
        started = time.perf_counter()
        rmse = {m: model_rmse(args.model, cases, m) for m in methods}
        results["rmse_m"] = rmse
        lines += ["", f"RMSE (m) of `{args.model}` run with each normalisation "
                  f"(trained with '{load_model(args.model).config.depth_normalisation}'):", "",
                  "| case | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        lines += [f"| {c.name} | " + " | ".join(f"{rmse[m][c.name]:.3f}" for m in methods) + " |" for c in cases]
        print(f"model runs took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "normalisation.md").write_text("\n".join(lines) + "\n")
    (out / "normalisation.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
