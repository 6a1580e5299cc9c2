"""The one benchmark runner: a :class:`jarrn_deploy.runtime.DepthCompleter` end to end plus the device forward.

Every row of ``benchmarks/run.py`` (in its worker process) and of the device check is measured through
:class:`Runner`:

* ``e2e``: ``DepthCompleter.complete(rgb uint8, sparse float32)``, what users run;
* ``graph``: the network alone on pre-converted NCHW inputs: ``TorchBackend.forward_on_device`` on tensors already on
  the device (timed with CUDA events on a GPU), ``backend.run`` on NCHW numpy for every other backend (on a GPU that
  includes the host/device copies).

The completer is opened by :func:`open_runner` through the backend registry; PyTorch's options (FP16 autocast,
channels-last, torch.compile) are the runtime's :class:`TorchBackendOptions`, chosen by the row
(:attr:`jarrn_deploy.benchmarks.rows.Row.options`).
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np

from jarrn_deploy.benchmarks.rows import Row


class _DeviceUsage:
    """Device-wide memory in use (cudaMemGetInfo through PyTorch) for backends that do not report their own."""

    def __init__(self) -> None:
        self.torch = None
        self.peak = 0.0
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
                self.baseline = self.used()
        except Exception:  # noqa: BLE001 - no usable CUDA: nothing to sample
            self.torch = None

    def used(self) -> float:
        free, total = self.torch.cuda.mem_get_info()
        return (total - free) / 2**20

    def sample(self) -> None:
        if self.torch is not None:
            self.peak = max(self.peak, self.used() - self.baseline)

    def reset(self) -> None:
        self.peak = 0.0


class Runner:
    """One row's callables over a completer: ``e2e(rgb, sparse) -> HxW``, ``graph(prepared) -> GPU seconds | None``,
    the device memory it used, and ``info`` (what the report says about the row's setup)."""

    def __init__(self, completer: Any, info: dict | None = None, *, on_gpu: bool = False) -> None:
        self.completer = completer
        self.backend = completer.backend
        self.info: dict = dict(info or {})
        self.torch = None
        self.device = getattr(self.backend, "device", None)
        forward = getattr(self.backend, "forward_on_device", None)
        self._forward = forward if callable(forward) else None  # the PyTorch backend: tensors stay on the device
        if self._forward is not None:
            import torch

            self.torch = torch
            self.device_kind = self.device.type
        else:
            self.device_kind = "cuda" if on_gpu else "cpu"
        self._usage = _DeviceUsage() if self._forward is None and on_gpu else None
        size = getattr(self.backend, "engine_device_memory_bytes", None)
        self.engine_device_mib = size / 2**20 if size is not None else None
        if self.engine_device_mib is not None:
            self.info.setdefault("engine_device_memory_mib", self.engine_device_mib)

    def e2e(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        out = self.completer.complete(rgb, sparse)
        if self._usage is not None:
            self._usage.sample()
        return out

    def prepare_graph(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray):  # noqa: ANN201
        """Graph inputs prepared outside the timed region (on the device for PyTorch)."""
        if self._forward is None:
            return rgb_nchw, sparse_nchw
        torch = self.torch
        return torch.from_numpy(rgb_nchw).to(self.device), torch.from_numpy(sparse_nchw).to(self.device)

    def graph(self, prepared) -> float | None:  # noqa: ANN001
        """Run the graph once, blocking; its GPU time in seconds when measured with CUDA events, else None."""
        if self._forward is None:
            self.backend.run(*prepared)
            return None
        if self.device_kind != "cuda":
            self._forward(*prepared)
            return None
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self._forward(*prepared)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def reset_device_peak(self) -> None:
        if self._usage is not None:
            self._usage.reset()
        elif self.torch is not None and self.device_kind == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def device_memory(self) -> dict:
        out: dict = {}
        if self.engine_device_mib is not None:
            out["engine_device_memory_mib"] = self.engine_device_mib
        if self.torch is not None and self.device_kind == "cuda":
            torch = self.torch
            out.update(peak_device_mib=torch.cuda.max_memory_allocated(self.device) / 2**20,
                       peak_device_reserved_mib=torch.cuda.max_memory_reserved(self.device) / 2**20,
                       device_memory_method="torch.cuda.max_memory_allocated (reserved: max_memory_reserved)")
        elif self._usage is not None and self._usage.torch is not None:
            out.update(peak_device_mib=self._usage.peak,
                       device_memory_method="device-wide memory in use (cudaMemGetInfo) above the level before the "
                                            "backend was created, sampled after each call (approximate)")
        return out

    def empty_cache(self) -> None:
        """Give the GPU memory PyTorch cached back (after an out-of-memory configuration)."""
        if self.torch is not None and self.device_kind == "cuda":
            self.torch.cuda.empty_cache()

    def close(self) -> None:
        """Release the completer and the GPU memory it cached; closing must never fail a measurement."""
        try:
            self.completer.close()
        except Exception:  # noqa: BLE001
            pass
        gc.collect()
        self.empty_cache()


def torch_setup(backend: Any) -> dict:
    """What the report records about a PyTorch backend: threads, options and, on a GPU, the cuDNN / TF32 settings."""
    import torch

    info = {"options": backend.options.label, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "inference_mode": True}
    if backend.device.type == "cuda":
        info.update(cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
                    cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
                    matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
                    cuda_device_name=torch.cuda.get_device_name(backend.device))
    return info


def open_runner(row: Row, *, model: str | None, artifact: str | None, device: str, threads: int | None) -> Runner:
    """The runner of ``row``: its backend opened through the registry (``BackendSpec.open``) with the row's options
    (:meth:`Row.options`), on the checkpoint ``model`` or the exported file ``artifact`` (graph or engine)."""
    from jarrn_deploy.runtime import DepthCompleter

    spec = row.spec
    options = row.options(device, threads)
    path = model if spec.model_kind == "checkpoint" else artifact
    backend = spec.open(path, options)
    info: dict = {"api": f"DepthCompleter over registry backend {spec.name!r} with {options!r}"}
    if spec.model_kind == "checkpoint":
        info.update(torch_setup(backend))
    else:
        info[spec.model_kind] = artifact
    settings = getattr(backend, "session_settings", None)  # ONNX Runtime: providers and session options
    if isinstance(settings, dict):
        info.update(settings)
    ranges = getattr(backend, "profile_range", None)  # TensorRT: the engine's shape range
    if isinstance(ranges, dict):
        info["profile_range"] = {k: [list(v[0]), list(v[1])] for k, v in ranges.items()}
    return Runner(DepthCompleter(backend), info, on_gpu=device == "cuda")
