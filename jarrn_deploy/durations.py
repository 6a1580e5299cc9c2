"""Measured durations as a person reads them, for the line a long command prints before it starts ("about 40 s",
"1 to 3.5 min on 2 CPU cores"). Pure Python, so every layer can print it at once; the figures themselves live next to
each command (``export/estimates.py``, ``model/evaluate.py``, ``model/train_options.py``, ``benchmarks/run.py``)."""

from __future__ import annotations

import math
import os

MEASURED_CORES = 2
"""The CPU cores of the machine the estimates were measured on (shared with other jobs, no GPU)."""

Span = tuple[float, float]
"""``(quickest, slowest)`` measured seconds of one step."""


def total(*spans: Span) -> Span:
    """The span of steps run one after the other."""
    return sum(s[0] for s in spans), sum(s[1] for s in spans)


def _minutes(seconds: float, rounding) -> str:  # noqa: ANN001
    return f"{rounding(seconds / 30) / 2:g}"


def about(seconds: float | Span) -> str:
    """``seconds`` rounded for a person ("40 s", "4 min", "11 h"), or a ``(quickest, slowest)`` span, in minutes widened to
    half minutes ("24 to 85 s", "40 s to 2 min", "1 to 3.5 min")."""
    if not isinstance(seconds, tuple):
        if seconds >= 3 * 3600:
            return f"{seconds / 3600:.0f} h"
        return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    low, high = seconds
    if low == high:
        return about(low)
    if high < 90:
        return f"{low:.0f} to {high:.0f} s"
    top = _minutes(high, math.ceil)
    if low < 60:
        return f"{low:.0f} s to {top} min"
    bottom = _minutes(low, math.floor)
    return f"{top} min" if bottom == top else f"{bottom} to {top} min"


def on_this_machine() -> str:
    """Where the estimate was measured, next to this machine's core count."""
    cores = os.cpu_count() or 1
    if cores <= MEASURED_CORES:
        return f"on {MEASURED_CORES} CPU cores"
    return f"on {MEASURED_CORES} CPU cores, less on this machine's {cores}"
