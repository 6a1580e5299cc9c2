"""The handful of CUDA calls the TensorRT backend needs, over cuda-python (preferred) or pycuda (fallback).

cuda-python is what NVIDIA's own TensorRT samples use and installs cleanly on Jetson; pycuda is accepted where it is
already present. cuda-python calls return ``(error, value...)`` tuples: :func:`_check` turns a non-success error into
:class:`CudaError` and unwraps the value.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from runtime.backends import BackendUnavailable

CUDA_INSTALL_HINT = (
    "no CUDA Python bindings: `pip install cuda-python` (preferred; on Jetson pick the version matching JetPack's "
    "CUDA, e.g. cuda-python==12.6.*) or `pip install pycuda`"
)


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


class CudaPython:
    """cuda-python runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` in releases before 12.6)."""

    name = "cuda-python"
    supports_graphs = True

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

    def deactivate(self) -> None:
        pass

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


class PyCuda:
    """pycuda fallback (driver API on the device's primary context, shared with TensorRT's runtime API)."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as drv  # raises ImportError when absent

        self.drv = drv
        drv.init()
        if int(device) >= drv.Device.count():
            raise CudaError(f"CUDA device {device} not found ({drv.Device.count()} device(s) visible)")
        self._device = drv.Device(int(device))
        self.context = self._device.retain_primary_context()
        self.device_name = self._device.name()
        self.compute_capability = tuple(self._device.compute_capability())
        self._allocations: dict[int, Any] = {}

    def activate(self) -> None:
        self.context.push()

    def deactivate(self) -> None:
        self.drv.Context.pop()

    def malloc(self, nbytes: int) -> int:
        allocation = self.drv.mem_alloc(max(int(nbytes), 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        allocation = self._allocations.pop(int(ptr), None)
        if allocation is not None:
            allocation.free()

    def host_alloc(self, nbytes: int) -> tuple[Any, np.ndarray]:
        array = self.drv.pagelocked_empty(max(int(nbytes), 1), np.uint8)
        return array, array

    def host_free(self, handle: Any) -> None:
        getattr(handle.base, "free", lambda: None)()

    def stream_create(self) -> tuple[Any, int]:
        stream = self.drv.Stream()
        return stream, int(stream.handle)

    def stream_destroy(self, stream: Any) -> None:
        pass  # freed with the object

    def htod_async(self, dst: int, src: np.ndarray, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, src.reshape(-1).view(np.uint8)[:nbytes], stream)

    def dtoh_async(self, dst: np.ndarray, src: int, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(dst.reshape(-1).view(np.uint8)[:nbytes], src, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()


def load_cuda_api(device: int = 0):  # noqa: ANN201 - CudaPython | PyCuda
    """cuda-python if installed, else pycuda; :class:`BackendUnavailable` naming both when neither is."""
    errors = []
    for cls in (CudaPython, PyCuda):
        try:
            return cls(device)
        except ImportError as exc:
            errors.append(f"{cls.name}: {exc}")
    raise BackendUnavailable(f"{CUDA_INSTALL_HINT} ({'; '.join(errors)})")
