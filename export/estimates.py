"""How long the export steps take, for the line a long command prints before it starts. Pure Python (no torch), so
the commands can print it at once. The figures are the quickest and slowest runs in reports/first_use/README.md (a
shared 2-core machine, load average 1.7 to 8), kept here and, for the export of each precision, in its registry record
(:mod:`jarrn_deploy.export.precisions`): the README's timing table quotes them."""

from __future__ import annotations

from jarrn_deploy.durations import MEASURED_CORES, Span, about, on_this_machine, total
from jarrn_deploy.export.precisions import PRECISION_SPECS

__all__ = ["MEASURED_CORES", "MEASURED_S", "Span", "about", "on_this_machine", "total"]

MEASURED_S: dict[str, Span] = {
    **{name: spec.export_s for name, spec in PRECISION_SPECS.items()},
    "quick": (39.7, 114.1), "full": (117.7, 187.6),
}
"""Seconds for the bundled model, ``(quickest, slowest)`` as ``python export/to_onnx.py`` printed them: the export of
each precision (``--precision P``: its registry record's ``export_s``; FP16 and INT8 measured once) and the validation
of its FP32 graph with each case set (``--validation quick|full``). Whole commands take a few seconds more (start-up):
1 min 21 s to 3 min 29 s for the default ``jarrn export``, whose steps add up to 64 to 199 s."""
