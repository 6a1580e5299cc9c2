"""JARRN in PyTorch: the network, its tensor contract, checkpoints, data, sparse patterns and metrics.

The names below are imported on first use, so the torch-free modules of this package (``model.atomic``, the numpy half
of the contract, ``model.depth_io``) can be imported on a machine without torch (the thin runtime's floor).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_NAMES: dict[str, str] = {
    "CONTRACT": "model.contract",
    "prepare_inputs": "model.contract",
    "MetricJarrn": "model.metric_jarrn",
    "CheckpointError": "model.checkpoint",
    "load_model": "model.checkpoint",
    "save_model": "model.checkpoint",
    "Jarrn": "model.network",
    "JarrnConfig": "model.network",
    "JarrnOutput": "model.network",
}

__all__ = sorted(_LAZY_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    globals()[name] = value
    return value
