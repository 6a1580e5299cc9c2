"""Report files written atomically: JSON with NaN/inf as null (bytes and text through :mod:`jarrn_deploy.model.atomic`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from jarrn_deploy.model.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "to_json"]


def _json_default(value):  # noqa: ANN001, ANN202
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data) -> str:  # noqa: ANN001
    return json.dumps(_finite(data), indent=2, default=_json_default, sort_keys=False) + "\n"


def _finite(value):  # noqa: ANN001, ANN202
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, data) -> Path:  # noqa: ANN001
    return atomic_write_text(path, to_json(data))
