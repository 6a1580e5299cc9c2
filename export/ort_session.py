"""The one way to open an ONNX Runtime session over an exported graph: session options, and a one-line
:class:`~jarrn_deploy.export.graph_check.GraphError` for a file ONNX Runtime cannot load instead of its traceback.

It lives in ``export/`` because every user may import it there: export validation, the runtime's ONNX Runtime backend
and the benchmarks (imports go model -> export -> runtime -> benchmarks, never back). Pure Python plus onnxruntime,
imported lazily: no torch, no onnx package. Checking that the graph is a jarrn graph is the caller's next step
(:func:`jarrn_deploy.export.graph_check.check_graph`), because the runtime keeps what that check returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from jarrn_deploy.export.graph_check import GraphError
from jarrn_deploy.errors import UnavailableError

ORT_INSTALL_HINT = (
    "onnxruntime is not installed: `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` "
    "(CUDA and TensorRT execution providers; not both packages at once)"
)
CPU_ONLY = ("CPUExecutionProvider",)


def import_ort(error: type[Exception] = UnavailableError) -> Any:
    """The onnxruntime module, or ``error`` (:class:`jarrn_deploy.errors.UnavailableError`) saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise error(ORT_INSTALL_HINT) from exc
    return onnxruntime


def open_session(
    path: str | os.PathLike,
    providers: Sequence[Any] = CPU_ONLY,
    *,
    ort: Any = None,
    options: Any = None,
    intra_op_threads: int | None = None,
    optimization: str | None = None,
    log_severity: int | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` over the graph at ``path``.

    ``options``: a prepared ``SessionOptions`` (then the three settings below are not applied); otherwise new options
    with ``intra_op_threads`` (None/0: ONNX Runtime's default), ``optimization`` (a ``GraphOptimizationLevel`` name such
    as "ORT_ENABLE_ALL"; None: the default) and ``log_severity`` (3 = errors only; None: the default).
    ``ort``: the onnxruntime module when the caller already imported it (the runtime raises its own install error).
    """
    ort = ort if ort is not None else import_ort()
    if options is None:
        options = ort.SessionOptions()
        if optimization is not None:
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        if log_severity is not None:
            options.log_severity_level = int(log_severity)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for bad files
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise GraphError(f"{path}: ONNX Runtime could not load the model ({type(exc).__name__}: {first_line})") \
            from None
