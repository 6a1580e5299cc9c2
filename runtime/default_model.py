"""The bundled default model for every backend: exported to ONNX (and built into a TensorRT engine) on first use,
then cached by content, so ``python -m jarrn_deploy.runtime.infer`` works with no ``--model`` whatever the backend.

The cache lives under ``$XDG_CACHE_HOME/jarrn-deploy/models`` (default ``~/.cache/jarrn-deploy/models``), one folder
per checkpoint sha256 and export recipe (export options and the code that shapes the graph), so a new checkpoint or a
change to the export code gets a fresh export and an unchanged one is reused. Files appear atomically: two processes
exporting at once both end with a complete file.

PyTorch is needed only to export (the first use); a cached export runs without it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

from jarrn_deploy.cache import cache_home
from jarrn_deploy.errors import CheckFailedError, UnavailableError
from jarrn_deploy.progress import Log

BUNDLED_EXPORT_PRECISION = "fp32"
"""Precision of the cached export: FP32 needs no optional package, and every backend runs it."""
"""Source files (relative to the package root) whose code shapes the exported graph: part of the cache key."""



def cache_root() -> Path:
    """Where cached exports of the bundled model live."""
    return cache_home() / "models"


def _package_root() -> Path:
    spec = importlib.util.find_spec("jarrn_deploy.model")
    if spec is None or not spec.submodule_search_locations:
        raise UnavailableError("the model package is not importable; install the project with `pip install -e .`")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


BUNDLED_CHECKPOINT = Path("model") / "weights" / "jarrn_small_default.safetensors"
"""The bundled checkpoint, relative to the package root: ``jarrn_deploy.model.checkpoint.DEFAULT_CHECKPOINT`` (a test pins that
they agree), found here without importing torch so a cached export runs without it."""


def bundled_checkpoint() -> Path:
    """Path of the bundled default checkpoint."""
    return _package_root() / BUNDLED_CHECKPOINT


def _sha256(path: Path) -> str:
    from jarrn_deploy.model.atomic import file_sha256

    return file_sha256(path)


def export_recipe_digest(options: dict) -> str:
    """sha256 of the export options and of the source files that shape the graph."""
    from jarrn_deploy.export.source_digest import export_source_digest

    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    digest.update(export_source_digest().encode())
    return digest.hexdigest()


def cached_onnx_path(checkpoint: Path, options: dict) -> Path:
    """Where the export of ``checkpoint`` with ``options`` (``ExportOptions`` fields that differ from the defaults) is
    (or will be) cached."""
    return cache_root() / f"{_sha256(checkpoint)[:16]}-{export_recipe_digest(options)[:12]}" / (
        f"jarrn_{options.get('precision', BUNDLED_EXPORT_PRECISION)}.onnx"
    )


def bundled_onnx(log: Log = print) -> Path:
    """The bundled model as an ONNX file: from the cache, or exported now (once, with a progress line)."""
    checkpoint = bundled_checkpoint()
    if not checkpoint.is_file():
        raise UnavailableError(f"the bundled model is missing ({checkpoint}); reinstall the project or pass --model")
    recipe = {"precision": BUNDLED_EXPORT_PRECISION}  # every other option: the exporter's defaults (code in the key)
    path = cached_onnx_path(checkpoint, recipe)
    if path.is_file():
        log(f"bundled model: cached ONNX export {path}")
        return path
    try:
        from jarrn_deploy.export.estimates import MEASURED_S, about, on_this_machine
        from jarrn_deploy.export.known_warnings import quiet_known_warnings
        from jarrn_deploy.export.onnx_graph import ExportError, ExportOptions, export_onnx
        from jarrn_deploy.model.checkpoint import load_model
    except ImportError as exc:
        raise UnavailableError(
            f"the bundled model must be exported to ONNX once before ONNX Runtime or TensorRT can run it, and "
            f"exporting needs PyTorch and onnx ({exc.name or exc} is not installed): run `pip install -e .`, or "
            "pass --model FILE.onnx"
        ) from None
    estimate = f"{about(MEASURED_S[BUNDLED_EXPORT_PRECISION])} {on_this_machine()}"
    log(f"bundled model: exporting it to ONNX once ({estimate}; cached in {path.parent}) ...")
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_known_warnings():
        try:
            export_onnx(load_model(checkpoint), path, ExportOptions(**recipe))
        except ExportError as exc:
            raise CheckFailedError(f"exporting the bundled model failed: {exc}") from None
    log(f"bundled model: exported in {time.perf_counter() - start:.1f} s")
    return path


def require_tensorrt() -> None:
    """Raise :class:`UnavailableError` with the way out when the tensorrt package is not installed."""
    if importlib.util.find_spec("tensorrt") is None:
        raise UnavailableError(
            "TensorRT is not installed, so the bundled model cannot run on --backend tensorrt: use --backend "
            "onnxruntime, or install TensorRT (pip install -e \".[gpu]\" or NVIDIA's TensorRT container)"
        )


def bundled_engine(log: Log = print) -> Path:
    """The bundled model as a TensorRT engine built for this GPU: reused when up to date, else built now."""
    require_tensorrt()
    onnx_path = bundled_onnx(log)
    engine = onnx_path.with_suffix(".engine")
    log(f"bundled model: building (or reusing) the TensorRT engine {engine} (first build: minutes) ...")
    start = time.perf_counter()
    from jarrn_deploy.export.engine.build import build_engine  # its reuse rules and errors stay its own

    built = build_engine(onnx_path, engine, log=lambda message: log(f"bundled model: {message}"))
    log(f"bundled model: engine ready in {time.perf_counter() - start:.1f} s")
    return built.engine_path
