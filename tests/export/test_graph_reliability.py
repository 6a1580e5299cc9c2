"""ONNX graphs are checked before they are trusted: contract inputs/outputs, dtypes, ranks, channels, jarrn.* metadata.

The graphs here are built with onnx.helper (an Identity or two), so the whole file runs in about a second.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from tests.reliability_support import GOOD_METADATA, contract_graph as _graph

from jarrn_deploy.export import graph_check
from jarrn_deploy import memory
from jarrn_deploy.model.contract import CONTRACT, CONTRACT_VERSION
from jarrn_deploy.runtime import DepthCompleter
from jarrn_deploy.runtime.backends import GraphError

def _inputs(h=8, w=8, b=None):
    rgb = np.zeros((h, w, 3), np.uint8) if b is None else np.zeros((b, h, w, 3), np.uint8)
    sparse = np.ones((h, w), np.float32) if b is None else np.ones((b, h, w), np.float32)
    return rgb, sparse


def test_facts_spelt_out_for_torch_free_use_match_the_contract():
    assert graph_check.CONTRACT_INPUTS == {CONTRACT.rgb_name: 3, CONTRACT.sparse_name: 1}
    assert graph_check.CONTRACT_OUTPUT == CONTRACT.depth_name
    assert graph_check.CONTRACT_VERSION == CONTRACT_VERSION
    assert memory.PAD_MULTIPLE == CONTRACT.pad_multiple


def test_a_contract_graph_loads_and_runs(tmp_path):
    with DepthCompleter.from_onnx(_graph(tmp_path)) as completer:
        np.testing.assert_array_equal(completer.complete(*_inputs()), np.ones((8, 8), np.float32))


def test_three_channel_output_with_the_right_names_is_refused_at_load(tmp_path):
    path = _graph(tmp_path, out_shape=("b", 3, "h", "w"), out_from="rgb")
    with pytest.raises(GraphError, match=r"output 'depth' has shape .*expected \[B,1,H,W\]"):
        DepthCompleter.from_onnx(path)


def test_output_with_undeclared_channels_is_refused_when_it_returns_three(tmp_path):
    completer = DepthCompleter.from_onnx(_graph(tmp_path, rgb_shape=("b", "c", "h", "w"), out_shape=("b", "c", "h", "w"),
                                                out_from="rgb"))
    with pytest.raises(GraphError, match=r"has shape \[1, 3, 8, 8\].*not this contract's graph"):
        completer.complete(*_inputs())


@pytest.mark.parametrize("kwargs,needle", [
    ({"rgb_type": TensorProto.DOUBLE}, "'rgb' is tensor(double)"),
    ({"rgb_shape": ("b", 4, "h", "w")}, "expected [B,3,H,W]"),
    ({"sparse_shape": ("b", "h", "w")}, "expected [B,1,H,W]"),
    ({"input_names": ("image", "sparse_depth")}, "expected graph inputs"),
    ({"output_name": "out"}, "expected a graph output 'depth'"),
])
def test_inputs_and_outputs_off_the_contract_are_refused(tmp_path, kwargs, needle):
    with pytest.raises(GraphError, match=needle.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        DepthCompleter.from_onnx(_graph(tmp_path, **kwargs))


@pytest.mark.parametrize("metadata,needle", [
    ({}, "no jarrn.contract_version"),
    ({**GOOD_METADATA, "jarrn.contract_version": "99"}, "contract version '99'"),
    ({**GOOD_METADATA, "jarrn.outputs": '["depth", "coarse"]'}, "jarrn.outputs says"),
    ({**GOOD_METADATA, "jarrn.inputs": "not json"}, "jarrn.inputs is not JSON"),
    ({**GOOD_METADATA, "jarrn.config": "[1, 2]"}, "jarrn.config is not a JARRN config"),
])
def test_missing_or_foreign_metadata_is_refused(tmp_path, metadata, needle):
    path = _graph(tmp_path, metadata=metadata)
    with pytest.raises(GraphError, match=needle):
        DepthCompleter.from_onnx(path)


def test_metadata_check_can_be_skipped_for_graphs_exported_elsewhere(tmp_path):
    path = _graph(tmp_path, metadata={})
    assert DepthCompleter.from_onnx(path, check_metadata=False).complete(*_inputs()).shape == (8, 8)


def test_not_onnx_is_a_graph_error_and_a_value_error(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="x.onnx: ONNX Runtime could not load the model"):
        DepthCompleter.from_onnx(path)


def test_static_graph_given_another_size_raises_value_error_naming_the_size(tmp_path):
    path = _graph(tmp_path, rgb_shape=(1, 3, 64, 96), sparse_shape=(1, 1, 64, 96), out_shape=(1, 1, 64, 96))
    completer = DepthCompleter.from_onnx(path)
    assert completer.complete(*_inputs(64, 96)).shape == (64, 96)
    with pytest.raises(ValueError, match=r"fixed size 64x96 \(batch 1\); got 64x80 \(batch 1\)"):
        completer.complete(*_inputs(64, 80))
    with pytest.raises(ValueError, match=r"got 64x96 \(batch 2\)"):
        completer.complete(*_inputs(64, 96, b=2))
