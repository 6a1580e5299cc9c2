"""The runtime's memory guard: before a call runs, estimate its peak memory for the input size and backend and
refuse, with one line, what cannot fit, instead of meeting the OOM killer (on a Jetson) or swapping for minutes.

The guard itself lives in :mod:`jarrn_deploy.memory` (the model's own ``complete()`` uses it too); this module builds
the guard of a runtime backend from its registry record (:mod:`jarrn_deploy.runtime.backends.registry`: the per-pixel
coefficient) and the backend itself (its ``widths``, and where its memory is). Checked: every backend with a
coefficient whose memory is the host's (the memory this process may still allocate, its cgroup's limits included) or a
CUDA device seen by PyTorch (``device.type == "cuda"``: the GPU's free memory). Not checked: TensorRT engines (their
optimisation profile already bounds the size) and backends that say ``on_host = False`` without a PyTorch device
(ONNX Runtime's GPU providers: their free memory is not visible without CUDA bindings).
Override: ``JARRN_MEMORY_GUARD=off`` in the environment, ``DepthCompleter(..., memory_guard=False)``, or
``MemoryGuard(limit_bytes=...)`` for a budget of your own.
"""

from __future__ import annotations

from typing import Any

from jarrn_deploy.memory import (ENV_SWITCH, OVERRIDE_HINT, SMALL_CALL_BYTES, MemoryGuard, MemoryGuardError,  # noqa: F401
                                 guard_disabled, user_batch_shape)
from jarrn_deploy.runtime.backends.registry import BACKENDS


def guard_for_backend(backend: Any) -> MemoryGuard | None:
    """The guard for a runtime backend, or None where nothing can be checked (no coefficient, or memory that is
    neither the host's nor a PyTorch CUDA device's)."""
    name = getattr(backend, "name", "")
    spec = BACKENDS.get(name)
    if spec is None or spec.bytes_per_pixel_channel is None:
        return None
    device = getattr(backend, "device", None)
    if getattr(device, "type", "cpu") != "cuda" and not getattr(backend, "on_host", True):
        return None
    return MemoryGuard.for_device(name, spec.bytes_per_pixel_channel, getattr(backend, "widths", None), device)
