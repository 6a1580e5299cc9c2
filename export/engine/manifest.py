"""Engine bookkeeping that needs no TensorRT: the sidecar manifest, cache keys and the checks made before an engine is
deserialised. The smaller ``export/engine_*`` modules own the rest (import their names from them):

- :mod:`jarrn_deploy.export.engine.graph`: what the build reads from the ONNX (hash, precision, input shapes vs the profile).
- :mod:`jarrn_deploy.export.engine.profile`: optimization profiles (``--min/--opt/--max``) and build options.
- :mod:`jarrn_deploy.export.engine.flavours`: TensorRT vs TensorRT-RTX (modules, install hints, network flags, compute capabilities).
- :mod:`jarrn_deploy.export.engine.recipes`: the equivalent ``trtexec`` and ``tensorrt_rtx`` command lines.
- :mod:`jarrn_deploy.export.engine.compression`: zstd-compressed engine files (``--compress``).
- :mod:`jarrn_deploy.export.engine.sources`: the kernel sources a CPU-built TensorRT-RTX engine stores (size analysis).
- :mod:`jarrn_deploy.export.gpu_probe`: name and compute capability of the local GPU (no torch, no numpy).

Everything here is pure Python (plus ``onnx`` to read an ONNX file's precision) so it is tested on machines without a
GPU. :mod:`jarrn_deploy.export.engine.build` (building) and ``runtime/backends/tensorrt_backend.py`` (loading) hold the few lines
that touch TensorRT and CUDA.

An engine ``model.engine`` always travels with ``model.engine.json`` (:class:`EngineManifest`): the ONNX it came from
(sha256), its precision, the flavour and its version, the GPU and compute capability it was built for (TensorRT) or the
compute capabilities it targets (TensorRT-RTX), the optimization profile, the build options, and the size and sha256
of the plan (and of the file on disk when it is stored zstd-compressed, :mod:`jarrn_deploy.export.engine.compression`). The runtime
reads it *before* anything CUDA or TensorRT is imported: an engine of another flavour, built for another GPU or
library version, is refused with what to do instead (the exact rebuild command), and a truncated or altered file is
refused instead of crashing inside TensorRT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from jarrn_deploy.export.engine.flavours import (
    FLAVOUR_TITLES,
    FLAVOURS,
    RTX_COMPUTE_CAPABILITIES,
    RTX_PORTABLE_TARGETS,
    TENSORRT,
    TENSORRT_RTX,
    describe_not_supported,
    network_creation_flags,
    rtx_runs_on,
)
from jarrn_deploy.export.engine.compression import CODECS, ZSTD, CompressionError, decompress, is_zstd
from jarrn_deploy.export.engine.profile import (
    BUILD_COMMAND,
    DEFAULT_OPT_LEVEL,
    INPUT_CHANNELS,
    OUTPUT_NAME,
    BuildOptions,
    Profile,
)
from jarrn_deploy.model.atomic import atomic_write_text
from jarrn_deploy.export.engine.graph import check_precision
from jarrn_deploy.export.export_errors import EngineFileError, EngineMismatchError

MANIFEST_FORMAT = "jarrn-tensorrt-engine"
MANIFEST_VERSION = 3  # 2: flavour (tensorrt / tensorrt-rtx) and compute-capability targets; 3: compressed files
CACHE_KEY_VERSION = 2  # bumped only when the same inputs would build a different engine (not for manifest fields)
MANIFEST_SUFFIX = ".json"


# ---------------------------------------------------------------------------------------------------------------------
# device and build identity


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the GPU model, its compute capability and the engine library (flavour, version)."""

    gpu_name: str
    """GPU model as the driver names it ("" for a TensorRT-RTX build on a CPU)."""
    compute_capability: str
    """``"M.m"``, e.g. ``"8.7"`` ("" for a TensorRT-RTX build on a CPU)."""
    tensorrt_version: str
    """Version of the flavour's library (TensorRT or TensorRT-RTX)."""
    flavour: str = TENSORRT
    """``"tensorrt"`` or ``"tensorrt-rtx"``."""

    @staticmethod
    def format_cc(major: int, minor: int) -> str:
        return f"{int(major)}.{int(minor)}"

    @property
    def library(self) -> str:
        """``"TensorRT 10.3.0.30"`` or ``"TensorRT-RTX 1.7.1.116"``."""
        return f"{FLAVOUR_TITLES.get(self.flavour, self.flavour)} {self.tensorrt_version}"


def cache_key(
    *,
    onnx_sha256: str,
    precision: str,
    profile: Profile,
    device: DeviceInfo,
    options: BuildOptions,
    targets: Iterable[str] = (),
) -> str:
    """The identity of a build: equal keys mean the existing engine is what a rebuild would produce.

    It covers the ONNX content, its precision, the profile, the flavour and its version, the GPU model and compute
    capability (TensorRT) or the target compute capabilities (TensorRT-RTX), the network creation flags and the build
    options; not file names, paths or times.
    """
    identity = {
        "manifest_version": CACHE_KEY_VERSION,
        "onnx_sha256": onnx_sha256,
        "precision": precision,
        "profile": profile.to_dict(),
        "flavour": device.flavour,
        "tensorrt_version": device.tensorrt_version,
        "gpu_name": device.gpu_name,
        "compute_capability": device.compute_capability,
        "compute_capabilities": list(targets),
        "network_flags": network_creation_flags(device.tensorrt_version, device.flavour),
        "opt_level": options.opt_level,
        "workspace_mib": options.workspace_mib,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def timing_cache_path(cache_dir: str | os.PathLike, device: DeviceInfo) -> Path:
    """One timing cache per GPU model, compute capability and TensorRT version (they are not portable)."""
    name = f"timing_{_slug(device.gpu_name)}_sm{device.compute_capability.replace('.', '')}_trt{_slug(device.tensorrt_version)}.cache"
    return Path(cache_dir) / name


def default_cache_dir() -> Path:
    from jarrn_deploy.cache import cache_home

    return cache_home() / "tensorrt"


# ---------------------------------------------------------------------------------------------------------------------
# the manifest


@dataclass
class EngineManifest:
    """Sidecar JSON of an engine (``<engine>.json``)."""

    onnx_path: str
    onnx_sha256: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict[str, list[int]]
    build: dict[str, Any]
    cache_key: str
    engine_file: str = ""
    engine_sha256: str = ""
    engine_bytes: int = 0
    inputs: list[str] = field(default_factory=lambda: list(INPUT_CHANNELS))
    outputs: list[str] = field(default_factory=lambda: [OUTPUT_NAME])
    contract_version: str = ""
    created_utc: str = ""
    flavour: str = TENSORRT
    compute_capabilities: list[str] = field(default_factory=list)
    compression: str = ""
    file_bytes: int = 0
    file_sha256: str = ""
    format: str = MANIFEST_FORMAT
    manifest_version: int = MANIFEST_VERSION

    # Fields: the ONNX (path, sha256, precision); the library (``flavour``: tensorrt or tensorrt-rtx, its version in
    # ``tensorrt_version``); TensorRT: the build GPU (``gpu_name``, ``compute_capability``); TensorRT-RTX: the target
    # compute capabilities (``compute_capabilities``; the GPU fields are "" for a CPU-only build); the profile, the
    # build options, the cache key, the engine file (name; sha256 and bytes of the plan TensorRT deserialises), I/O
    # names, contract version, creation time; ``compression`` ("" or "zstd", :mod:`jarrn_deploy.export.engine.compression`) with
    # ``file_bytes``/``file_sha256`` of the compressed file on disk (0 and "" for an uncompressed engine).

    @property
    def device(self) -> DeviceInfo:
        return DeviceInfo(self.gpu_name, self.compute_capability, self.tensorrt_version, self.flavour)

    @property
    def targets(self) -> tuple[str, ...]:
        """Compute capabilities the engine runs on (TensorRT: the one it was built on)."""
        if self.flavour == TENSORRT_RTX:
            return tuple(self.compute_capabilities) or RTX_PORTABLE_TARGETS
        return (self.compute_capability,)

    @property
    def profile_obj(self) -> Profile:
        return Profile.from_dict(self.profile)

    @property
    def build_options(self) -> BuildOptions:
        return BuildOptions(int(self.build.get("opt_level", DEFAULT_OPT_LEVEL)), self.build.get("workspace_mib"))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<manifest>") -> "EngineManifest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EngineFileError(f"{source}: engine manifest is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise EngineFileError(f"{source}: not a JARRN engine manifest (format {data.get('format') if isinstance(data, dict) else None!r})")
        if int(data.get("manifest_version", 0)) > MANIFEST_VERSION:
            raise EngineFileError(
                f"{source}: manifest version {data.get('manifest_version')} is newer than this code understands "
                f"({MANIFEST_VERSION}); update jarrn-deploy"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise EngineFileError(f"{source}: engine manifest lacks {missing}")
        check_precision(data["precision"], f"{source}: engine manifest")
        if data.get("compression", "") not in CODECS:
            raise EngineFileError(f"{source}: engine manifest names an unknown compression {data['compression']!r} "
                                  f"(this code reads {' or '.join(repr(c) for c in CODECS)}); update jarrn-deploy")
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EngineManifest":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EngineFileError(f"{path}: no engine manifest") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EngineFileError(f"{path}: engine manifest could not be read ({exc})") from None
        return cls.from_json(text, str(path))


def manifest_path(engine_path: str | os.PathLike) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + MANIFEST_SUFFIX)


def rebuild_command(
    manifest: EngineManifest,
    engine_path: str | os.PathLike,
    flavour: str | None = None,
    targets: Iterable[str] | None = None,
) -> str:
    """The exact ``jarrn build-engine`` command that rebuilds ``engine_path`` from the recorded ONNX, with ``flavour``
    (default: the engine's own) and, for TensorRT-RTX, ``targets`` (default: the engine's own)."""
    flavour = flavour or manifest.flavour
    args = [*BUILD_COMMAND.split(), "--onnx", manifest.onnx_path, "--out", str(engine_path), "--flavour", flavour]
    args += manifest.profile_obj.cli_args() + manifest.build_options.cli_args()
    if flavour == TENSORRT_RTX:
        if targets is None:
            targets = manifest.targets if manifest.flavour == TENSORRT_RTX else RTX_PORTABLE_TARGETS
        if tuple(targets) != RTX_PORTABLE_TARGETS:
            args += ["--compute-capability", ",".join(targets)]
    if manifest.compression:
        args.append("--compress")
    return shlex.join(args)


def check_compatible(manifest: EngineManifest, device: DeviceInfo, engine_path: str | os.PathLike) -> None:
    """Refuse, before deserialising, an engine of another flavour or library version, or one that cannot run on this
    GPU: TensorRT engines are tied to the GPU model they were built on, TensorRT-RTX engines to their target compute
    capabilities. Deserialising a foreign one fails deep inside the library or, worse, runs with wrong tactics.

    Parts of ``device`` that are not known yet are skipped: ``tensorrt_version`` "" (library not imported, version
    unknown) and ``compute_capability`` "" (no GPU seen yet); the runtime checks again once CUDA is up.
    """
    if manifest.flavour not in FLAVOURS:
        raise EngineFileError(f"{engine_path}: manifest names an unknown flavour {manifest.flavour!r} "
                              f"(expected one of {', '.join(FLAVOURS)})")
    built = manifest.device
    if manifest.flavour != device.flavour:
        raise EngineMismatchError(
            f"{engine_path}: this is a {FLAVOUR_TITLES[manifest.flavour]} engine, it cannot be loaded with "
            f"{device.library}; load it with flavour={manifest.flavour!r} (pip install {manifest.flavour}), or "
            f"rebuild it with: {rebuild_command(manifest, engine_path, device.flavour)}"
        )
    version_differs = bool(device.tensorrt_version) and manifest.tensorrt_version != device.tensorrt_version
    gpu_known = bool(device.compute_capability)
    if manifest.flavour == TENSORRT_RTX:
        if gpu_known and not rtx_runs_on(manifest.targets, device.compute_capability):
            if device.compute_capability in RTX_COMPUTE_CAPABILITIES:
                instead = rebuild_command(manifest, engine_path, TENSORRT_RTX, (device.compute_capability,))
            else:
                instead = rebuild_command(manifest, engine_path, TENSORRT)
            raise EngineMismatchError(
                f"{engine_path}: cannot run here: "
                + describe_not_supported(device.gpu_name, device.compute_capability, manifest.targets)
                + f". Build an engine for this GPU with: {instead}"
            )
        if version_differs:
            raise EngineMismatchError(
                f"{engine_path}: engine was built with {built.library}, this machine has {device.library}; "
                f"rebuild it (on any machine with that version) with: {rebuild_command(manifest, engine_path)}"
            )
        return
    problems = []
    if version_differs:
        problems.append(f"{built.library}, this machine has {device.library}")
    if gpu_known and (manifest.compute_capability != device.compute_capability or manifest.gpu_name != device.gpu_name):
        problems.append(
            f"GPU {manifest.gpu_name} (compute capability {manifest.compute_capability}), this machine has "
            f"{device.gpu_name} (compute capability {device.compute_capability})"
        )
    if problems:
        raise EngineMismatchError(
            f"{engine_path}: engine was built for " + "; ".join(problems)
            + f". TensorRT engines are not portable: rebuild it from the ONNX here with: {rebuild_command(manifest, engine_path)}"
        )


_MIN_ENGINE_BYTES = 1024  # any real TensorRT plan is far larger; smaller files are truncated or not engines


def check_engine_file(engine_path: str | os.PathLike, manifest: EngineManifest | None, *, verify_hash: bool = True) -> bytes:
    """Read the engine after checks that catch missing, truncated, altered or mistaken files; return the plan bytes
    TensorRT deserialises (a zstd-compressed file is checked as stored, decompressed, and the plan checked again)."""
    path = Path(engine_path)
    hint = (f" Rebuild it with: {rebuild_command(manifest, path)}" if manifest is not None
            else f" Build one with: {BUILD_COMMAND} --onnx MODEL.onnx --out {path}")
    if not path.is_file():
        raise EngineFileError(f"{path}: no such engine file.{hint}")
    if path.suffix.lower() == ".onnx":
        raise EngineFileError(
            f"{path}: this is an ONNX model, not a TensorRT engine; use DepthCompleter.from_onnx, or build an engine "
            f"with {BUILD_COMMAND} --onnx {path}"
        )
    data = path.read_bytes()
    compression = manifest.compression if manifest is not None else (ZSTD if is_zstd(data) else "")
    if len(data) < _MIN_ENGINE_BYTES and not compression:
        raise EngineFileError(f"{path}: {len(data)} bytes is too small to be a TensorRT engine (truncated or empty).{hint}")
    if manifest is not None:
        stored = "compressed engine" if compression else "engine"
        size, digest = (manifest.file_bytes, manifest.file_sha256) if compression else (manifest.engine_bytes,
                                                                                      manifest.engine_sha256)
        if size and len(data) != size:
            raise EngineFileError(f"{path}: {stored} is {len(data)} bytes but its manifest records {size} "
                                  f"(truncated or replaced).{hint}")
        if verify_hash and digest and hashlib.sha256(data).hexdigest() != digest:
            raise EngineFileError(f"{path}: {stored} content does not match its manifest's sha256 (corrupt or "
                                  f"replaced).{hint}")
    if not compression:
        return data
    try:
        plan = decompress(data, manifest.engine_bytes if manifest is not None else None)
    except CompressionError as exc:
        raise EngineFileError(f"{path}: zstd-compressed engine {exc} (truncated or corrupt).{hint}") from None
    if (manifest is not None and verify_hash and manifest.engine_sha256
            and hashlib.sha256(plan).hexdigest() != manifest.engine_sha256):
        raise EngineFileError(f"{path}: the decompressed engine does not match its manifest's sha256 (corrupt or "
                              f"replaced).{hint}")
    return plan


def beside_engine(engine_path: str | os.PathLike, name: str | os.PathLike) -> Path:
    """A file the manifest names relative to the engine's folder (the runtime cache): ``name`` if absolute, else
    that folder / ``name`` (relative to the current folder exactly when ``engine_path`` is)."""
    path = Path(name)
    return path if path.is_absolute() else Path(engine_path).parent / path
