"""The precision records and the ONNX graph reader beneath :mod:`jarrn_deploy.export.precisions` (import the public
names from there). Pure Python, no onnx import: ``--help`` texts, the engine manifest and the estimates read the
records, and the engine modules call :func:`onnx_precision`, from below the engine manifest that
:func:`jarrn_deploy.export.precisions.artifact_precision` reads (hence two modules: no import circle).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from jarrn_deploy.durations import Span
from jarrn_deploy.errors import InputError, UsageError

UNKNOWN = "unknown"
"""What :func:`onnx_precision` (and ``artifact_precision``) return for a file that records no precision and whose
graph no record's detector recognises (an engine without its manifest, a Q/DQ graph of another quantized type)."""

# onnx.TensorProto element types, spelled here so the records need no onnx import
_UINT8, _INT8, _FLOAT16 = 2, 3, 10


@dataclass(frozen=True)
class GraphSigns:
    """What the precision detectors look at in a graph (subgraphs included), read once by :func:`graph_signs`."""

    quantized_types: frozenset[int]
    """``onnx.TensorProto`` element types that QuantizeLinear produces and DequantizeLinear consumes."""
    float_types: frozenset[int]
    """Element types of the initialisers and of the Cast targets."""


@dataclass(frozen=True)
class PrecisionSpec:
    """Everything the project knows about one precision an exported graph (and the engine built from it) can have."""

    name: str
    """The name on the command line, in metadata, manifests and row keys: "fp32", "fp16", "int8"."""
    label: str
    """How reports, tables and benchmark rows write it: "FP32", "FP16", "INT8"."""
    summary: str
    """What it does to the graph, for ``--help`` (a phrase after the name)."""
    max_abs_m: float | None
    """Largest |ONNX - PyTorch FP32| allowed over every pixel of every validation case, metres (None: not checked)."""
    rmse_rel: float | None
    """How much the RMSE against ground truth may exceed PyTorch FP32's, a fraction, on every real frame (None: not
    checked)."""
    converter: str | None
    """``"module:function"`` the exporter calls lazily as ``f(model, calibration, options, log) -> (model, info)``;
    None for the precision the exporter traces (fp32)."""
    library: str | None
    """``"module:function"`` returning the name of the library that will convert (raising ``ExportError`` with the
    install command when none is installed); None when there is no converter."""
    conversion: str | None
    """The export's progress line while converting (None when there is no converter)."""
    detect: Callable[[GraphSigns], bool]
    """Whether a graph without a precision record has this precision; detectors are tried from the last record to the
    first, so a record comes after those whose signs its graphs may also carry (INT8 graphs may hold FP16 Casts)."""
    needs_calibration: bool
    """Whether the conversion always needs calibration data (Model Optimizer also uses it for the others)."""
    min_compute_capability: tuple[int, int] | None
    """The oldest NVIDIA compute capability with TensorRT kernels in this precision; None: any GPU."""
    export_s: Span
    """``(quickest, slowest)`` seconds ``python export/to_onnx.py --precision NAME`` took for the bundled model (2
    shared CPU cores; reports/first_use/README.md), for the line the export prints before it starts."""
    ort_tensorrt_precision_mode: str
    """``precision_mode`` of ONNX Runtime's TensorRT accelerator (Triton configs) for graphs of this precision: the
    graph's own Casts and Q/DQ decide, FP16 lets FP16 Casts run."""

    def tolerance_text(self) -> str:
        """The bound validation checks, as a person reads it ("max abs <= 0.001 m", "RMSE <= +2% per frame")."""
        return tolerance_text(self.max_abs_m, self.rmse_rel)


def tolerance_text(max_abs_m: float | None, rmse_rel: float | None) -> str:
    """Bounds as validation reports write them; "not checked" when both are None."""
    parts = ([f"max abs <= {max_abs_m:g} m"] if max_abs_m is not None else []) + \
            ([f"RMSE <= +{rmse_rel * 100:g}% per frame"] if rmse_rel is not None else [])
    return ", ".join(parts) or "not checked"


def _quantized_to(types: Iterable[int]) -> Callable[[GraphSigns], bool]:
    wanted = frozenset(types)
    return lambda signs: bool(signs.quantized_types & wanted)


PRECISION_SPECS: dict[str, PrecisionSpec] = {spec.name: spec for spec in (
    PrecisionSpec(
        name="fp32", label="FP32", summary="exact",
        max_abs_m=1e-3, rmse_rel=None,
        converter=None, library=None, conversion=None,
        detect=lambda signs: not signs.quantized_types,
        needs_calibration=False, min_compute_capability=None,
        export_s=(24.1, 85.1), ort_tensorrt_precision_mode="FP32",
    ),
    PrecisionSpec(
        name="fp16", label="FP16",
        summary="the two networks in half precision, depth arithmetic in fp32",
        max_abs_m=None, rmse_rel=0.02,
        converter="jarrn_deploy.export.precision.fp16:convert",
        library="jarrn_deploy.export.precision.libraries:fp16_library",
        conversion="converting to FP16 mixed precision",
        detect=lambda signs: _FLOAT16 in signs.float_types,
        needs_calibration=False, min_compute_capability=(5, 3),
        export_s=(242.2, 242.2), ort_tensorrt_precision_mode="FP16",
    ),
    PrecisionSpec(
        name="int8", label="INT8",
        summary="8-bit convolutions with explicit Q/DQ, calibrated on sample frames",
        max_abs_m=None, rmse_rel=0.05,
        converter="jarrn_deploy.export.precision.int8:convert",
        library="jarrn_deploy.export.precision.libraries:int8_backend",
        conversion="quantizing to INT8 (explicit Q/DQ)",
        detect=_quantized_to((_INT8, _UINT8)),
        needs_calibration=True, min_compute_capability=(6, 1),
        export_s=(216.5, 216.5), ort_tensorrt_precision_mode="FP32",
    ),
)}
"""Name -> record, in :data:`PRECISIONS` order: the one place a precision is added."""

PRECISIONS: tuple[str, ...] = tuple(PRECISION_SPECS)
"""Every precision ``export/to_onnx.py --precision`` produces (and the TensorRT engines built from those graphs)."""


def precision_spec(name: str, flag: str = "--precision") -> PrecisionSpec:
    """The record of ``name``; a :class:`UsageError` naming ``flag`` and the choices for any other value."""
    try:
        return PRECISION_SPECS[name]
    except (KeyError, TypeError):
        raise UsageError(f"{flag}: expected one of {', '.join(PRECISIONS)}, got {name!r}") from None


def check_precision(value: object, source: str, error: type[Exception] = InputError) -> str:
    """``value`` when it names a record, else ``error`` naming ``source`` and the precisions there are."""
    if value not in PRECISION_SPECS:
        raise error(f"{source}: precision {value!r} is not one the exporter produces ({', '.join(PRECISIONS)}); "
                    "export the graph with python export/to_onnx.py --precision")
    return str(value)


def load_function(dotted: str) -> Callable[..., Any]:
    """The function a record names as ``"module:function"`` (imported now, not when the record is read)."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------------------------------------------------
# reading an ONNX graph (a loaded onnx.ModelProto: this module imports no onnx)


def onnx_precision(model: Any, source: str = "the graph") -> str:
    """The precision of a loaded ONNX model: its metadata record (a ``metadata_props`` key ending in ``precision``,
    such as the exporter's ``jarrn.precision``; a value naming no record raises :class:`InputError` naming ``source``),
    else the first detector that recognises the graph (:attr:`PrecisionSpec.detect`), else :data:`UNKNOWN`."""
    for prop in model.metadata_props:
        if prop.key.lower().split(".")[-1].split(":")[-1] == "precision" and prop.value.strip():
            return check_precision(prop.value.strip().lower(), f"{source} (metadata {prop.key!r})")
    signs = graph_signs(model.graph)
    return next((spec.name for spec in reversed(PRECISION_SPECS.values()) if spec.detect(signs)), UNKNOWN)


def graph_signs(graph: Any) -> GraphSigns:
    """The quantized and float element types of ``graph`` and its subgraphs (an ``onnx.GraphProto``)."""
    graphs = list(_all_graphs(graph))
    types = _element_types(graphs)
    quantized, floats = set(), set()
    for g in graphs:
        floats.update(t.data_type for t in g.initializer)
        for node in g.node:
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "Cast" and "to" in attrs:
                floats.add(attrs["to"].i)
            elif node.op_type == "QuantizeLinear":
                has_zero_point = len(node.input) > 2 and bool(node.input[2])
                output_dtype = attrs["output_dtype"].i if "output_dtype" in attrs else 0
                # without a zero point or output_dtype, ONNX quantizes to uint8
                quantized_type = output_dtype or (types.get(node.input[2]) if has_zero_point else _UINT8)
                if quantized_type:
                    quantized.add(quantized_type)
            elif node.op_type == "DequantizeLinear":
                x_type = types.get(node.input[0])
                if x_type is None and len(node.input) > 2 and node.input[2]:
                    x_type = types.get(node.input[2])
                if x_type is not None:
                    quantized.add(x_type)
    return GraphSigns(frozenset(quantized), frozenset(floats))


def _all_graphs(graph: Any) -> Iterable[Any]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_graphs(attr.g)
            for sub in attr.graphs:
                yield from _all_graphs(sub)


def _element_types(graphs: list[Any]) -> dict[str, int]:
    """Tensor name -> element type, where the graphs state it (initialisers, Constant nodes, typed values)."""
    types: dict[str, int] = {}
    for g in graphs:
        for value in (*g.input, *g.value_info, *g.output):
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                types[value.name] = value.type.tensor_type.elem_type
        types.update((t.name, t.data_type) for t in g.initializer)
        for node in g.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value" and node.output:
                        types[node.output[0]] = attr.t.data_type
    return types
