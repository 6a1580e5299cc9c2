"""Helpers shared by the reliability and fuzz tests (not a test module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from tests.support import REPO

GOOD_METADATA = {"jarrn.contract_version": "1", "jarrn.inputs": '["rgb", "sparse_depth"]',
                 "jarrn.outputs": '["depth"]', "jarrn.config": json.dumps({"widths": [8] * 7})}


def contract_graph(tmp_path, *, name="g.onnx", rgb_shape=("b", 3, "h", "w"), sparse_shape=("b", 1, "h", "w"),
           out_shape=("b", 1, "h", "w"), out_from="sparse_depth", rgb_type=TensorProto.FLOAT,
           input_names=("rgb", "sparse_depth"), output_name="depth", metadata=GOOD_METADATA):
    inputs = [helper.make_tensor_value_info(input_names[0], rgb_type, list(rgb_shape)),
              helper.make_tensor_value_info(input_names[1], TensorProto.FLOAT, list(sparse_shape))]
    output = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(out_shape))
    nodes = [helper.make_node("Identity", [out_from], [output_name])]
    if rgb_type != TensorProto.FLOAT or input_names[0] != "rgb":
        nodes = [helper.make_node("Identity", [input_names[1]], [output_name])]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [output]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def nan_graph(path: Path) -> Path:
    """A contract graph whose depth is sparse_depth x NaN: what an ONNX file with NaN weights computes."""
    inputs = [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["b", 3, "h", "w"]),
              helper.make_tensor_value_info("sparse_depth", TensorProto.FLOAT, ["b", 1, "h", "w"])]
    output = helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["b", 1, "h", "w"])
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])
    graph = helper.make_graph([helper.make_node("Mul", ["sparse_depth", "nan"], ["depth"])], "g", inputs, [output],
                              initializer=[nan])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in GOOD_METADATA.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def run_command(args: list[str], cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository as a user would, with one CPU thread."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=environment)


def leftovers(folder: Path) -> list[str]:
    """Hidden temp/staging files under ``folder`` (what a killed run could leave)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".pid" in p.name or p.name.endswith(
        (".tmp", ".staging.onnx")))
