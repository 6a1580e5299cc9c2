"""Where the project keeps what it makes once and reuses (bundled-model exports, TensorRT timing caches, the Triton
server bundle): one folder, ``$XDG_CACHE_HOME/jarrn-deploy`` (default ``~/.cache/jarrn-deploy``). Pure Python."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """The project's cache folder, read from the environment at each call (tests point it elsewhere)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jarrn-deploy"
