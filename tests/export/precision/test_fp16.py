"""FP16 export: FP32 inputs/outputs, what stays FP32 inside, accuracy against PyTorch, the fallback library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from jarrn_deploy.export.onnx_graph import ExportOptions, ExportStats, export_onnx, read_metadata
from jarrn_deploy.export.precision import fp16_backend, is_unet_node

from tests.export.onnx_support import TINY, io_is_float32, onnx_feeds, run_onnx, torch_depth
from tests.support import tiny_network as build_tiny_network

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fp16_export(tiny_network, calibration_npz, tmp_path_factory):
    if fp16_backend() is None:
        pytest.skip("no FP16 library: install nvidia-modelopt (quant extra) or onnxconverter-common")
    stats = ExportStats()
    path = export_onnx(tiny_network, tmp_path_factory.mktemp("fp16") / "tiny_fp16.onnx",
                       ExportOptions(precision="fp16", calibration=str(calibration_npz)), stats=stats)
    return path, stats


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


def _check_fp16_graph(path: Path) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert io_is_float32(model)
    types = _types(model)
    kept = [n for n in model.graph.node
            if n.op_type in ("ReduceMax", "ReduceMin", "Softmax", "Sigmoid", "Div", "Where")]
    assert {n.op_type for n in kept} >= {"ReduceMax", "Softmax", "Sigmoid"}
    for node in kept:
        for name in (*node.input, *node.output):
            if name and types.get(name) in (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT):
                assert types[name] == onnx.TensorProto.FLOAT, f"{node.name}: {name} is not FP32"
    # The rectification and de-normalisation (everything after the refine head) stay FP32 too.
    for node in model.graph.node:
        if node.name.startswith(("/network/rectification/", "/Clip", "/Mul_1", "/Add")) and node.op_type != "Cast":
            assert all(types.get(o) != onnx.TensorProto.FLOAT16 for o in node.output), node.name
    convs = [n for n in model.graph.node if n.op_type == "Conv" and is_unet_node(n)]
    assert convs and all(types[n.input[1]] == onnx.TensorProto.FLOAT16 for n in convs)


def test_fp16_keeps_fp32_io_reductions_softmax_and_rectification(fp16_export):
    _check_fp16_graph(fp16_export[0])
    meta = read_metadata(fp16_export[0])
    assert meta["precision"] == "fp16" and "library" in json.loads(meta["precision_info"])


def test_fp16_matches_pytorch_loosely(fp16_export, tiny_network):
    feeds = onnx_feeds(2, 75, 130)
    (depth,) = run_onnx(fp16_export[0], feeds)
    expected = torch_depth(tiny_network, feeds)
    assert depth.dtype == np.float32 and depth.shape == expected.shape
    assert np.abs(depth - expected).mean() <= 5e-3 * np.abs(expected).mean() + 1e-3


@pytest.mark.slow  # about 90 s on 2 cores (Model Optimizer's FP16 conversion of the push-pull graph)
def test_fp16_graph_of_a_pushpull_model_runs_at_sizes_other_than_the_calibration_one(calibration_npz, tmp_path):
    """Model Optimizer's symbolic shape annotations once made ONNX Runtime reuse wrongly sized buffers in the fill's
    pad-to-even pyramid ("Shape mismatch attempting to re-use buffer") at 320x320 and 375x1242."""
    if fp16_backend() is None:
        pytest.skip("no FP16 library: install nvidia-modelopt (quant extra) or onnxconverter-common")
    network = build_tiny_network(TINY.widths, seed=4, depth_normalisation="minmax", sparse_fill="pushpull")
    path = export_onnx(network, tmp_path / "pushpull_fp16.onnx",
                       ExportOptions(precision="fp16", calibration=str(calibration_npz)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, height, width in [(1, 320, 320), (1, 375, 1242), (1, 64, 64)]:
        feeds = onnx_feeds(batch, height, width, seed=width)
        (depth,) = session.run(None, feeds)
        expected = torch_depth(network, feeds)
        assert np.abs(depth - expected).mean() <= 5e-3 * np.abs(expected).mean() + 1e-3


@pytest.mark.slow
def test_fp16_fallback_library(tiny_network, tmp_path, monkeypatch):
    pytest.importorskip("onnxconverter_common", reason="onnxconverter-common not installed")
    monkeypatch.setenv("JARRN_PRECISION_BACKEND", "fallback")
    stats = ExportStats()
    path = export_onnx(tiny_network, tmp_path / "fb16.onnx", ExportOptions(precision="fp16"), stats=stats)
    assert "onnxconverter-common" in stats.precision_info["library"]
    _check_fp16_graph(path)
    feeds = onnx_feeds(1, 75, 130)
    expected = torch_depth(tiny_network, feeds)
    assert np.abs(run_onnx(path, feeds)[0] - expected).mean() <= 5e-3 * np.abs(expected).mean() + 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# INT8
