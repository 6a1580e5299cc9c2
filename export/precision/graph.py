"""Graph helpers shared by the FP16 and INT8 conversions: which nodes are the U-Nets (converted) and which are the
contract part (always FP32), node naming, and shape annotations."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

import onnx


UNET_NODE_PREFIXES: tuple[str, ...] = ("/network/rgb_x_block/", "/network/sfmap_block/")
"""Node-name prefixes of the two U-Nets, the only part of the graph that FP16 / INT8 touch. Everything else (mask,
normalisation and its ReduceMax/Min, padding, input concatenations, rectification with its Softmax/Sigmoid, cropping,
de-normalisation) stays FP32. Node names come from the module paths of MetricJarrn ("/network/rgb_x_block/...")."""

# Op types that stay FP32 wherever they appear (they only appear outside the U-Nets in this graph).
FP32_OP_TYPES: tuple[str, ...] = (
    "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "Softmax", "Sigmoid", "Div", "Where", "Clip", "Pad",
)



def is_unet_node(node: onnx.NodeProto) -> bool:
    return node.name.startswith(UNET_NODE_PREFIXES)


def contract_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes outside the two U-Nets: the part that always stays FP32."""
    return [n.name for n in model.graph.node if not is_unet_node(n)]


def ensure_node_names(model: onnx.ModelProto) -> None:
    used = Counter(n.name for n in model.graph.node)
    for i, node in enumerate(model.graph.node):
        if not node.name or used[node.name] > 1:
            node.name = f"{node.name or node.op_type}__{i}"


def drop_symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the intermediate shape annotations by plain ONNX shape inference.

    Model Optimizer annotates every tensor with ONNX Runtime's symbolic shapes (``(Pad_502_o0__d2//2)`` ...). ONNX
    Runtime's allocator trusts equal dimension names, and on the push-pull fill's pad-to-even pyramid some are wrong:
    the session then fails with "Shape mismatch attempting to re-use buffer" at sizes other than the calibration one.
    """
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def nodes_matching(model: onnx.ModelProto, patterns: Iterable[str]) -> list[str]:
    compiled = [re.compile(p) for p in patterns]
    return [n.name for n in model.graph.node if any(c.search(n.name) for c in compiled)]
