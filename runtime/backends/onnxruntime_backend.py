"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers over the exported graph."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from runtime.backends import BackendUnavailable

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
ORT_INSTALL_HINT = (
    "onnxruntime is not installed: `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` "
    "(CUDA and TensorRT execution providers; not both packages at once)"
)


def import_onnxruntime():  # noqa: ANN201
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(ORT_INSTALL_HINT) from exc
    return onnxruntime


def tensorrt_provider_options(
    cache_dir: str | os.PathLike,
    profile: Any | None = None,
    *,
    fp16: bool = False,
) -> dict[str, str]:
    """Options for ONNX Runtime's TensorRT execution provider: engine and timing caches in ``cache_dir`` and, when an
    :class:`export.engine_manifest.Profile` is given, explicit min/opt/max shapes so the EP does not rebuild its engine
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
                f"{name}:{'x'.join(str(v) for v in shape.tensor_shape(name))}" for name in ("rgb", "sparse_depth")
            )
    return options


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
    if isinstance(providers, str):
        providers = [providers]
    available = list(available)
    resolved: list[str | tuple[str, dict[str, Any]]] = []
    names: list[str] = []
    for entry in providers:
        options: dict[str, Any] = {}
        if isinstance(entry, tuple):
            entry, options = entry[0], dict(entry[1])
        full = PROVIDER_ALIASES.get(str(entry).lower(), str(entry))
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
        raise ValueError("providers: expected at least one of 'cpu', 'cuda', 'tensorrt'")
    if "CPUExecutionProvider" not in names:
        resolved.append("CPUExecutionProvider")
    return resolved


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
    ) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"onnx: no such file {path}")
        resolved = resolve_providers(providers, ort.get_available_providers())
        if any((p[0] if isinstance(p, tuple) else p) == "TensorrtExecutionProvider" for p in resolved):
            # The TensorRT EP builds engines on first use (minutes for the full model): cache them on disk, and pin
            # the shape range when a profile is given so new input sizes do not trigger rebuilds.
            from export.engine_manifest import default_cache_dir

            cache = Path(trt_cache_dir) if trt_cache_dir is not None else default_cache_dir() / "ort_trt_ep"
            cache.mkdir(parents=True, exist_ok=True)
            resolved = resolve_providers(providers, ort.get_available_providers(),
                                         trt_options=tensorrt_provider_options(cache, profile))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=resolved)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise RuntimeError(f"{path}: ONNX Runtime could not load the model ({type(exc).__name__}: {exc})") from None
        inputs = [i.name for i in self.session.get_inputs()]
        if sorted(inputs) != ["rgb", "sparse_depth"]:
            raise ValueError(f"{path}: expected graph inputs ['rgb', 'sparse_depth'], found {inputs}")
        outputs = [o.name for o in self.session.get_outputs()]
        if "depth" not in outputs:
            raise ValueError(f"{path}: expected a graph output 'depth', found {outputs}")
        self.providers = self.session.get_providers()
        self.source = str(path)

    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        (depth,) = self.session.run(["depth"], {"rgb": rgb_nchw, "sparse_depth": sparse_nchw})
        return np.asarray(depth, dtype=np.float32)

    def close(self) -> None:
        self.session = None
