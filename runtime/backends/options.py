"""The options of each backend, one frozen dataclass per backend (:attr:`BackendSpec.options_type
<jarrn_deploy.runtime.backends.registry.BackendSpec>`): pure Python, so the registry, the command lines and ``--help``
can name them without importing numpy, PyTorch or any inference library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jarrn_deploy.errors import UsageError

TORCH_PRECISIONS = ("fp32", "fp16")
COMPILE_MODE = "reduce-overhead"
"""``torch.compile`` mode of ``compile=True``: CUDA graphs, one per input shape."""


def check_thread_count(value: object, name: str, library: str) -> int | None:
    """``None`` or 0 (the library's default) or a positive integer; :class:`UsageError` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 0:  # int or a numpy integer
        raise UsageError(f"{name}: expected a non-negative integer (0 or None: {library}'s default), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class CliValues:
    """The backend flags of ``jarrn infer`` / ``jarrn bag`` / ``jarrn serve``; each options type takes what it uses
    (its ``from_cli``), so a new backend maps them in its own options class."""

    providers: tuple[str, ...] = ()
    """``--providers``, split at commas (empty: the backend's default)."""
    device: str | None = None
    """``--device`` (None: the backend's default)."""
    cuda_graphs: bool = False
    """``--cuda-graphs``."""
    threads: int = 0
    """``--threads`` (0: the library's default)."""


@dataclass(frozen=True)
class TorchBackendOptions:
    """How the PyTorch backend runs the network; the defaults are the FP32 eager reference.

    FP16 and compile need a CUDA device: CPU autocast would be bfloat16 (a different precision, slower than FP32 on
    most CPUs) and CUDA graphs exist only on GPUs, so both are rejected on the CPU with a :class:`UsageError` rather
    than silently changed. :meth:`gpu_fast` is the fast GPU path.
    """

    precision: str = "fp32"
    """'fp32' (reference) or 'fp16' (torch.autocast float16 around the network; CUDA only)."""
    compile: bool = False
    """torch.compile(mode='reduce-overhead'): CUDA graphs; the first call at each new input shape compiles (CUDA only)."""
    channels_last: bool = False
    """Weights and inputs in channels-last (NHWC) memory format: the layout FP16 tensor-core convolutions use."""
    device: str = "auto"
    """Where the registry's ``open`` (``DepthCompleter.from_backend``) puts the network: 'cpu', 'cuda', 'cuda:N' or
    'auto' (CUDA when PyTorch sees a GPU); ``from_checkpoint``'s own ``device`` argument is used instead of it."""

    def __post_init__(self) -> None:
        if self.precision not in TORCH_PRECISIONS:
            raise UsageError(f"TorchBackendOptions.precision: expected one of {', '.join(TORCH_PRECISIONS)}, "
                             f"got {self.precision!r}")
        for name in ("compile", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"TorchBackendOptions.{name}: expected True or False, got {getattr(self, name)!r}")

    @classmethod
    def gpu_fast(cls) -> "TorchBackendOptions":
        """FP16 autocast + channels-last + torch.compile with CUDA graphs: the fastest PyTorch path on a GPU."""
        return cls(precision="fp16", compile=True, channels_last=True)

    @classmethod
    def from_cli(cls, values: CliValues) -> "TorchBackendOptions":
        """The options the command-line flags give (``--device``)."""
        return cls(device=values.device or "auto")

    def check_device(self, device_type: str) -> None:
        """:class:`UsageError` when these options cannot run on ``device_type`` ('cpu' or 'cuda')."""
        if device_type == "cuda":
            return
        if self.precision == "fp16":
            raise UsageError("TorchBackendOptions.precision 'fp16' needs a CUDA device (CPU autocast is bfloat16, "
                             "which this backend does not offer); use precision='fp32' on the CPU")
        if self.compile:
            raise UsageError(f"TorchBackendOptions.compile needs a CUDA device (mode={COMPILE_MODE!r} replays CUDA "
                             "graphs); use compile=False on the CPU")

    @property
    def label(self) -> str:
        """Short description, e.g. 'fp16 + channels-last + compile'."""
        return " + ".join([self.precision] + (["channels-last"] if self.channels_last else [])
                          + (["compile"] if self.compile else []))


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """How the ONNX Runtime backend opens its session (see ``DepthCompleter.from_onnx``)."""

    providers: tuple[Any, ...] | None = None
    """Execution providers in priority order ("cpu", "cuda", "tensorrt", full names or ``(name, options)`` pairs);
    None: CUDA then CPU when onnxruntime-gpu sees a GPU, else CPU (what ``jarrn infer`` and ``jarrn serve`` do)."""
    intra_op_threads: int | None = None
    """Threads of one run (None or 0: ONNX Runtime's default)."""
    trt_cache_dir: str | None = None
    """The TensorRT provider's engine cache (None: the project's cache folder)."""
    profile: Any | None = None
    """The TensorRT provider's shape range (:class:`jarrn_deploy.export.engine.profile.Profile`; None: any)."""
    check_metadata: bool = True
    """Require the ``jarrn.*`` metadata of ``export/to_onnx.py`` (False for graphs exported another way)."""
    release_memory_above_pixels: int = 0
    """After a run of more pixels than this (B*H*W), give the CPU arena's free memory back (0: never)."""

    def __post_init__(self) -> None:
        check_thread_count(self.intra_op_threads, "intra_op_threads", "ONNX Runtime")

    @classmethod
    def from_cli(cls, values: CliValues) -> "OnnxRuntimeOptions":
        """The options the command-line flags give (``--providers``, ``--threads``)."""
        return cls(providers=values.providers or None, intra_op_threads=values.threads or None)


@dataclass(frozen=True)
class TensorRTOptions:
    """How the TensorRT backend loads its engine (see ``DepthCompleter.from_engine``)."""

    cuda_graphs: bool = False
    """Replay one CUDA graph per input shape (TensorRT: needs cuda-python; TensorRT-RTX: its built-in strategy)."""
    require_manifest: bool = True
    """Refuse an engine without its ``.json`` manifest."""
    verify_hash: bool = True
    """Check the engine file against the hash its manifest records."""
    device: int = 0
    """CUDA device index."""
    flavour: str | None = None
    """"tensorrt" or "tensorrt-rtx" for an engine without a manifest (None: the manifest's, else the installed one)."""
    runtime_cache: str | None = None
    """TensorRT-RTX: the file keeping its just-in-time kernels between runs (None: the one the manifest records)."""

    @classmethod
    def from_cli(cls, values: CliValues) -> "TensorRTOptions":
        """The options the command-line flags give (``--cuda-graphs``)."""
        return cls(cuda_graphs=values.cuda_graphs)


@dataclass(frozen=True)
class OpenVinoOptions:
    """How the OpenVINO backend compiles the graph for the CPU."""

    threads: int | None = None
    """Inference threads (None or 0: OpenVINO's default, every core)."""
    check_metadata: bool = True
    """Require the ``jarrn.*`` metadata of ``export/to_onnx.py`` (False for graphs exported another way)."""

    def __post_init__(self) -> None:
        check_thread_count(self.threads, "threads", "OpenVINO")

    @classmethod
    def from_cli(cls, values: CliValues) -> "OpenVinoOptions":
        """The options the command-line flags give (``--threads``)."""
        return cls(threads=values.threads or None)
