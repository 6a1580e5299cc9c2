"""The precision registry: one record per precision an exported graph (and the engine built from it) can have, and
the one reader of "which precision is this file". Pure Python plus ``onnx`` (a base dependency) to read a graph; no
torch, no ONNX Runtime session.

Public API (stable; the export, validation, engine builder, Triton repository, runtime and benchmarks use it):

- :class:`PrecisionSpec`: ``name`` ("fp32"), ``label`` ("FP32", for reports and rows), ``summary`` (for ``--help``),
  the tolerances ``max_abs_m`` (vs PyTorch FP32, metres) and ``rmse_rel`` (RMSE vs ground truth above PyTorch
  FP32's, a fraction), both None where not checked, and ``tolerance_text()``; ``converter`` and ``library``
  (``"module:function"``, applied lazily by the exporter; None for fp32), ``conversion`` (the export's stage line),
  ``detect`` (recognises the precision in a graph without metadata), ``needs_calibration``,
  ``min_compute_capability`` (``(major, minor)`` or None), ``export_s`` (the export's measured seconds) and
  ``ort_tensorrt_precision_mode``.
- :data:`PRECISIONS`: the names, in order ("fp32", "fp16", "int8"); :data:`PRECISION_SPECS`: name -> record.
- :func:`precision_spec` ``(name, flag="--precision")``: the record, or a :class:`jarrn_deploy.errors.UsageError`
  naming ``flag`` and the choices.
- :func:`artifact_precision` ``(path)``: a registry name or :data:`UNKNOWN`, for an ONNX file or an engine.
- :data:`UNKNOWN`: ``"unknown"``, the one answer for a file that records no precision.

Adding a precision: its record in ``export/precision_specs.py`` (:data:`PRECISION_SPECS`), its converter module under
``export/precision/`` (``convert`` and a library check), their tests, and the docs.
"""

from __future__ import annotations

import os
from pathlib import Path

from jarrn_deploy.errors import InputError
from jarrn_deploy.export.precision_specs import (
    PRECISION_SPECS,
    PRECISIONS,
    UNKNOWN,
    GraphSigns,
    PrecisionSpec,
    check_precision,
    graph_signs,
    load_function,
    onnx_precision,
    precision_spec,
    tolerance_text,
)

__all__ = [
    "PRECISIONS",
    "PRECISION_SPECS",
    "UNKNOWN",
    "GraphSigns",
    "PrecisionSpec",
    "artifact_precision",
    "check_precision",
    "graph_signs",
    "load_function",
    "onnx_precision",
    "precision_spec",
    "tolerance_text",
]

ONNX_SUFFIX = ".onnx"


def artifact_precision(path: str | os.PathLike) -> str:
    """The precision of an exported file, one of :data:`PRECISIONS` or :data:`UNKNOWN`:

    - ``*.onnx``: its metadata record (``jarrn.precision``), else what its graph shows (:func:`onnx_precision`);
    - anything else is taken for an engine: the precision in its manifest ``<engine>.json``
      (:mod:`jarrn_deploy.export.engine.manifest`), :data:`UNKNOWN` without one.

    Also :data:`UNKNOWN` for an ONNX file where ``onnx`` is not installed (the runtime's torch-free floor: numpy,
    onnxruntime and pillow), so a label never stops a run. Raises :class:`InputError` naming the path when it is
    missing or not a readable ONNX file, or when its record names a precision outside the registry (an invalid
    manifest raises its ``EngineFileError``, an InputError too).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ONNX_SUFFIX:
        try:
            import onnx
        except ImportError:
            return UNKNOWN

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, ValidationError, OSError ...
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{path}: not a readable ONNX file ({reason})") from None
        return onnx_precision(model, str(path))
    from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path

    manifest = manifest_path(path)
    if not manifest.is_file():
        return UNKNOWN
    return EngineManifest.load(manifest).precision
