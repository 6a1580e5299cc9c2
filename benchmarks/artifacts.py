"""What a benchmark row runs besides the checkpoint: exported ONNX graphs (cached) and engines built from them.

Shared by ``benchmarks/run.py`` and the device check. Graphs are cached under ``--cache`` keyed by the model's sha256
and the export code's digest; engines are built in process by
:func:`jarrn_deploy.export.engine.build.build_engine`, which reuses an up-to-date engine by its manifest.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from jarrn_deploy.errors import JarrnError
from jarrn_deploy.progress import Log



def export_code_digest() -> str:
    from jarrn_deploy.export.source_digest import export_source_digest

    return export_source_digest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def ensure_onnx(model_path: Path, precision: str, cache: Path, *, rebuild: bool, allow_export: bool,
                model_sha: str, log: Log) -> tuple[Path | None, str | None, dict]:
    """The exported graph for ``precision`` (cached), or ``(None, reason, {})`` when it cannot be had."""
    folder = cache / f"{model_sha[:16]}-{export_code_digest()[:10]}"
    path = folder / f"jarrn_{precision}.onnx"
    if path.is_file() and not rebuild:
        return path, None, {"cached": True}
    if not allow_export:
        return None, (f"skipped: no cached {precision.upper()} export yet and --quick does not export FP16/INT8 "
                      "(about a minute each on a 2-core CPU); run once without --quick"), {}
    from jarrn_deploy.export.known_warnings import quiet_known_warnings
    from jarrn_deploy.export.onnx_graph import ExportError, ExportOptions, ExportStats, export_onnx
    from jarrn_deploy.model import load_model

    network = load_model(model_path)
    stats = ExportStats()
    log(f"exporting {precision.upper()} ONNX to {path} (cached for later runs)")
    start = time.perf_counter()
    try:
        with quiet_known_warnings():
            export_onnx(network, path, ExportOptions(precision=precision),
                        log=lambda m: print(f"[export] {m}", file=sys.stderr, flush=True), stats=stats)
    except ExportError as exc:
        return None, f"unavailable: export failed ({exc})", {}
    except Exception as exc:  # noqa: BLE001 - a library problem in one precision must not stop the run
        return None, f"unavailable: export failed ({type(exc).__name__}: {_first_line(exc)})", {}
    info = {"cached": False, "export_seconds": round(time.perf_counter() - start, 1), "nodes": stats.nodes,
            "precision_info": stats.precision_info, "file_bytes": stats.file_bytes}
    return path, None, info


def ensure_engine(onnx_path: Path, flavour: str | None, profile: tuple[str, str, str], *, rebuild: bool,
                  log: Log) -> tuple[Path | None, str | None]:
    """The engine of ``onnx_path`` for ``flavour`` (None: the installed one), built or reused by
    :func:`jarrn_deploy.export.engine.build.build_engine`; or ``(None, reason)`` when it cannot be built."""
    from jarrn_deploy.export.engine.build import build_engine
    from jarrn_deploy.export.engine.profile import Profile

    suffix = f".{flavour}.engine" if flavour else ".engine"
    out = onnx_path.with_name(onnx_path.stem + suffix)
    log(f"building / reusing the {flavour or 'TensorRT'} engine {out.name} (profile {' / '.join(profile)})")
    try:
        built = build_engine(onnx_path, out, flavour=flavour, profile=Profile.parse(*profile), force=rebuild, log=log)
    except JarrnError as exc:
        return None, f"unavailable: the {flavour or 'TensorRT'} engine build failed: {_first_line(exc)}"
    return built.engine_path, None
