"""FP16 mixed precision and INT8 explicit quantization of the exported graph, for TensorRT's strongly typed builds.

TensorRT 11 (and TRT 10 with ``STRONGLY_TYPED``) takes precision from the ONNX itself: FP16 tensors and Casts, INT8
``QuantizeLinear``/``DequantizeLinear`` pairs. Both conversions touch only the two U-Nets (node names starting with
:data:`export.onnx_graph.UNET_NODE_PREFIXES`); the contract part (validity mask, normalisation with its ReduceMax /
ReduceMin, padding, input concatenations, the rectification with its Sigmoid / Softmax, cropping, de-normalisation)
stays FP32, and the graph inputs and outputs stay float32.

Libraries, in order of preference (see export/README.md for why):

* FP16: NVIDIA Model Optimizer AutoCast (``modelopt.onnx.autocast``, the ``quant`` extra), else onnxconverter-common's
  ``float16.convert_float_to_float16``.
* INT8: Model Optimizer's ONNX PTQ (``modelopt.onnx.quantization.quantize``), else ONNX Runtime's ``quantize_static``
  in QDQ format with symmetric INT8 activations and symmetric per-channel INT8 weights (what TensorRT expects).

``JARRN_PRECISION_BACKEND=fallback`` forces the second choice (for comparisons and tests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx

from export.onnx_graph import UNET_NODE_PREFIXES, ExportError

# Nodes kept out of INT8 on top of everything outside the U-Nets: the whole visual branch (its coarse depth reaches the
# output directly: quantizing it moved the trained default model's RMSE by up to +77% on a real frame, see
# reports/cpu-*/report.md) and the refine branch's first and last convolution (raw sparse depth / mask in, the
# scale/offset/prob logits out). Measured with export/int8_sensitivity.py; numbers in export/README.md.
INT8_EXCLUDE: tuple[str, ...] = (
    r"^/network/rgb_x_block/",
    r"^/network/sfmap_block/sfmap_block\.(0|4)/Conv$",
)
# Op types that stay FP32 wherever they appear (they only appear outside the U-Nets in this graph).
FP32_OP_TYPES: tuple[str, ...] = (
    "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "Softmax", "Sigmoid", "Div", "Where", "Clip", "Pad",
)
INSTALL_HINT = (
    "pip install nvidia-modelopt onnx-graphsurgeon onnxscript lief cppimport (the project's 'quant' extra; not "
    "'nvidia-modelopt[onnx]', which replaces onnxruntime with onnxruntime-gpu on x86) "
    "or pip install onnxconverter-common"
)

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


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


def require_backend(precision: str) -> str:
    """The library that will do ``precision``; a one-line :class:`ExportError` with an install hint if none is there."""
    if precision == "fp16":
        backend = fp16_backend()
        if backend is None:
            raise ExportError(f"precision fp16 needs NVIDIA Model Optimizer or onnxconverter-common: {INSTALL_HINT}")
        return backend
    if precision == "int8":
        return int8_backend()
    return "none"


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def is_unet_node(node: onnx.NodeProto) -> bool:
    return node.name.startswith(UNET_NODE_PREFIXES)


def contract_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes outside the two U-Nets: the part that always stays FP32."""
    return [n.name for n in model.graph.node if not is_unet_node(n)]


def _ensure_node_names(model: onnx.ModelProto) -> None:
    used = Counter(n.name for n in model.graph.node)
    for i, node in enumerate(model.graph.node):
        if not node.name or used[node.name] > 1:
            node.name = f"{node.name or node.op_type}__{i}"


# ---------------------------------------------------------------------------------------------------------------------
# FP16


def to_fp16(model: onnx.ModelProto, calibration=None, *, log: Log = _quiet) -> tuple[onnx.ModelProto, dict]:
    """FP16 U-Nets, FP32 everywhere else, float32 graph I/O. Returns the new model and what was done.

    ``calibration`` (a :class:`export.calibration.CalibrationSet`) feeds AutoCast's reference run, which keeps in FP32
    any node whose values leave FP16's safe range; the onnxconverter-common fallback does not use it.
    """
    backend = require_backend("fp16")
    _ensure_node_names(model)
    keep = contract_nodes(model)
    log(f"FP16 with {backend}: {len(model.graph.node) - len(keep)} U-Net nodes to FP16, "
        f"{len(keep)} contract nodes FP32")
    overflow: list[str] = []
    if backend == "modelopt":
        converted, overflow = _fp16_modelopt(model, keep, calibration)
        library = f"nvidia-modelopt {_version('nvidia-modelopt')} (modelopt.onnx.autocast.convert_to_mixed_precision)"
        if overflow:
            log(f"AutoCast kept {len(overflow)} U-Net nodes in FP32 (values above 512 on the calibration data)")
    else:
        converted = _fp16_onnxconverter(model, keep)
        library = f"onnxconverter-common {_version('onnxconverter-common')} (float16.convert_float_to_float16)"
    converted = _drop_symbolic_shapes(converted)
    fp32_ops = sorted({n.op_type for n in model.graph.node if n.name in set(keep)})
    info = {
        "library": library,
        "fp32_part": "everything outside the U-Nets (" + ", ".join(fp32_ops) + ")",
        "fp32_node_count": len(keep),
        "unet_nodes_kept_fp32_for_range": overflow,
        "casts": sum(1 for n in converted.graph.node if n.op_type == "Cast"),
    }
    return converted, info


def _drop_symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the intermediate shape annotations by plain ONNX shape inference.

    Model Optimizer annotates every tensor with ONNX Runtime's symbolic shapes (``(Pad_502_o0__d2//2)`` ...). ONNX
    Runtime's allocator trusts equal dimension names, and on the push-pull fill's pad-to-even pyramid some are wrong:
    the session then fails with "Shape mismatch attempting to re-use buffer" at sizes other than the calibration one.
    """
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def _fp16_onnxconverter(model: onnx.ModelProto, keep: list[str]) -> onnx.ModelProto:
    from onnxconverter_common import float16

    with warnings_silenced():
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            # Blocking Resize (the converter's default) would wrap all 12 upsamplings in Casts; nearest-neighbour
            # upsampling is exact in FP16. Its scales input must stay float32: restored below.
            op_block_list=list(FP32_OP_TYPES),
            node_block_list=keep,
            min_positive_val=1e-7,
            max_finite_val=1e4,
        )
    return remove_cast_round_trips(_float32_resize_parameters(converted))


def _float32_resize_parameters(model: onnx.ModelProto) -> onnx.ModelProto:
    """Resize's ``roi`` and ``scales`` inputs must be float32 (the converter turns the shared constant into FP16)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        for index in (1, 2):
            name = node.input[index] if len(node.input) > index else ""
            init = inits.get(name)
            if init is None or init.data_type != onnx.TensorProto.FLOAT16:
                continue
            fp32_name = f"{name}_fp32"
            if fp32_name not in inits:
                array = numpy_helper.to_array(init).astype(np.float32)
                inits[fp32_name] = numpy_helper.from_array(array, fp32_name)
                model.graph.initializer.append(inits[fp32_name])
            node.input[index] = fp32_name
    used = {name for node in model.graph.node for name in node.input}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    return model


def _fp16_modelopt(model: onnx.ModelProto, keep: list[str], calibration) -> tuple[onnx.ModelProto, list[str]]:
    """AutoCast in two passes; returns the model and the U-Net nodes kept in FP32 for their value range.

    Pass 1 runs AutoCast's reference check (nodes whose values exceed ``data_max`` = 512 stay FP32) on a copy with the
    calibration size fixed and the shape arithmetic folded: on the dynamic graph, ONNX Runtime's symbolic shape
    inference inside that check spends minutes simplifying the nested padding/upsampling size expressions. Pass 2
    converts the dynamic graph with those nodes excluded and no reference run (``data_max=inf``).
    """
    from modelopt.onnx.autocast import convert_to_mixed_precision

    overflow: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jarrn_fp16_") as tmp:
        if calibration is not None:
            import onnxslim

            feeds = _common_size(calibration.feeds())[:4]
            stacked = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
            shapes = [f"{k}:{','.join(str(d) for d in v.shape)}" for k, v in stacked.items()]
            data = Path(tmp) / "reference.npz"
            np.savez(data, **stacked)
            static = Path(tmp) / "static.onnx"
            onnx.save(onnxslim.slim(model, input_shapes=shapes), str(static))
            static_keep = contract_nodes(onnx.load(str(static)))
            with warnings_silenced(), _quiet_modelopt():
                probe = convert_to_mixed_precision(
                    onnx_path=str(static),
                    low_precision_type="fp16",
                    nodes_to_exclude=[f"^{re.escape(name)}$" for name in static_keep],
                    op_types_to_exclude=list(FP32_OP_TYPES),
                    keep_io_types=True,
                    providers=["cpu"],
                    calibration_data=str(data),
                )
            overflow = _unet_nodes_in_fp32(probe)
        source = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(source))
        with warnings_silenced(), _quiet_modelopt():
            converted = convert_to_mixed_precision(
                onnx_path=str(source),
                low_precision_type="fp16",
                nodes_to_exclude=[f"^{re.escape(name)}$" for name in [*keep, *overflow]],
                op_types_to_exclude=list(FP32_OP_TYPES),
                keep_io_types=True,
                providers=["cpu"],
                data_max=float("inf"),
            )
    return converted, overflow


def _unet_nodes_in_fp32(model: onnx.ModelProto) -> list[str]:
    """U-Net nodes (other than Casts) whose first output is float32 in a converted model."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    return [n.name for n in model.graph.node
            if is_unet_node(n) and n.op_type != "Cast" and types.get(n.output[0]) == onnx.TensorProto.FLOAT]


def remove_cast_round_trips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop ``Cast(to fp16) -> Cast(to fp32)`` chains that narrow an FP32 value on its way between FP32 nodes.

    onnxconverter-common types every tensor between two blocked (FP32) nodes as FP16 and casts it down and up again,
    which would silently round the normalisation scale and the rectified depth to FP16, and it leaves an output that
    a blocked node produces in FP16 despite ``keep_io_types``. This restores the FP32 edges and float32 outputs.
    """
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def cast_to(node: onnx.NodeProto) -> int | None:
        if node.op_type != "Cast":
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    alias: dict[str, str] = {}  # tensor name -> the FP32 tensor it equals
    dropped: set[int] = set()
    for down in graph.node:
        if cast_to(down) != onnx.TensorProto.FLOAT16 or types.get(down.input[0]) != onnx.TensorProto.FLOAT:
            continue
        source, narrowed = down.input[0], down.output[0]
        users = consumers.get(narrowed, [])
        ups = [u for u in users if cast_to(u) == onnx.TensorProto.FLOAT]
        for up in ups:
            alias[up.output[0]] = source
            dropped.add(id(up))
        if narrowed in outputs:
            alias[narrowed] = source
        if len(ups) == len(users):
            dropped.add(id(down))
    if not alias:
        return model
    kept = [n for n in graph.node if id(n) not in dropped]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    for output in graph.output:
        source = alias.get(output.name)
        if source is None:
            continue
        # A graph output keeps its name: the FP32 tensor it equals takes that name everywhere.
        for node in kept:
            for field_ in (node.input, node.output):
                for i, name in enumerate(field_):
                    if name == source:
                        field_[i] = output.name
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    del graph.node[:]
    graph.node.extend(kept)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


@contextlib.contextmanager
def _skip_output_shape_reconciliation():
    """Skip Model Optimizer's re-derivation of the graph outputs' shapes (``clear_stale_value_info``).

    It exists for models with stale output annotations; ours come straight from the exporter and are checked after
    conversion. On this graph with dynamic H and W it runs ONNX Runtime's symbolic shape inference, whose sympy
    simplification of the nested pad/stride/upsample size expressions takes minutes (measured: 74 of 77 s of an INT8
    export of the tiny test network). Without the private hook (another Model Optimizer version) nothing is patched.
    """
    try:
        import modelopt.onnx.utils as mo_utils
    except ImportError:
        yield
        return
    original = getattr(mo_utils, "_reconcile_stale_output_shapes", None)
    if original is None:
        yield
        return
    mo_utils._reconcile_stale_output_shapes = lambda model: 0
    try:
        yield
    finally:
        mo_utils._reconcile_stale_output_shapes = original


@contextlib.contextmanager
def _quiet_modelopt():
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


# ---------------------------------------------------------------------------------------------------------------------
# INT8


def nodes_matching(model: onnx.ModelProto, patterns: Iterable[str]) -> list[str]:
    compiled = [re.compile(p) for p in patterns]
    return [n.name for n in model.graph.node if any(c.search(n.name) for c in compiled)]


def to_int8(
    model: onnx.ModelProto,
    calibration,  # export.calibration.CalibrationSet
    *,
    exclude: tuple[str, ...] | None = None,
    method: str = "max",
    log: Log = _quiet,
) -> tuple[onnx.ModelProto, dict]:
    """Explicit Q/DQ on the U-Nets' convolutions, calibrated on ``calibration``; returns the model and a summary."""
    backend = require_backend("int8")
    _ensure_node_names(model)
    patterns = INT8_EXCLUDE if exclude is None else tuple(exclude)
    try:
        matched = nodes_matching(model, patterns)
    except re.error as exc:
        raise ExportError(f"int8_exclude: bad regular expression ({exc})") from None
    excluded = sorted(set(contract_nodes(model)) | set(matched))
    excluded_set = set(excluded)
    excluded_convs = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name in excluded_set]
    to_quantize = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in excluded_set]
    log(f"INT8 with {backend}: {len(excluded_convs)} convolutions excluded, calibrating on "
        f"{calibration.sample_count} samples")
    if backend == "modelopt":
        quantized = _int8_modelopt(model, calibration, excluded, method)
        library = f"nvidia-modelopt {_version('nvidia-modelopt')} (modelopt.onnx.quantization.quantize)"
    else:
        quantized = _int8_onnxruntime(model, calibration, to_quantize, method)
        library = f"onnxruntime {_version('onnxruntime')} (quantization.quantize_static, QDQ)"
    quantized = _drop_symbolic_shapes(quantized)
    ops = Counter(n.op_type for n in quantized.graph.node)
    convs = quantized_convs(quantized)
    log(f"INT8: {len(convs)} of {ops.get('Conv', 0)} convolutions run in INT8")
    info = {
        "library": library,
        "quantized_convs": len(convs),
        "convs": ops.get("Conv", 0),
        "fp32_convs": sorted(excluded_convs),
        "exclude_patterns": list(patterns),
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "calibration": calibration.description,
        "calibration_sha256": calibration.sha256(),
        "activations": f"int8 symmetric per-tensor ({method} calibration)",
        "weights": "int8 symmetric per-channel",
    }
    return quantized, info


def quantized_convs(model: onnx.ModelProto) -> list[str]:
    """Convolutions whose data input and weight both come from DequantizeLinear (they run in INT8 in TensorRT)."""
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and n.input[0] in dq_outputs and n.input[1] in dq_outputs]


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a CalibrationSet, with a progress bar."""

    def __init__(self, calibration) -> None:
        from tqdm.auto import tqdm

        self._feeds = calibration.feeds()
        self._bar = tqdm(total=len(self._feeds), desc="calibrating", unit="batch", leave=False,
                         disable=None)
        self._index = 0

    def get_next(self):
        if self._index >= len(self._feeds):
            self._bar.close()
            return None
        feed = self._feeds[self._index]
        self._index += 1
        self._bar.update(1)
        return feed

    def get_first(self):
        return self._feeds[0]

    def rewind(self) -> None:
        self._index = 0
        self._bar.reset()


def _int8_onnxruntime(model: onnx.ModelProto, calibration, to_quantize: list[str], method: str) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="jarrn_int8_") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        ort_logger = logging.getLogger("onnxruntime")
        previous = ort_logger.level
        ort_logger.setLevel(logging.ERROR)
        try:
            quantize_static(
                str(source),
                str(target),
                _Reader(calibration),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                nodes_to_quantize=to_quantize,
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Entropy if method == "entropy" else CalibrationMethod.MinMax,
                extra_options={
                    # TensorRT: zero points must be 0 (symmetric), biases stay float (TRT fuses them itself).
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                },
                calibration_providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # ORT raises plain Exceptions for shape/type problems in the calibration feeds
            raise ExportError(f"int8: quantization failed ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        finally:
            ort_logger.setLevel(previous)
        return onnx.load(str(target))


def _int8_modelopt(model: onnx.ModelProto, calibration, excluded: list[str], method: str) -> onnx.ModelProto:
    from modelopt.onnx.quantization import quantize

    with tempfile.TemporaryDirectory(prefix="jarrn_int8_") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        try:
            with warnings_silenced(), _quiet_modelopt(), _skip_output_shape_reconciliation():
                quantize(
                    onnx_path=str(source),
                    quantize_mode="int8",
                    # A reader (rather than one stacked array) lets the samples keep their own sizes.
                    calibration_data_reader=_Reader(calibration),
                    calibration_method=method,
                    calibration_eps=["cpu"],
                    # Model Optimizer's TensorRT-oriented placement (Conv inputs, residual Adds, Resize, ...) minus
                    # the excluded nodes.
                    nodes_to_exclude=[f"^{re.escape(name)}$" for name in excluded],
                    output_path=str(target),
                    high_precision_dtype="fp32",
                    log_level="ERROR",
                )
        except Exception as exc:  # Model Optimizer raises assorted types for bad data; report them in one line
            raise ExportError(f"int8: quantization failed ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        return onnx.load(str(target))


def _common_size(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    sizes = Counter(tuple(f[next(iter(f))].shape[2:]) for f in feeds)
    height, width = sizes.most_common(1)[0][0]
    out = []
    for feed in feeds:
        fitted = {}
        for key, value in feed.items():
            value = value[:, :, :height, :width]
            pad = ((0, 0), (0, 0), (0, height - value.shape[2]), (0, width - value.shape[3]))
            fitted[key] = np.pad(value, pad, mode="edge" if value.shape[1] == 3 else "constant")
        out.append(fitted)
    return out
