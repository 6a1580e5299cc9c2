"""Array-module shim: the ray caster only uses these operations plus arithmetic, comparisons, slicing and masks.

:class:`NumpyOps` is here; the torch twin (:class:`jarrn_deploy.model.synthetic.torch_ops.TorchOps`) is imported only by the torch
path, so the numpy generator runs without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    from jarrn_deploy.model.synthetic.torch_ops import TorchOps


class NumpyOps:
    """numpy backend (float32)."""

    inf = math.inf

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.float32)

    def full(self, shape: tuple[int, ...], value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float32)

    def full_int(self, shape: tuple[int, ...], value: int) -> np.ndarray:
        return np.full(shape, value, dtype=np.int32)

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32)

    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    sqrt = staticmethod(np.sqrt)
    floor = staticmethod(np.floor)
    abs = staticmethod(np.abs)
    exp = staticmethod(np.exp)
    atan2 = staticmethod(np.arctan2)
    round = staticmethod(np.round)

    def clip(self, x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
        return np.clip(x, lo, hi)

    def stack(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(xs, axis=-1)

    def to_index(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.intp)

    def f32(self, m: np.ndarray) -> np.ndarray:
        return m.astype(np.float32)

    def any(self, m: np.ndarray) -> bool:
        return bool(m.any())

    def group(self, ids: np.ndarray, n: int) -> tuple[np.ndarray, list[int]]:
        """Stable order that sorts ids in [-1, n-1], and the count of each id."""
        shifted = (ids + 1).astype(np.int16)  # 16-bit keys get numpy's radix sort
        return np.argsort(shifted, kind="stable"), np.bincount(shifted, minlength=n).tolist()


Ops = Union[NumpyOps, "TorchOps"]
Array = Any  # np.ndarray or torch.Tensor
