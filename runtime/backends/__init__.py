"""Inference backends behind :class:`runtime.DepthCompleter`: one file per engine, one tiny protocol, one registry
(:mod:`jarrn_deploy.runtime.backends.registry`: the list of backends and everything known about each).

A backend takes graph inputs (``rgb`` float32 ``[B,3,H,W]`` in [0,1], ``sparse_depth`` float32 ``[B,1,H,W]`` metres)
and returns the graph output ``depth`` float32 ``[B,1,H,W]`` metres, all as numpy arrays. Validation and layout
conversion of user inputs happen once, in :mod:`jarrn_deploy.model.contract`, before any backend is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from jarrn_deploy.errors import UnavailableError

if TYPE_CHECKING:
    import numpy as np


@runtime_checkable
class Backend(Protocol):
    name: str
    """Its name in the registry (:data:`jarrn_deploy.runtime.backends.registry.BACKEND_NAMES`)."""

    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        """Graph inputs in, ``depth`` ``[B,1,H,W]`` float32 metres out. Not required to be thread-safe."""
        ...

    def close(self) -> None:
        """Release native resources (sessions, GPU memory); the backend is unusable afterwards."""
        ...


class BackendUnavailable(UnavailableError, ImportError):
    """A backend's library (tensorrt, cuda-python, onnxruntime, a provider) is not installed here
    (an ImportError as before, and a :class:`jarrn_deploy.errors.UnavailableError`: exit status 5)."""


def __getattr__(name: str) -> Any:
    """``GraphError`` (part of the runtime's API) is imported on first use: the registry, a submodule, stays light."""
    if name == "GraphError":
        from jarrn_deploy.export.graph_check import GraphError

        return GraphError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
