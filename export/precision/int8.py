"""INT8 explicit quantization: Q/DQ on the U-Nets' convolutions, calibrated on real and synthetic frames (Model
Optimizer's ONNX PTQ, else ONNX Runtime's ``quantize_static`` in QDQ format, symmetric, per-channel weights)."""

from __future__ import annotations

import logging
import re
import tempfile
from collections import Counter
from pathlib import Path

import onnx

from jarrn_deploy.export.export_errors import ExportError
from jarrn_deploy.export.precision.graph import contract_nodes, drop_symbolic_shapes, ensure_node_names, nodes_matching
from jarrn_deploy.progress import Log, quiet
from jarrn_deploy.export.precision.libraries import (
    library_version,
    quiet_modelopt,
    require_backend,
    warnings_silenced,
)

# Nodes kept out of INT8 on top of everything outside the U-Nets: the whole visual branch (its coarse depth reaches the
# output directly: quantizing it moved the trained default model's RMSE by up to +77% on a real frame, see
# reports/cpu-*/report.md) and the refine branch's first and last convolution (raw sparse depth / mask in, the
# scale/offset/prob logits out). Measured with export/int8_sensitivity.py; numbers in export/README.md.
INT8_EXCLUDE: tuple[str, ...] = (
    r"^/network/rgb_x_block/",
    r"^/network/sfmap_block/sfmap_block\.(0|4)/Conv$",
)


def convert(model: onnx.ModelProto, calibration, options, log: Log = quiet) -> tuple[onnx.ModelProto, dict]:
    """The registry's converter (``jarrn_deploy.export.precisions``): :func:`to_int8` with ``options.int8_exclude``."""
    return to_int8(model, calibration, exclude=options.int8_exclude, log=log)


def to_int8(
    model: onnx.ModelProto,
    calibration,  # export.calibration.CalibrationSet
    *,
    exclude: tuple[str, ...] | None = None,
    method: str = "max",
    log: Log = quiet,
) -> tuple[onnx.ModelProto, dict]:
    """Explicit Q/DQ on the U-Nets' convolutions, calibrated on ``calibration``; returns the model and a summary."""
    backend = require_backend("int8")
    ensure_node_names(model)
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
        library = f"nvidia-modelopt {library_version('nvidia-modelopt')} (modelopt.onnx.quantization.quantize)"
    else:
        quantized = _int8_onnxruntime(model, calibration, to_quantize, method)
        library = f"onnxruntime {library_version('onnxruntime')} (quantization.quantize_static, QDQ)"
    quantized = drop_symbolic_shapes(quantized)
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
            with warnings_silenced(), quiet_modelopt():
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
