"""Which library converts each precision (NVIDIA Model Optimizer first, then the fallbacks), their versions, and
the context managers that keep them quiet and fast.

``JARRN_PRECISION_BACKEND=fallback`` forces the fallbacks (for comparisons and tests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os

from jarrn_deploy.export.export_errors import ExportError

INSTALL_HINT = (
    "pip install nvidia-modelopt onnx-graphsurgeon onnxscript lief cppimport (the project's 'quant' extra; not "
    "'nvidia-modelopt[onnx]', which replaces onnxruntime with onnxruntime-gpu on x86) "
    "or pip install onnxconverter-common"
)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _modelopt_usable(submodule: str) -> bool:
    if os.environ.get("JARRN_PRECISION_BACKEND", "").lower() == "fallback":
        return False
    if not _has("modelopt"):
        return False
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            __import__(submodule)
    except Exception:  # a broken optional install (e.g. missing GPU wheels) means: use the fallback
        return False
    return True


def fp16_backend() -> str | None:
    """'modelopt', 'onnxconverter-common' or None (no FP16 library installed)."""
    if _modelopt_usable("modelopt.onnx.autocast"):
        return "modelopt"
    if _has("onnxconverter_common"):
        return "onnxconverter-common"
    return None


def int8_backend() -> str:
    """'modelopt' or 'onnxruntime' (always there: onnxruntime is a core dependency)."""
    if _modelopt_usable("modelopt.onnx.quantization"):
        return "modelopt"
    return "onnxruntime"


def fp16_library() -> str:
    """:func:`fp16_backend`, or a one-line :class:`ExportError` with the install command when none is installed."""
    backend = fp16_backend()
    if backend is None:
        raise ExportError(f"precision fp16 needs NVIDIA Model Optimizer or onnxconverter-common: {INSTALL_HINT}")
    return backend


def require_backend(precision: str) -> str:
    """The library that will convert to ``precision`` (its registry record's ``library``; "none" for a precision
    without a converter); a one-line :class:`ExportError` with the install command if none is there, and an
    :class:`ExportError` naming the choices for a precision outside the registry."""
    from jarrn_deploy.export.precisions import PRECISION_SPECS, PRECISIONS, load_function

    spec = PRECISION_SPECS.get(precision)
    if spec is None:
        raise ExportError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return "none" if spec.library is None else load_function(spec.library)()


def library_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


@contextlib.contextmanager
def quiet_modelopt():
    """Model Optimizer logs at INFO through its own logger and prints NVML errors on GPU-less machines."""
    loggers = [logging.getLogger(name) for name in ("modelopt", "modelopt.onnx", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def warnings_silenced():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
