"""One API over TensorRT, ONNX Runtime and the PyTorch reference: ``DepthCompleter.complete(rgb, sparse) -> depth``.

See :mod:`jarrn_deploy.runtime.completer` for the API and thread-safety notes, :mod:`jarrn_deploy.runtime.infer` for the command line.
The names below are imported on first use, so ``python -m jarrn_deploy.runtime.infer --help`` (which imports this package first)
answers without loading numpy, PyTorch or ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_NAMES: dict[str, str] = {
    "BACKENDS": "jarrn_deploy.runtime.backends.registry",
    "BACKEND_NAMES": "jarrn_deploy.runtime.backends.registry",
    "Backend": "jarrn_deploy.runtime.backends",
    "BackendUnavailable": "jarrn_deploy.runtime.backends",
    "DepthCompleter": "jarrn_deploy.runtime.completer",
    "EngineFileError": "jarrn_deploy.export.engine.manifest",
    "EngineMismatchError": "jarrn_deploy.export.engine.manifest",
    "ProfileError": "jarrn_deploy.export.engine.manifest",
    "GraphError": "jarrn_deploy.runtime.backends",
    "MemoryGuard": "jarrn_deploy.runtime.memory_guard",
    "MemoryGuardError": "jarrn_deploy.runtime.memory_guard",
}

__all__ = sorted(_LAZY_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))
