"""JARRN in PyTorch: the network, its tensor contract, checkpoints, data, sparse patterns and metrics.

The names below are imported on first use, so the torch-free modules of this package (``jarrn_deploy.model.atomic``, the numpy half
of the contract, ``jarrn_deploy.model.depth_io``) can be imported on a machine without torch (the thin runtime's floor).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_NAMES: dict[str, str] = {
    "CONTRACT": "jarrn_deploy.model.contract",
    "prepare_inputs": "jarrn_deploy.model.contract",
    "MetricJarrn": "jarrn_deploy.model.metric_jarrn",
    "CheckpointError": "jarrn_deploy.model.checkpoint",
    "load_model": "jarrn_deploy.model.checkpoint",
    "save_model": "jarrn_deploy.model.checkpoint",
    "Jarrn": "jarrn_deploy.model.network",
    "JarrnConfig": "jarrn_deploy.model.network",
    "JarrnOutput": "jarrn_deploy.model.network",
}

__all__ = sorted(_LAZY_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    globals()[name] = value
    return value
