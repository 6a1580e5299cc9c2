"""The one ONNX Runtime session factory (export/ort_session.py)."""

import sys
from pathlib import Path

import pytest

from jarrn_deploy.export.graph_check import GraphError
from jarrn_deploy.export.ort_session import open_session
from jarrn_deploy.errors import UnavailableError


def test_a_file_onnx_runtime_cannot_load_is_a_one_line_graph_error(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_graph.onnx"
    bad.write_bytes(b"this is not ONNX")
    with pytest.raises(GraphError) as info:
        open_session(bad, log_severity=3)
    message = str(info.value)
    assert message.startswith(f"{bad}: ONNX Runtime could not load the model") and "\n" not in message


def test_without_onnxruntime_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(UnavailableError, match="pip install onnxruntime"):
        open_session(tmp_path / "any.onnx")
