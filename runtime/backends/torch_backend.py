"""PyTorch reference backend: :class:`model.MetricJarrn` around a loaded :class:`model.Jarrn`.

On a GPU without TensorRT, :class:`TorchBackendOptions` gives the fast path: FP16 autocast, channels-last and
``torch.compile(mode="reduce-overhead")`` (Inductor kernels replayed as CUDA graphs) turn the launch-bound eager
network into a few graph replays (on an H200: 16-35 ms eager FP32 -> about 4-8 ms for the full-size model).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import numpy as np

from jarrn_deploy.errors import UsageError
from jarrn_deploy.runtime.backends.options import (COMPILE_MODE, TORCH_PRECISIONS,  # noqa: F401 - re-exported
                                                   TorchBackendOptions)

if TYPE_CHECKING:  # the runtime imports torch only when this backend is created
    import torch

    from jarrn_deploy.model.metric_jarrn import MetricJarrn

RECOMPILE_LIMIT = 64
"""Distinct input shapes one compiled backend keeps (torch's default of 8 is too few for mixed frame sizes)."""


class TorchBackend:
    """Runs the reference PyTorch graph (the same computation the ONNX and TensorRT engines contain)."""

    name = "torch"

    def __init__(self, network, device: str = "cpu",  # noqa: ANN001 - a model.Jarrn
                 options: TorchBackendOptions | None = None) -> None:
        import torch

        from jarrn_deploy.devices import resolve_device
        from jarrn_deploy.model.metric_jarrn import MetricJarrn

        self._torch = torch
        self.options = options if options is not None else TorchBackendOptions()
        if not isinstance(self.options, TorchBackendOptions):
            raise UsageError(f"options: expected a TorchBackendOptions, got {type(self.options).__name__}")
        self._device = torch.device(resolve_device(device, name="device"))
        self.options.check_device(self._device.type)
        network = network.to(self._device)
        if self.options.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self._module = MetricJarrn(network).eval()
        self._forward = self._module
        if self.options.compile:
            import torch._dynamo

            for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6; older ones know the second
                if hasattr(torch._dynamo.config, name):
                    setattr(torch._dynamo.config, name, max(RECOMPILE_LIMIT, getattr(torch._dynamo.config, name)))
            self._forward = torch.compile(self._module, mode=COMPILE_MODE, dynamic=False)
        self.source = network.source_path

    @property
    def device(self) -> torch.device:
        """The ``torch.device`` the network and its inputs live on (``cuda:N`` or ``cpu``)."""
        return self._device

    @property
    def widths(self) -> tuple[int, ...] | None:
        """The network's U-Net widths (for the memory guard); None once closed."""
        return getattr(getattr(getattr(self._module, "network", None), "config", None), "widths", None)

    @property
    def module(self) -> MetricJarrn | None:
        """The :class:`model.MetricJarrn` this backend runs, in eval mode on :attr:`device`, without the options
        applied (no autocast, not compiled); None once closed."""
        return self._module

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, device: str = "cpu",
                        options: TorchBackendOptions | None = None) -> "TorchBackend":
        from jarrn_deploy.devices import resolve_device
        from jarrn_deploy.model.checkpoint import load_model

        device = resolve_device(device, name="device")  # a bad device or option fails before the weights are read
        if isinstance(options, TorchBackendOptions):
            options.check_device(device.partition(":")[0])
        return cls(load_model(path, device=device), device, options)

    def _context(self) -> contextlib.ExitStack:
        torch = self._torch
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.options.precision == "fp16":
            stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
        return stack

    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        if self._module is None:
            raise UsageError("torch backend: closed; create a new DepthCompleter")
        torch = self._torch
        rgb = torch.from_numpy(rgb_nchw).to(self._device, non_blocking=True)
        sparse = torch.from_numpy(sparse_nchw).to(self._device, non_blocking=True)
        return self.forward_on_device(rgb, sparse).float().cpu().numpy()

    def forward_on_device(self, rgb, sparse):  # noqa: ANN001, ANN201 - torch tensors
        """The network alone on graph inputs already on :attr:`device` (``[B,3,H,W]``, ``[B,1,H,W]`` float32), with
        the options applied; returns ``depth`` on the device, asynchronously. With ``compile`` the result lives in a
        CUDA-graph buffer that the next call overwrites: copy it first if it must outlive that call."""
        torch = self._torch
        with self._context():
            if self.options.channels_last:
                rgb = rgb.contiguous(memory_format=torch.channels_last)
                sparse = sparse.contiguous(memory_format=torch.channels_last)
            if self.options.compile:
                torch.compiler.cudagraph_mark_step_begin()  # a new CUDA-graph step: earlier outputs may be reused
            return self._forward(rgb, sparse)

    def close(self) -> None:
        self._module = None
        self._forward = None
