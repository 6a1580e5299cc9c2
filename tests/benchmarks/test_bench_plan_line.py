"""The line ``jarrn bench`` prints before its work: what is measured, how long it takes here, how to measure less."""

from __future__ import annotations

from jarrn_deploy.benchmarks.run import FULL_S, QUICK_S, build_parser, plan_line, resolve_args
from jarrn_deploy.durations import about


def _line(*argv: str) -> str:
    return plan_line(resolve_args(build_parser().parse_args(list(argv))))


def test_quick_and_full_runs_give_their_measured_times() -> None:
    quick = _line("--quick")
    assert f"about {about(QUICK_S)} on 2 CPU cores" in quick and "(320x320, batch 1, accuracy on 2 real-frame cases)" in quick
    full = _line()
    assert f"about {about(FULL_S)} on 2 CPU cores for the defaults" in full and f"--quick takes about {about(QUICK_S)}" in full


def test_the_line_names_the_chosen_rows_and_sizes() -> None:
    line = _line("--backends", "onnxruntime", "--precisions", "fp16", "--sizes", "64x64", "--cases", "none")
    assert line.startswith("benchmarking onnxruntime x fp16 where this machine runs them (64x64, batch 1,4, no accuracy)")
