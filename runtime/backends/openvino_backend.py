"""OpenVINO backend: the exported ONNX graph compiled for the CPU by OpenVINO (``pip install openvino``).

- The graph is read by OpenVINO's own ONNX reader (no onnx package) and checked like ONNX Runtime's
  (:func:`jarrn_deploy.export.graph_check.check_graph`, through a read-only view of the ``ov.Model``): the contract's
  inputs and output, and the ``jarrn.*`` metadata, which OpenVINO keeps in the model's ``rt_info["framework"]``.
- Compiled once with its dynamic shapes, FP32 (``INFERENCE_PRECISION_HINT=f32``: OpenVINO would pick bf16 on CPUs
  with native bf16), latency mode; an INT8 Q/DQ graph runs its quantized convolutions in INT8.
- Both inputs are fed on every call: an OpenVINO request silently reuses the previous tensor of an input left out.
- :meth:`OpenVinoBackend.cancel` stops a run from another thread (the serving model's abandoned-request watch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jarrn_deploy.errors import UsageError
from jarrn_deploy.export.graph_check import CONTRACT_INPUTS, CONTRACT_OUTPUT, GraphError, check_graph, recorded_widths
from jarrn_deploy.runtime.backends import BackendUnavailable
from jarrn_deploy.runtime.backends.graph_io import check_fixed_size, checked_depth
from jarrn_deploy.runtime.backends.options import OpenVinoOptions

OPENVINO_INSTALL_HINT = ("OpenVINO is not installed: `pip install openvino` (or pip install -e \".[openvino]\"; CPU "
                         "inference, about 180 MB)")
_ORT_TYPE_NAMES = {"f32": "tensor(float)", "f16": "tensor(float16)", "f64": "tensor(double)", "i64": "tensor(int64)",
                   "i32": "tensor(int32)", "u8": "tensor(uint8)"}
"""OpenVINO element types as ONNX Runtime names them (what check_graph compares against)."""


def import_openvino() -> Any:
    """``import openvino``, or :class:`BackendUnavailable` (exit 5) with the install command."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailable(OPENVINO_INSTALL_HINT) from exc
    return openvino


@dataclass(frozen=True)
class _Port:
    """One graph input or output as check_graph reads it (the attributes of an ONNX Runtime ``NodeArg``)."""

    name: str
    type: str
    shape: list[int | str]


@dataclass(frozen=True)
class _Meta:
    custom_metadata_map: dict[str, str]


class _GraphView:
    """The read-only view of an ``ov.Model`` that :func:`check_graph` and :func:`recorded_widths` read."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @staticmethod
    def _port(port: Any) -> _Port:
        shape = port.get_partial_shape()
        dims = [d.get_length() if d.is_static else "?" for d in shape] if shape.rank.is_static else []
        kind = port.get_element_type().get_type_name()
        return _Port(port.get_any_name(), _ORT_TYPE_NAMES.get(kind, kind), dims)

    def get_inputs(self) -> list[_Port]:
        return [self._port(p) for p in self.model.inputs]

    def get_outputs(self) -> list[_Port]:
        return [self._port(p) for p in self.model.outputs]

    def get_modelmeta(self) -> _Meta:
        framework = self.model.get_rt_info()["framework"] if self.model.has_rt_info(["framework"]) else {}
        return _Meta({key: value.astype(str) for key, value in dict(framework).items()})


class OpenVinoBackend:
    """An OpenVINO ``CompiledModel`` on the CPU over the exported graph; one infer request, serialised by the
    completer's lock."""

    name = "openvino"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, check_metadata: bool = True) -> None:
        options = OpenVinoOptions(threads=threads, check_metadata=check_metadata)  # a bad value: UsageError
        ov = import_openvino()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"onnx: no such file {path}")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise GraphError(f"{path}: OpenVINO could not read the model ({_last_line(exc)})") from None
        view = _GraphView(model)
        self.static_dims = check_graph(view, path, check_metadata=options.check_metadata)
        self.widths = recorded_widths(view)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.source = str(path)

    def cancel(self) -> None:
        """Stop the run in progress (from another thread): that run raises ``RuntimeError``; the next one runs."""
        request = self.request
        if request is not None:
            request.cancel()

    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        if self.request is None:
            raise UsageError("openvino backend: closed; create a new DepthCompleter")
        check_fixed_size(self.static_dims, self.source, rgb_nchw)
        rgb_name, sparse_name = CONTRACT_INPUTS
        # always both inputs (module docstring); asynchronous and waited for, because a synchronous infer on one
        # thread runs inline where cancel() cannot reach it
        self.request.start_async({rgb_name: rgb_nchw, sparse_name: sparse_nchw})
        self.request.wait()
        depth = np.array(self.request.get_tensor(CONTRACT_OUTPUT).data, dtype=np.float32)  # a copy: the next call
        return checked_depth(depth, rgb_nchw, self.source)                                  # reuses the buffer

    def close(self) -> None:
        self.request = None
        self.compiled = None


def _last_line(exc: BaseException) -> str:
    """OpenVINO's errors span lines ("Exception from src/...cpp:NN:" first): the last one says what is wrong."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__
