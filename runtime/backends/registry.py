"""The one list of inference backends: a :class:`BackendSpec` per backend, in :data:`BACKENDS`.

Everything that branches on a backend reads its record here: ``jarrn infer``, ``jarrn serve`` and ``jarrn bag`` (the
``--backend`` choices, which file runs where, which options apply), the serving model, the memory guard (its
per-pixel coefficient) and :meth:`DepthCompleter.from_backend <jarrn_deploy.runtime.completer.DepthCompleter.from_backend>`.
Adding a backend: its module in this folder (a class with ``name``, ``run`` and ``close``), its options dataclass in
:mod:`jarrn_deploy.runtime.backends.options`, and one record below.

Pure Python: importing the registry loads no inference library (each record's ``open`` imports its module when
called), so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jarrn_deploy.errors import InputError, UsageError
from jarrn_deploy.export.engine.flavours import ENGINE_SUFFIXES
from jarrn_deploy.memory import TORCH_BYTES_PER_PIXEL_CHANNEL
from jarrn_deploy.progress import Log
from jarrn_deploy.runtime.backends.options import OnnxRuntimeOptions, OpenVinoOptions, TensorRTOptions, TorchBackendOptions

if TYPE_CHECKING:
    from jarrn_deploy.runtime.backends import Backend


TORCH_INSTALL_HINT = "PyTorch is not installed: `python scripts/install.py` (the right PyTorch build for this machine)"

MODEL_KINDS = ("checkpoint", "onnx", "engine")
"""What a backend's model file is: a PyTorch checkpoint, an ONNX graph, or a built engine."""


@dataclass(frozen=True)
class BackendSpec:
    """One inference backend: what it runs, how to open it, whether it can run here, what it costs."""

    name: str
    """The ``--backend`` value and ``Backend.name``, e.g. "onnxruntime"."""
    label: str
    """Human name, e.g. "ONNX Runtime"."""
    suffixes: tuple[str, ...]
    """Model file suffixes it runs, lower case, e.g. (".onnx",)."""
    model_kind: str
    """"checkpoint", "onnx" or "engine" (:data:`MODEL_KINDS`)."""
    options_type: type | None
    """Its frozen options dataclass (:mod:`jarrn_deploy.runtime.backends.options`), or None when it takes none."""
    open: Callable[[str | None, Any], "Backend"]
    """``(model_path, options) -> Backend``; imports the backend's module; ``model_path`` None = the bundled model
    (only for a backend without :attr:`bundled_model`)."""
    missing: Callable[[], str | None]
    """None when its library is installed here, else one line saying what is missing and the install command."""
    bytes_per_pixel_channel: float | None
    """Peak bytes per padded pixel per activation channel for the memory guard (:mod:`jarrn_deploy.memory`); None:
    not estimated (the backend bounds its own memory, e.g. a TensorRT profile)."""
    runs_torch_free: bool
    """Whether it runs without PyTorch installed."""
    bundled_model: Callable[[Log], Path] | None = None
    """The bundled default model as a file it runs, exported (or built) once and cached; None: ``open(None, ...)``
    loads the bundled checkpoint itself."""
    cli_options: Mapping[str, str] = field(default_factory=dict)
    """``jarrn infer``/``jarrn bag`` flags only this backend uses -> what it does with them ("takes a device"), for
    the warning when one is given to another backend."""
    device_flag: str | None = None
    """The ``jarrn infer`` flag choosing its device (None: it has one device)."""
    distributions: tuple[str, ...] = ()
    """The PyPI distributions that provide it (any of them), whose installed versions reports record."""

    def require(self) -> None:
        """:class:`jarrn_deploy.errors.UnavailableError` (exit 5) naming the install command when :attr:`missing`."""
        reason = self.missing()
        if reason is not None:
            from jarrn_deploy.runtime.backends import BackendUnavailable

            raise BackendUnavailable(reason)


def _module_missing(module: str, hint: str) -> Callable[[], str | None]:
    """A :attr:`BackendSpec.missing` that looks for ``module`` without importing it."""

    def missing() -> str | None:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules (hidden on purpose)
            found = False
        return None if found else hint

    return missing


def _tensorrt_missing() -> str | None:
    from jarrn_deploy.export.engine.flavours import FLAVOURS, TENSORRT_INSTALL_HINT, is_installed

    return None if any(is_installed(flavour) for flavour in FLAVOURS) else TENSORRT_INSTALL_HINT


def _onnxruntime_missing() -> str | None:
    from jarrn_deploy.export.ort_session import ORT_INSTALL_HINT

    return _module_missing("onnxruntime", ORT_INSTALL_HINT)()


def _openvino_missing() -> str | None:
    from jarrn_deploy.runtime.backends.openvino_backend import OPENVINO_INSTALL_HINT

    return _module_missing("openvino", OPENVINO_INSTALL_HINT)()


def _open_torch(model_path: str | None, options: TorchBackendOptions | None) -> "Backend":
    from jarrn_deploy.runtime.backends.torch_backend import TorchBackend

    BACKENDS["torch"].require()  # torch is the one library its module imports without saying how to install it
    options = options if options is not None else TorchBackendOptions()
    return TorchBackend.from_checkpoint(model_path, options.device, options)


def _open_onnxruntime(model_path: str | None, options: OnnxRuntimeOptions | None) -> "Backend":
    from jarrn_deploy.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, default_providers

    options = options if options is not None else OnnxRuntimeOptions()
    return OnnxRuntimeBackend(_model_file(model_path, "onnxruntime"), options.providers or default_providers(),
                              intra_op_threads=options.intra_op_threads, trt_cache_dir=options.trt_cache_dir,
                              profile=options.profile, check_metadata=options.check_metadata,
                              release_memory_above_pixels=options.release_memory_above_pixels)


def _open_tensorrt(model_path: str | None, options: TensorRTOptions | None) -> "Backend":
    from jarrn_deploy.runtime.backends.tensorrt_backend import TensorRTBackend

    options = options if options is not None else TensorRTOptions()
    return TensorRTBackend(_model_file(model_path, "tensorrt"), cuda_graphs=options.cuda_graphs,
                           require_manifest=options.require_manifest, verify_hash=options.verify_hash,
                           device=options.device, flavour=options.flavour, runtime_cache=options.runtime_cache)


def _open_openvino(model_path: str | None, options: OpenVinoOptions | None) -> "Backend":
    from jarrn_deploy.runtime.backends.openvino_backend import OpenVinoBackend

    options = options if options is not None else OpenVinoOptions()
    return OpenVinoBackend(_model_file(model_path, "openvino"), threads=options.threads,
                           check_metadata=options.check_metadata)


def _model_file(model_path: str | None, backend: str) -> str:
    if model_path is None:
        raise UsageError(f"{backend}: needs a model file (the bundled model: BackendSpec.bundled_model)")
    return str(model_path)


def _bundled_onnx(log: Log) -> Path:
    from jarrn_deploy.runtime.default_model import bundled_onnx

    return bundled_onnx(log)


def _bundled_engine(log: Log) -> Path:
    from jarrn_deploy.runtime.default_model import bundled_engine

    return bundled_engine(log)


_SPECS = (
    BackendSpec(
        name="torch", label="PyTorch", suffixes=(".safetensors", ".pth", ".pt"), model_kind="checkpoint",
        options_type=TorchBackendOptions, open=_open_torch,
        missing=_module_missing("torch", TORCH_INSTALL_HINT),
        bytes_per_pixel_channel=TORCH_BYTES_PER_PIXEL_CHANNEL, runs_torch_free=False,
        cli_options={"--device": "takes a device"}, device_flag="--device", distributions=("torch",),
    ),
    BackendSpec(
        name="onnxruntime", label="ONNX Runtime", suffixes=(".onnx",), model_kind="onnx",
        options_type=OnnxRuntimeOptions, open=_open_onnxruntime, missing=_onnxruntime_missing,
        bytes_per_pixel_channel=26.0, runs_torch_free=True, bundled_model=_bundled_onnx,
        cli_options={"--providers": "takes execution providers"}, device_flag="--providers",
        distributions=("onnxruntime", "onnxruntime-gpu"),
    ),
    BackendSpec(
        name="tensorrt", label="TensorRT", suffixes=ENGINE_SUFFIXES, model_kind="engine",
        options_type=TensorRTOptions, open=_open_tensorrt, missing=_tensorrt_missing,
        bytes_per_pixel_channel=None, runs_torch_free=True, bundled_model=_bundled_engine,
        cli_options={"--cuda-graphs": "replays CUDA graphs"}, distributions=("tensorrt", "tensorrt_rtx"),
    ),
    BackendSpec(
        # measured 27-31 bytes (375x1242 and 750x2484, OpenVINO 2026.4 CPU, FP32 and INT8): rounded up like the others
        name="openvino", label="OpenVINO", suffixes=(".onnx",), model_kind="onnx",
        options_type=OpenVinoOptions, open=_open_openvino,
        missing=_openvino_missing,
        bytes_per_pixel_channel=36.0, runs_torch_free=True, bundled_model=_bundled_onnx, distributions=("openvino",),
    ),
)

BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in _SPECS}
"""Every backend by name; the order is the order of preference when several run the same file."""
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
"""The ``--backend`` choices."""


def backend_spec(name: str, flag: str = "--backend") -> BackendSpec:
    """The record of ``name``; :class:`UsageError` naming ``flag`` and the choices for an unknown one."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise UsageError(f"{flag}: unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}") from None


def backends_for_file(path: str | Path) -> tuple[BackendSpec, ...]:
    """Every backend that runs this file (by its suffix), in order of preference; empty when none does."""
    suffix = Path(path).suffix.lower()
    return tuple(spec for spec in BACKENDS.values() if suffix in spec.suffixes)


def backend_for_file(path: str | Path) -> BackendSpec:
    """The preferred backend for a model file, by its suffix; :class:`InputError` when no backend runs it."""
    specs = backends_for_file(path)
    if not specs:
        known = sorted({suffix for spec in BACKENDS.values() for suffix in spec.suffixes})
        raise InputError(f"--model: no backend runs {Path(path).name!r}; expected a file ending in {', '.join(known)}")
    return specs[0]


def cli_option_owners() -> dict[str, tuple[str, str]]:
    """Each backend-only flag -> (the labels of the backends using it, what they do with it), flags in
    alphabetical order (the order of the warnings)."""
    owners: dict[str, tuple[list[str], str]] = {}
    for spec in BACKENDS.values():
        for flag, does in spec.cli_options.items():
            owners.setdefault(flag, ([], does))[0].append(spec.label)
    return {flag: (" and ".join(labels), does) for flag, (labels, does) in sorted(owners.items())}
