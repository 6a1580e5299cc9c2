"""The handful of CUDA calls the TensorRT backend needs, over cuda-python's runtime API.

cuda-python is what NVIDIA's own TensorRT samples use and installs cleanly on Jetson. Its calls return
``(error, value...)`` tuples: :func:`_check` turns a non-success error into
:class:`CudaError` and unwraps the value.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from jarrn_deploy.errors import UnavailableError
from jarrn_deploy.runtime.backends import BackendUnavailable

CUDA_INSTALL_HINT = (
    "no CUDA Python bindings: `pip install cuda-python` (preferred; on Jetson pick the version matching JetPack's "
    "CUDA, e.g. cuda-python==12.6.*)"
)


class CudaError(UnavailableError):
    """A CUDA runtime call failed."""


class CudaPython:
    """cuda-python runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` in releases before 12.6)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # older cuda-python; raises ImportError when absent
        self.rt = cudart
        self.device = int(device)
        count = self._check(cudart.cudaGetDeviceCount())
        if count < 1 or self.device >= count:
            raise CudaError(f"CUDA device {self.device} not found ({count} device(s) visible)")
        self.activate()
        props = self._check(cudart.cudaGetDeviceProperties(self.device))
        raw = props.name
        self.device_name = (raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)).split("\x00")[0].strip()
        self.compute_capability = (int(props.major), int(props.minor))

    def _check(self, result: Any) -> Any:
        err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if err != self.rt.cudaError_t.cudaSuccess:
            try:
                name = self.rt.cudaGetErrorName(err)[1].decode()
            except Exception:  # noqa: BLE001 - the name is only for the message
                name = str(err)
            hint = " (no NVIDIA driver or GPU visible?)" if "Driver" in name or "NoDevice" in name else ""
            raise CudaError(f"CUDA error {name}{hint}")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def activate(self) -> None:
        """Make this device current in the calling thread (the runtime API tracks it per thread)."""
        self._check(self.rt.cudaSetDevice(self.device))

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr))

    def host_alloc(self, nbytes: int) -> tuple[int, np.ndarray]:
        """Page-locked host memory as a uint8 numpy view; keep the handle for :meth:`host_free`."""
        nbytes = max(int(nbytes), 1)
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes)))
        view = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return ptr, view

    def host_free(self, handle: int) -> None:
        self._check(self.rt.cudaFreeHost(handle))

    def stream_create(self) -> tuple[Any, int]:
        stream = self._check(self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))
        return stream, int(stream)

    def stream_destroy(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamDestroy(stream))

    def htod_async(self, dst: int, src: np.ndarray, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, nbytes, kind, stream))

    def dtoh_async(self, dst: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, nbytes, kind, stream))

    def synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream))

    # CUDA graphs ----------------------------------------------------------------------------------------------------
    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: Any) -> Any:
        return self._check(self.rt.cudaStreamEndCapture(stream))

    def instantiate(self, graph: Any) -> Any:
        return self._check(self.rt.cudaGraphInstantiate(graph, 0))

    def launch(self, graph_exec: Any, stream: Any) -> None:
        self._check(self.rt.cudaGraphLaunch(graph_exec, stream))

    def destroy_graph(self, graph: Any, graph_exec: Any) -> None:
        if graph_exec is not None:
            self._check(self.rt.cudaGraphExecDestroy(graph_exec))
        if graph is not None:
            self._check(self.rt.cudaGraphDestroy(graph))


def load_cuda_api(device: int = 0) -> CudaPython:
    """cuda-python's runtime API on ``device``; :class:`BackendUnavailable` with how to install it when absent."""
    try:
        return CudaPython(device)
    except ImportError as exc:
        raise BackendUnavailable(f"{CUDA_INSTALL_HINT} ({exc})") from None
