"""The line ``jarrn evaluate`` and ``jarrn train`` print before their work: what, how long here, how to do less."""

from __future__ import annotations

import argparse
from pathlib import Path

from jarrn_deploy.model.evaluate import EVALUATE_S, plan_line as evaluate_line
from jarrn_deploy.model.train_options import CPU_SAMPLES_PER_S, CPU_VALIDATION_S, build_parser, plan_line as train_line
from jarrn_deploy.durations import about


def _evaluate_args(**changes) -> argparse.Namespace:
    defaults = dict(model=None, out=Path("reports/evaluation"), no_panels=False, held_out_root=None)
    return argparse.Namespace(**{**defaults, **changes})


def test_evaluate_line_gives_the_measured_time_and_what_can_be_skipped() -> None:
    line = evaluate_line(_evaluate_args())
    assert line.startswith("evaluating the bundled model on the bundled real frames")
    assert f": {about(EVALUATE_S)} on 2 CPU cores" in line and "--no-panels skips the pictures" in line
    other = evaluate_line(_evaluate_args(model=Path("big.safetensors"), no_panels=True, held_out_root=Path("x")))
    assert "larger models take longer" in other and "held-out sets in x" in other and "--no-panels" not in other


def test_train_line_follows_from_samples_epochs_and_validations() -> None:
    args = build_parser().parse_args(["--epochs", "2", "--epoch-samples", "64", "--val-every", "0"])
    line = train_line(args)
    seconds = 2 * 64 / CPU_SAMPLES_PER_S + 1 * CPU_VALIDATION_S
    assert line.startswith("training 2 epochs x 64 samples (32 steps of 4) with 1 validation(s)")
    assert f"about {about(seconds)} on 2 CPU cores" in line and "--epochs 1 --epoch-samples 64" in line
    assert "0 validation(s)" in train_line(build_parser().parse_args(["--epoch-samples", "8", "--val-every", "-1"]))


def test_train_line_says_what_the_time_depends_on_outside_the_measured_defaults() -> None:
    full = train_line(build_parser().parse_args(["--epoch-samples", "64", "--config", "full"]))
    assert "the time depends on the model, crop and device" in full and "about" not in full.split("(")[0]
    dataset = train_line(build_parser().parse_args(["--data", "kitti", "--data-root", "k"]))
    assert "the time follows from its size" in dataset and "--time-limit-min" in dataset
