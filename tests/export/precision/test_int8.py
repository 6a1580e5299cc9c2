"""INT8 export: Q/DQ pairs, the convolutions kept in float, accuracy, the ONNX Runtime fallback through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from jarrn_deploy.export.onnx_graph import ExportOptions, ExportStats, export_onnx, read_metadata
from jarrn_deploy.export.precision import is_unet_node, quantized_convs

from tests.export.onnx_support import io_is_float32, onnx_feeds, run_onnx, torch_depth
from tests.support import REPO

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def int8_export(tiny_network, calibration_npz, tmp_path_factory):
    stats = ExportStats()
    path = export_onnx(tiny_network, tmp_path_factory.mktemp("int8") / "tiny_int8.onnx",
                       ExportOptions(precision="int8", calibration=str(calibration_npz)), stats=stats)
    return path, stats


def _check_int8_graph(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") >= ops.count("QuantizeLinear")
    assert io_is_float32(model)
    inits = {i.name: i for i in model.graph.initializer}
    # Symmetric: every zero point is 0 (TensorRT supports no other).
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in inits:
            assert not onnx.numpy_helper.to_array(inits[node.input[2]]).any()
    quantized = set(quantized_convs(model))
    assert quantized
    for excluded in ("/network/rgb_x_block/rgb_x_block.0/Conv", "/network/sfmap_block/sfmap_block.4/Conv"):
        assert excluded not in quantized
    # Nothing of the contract part (normalisation, padding, rectification, de-normalisation) is quantized.
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            consumer_names = [n.name for n in model.graph.node if any(i in node.output for i in n.input)]
            source = producers.get(node.input[0])
            assert source is None or is_unet_node(source) or source.name.startswith("/network/Concat") \
                or source.op_type in ("DequantizeLinear",), source.name
            assert consumer_names
    return model


def test_int8_graph_has_qdq_pairs_and_excludes_first_last_convs(int8_export):
    _check_int8_graph(int8_export[0])
    info = json.loads(read_metadata(int8_export[0])["precision_info"])
    assert info["quantize_linear"] > 0 and "calibration_sha256" in info


def test_int8_matches_pytorch_loosely(int8_export, tiny_network):
    feeds = onnx_feeds(2, 75, 130)
    (depth,) = run_onnx(int8_export[0], feeds)
    expected = torch_depth(tiny_network, feeds)
    assert depth.dtype == np.float32 and depth.shape == expected.shape and np.isfinite(depth).all()
    # A random network on random inputs is the hard case for INT8: a loose bound (mean error below 15% of the depth).
    assert np.abs(depth - expected).mean() <= 0.15 * np.abs(expected).mean()


def test_int8_onnxruntime_fallback_through_the_cli(tiny_checkpoint, tiny_network, calibration_npz, tmp_path):
    """ONNX Runtime's quantize_static when Model Optimizer is absent (forced here; a fresh process, since Model
    Optimizer patches ONNX Runtime's quantizer when it is imported)."""
    out = tmp_path / "fb8.onnx"
    env = {**os.environ, "JARRN_PRECISION_BACKEND": "fallback"}
    result = subprocess.run(
        [sys.executable, str(REPO / "export" / "to_onnx.py"), "--checkpoint", str(tiny_checkpoint), "--output",
         str(out), "--precision", "int8", "--calibration", str(calibration_npz), "--no-validate", "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "onnxruntime" in json.loads(read_metadata(out)["precision_info"])["library"]
    _check_int8_graph(out)
    feeds = onnx_feeds(1, 75, 130)
    expected = torch_depth(tiny_network, feeds)
    assert np.abs(run_onnx(out, feeds)[0] - expected).mean() <= 0.15 * np.abs(expected).mean()
