"""PyTorch reference backend: :class:`model.MetricJarrn` around a loaded :class:`model.Jarrn`."""

from __future__ import annotations

import os

import numpy as np


class TorchBackend:
    """Runs the reference PyTorch graph (the same computation the ONNX and TensorRT engines contain)."""

    name = "torch"

    def __init__(self, network, device: str = "cpu") -> None:  # noqa: ANN001 - a model.Jarrn
        import torch

        from model.contract import MetricJarrn

        self._torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r}: this PyTorch build sees no CUDA GPU (use device='cpu')")
        self.module = MetricJarrn(network.to(self.device)).eval()
        self.source = getattr(network, "source_path", None)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, device: str = "cpu") -> "TorchBackend":
        from model.checkpoint import load_model

        return cls(load_model(path, device=device), device)

    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            rgb = torch.from_numpy(rgb_nchw).to(self.device, non_blocking=True)
            sparse = torch.from_numpy(sparse_nchw).to(self.device, non_blocking=True)
            depth = self.module(rgb, sparse)
            return depth.float().cpu().numpy()

    def close(self) -> None:
        self.module = None
