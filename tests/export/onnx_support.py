"""What the export tests share (not a test module): the tiny network's inputs, its PyTorch depth, running a graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from jarrn_deploy.export.validate import random_cases
from jarrn_deploy.model import CONTRACT, Jarrn, JarrnConfig, MetricJarrn

TINY = JarrnConfig((16, 16, 16, 16, 8, 8, 8))
"""The export tests' network: wider than tests.support.TINY_WIDTHS so FP16/INT8 rounding has something to act on."""


def onnx_feeds(batch: int, height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    case = random_cases([(batch, height, width)], seed=seed)[0]
    return {CONTRACT.rgb_name: case.rgb, CONTRACT.sparse_name: case.sparse}


def torch_depth(network: Jarrn, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return MetricJarrn(network)(torch.from_numpy(feeds["rgb"]), torch.from_numpy(feeds["sparse_depth"])).numpy()


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def io_is_float32(model: onnx.ModelProto) -> bool:
    values = (*model.graph.input, *model.graph.output)
    return all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in values)


def dims_of(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
