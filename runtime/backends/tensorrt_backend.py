"""TensorRT backend: a serialized engine (``export/build_engine.py``) run with the TensorRT 10/11 named-tensor API.

- The sidecar manifest is checked *before* deserialising: another GPU or TensorRT version raises
  :class:`EngineMismatchError` with the exact rebuild command; a truncated or altered file raises
  :class:`EngineFileError` (:func:`preflight_engine`, pure Python, tested without TensorRT).
- Device buffers for every I/O tensor are allocated once, at the profile maximum, and reused; host staging buffers are
  page-locked; each backend owns one execution context and one CUDA stream; ``execute_async_v3`` runs on it.
- Shapes outside the optimization profile raise :class:`ProfileError` naming the input and the range.
- Optional CUDA graphs (``cuda_graphs=True``, cuda-python only): one graph per input shape, captured on the first call
  with that shape and replayed afterwards (fewer launch overheads, which matters on Jetson).

Not thread-safe on its own: :class:`runtime.DepthCompleter` serialises calls with a lock; create one completer per
thread for parallel streams (each gets its own context, buffers and stream).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from export.engine_manifest import (
    TENSORRT_INSTALL_HINT,
    DeviceInfo,
    EngineFileError,
    EngineManifest,
    EngineMismatchError,  # noqa: F401 - re-exported for callers
    ProfileError,  # noqa: F401 - re-exported for callers
    check_compatible,
    check_engine_file,
    check_shape_in_range,
    manifest_path,
)
from runtime.backends import BackendUnavailable

log = logging.getLogger(__name__)
MAX_CUDA_GRAPHS = 8


def import_tensorrt():  # noqa: ANN201
    """``import tensorrt``, or :class:`BackendUnavailable` with how to get it."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: bindings present but libnvinfer missing
        raise BackendUnavailable(TENSORRT_INSTALL_HINT) from exc
    return tensorrt


def preflight_engine(
    engine_path: str | os.PathLike,
    device: DeviceInfo,
    *,
    require_manifest: bool = True,
    verify_hash: bool = True,
) -> tuple[EngineManifest | None, bytes]:
    """Every check that can be made before TensorRT sees the file; returns ``(manifest, engine bytes)``.

    Order: manifest present (unless ``require_manifest=False``, e.g. trtexec-built engines) and readable; built for this
    TensorRT version and GPU; engine file present, not an ONNX, not truncated, sha256 as recorded.
    """
    engine_path = Path(engine_path)
    sidecar = manifest_path(engine_path)
    manifest = None
    if sidecar.is_file():
        manifest = EngineManifest.load(sidecar)
    elif require_manifest:
        if not engine_path.is_file():
            check_engine_file(engine_path, None)  # raises the "no such engine file" error
        raise EngineFileError(
            f"{engine_path}: no manifest {sidecar.name} beside the engine, so it cannot be checked against this GPU "
            "and TensorRT version; build engines with python export/build_engine.py --onnx MODEL.onnx, or pass "
            "require_manifest=False for an engine you built yourself (e.g. with trtexec) on this machine"
        )
    if manifest is not None:
        check_compatible(manifest, device, engine_path)
    data = check_engine_file(engine_path, manifest, verify_hash=verify_hash)
    return manifest, data


class _Tensor:
    """One I/O tensor: name, dtype, device buffer and page-locked host staging buffer, both sized for the maximum."""

    def __init__(self, name: str, is_input: bool, dtype: np.dtype, max_shape: tuple[int, ...]) -> None:
        self.name, self.is_input, self.dtype, self.max_shape = name, is_input, dtype, max_shape
        self.nbytes = int(np.prod(max_shape)) * dtype.itemsize
        self.device_ptr = 0
        self.host_handle: Any = None
        self.host: np.ndarray | None = None

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return self.host[: count * self.dtype.itemsize].view(self.dtype).reshape(shape)


class TensorRTBackend:
    """Runs a TensorRT engine; see the module docstring."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike,
        *,
        cuda_graphs: bool = False,
        require_manifest: bool = True,
        verify_hash: bool = True,
        device: int = 0,
    ) -> None:
        self.cuda = None
        self.context = self.engine = self.stream = None
        self._tensors: dict[str, _Tensor] = {}
        self._graphs: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
        self.source = str(engine_path)
        trt = import_tensorrt()
        from runtime.backends._cuda import load_cuda_api

        self._trt = trt
        cuda = load_cuda_api(device)
        here = DeviceInfo(cuda.device_name, DeviceInfo.format_cc(*cuda.compute_capability), trt.__version__)
        self.device_info = here
        self.manifest, data = preflight_engine(engine_path, here, require_manifest=require_manifest, verify_hash=verify_hash)
        self.cuda = cuda
        self.cuda_graphs = bool(cuda_graphs)
        if self.cuda_graphs and not cuda.supports_graphs:
            log.warning("cuda_graphs=True needs cuda-python (found %s): running without CUDA graphs", cuda.name)
            self.cuda_graphs = False
        cuda.activate()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineFileError(
                    f"{engine_path}: TensorRT {trt.__version__} could not deserialise this engine (see the TensorRT "
                    "log above); rebuild it on this machine with python export/build_engine.py"
                )
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise RuntimeError(f"{engine_path}: could not create an execution context (out of GPU memory?)")
            self._setup_tensors()
            self.stream, self._stream_handle = self.cuda.stream_create()
        except BaseException:
            self.close()
            raise
        finally:
            self.cuda.deactivate()

    # -- setup ---------------------------------------------------------------------------------------------------------
    def _setup_tensors(self) -> None:
        trt, engine, context = self._trt, self.engine, self.context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if sorted(inputs) != ["rgb", "sparse_depth"] or "depth" not in outputs:
            raise EngineFileError(
                f"{self.source}: expected inputs ['rgb', 'sparse_depth'] and output 'depth', found inputs {inputs}, "
                f"outputs {outputs}"
            )
        self.profile_range: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for name in inputs:
            low, _opt, high = (tuple(int(v) for v in dims) for dims in engine.get_tensor_profile_shape(name, 0))
            self.profile_range[name] = (low, high)
            context.set_input_shape(name, high)
        for name in names:
            is_input = name in inputs
            shape = self.profile_range[name][1] if is_input else tuple(int(v) for v in context.get_tensor_shape(name))
            if any(v < 0 for v in shape):
                raise EngineFileError(f"{self.source}: output {name} has a data-dependent shape {shape}; not supported")
            tensor = _Tensor(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), shape)
            tensor.device_ptr = self.cuda.malloc(tensor.nbytes)
            tensor.host_handle, tensor.host = self.cuda.host_alloc(tensor.nbytes)
            self._tensors[name] = tensor
            if not context.set_tensor_address(name, tensor.device_ptr):
                raise RuntimeError(f"{self.source}: set_tensor_address failed for {name}")

    # -- inference -----------------------------------------------------------------------------------------------------
    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        if self.context is None:
            raise RuntimeError("TensorRT backend is closed")
        for name, array in (("rgb", rgb_nchw), ("sparse_depth", sparse_nchw)):
            check_shape_in_range(name, array.shape, *self.profile_range[name])
        cuda, context, stream = self.cuda, self.context, self.stream
        cuda.activate()
        try:
            for name, array in (("rgb", rgb_nchw), ("sparse_depth", sparse_nchw)):
                tensor = self._tensors[name]
                staged = tensor.host_view(array.shape)
                np.copyto(staged, array, casting="same_kind")  # float32 -> the engine's I/O type (fp16 I/O engines)
                if not context.set_input_shape(name, array.shape):
                    raise RuntimeError(f"{name}: TensorRT rejected input shape {array.shape}")
                cuda.htod_async(tensor.device_ptr, staged, staged.nbytes, stream)
            self._execute(tuple(rgb_nchw.shape))
            out = self._tensors["depth"]
            out_shape = tuple(int(v) for v in context.get_tensor_shape("depth"))
            result = out.host_view(out_shape)
            cuda.dtoh_async(result, out.device_ptr, result.nbytes, stream)
            cuda.synchronize(stream)
            return result.astype(np.float32, copy=True)
        finally:
            cuda.deactivate()

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self._stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def _execute(self, shape_key: tuple) -> None:
        if not self.cuda_graphs:
            self._enqueue()
            return
        cached = self._graphs.get(shape_key)
        if cached is not None:
            self._graphs.move_to_end(shape_key)
            self.cuda.launch(cached[1], self.stream)
            return
        # New shape: one plain enqueue first (TensorRT finishes shape-dependent setup there; it also computes this
        # call's result), then capture the same enqueue into a graph for the next calls with this shape.
        self._enqueue()
        try:
            self.cuda.begin_capture(self.stream)
            try:
                self._enqueue()
            finally:
                graph = self.cuda.end_capture(self.stream)
            graph_exec = self.cuda.instantiate(graph)
        except Exception as exc:  # noqa: BLE001 - some engines cannot be captured; run them without graphs
            log.warning("CUDA graph capture failed (%s): running without CUDA graphs", exc)
            self.cuda_graphs = False
            return
        self._graphs[shape_key] = (graph, graph_exec)
        while len(self._graphs) > MAX_CUDA_GRAPHS:
            _, (old_graph, old_exec) = self._graphs.popitem(last=False)
            self.cuda.destroy_graph(old_graph, old_exec)

    def close(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        try:
            cuda.activate()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            return
        try:
            if self.stream is not None:
                cuda.synchronize(self.stream)
            for graph, graph_exec in self._graphs.values():
                cuda.destroy_graph(graph, graph_exec)
            self._graphs.clear()
            for tensor in self._tensors.values():
                if tensor.device_ptr:
                    cuda.free(tensor.device_ptr)
                if tensor.host_handle is not None:
                    tensor.host = None
                    cuda.host_free(tensor.host_handle)
            self._tensors.clear()
            if self.stream is not None:
                cuda.stream_destroy(self.stream)
                self.stream = None
        finally:
            self.context = None
            self.engine = None
            cuda.deactivate()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
