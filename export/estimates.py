"""How long the export steps take, for the line a long command prints before it starts. Pure Python (no torch), so
the commands can print it at once."""

from __future__ import annotations

import os

MEASURED_CORES = 2
"""The CPU cores of the machine the times below were measured on (shared with other jobs, no GPU)."""
MEASURED_S: dict[str, float] = {"fp32": 25, "fp16": 240, "int8": 215, "quick": 40, "full": 120}
"""Seconds for the bundled model, the quickest of the runs in reports/first_use/README.md: the export of each precision
(``python export/to_onnx.py --precision P --no-validate``) and the validation of its FP32 graph with each case set
(``python export/to_onnx.py --validation quick|full``)."""


def about(seconds: float) -> str:
    """``seconds`` rounded for a person: "40 s", "4 min"."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def on_this_machine() -> str:
    """Where the estimate was measured, next to this machine's core count."""
    cores = os.cpu_count() or 1
    if cores <= MEASURED_CORES:
        return f"on {MEASURED_CORES} CPU cores"
    return f"on {MEASURED_CORES} CPU cores, less on this machine's {cores}"
