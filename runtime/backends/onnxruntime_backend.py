"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers over the exported graph."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from jarrn_deploy.errors import UsageError
from jarrn_deploy.export.graph_check import (CONTRACT_INPUTS, CONTRACT_OUTPUT, GraphError,  # noqa: F401 - re-exported
                                             check_graph, recorded_widths)
from jarrn_deploy.export.ort_session import import_ort, open_session
from jarrn_deploy.runtime.backends import BackendUnavailable
from jarrn_deploy.runtime.backends.graph_io import check_fixed_size, checked_depth
from jarrn_deploy.runtime.backends.options import check_thread_count as check_threads


PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


def import_onnxruntime():  # noqa: ANN201
    return import_ort(BackendUnavailable)


def tensorrt_provider_options(
    cache_dir: str | os.PathLike,
    profile: Any | None = None,
    *,
    fp16: bool = False,
) -> dict[str, str]:
    """Options for ONNX Runtime's TensorRT execution provider: engine and timing caches in ``cache_dir`` and, when an
    :class:`jarrn_deploy.export.engine.profile.Profile` is given, explicit min/opt/max shapes so the EP does not rebuild its engine
    whenever a new input size arrives. Precision stays the graph's (``fp16`` only for TensorRT 10 weak typing)."""
    options = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
        "trt_fp16_enable": "True" if fp16 else "False",
    }
    if profile is not None:
        for key, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)):
            options[f"trt_profile_{key}_shapes"] = ",".join(
                f"{name}:{'x'.join(str(v) for v in shape.tensor_shape(name))}" for name in CONTRACT_INPUTS
            )
    return options


def provider_sequence(providers: Any) -> tuple[Any, ...]:
    """``providers`` as a tuple: a name alone, or a list or tuple of entries; :class:`UsageError` for anything else."""
    if isinstance(providers, str):
        return (providers,)
    if not isinstance(providers, (list, tuple)):
        raise UsageError(f"providers: expected a name ('cpu', 'cuda', 'tensorrt') or a list of them in priority "
                         f"order, got {type(providers).__name__}")
    return tuple(providers)


def resolve_providers(
    providers: str | Sequence[str | tuple[str, Mapping[str, Any]]],
    available: Iterable[str],
    *,
    trt_options: Mapping[str, str] | None = None,
) -> list[str | tuple[str, dict[str, Any]]]:
    """Map short names ("cpu", "cuda", "tensorrt") to ONNX Runtime provider entries, in priority order.

    A requested provider that this onnxruntime build lacks is an error (ONNX Runtime itself would silently fall back
    to the CPU). GPU providers get the CPU provider appended for the few nodes they do not take.
    """
    providers = provider_sequence(providers)
    available = list(available)
    resolved: list[str | tuple[str, dict[str, Any]]] = []
    names: list[str] = []
    for entry in providers:
        options: dict[str, Any] = {}
        if isinstance(entry, tuple):
            if len(entry) != 2 or not isinstance(entry[1], Mapping):
                raise UsageError(f"providers: expected (name, options dict) pairs, got {entry!r}")
            entry, options = entry[0], dict(entry[1])
        if not isinstance(entry, str):
            raise UsageError(f"providers: expected provider names as strings, got {entry!r}")
        full = PROVIDER_ALIASES.get(str(entry).lower(), str(entry))
        if full not in available and not full.endswith("ExecutionProvider"):  # a typo, not a missing build
            raise UsageError(f"providers: unknown provider {entry!r}; expected {', '.join(PROVIDER_ALIASES)} or a "
                             f"full ONNX Runtime provider name (available here: {available})")
        if full not in available:
            hint = " (install onnxruntime-gpu instead of onnxruntime)" if full in _GPU_PROVIDERS else ""
            raise BackendUnavailable(
                f"providers: {entry!r} ({full}) is not available in this onnxruntime; available: {available}{hint}"
            )
        if full == "TensorrtExecutionProvider" and trt_options:
            options = {**trt_options, **options}
        resolved.append((full, options) if options else full)
        names.append(full)
    if not names:
        raise UsageError("providers: expected at least one of 'cpu', 'cuda', 'tensorrt'")
    if "CPUExecutionProvider" not in names:
        resolved.append("CPUExecutionProvider")
    return resolved


def check_thread_count(value: object, name: str = "intra_op_threads") -> int | None:
    """``None`` or 0 (ONNX Runtime's default) or a positive integer; :class:`UsageError` otherwise."""
    return check_threads(value, name, "ONNX Runtime")


def default_providers() -> list[str]:
    """CUDA then CPU when onnxruntime-gpu sees a GPU, else CPU (``jarrn infer``'s and ``jarrn serve``'s default)."""
    available = import_onnxruntime().get_available_providers()
    return ["cuda", "cpu"] if "CUDAExecutionProvider" in available else ["cpu"]


class OnnxRuntimeBackend:
    """An ``InferenceSession`` over the exported graph (inputs ``rgb``, ``sparse_depth``; output ``depth``)."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        providers: str | Sequence[str | tuple[str, Mapping[str, Any]]] = ("cpu",),
        *,
        intra_op_threads: int | None = None,
        trt_cache_dir: str | os.PathLike | None = None,
        profile: Any | None = None,
        check_metadata: bool = True,
        release_memory_above_pixels: int = 0,
    ) -> None:
        intra_op_threads = check_thread_count(intra_op_threads)
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"onnx: no such file {path}")
        resolved = resolve_providers(providers, ort.get_available_providers())
        if any((p[0] if isinstance(p, tuple) else p) == "TensorrtExecutionProvider" for p in resolved):
            # The TensorRT EP builds engines on first use (minutes for the full model): cache them on disk, and pin
            # the shape range when a profile is given so new input sizes do not trigger rebuilds.
            from jarrn_deploy.export.engine.manifest import default_cache_dir

            cache = Path(trt_cache_dir) if trt_cache_dir is not None else default_cache_dir() / "ort_trt_ep"
            cache.mkdir(parents=True, exist_ok=True)
            resolved = resolve_providers(providers, ort.get_available_providers(),
                                         trt_options=tensorrt_provider_options(cache, profile))
        self.session = open_session(path, resolved, ort=ort, intra_op_threads=intra_op_threads,
                                    optimization="ORT_ENABLE_ALL")
        self.static_dims = check_graph(self.session, path, check_metadata=check_metadata)
        self.widths = recorded_widths(self.session)
        self.providers = self.session.get_providers()
        self.source = str(path)
        self.run_options: Any | None = None
        """``onnxruntime.RunOptions`` for the next runs (None: fresh ones per run); another thread may set its
        ``terminate`` to stop a run, or call :meth:`cancel`."""
        self._ort = ort
        self._active: Any | None = None
        self.release_memory_above_pixels = release_memory_above_pixels
        """After a run of more pixels than this (B*H*W), the CPU arena gives its free memory back (ONNX Runtime's
        arena shrinkage; it costs the next run new allocations); 0: never."""

    @property
    def on_host(self) -> bool:
        """Whether its memory is the host's (the CPU provider first), which the memory guard can check."""
        return bool(self.providers) and self.providers[0] == "CPUExecutionProvider"

    @property
    def session_settings(self) -> dict[str, Any]:
        """What the session runs with (providers and the session options that matter for speed), for reports."""
        if self.session is None:
            raise UsageError("onnxruntime backend: closed; create a new DepthCompleter")
        options = self.session.get_session_options()
        return {
            "providers": list(self.session.get_providers()),
            "session_options": {
                "graph_optimization_level": str(options.graph_optimization_level),
                "execution_mode": str(options.execution_mode),
                "intra_op_num_threads": options.intra_op_num_threads,
                "inter_op_num_threads": options.inter_op_num_threads,
                "enable_cpu_mem_arena": options.enable_cpu_mem_arena,
                "enable_mem_pattern": options.enable_mem_pattern,
            },
        }

    def cancel(self) -> None:
        """Stop the run in progress from another thread (``RunOptions.terminate``: that run raises); the next runs
        are not affected."""
        active = self._active
        if active is not None:
            active.terminate = True

    def _fresh_run_options(self, pixels: int) -> Any:
        options = self._ort.RunOptions()
        if 0 < self.release_memory_above_pixels < pixels:  # the arena shrinks to what is in use at the end of the run
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return options

    def check_size(self, rgb_nchw: np.ndarray) -> None:
        """A graph exported with ``--static``/``--batch`` takes only that size: say so (InputError) instead of ONNX
        Runtime's InvalidArgument."""
        check_fixed_size(self.static_dims, self.source, rgb_nchw)

    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise UsageError("onnxruntime backend: closed; create a new DepthCompleter")
        self.check_size(rgb_nchw)
        rgb_name, sparse_name = CONTRACT_INPUTS
        pixels = rgb_nchw.shape[0] * rgb_nchw.shape[2] * rgb_nchw.shape[3]
        self._active = self.run_options if self.run_options is not None else self._fresh_run_options(pixels)
        try:
            (depth,) = self.session.run([CONTRACT_OUTPUT], {rgb_name: rgb_nchw, sparse_name: sparse_nchw},
                                        self._active)
        finally:
            self._active = None
        return checked_depth(depth, rgb_nchw, self.source)

    def close(self) -> None:
        self.session = None
