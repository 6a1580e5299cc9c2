"""FP16 mixed precision: FP16 U-Nets, FP32 everywhere else, float32 graph I/O (Model Optimizer AutoCast, else
onnxconverter-common)."""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from jarrn_deploy.export.precision.graph import (
    FP32_OP_TYPES,
    contract_nodes,
    drop_symbolic_shapes,
    ensure_node_names,
    is_unet_node,
)
from jarrn_deploy.export.precision.libraries import library_version, quiet_modelopt, require_backend, warnings_silenced
from jarrn_deploy.model.crop import crop_or_pad
from jarrn_deploy.progress import Log, quiet


def convert(model: onnx.ModelProto, calibration, options, log: Log = quiet) -> tuple[onnx.ModelProto, dict]:
    """The registry's converter (``jarrn_deploy.export.precisions``): :func:`to_fp16` for an ``ExportOptions``."""
    return to_fp16(model, calibration, log=log)


def to_fp16(model: onnx.ModelProto, calibration=None, *, log: Log = quiet) -> tuple[onnx.ModelProto, dict]:
    """FP16 U-Nets, FP32 everywhere else, float32 graph I/O. Returns the new model and what was done.

    ``calibration`` (a :class:`jarrn_deploy.export.calibration.CalibrationSet`) feeds AutoCast's reference run, which keeps in FP32
    any node whose values leave FP16's safe range; the onnxconverter-common fallback does not use it.
    """
    backend = require_backend("fp16")
    ensure_node_names(model)
    keep = contract_nodes(model)
    log(f"FP16 with {backend}: {len(model.graph.node) - len(keep)} U-Net nodes to FP16, "
        f"{len(keep)} contract nodes FP32")
    overflow: list[str] = []
    if backend == "modelopt":
        log("FP16 AutoCast runs the graph on the calibration data first: about 2 minutes on a 2-core CPU")
        converted, overflow = _fp16_modelopt(model, keep, calibration)
        library = (f"nvidia-modelopt {library_version('nvidia-modelopt')} "
                   "(modelopt.onnx.autocast.convert_to_mixed_precision)")
        if overflow:
            log(f"AutoCast kept {len(overflow)} U-Net nodes in FP32 (values above 512 on the calibration data)")
    else:
        converted = _fp16_onnxconverter(model, keep)
        library = f"onnxconverter-common {library_version('onnxconverter-common')} (float16.convert_float_to_float16)"
    converted = drop_symbolic_shapes(converted)
    fp32_ops = sorted({n.op_type for n in model.graph.node if n.name in set(keep)})
    info = {
        "library": library,
        "fp32_part": "everything outside the U-Nets (" + ", ".join(fp32_ops) + ")",
        "fp32_node_count": len(keep),
        "unet_nodes_kept_fp32_for_range": overflow,
        "casts": sum(1 for n in converted.graph.node if n.op_type == "Cast"),
    }
    return converted, info


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
            with warnings_silenced(), quiet_modelopt():
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
        with warnings_silenced(), quiet_modelopt():
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


def _common_size(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The feeds cropped / padded (top-left anchored) to their most common size, so they stack into one batch."""
    sizes = Counter(tuple(f[next(iter(f))].shape[2:]) for f in feeds)
    hw = sizes.most_common(1)[0][0]
    return [{key: crop_or_pad(value, hw, mode="edge" if value.shape[1] == 3 else "constant", top=0, left=0,
                              channels_last=False) for key, value in feed.items()} for feed in feeds]
