"""The runtime's memory guard: before a call runs, estimate its peak memory for the input size and backend
(:mod:`jarrn.memory`) and refuse, with one line, what cannot fit, instead of meeting the OOM killer (on a Jetson) or
swapping for minutes.

Checked: PyTorch on the CPU and ONNX Runtime with the CPU provider against the host's available memory, PyTorch on a
GPU against the GPU's free memory. Not checked: TensorRT engines (their optimisation profile already bounds the size)
and ONNX Runtime's GPU providers (their free memory is not visible without CUDA bindings).
Override: ``JARRN_MEMORY_GUARD=off`` in the environment, ``DepthCompleter(..., memory_guard=False)``, or
``MemoryGuard(limit_bytes=...)`` for a budget of your own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jarrn.errors import UnavailableError
from jarrn.memory import HEADROOM, available_host_bytes, estimate_peak_bytes, gib

ENV_SWITCH = "JARRN_MEMORY_GUARD"
"""Set to 'off' (or 0/false/no) to disable the guard for every completer in the process."""
SMALL_CALL_BYTES = 256 * 2**20
"""Calls estimated below this run without asking the system (reading the free memory costs more than they risk)."""
OVERRIDE_HINT = f"override with {ENV_SWITCH}=off or DepthCompleter(..., memory_guard=False)"


class MemoryGuardError(UnavailableError, MemoryError):
    """The estimated peak memory of a call does not fit in what this machine has free (exit status 5)."""


def guard_disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("off", "0", "false", "no")


def _torch_cuda_free(device: Any) -> int | None:
    try:
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        # memory PyTorch's caching allocator holds but does not use is free for the next call too
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    except Exception:  # noqa: BLE001 - no CUDA, or no way to ask: nothing to check
        return None


@dataclass
class MemoryGuard:
    """Refuses calls whose estimated peak memory exceeds what is free (or ``limit_bytes``)."""

    backend: str
    """'torch' or 'onnxruntime' (the per-pixel cost differs)."""
    widths: Sequence[int] | None = None
    """The model's U-Net widths (None: assume the full model, the safe side)."""
    where: str = "host memory"
    """What the budget is, for the message."""
    free_bytes: Callable[[], int | None] = available_host_bytes
    """How to ask for the free memory now (None: unknown, the call runs)."""
    limit_bytes: int | None = None
    """A fixed budget instead of asking the system."""
    headroom: float = HEADROOM
    """The share of the free memory a call may plan to use."""
    proven_bytes: int = 0
    """The largest estimate that already ran in this process: its memory is held (ONNX Runtime's arena, PyTorch's
    cache) and reused, so it no longer shows as free; sizes up to it are not refused again."""

    @classmethod
    def for_backend(cls, backend: Any) -> "MemoryGuard | None":
        """The guard for a runtime backend, or None where nothing can be checked (TensorRT, ORT GPU providers)."""
        name = getattr(backend, "name", "")
        if name == "torch":
            module = getattr(backend, "module", None)
            widths = getattr(getattr(getattr(module, "network", None), "config", None), "widths", None)
            device = getattr(backend, "device", None)
            if getattr(device, "type", "cpu") == "cuda":
                return cls("torch", widths, f"free memory on {device}", lambda: _torch_cuda_free(device))
            return cls("torch", widths)
        if name == "onnxruntime":
            providers = getattr(backend, "providers", None) or ["CPUExecutionProvider"]
            if providers[0] != "CPUExecutionProvider":
                return None
            return cls("onnxruntime", getattr(backend, "widths", None))
        return None

    def estimate(self, shape: Sequence[int]) -> int:
        """Estimated peak bytes for graph inputs of ``shape`` ``[B,C,H,W]``."""
        batch, _, height, width = shape
        return estimate_peak_bytes(height, width, batch, widths=self.widths, backend=self.backend)

    def check(self, shape: Sequence[int]) -> None:
        """Raise :class:`MemoryGuardError` when a call with inputs of ``shape`` ``[B,C,H,W]`` cannot fit."""
        if guard_disabled():
            return
        needed = self.estimate(shape)
        if self.limit_bytes is None and (needed < SMALL_CALL_BYTES or needed <= self.proven_bytes):
            return
        budget = self.limit_bytes if self.limit_bytes is not None else self.free_bytes()
        if budget is None:
            return
        allowed = budget if self.limit_bytes is not None else budget * self.headroom
        if needed > allowed:
            batch, _, height, width = shape
            raise MemoryGuardError(
                f"input {height}x{width} (batch {batch}): {self.backend} needs about {gib(needed)}, "
                f"{gib(budget)} of {self.where} {'allowed' if self.limit_bytes is not None else 'available'}; "
                f"use a smaller size or batch, or {OVERRIDE_HINT}"
            )

    def ran(self, shape: Sequence[int]) -> None:
        """Record that a call with inputs of ``shape`` completed (see :attr:`proven_bytes`)."""
        self.proven_bytes = max(self.proven_bytes, self.estimate(shape))


def user_batch_shape(rgb: Any) -> tuple[int, int, int, int] | None:
    """``[B,3,H,W]`` of a user RGB array (HxWx3 or BxHxWx3) without converting it, so the guard can refuse a size
    before the conversion allocates anything; None when it is not such an array (validation reports that)."""
    shape = getattr(rgb, "shape", None)
    if not isinstance(shape, tuple) or len(shape) not in (3, 4) or shape[-1] != 3:
        return None
    batch = shape[0] if len(shape) == 4 else 1
    return (int(batch), 3, int(shape[-3]), int(shape[-2]))
