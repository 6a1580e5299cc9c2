"""One API over TensorRT, ONNX Runtime and the PyTorch reference: ``DepthCompleter.complete(rgb, sparse) -> depth``.

See :mod:`runtime.completer` for the API and thread-safety notes, :mod:`runtime.infer` for the command line.
"""

from export.engine_manifest import EngineFileError, EngineMismatchError, ProfileError
from runtime.backends import BACKENDS, Backend, BackendUnavailable
from runtime.completer import DepthCompleter

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "DepthCompleter",
    "EngineFileError",
    "EngineMismatchError",
    "ProfileError",
]
