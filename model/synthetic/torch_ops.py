"""torch twin of :class:`jarrn_deploy.model.synthetic.array_ops.NumpyOps`: the same ray casting on any torch device."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


class TorchOps:
    """torch backend (float32) on a given device."""

    inf = math.inf

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32, device=self.device)

    def full(self, shape: tuple[int, ...], value: float) -> torch.Tensor:
        return torch.full(shape, value, dtype=torch.float32, device=self.device)

    def full_int(self, shape: tuple[int, ...], value: int) -> torch.Tensor:
        return torch.full(shape, value, dtype=torch.int32, device=self.device)

    def asarray(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=self.device)

    where = staticmethod(torch.where)
    minimum = staticmethod(torch.minimum)
    maximum = staticmethod(torch.maximum)
    sqrt = staticmethod(torch.sqrt)
    floor = staticmethod(torch.floor)
    abs = staticmethod(torch.abs)
    exp = staticmethod(torch.exp)
    atan2 = staticmethod(torch.atan2)
    round = staticmethod(torch.round)

    def clip(self, x: torch.Tensor, lo: float | None, hi: float | None) -> torch.Tensor:
        return torch.clamp(x, lo, hi)

    def stack(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(xs), dim=-1)

    def to_index(self, x: torch.Tensor) -> torch.Tensor:
        return x.long()

    def f32(self, m: torch.Tensor) -> torch.Tensor:
        return m.to(torch.float32)

    def any(self, m: torch.Tensor) -> bool:
        return bool(m.any())

    def group(self, ids: torch.Tensor, n: int) -> tuple[torch.Tensor, list[int]]:
        """Stable order that sorts ids in [-1, n-1], and the count of each id."""
        shifted = (ids + 1).long()
        return torch.argsort(shifted, stable=True), torch.bincount(shifted, minlength=n).tolist()
