"""The runtime's memory guard: before a call runs, estimate its peak memory for the input size and backend and
refuse, with one line, what cannot fit, instead of meeting the OOM killer (on a Jetson) or swapping for minutes.

The guard itself lives in :mod:`jarrn_deploy.memory` (the model's own ``complete()`` uses it too); this module picks the
guard for a runtime backend. Checked: PyTorch on the CPU and ONNX Runtime with the CPU provider against the memory
this process may still allocate (its cgroup's limits included), PyTorch on a GPU against the GPU's free memory. Not
checked: TensorRT engines (their optimisation profile already bounds the size) and ONNX Runtime's GPU providers (their
free memory is not visible without CUDA bindings).
Override: ``JARRN_MEMORY_GUARD=off`` in the environment, ``DepthCompleter(..., memory_guard=False)``, or
``MemoryGuard(limit_bytes=...)`` for a budget of your own.
"""

from __future__ import annotations

from typing import Any

from jarrn_deploy.memory import (ENV_SWITCH, OVERRIDE_HINT, SMALL_CALL_BYTES, MemoryGuard, MemoryGuardError,  # noqa: F401
                          guard_disabled, user_batch_shape)


def guard_for_backend(backend: Any) -> MemoryGuard | None:
    """The guard for a runtime backend, or None where nothing can be checked (TensorRT, ORT GPU providers)."""
    name = getattr(backend, "name", "")
    if name == "torch":
        module = getattr(backend, "module", None)
        widths = getattr(getattr(getattr(module, "network", None), "config", None), "widths", None)
        return MemoryGuard.for_torch(widths, getattr(backend, "device", None))
    if name == "onnxruntime":
        providers = getattr(backend, "providers", None) or ["CPUExecutionProvider"]
        if providers[0] != "CPUExecutionProvider":
            return None
        return MemoryGuard("onnxruntime", getattr(backend, "widths", None))
    return None

