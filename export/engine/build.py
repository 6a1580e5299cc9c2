"""Build a strongly typed TensorRT or TensorRT-RTX engine from an exported ONNX graph, as a library function.

    from jarrn_deploy.export.engine.build import build_engine

    built = build_engine("artifacts/jarrn_fp16.onnx", flavour="tensorrt-rtx")   # -> artifacts/jarrn_fp16.engine
    built.engine_path, built.manifest.precision, built.reused

The engine and its manifest (``<engine>.json``) are written atomically, engine first. When the manifest beside an
existing engine has the same cache key (ONNX content, precision, profile, flavour and version, GPU or targets, build
options) nothing is built (``force=True`` rebuilds); asking for the other encoding (``compress``) of an up-to-date
engine re-encodes it without rebuilding. Errors are the project's (jarrn_deploy.errors): :class:`InputError` for an
unusable ONNX, :class:`UsageError` for settings outside what is accepted, :class:`UnavailableError` for a missing
library or GPU, :class:`CheckFailedError` when the library's parser or builder fails (its own error text in the
message). Messages name the ``jarrn build-engine`` options, which map one to one onto the parameters. Nothing is
printed on stdout; progress goes to ``log`` and recoverable problems to ``warn``. TensorRT's own warnings (all its
messages with ``verbose``) go to stderr, as its logger prints them.

``export/build_engine.py`` (``jarrn build-engine``) is the command-line wrapper.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from jarrn_deploy.errors import CheckFailedError, InputError, UnavailableError, UsageError
from jarrn_deploy.export.engine.compression import ZSTD, compress as compress_plan, zstandard_module
from jarrn_deploy.export.engine.flavours import (
    FLAVOUR_TITLES,
    RTX_COMPUTE_CAPABILITIES,
    RTX_PORTABLE_TARGETS,
    TENSORRT,
    TENSORRT_RTX,
    check_flavour,
    default_flavour,
    import_flavour,
    network_creation_flags,
    parse_compute_capabilities,
)
from jarrn_deploy.export.engine.graph import (
    check_profile_fits_graph,
    fixed_profile,
    onnx_input_shapes,
    onnx_sha256,
    precision_from_onnx,
)
from jarrn_deploy.export.engine.manifest import (
    DeviceInfo,
    EngineManifest,
    cache_key,
    check_engine_file,
    default_cache_dir,
    manifest_path,
    timing_cache_path,
)
from jarrn_deploy.export.engine.profile import BUILD_COMMAND, INPUT_CHANNELS, BuildOptions, Profile, ProfileError
from jarrn_deploy.export.export_errors import EngineFileError
from jarrn_deploy.export.gpu_probe import probe_gpu
from jarrn_deploy.model.atomic import atomic_write_bytes
from jarrn_deploy.progress import Log, quiet



def stderr_warn(message: str) -> None:
    """The default ``warn``: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BuiltEngine:
    """What :func:`build_engine` returns: the engine file and the manifest written (or found) beside it."""

    engine_path: Path
    """The engine file (its manifest is ``manifest_path(engine_path)``, ``<engine>.json``)."""
    manifest: EngineManifest
    """The manifest beside the engine, as saved."""
    reused: bool
    """True when no build ran: the existing engine was up to date (and at most re-encoded)."""


def default_engine_path(onnx_path: str | os.PathLike) -> Path:
    """The engine a build writes when no ``out`` is given: the ONNX path with ``.engine``."""
    return Path(onnx_path).with_suffix(".engine")


def choose_flavour(flavour: str | None, targets: object = None, runtime_cache: str | None = None) -> str | None:
    """``flavour``; else TensorRT-RTX when a setting only it has was given; else the installed one, TensorRT first
    (None when neither is installed)."""
    if flavour is not None:
        check_flavour(flavour)
    rtx_only = [name for name, value in (("--compute-capability", targets), ("--runtime-cache", runtime_cache))
                if value is not None]
    if flavour == TENSORRT and rtx_only:
        raise UsageError(f"{rtx_only[0]}: only for --flavour tensorrt-rtx (standard TensorRT builds for the GPU it "
                         "runs on, with no runtime cache)")
    if flavour is None and rtx_only:
        return TENSORRT_RTX
    return flavour or default_flavour()


def resolve_targets(targets: str | Iterable[str] | None) -> tuple[str, ...]:
    """TensorRT-RTX compute-capability targets: None or "portable" -> the portable set; else a comma-separated string
    or a list of ``M.m`` values, checked (:class:`UsageError` naming ``--compute-capability``)."""
    if targets is None or isinstance(targets, str):
        return parse_compute_capabilities(targets)
    return parse_compute_capabilities(",".join(str(t) for t in targets))


def unreadable_onnx(onnx_path: Path, exc: Exception) -> InputError:
    """The one-line error for a file that onnx cannot parse."""
    return InputError(f"--onnx: {onnx_path} could not be read as ONNX ({type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:300]})")


def resolve_profile(onnx_path: Path, profile: Profile | None) -> Profile:
    """The profile to build: ``profile`` checked against the graph's fixed dims (:class:`UsageError` when it cannot
    hold them); for None, the graph's own shape when it is fixed, else the default profile. A missing file is not
    read (the profile is then taken as given, for printing recipes)."""
    shapes: dict[str, tuple[int | None, ...]] = {}
    if onnx_path.is_file():
        try:
            shapes = onnx_input_shapes(onnx_path)
        except Exception as exc:  # noqa: BLE001 - a corrupt file makes onnx raise several types
            raise unreadable_onnx(onnx_path, exc) from None
    if profile is None:
        return (fixed_profile(shapes) if shapes else None) or Profile.parse()
    if shapes:
        try:
            check_profile_fits_graph(profile, shapes, str(onnx_path))
        except ProfileError as exc:
            raise UsageError(str(exc)) from None
    return profile


def build_engine(
    onnx: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    flavour: str | None = None,
    profile: Profile | None = None,
    options: BuildOptions | None = None,
    targets: str | Iterable[str] | None = None,
    runtime_cache: str | None = None,
    timing_cache_dir: str | os.PathLike | None = None,
    device: int = 0,
    force: bool = False,
    compress: bool = False,
    verbose: bool = False,
    command: Sequence[str] | None = None,
    log: Log = quiet,
    warn: Log = stderr_warn,
) -> BuiltEngine:
    """Build (or reuse) the engine of ``onnx`` at ``out`` (default: the ONNX path with ``.engine``) and its manifest.

    ``flavour``: "tensorrt" (on this machine's GPU ``device``) or "tensorrt-rtx" (ahead of time on the CPU); default
    TensorRT-RTX when ``targets`` or ``runtime_cache`` is given, else the installed one, TensorRT first.
    ``profile``: default the graph's own shape when it is fixed, else 1x64x64 / 1x320x320 / 4x384x1280.
    ``options``: builder optimization level and workspace (default :class:`BuildOptions`()). TensorRT-RTX only:
    ``targets`` (compute capabilities, default the portable set) and ``runtime_cache`` (recorded in the manifest).
    TensorRT only: ``timing_cache_dir`` (default the project cache). ``compress``: store the engine zstd-compressed.
    ``command``: the ``jarrn build-engine`` arguments recorded in the manifest (default: the equivalent command).
    """
    onnx_path = Path(onnx)
    engine_path = Path(out) if out is not None else default_engine_path(onnx_path)
    flavour = choose_flavour(flavour, targets, runtime_cache)
    targets = resolve_targets(targets)
    options = options if options is not None else BuildOptions()
    if not onnx_path.is_file():
        raise InputError(f"--onnx: no such file {onnx_path}")
    profile = resolve_profile(onnx_path, profile)
    if engine_path.suffix.lower() == ".onnx":
        raise UsageError(f"--out: {engine_path} would overwrite an ONNX file; use a .engine or .plan name")
    try:
        precision = precision_from_onnx(onnx_path)
        onnx_digest = onnx_sha256(onnx_path)
    except EngineFileError as exc:  # readable, but a precision the exporter never produces
        raise InputError(f"--onnx: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes onnx raise several types
        raise unreadable_onnx(onnx_path, exc) from None

    if flavour is None:
        flavour = TENSORRT  # neither installed: say how to get standard TensorRT (or use flavour tensorrt-rtx)
    try:
        trt = import_flavour(flavour)
    except ImportError as exc:
        raise UnavailableError(str(exc)) from None

    if flavour == TENSORRT_RTX:
        device_info = DeviceInfo("", "", trt.__version__, TENSORRT_RTX)
        where = f"on the CPU (ahead of time) for compute capabilities {' '.join(targets)}"
        timing_file = None
    else:
        found = probe_gpu(device)
        if found is None:
            raise UnavailableError(
                "no CUDA GPU found (checked cuda-python and nvidia-smi): TensorRT engines are built on the GPU that "
                "will run them; for A100 or RTX 30/40/50 GPUs, --flavour tensorrt-rtx builds on a machine without one"
            )
        device_info = DeviceInfo(found[0], found[1], trt.__version__, TENSORRT)
        timing_file = timing_cache_path(Path(timing_cache_dir) if timing_cache_dir else default_cache_dir(),
                                        device_info)
        where = f"on {device_info.gpu_name} (sm {device_info.compute_capability}), timing cache {timing_file}"
    rtx_targets = targets if flavour == TENSORRT_RTX else ()
    key = cache_key(onnx_sha256=onnx_digest, precision=precision, profile=profile, device=device_info,
                    options=options, targets=rtx_targets)
    sidecar = manifest_path(engine_path)

    codec = ZSTD if compress else ""
    if codec:
        zstandard_module()  # missing: say so now, not after the build
    if not force and sidecar.is_file() and engine_path.is_file():
        try:
            existing = EngineManifest.load(sidecar)
            if existing.cache_key == key:
                plan = check_engine_file(engine_path, existing)
                if existing.compression == codec:
                    log(f"{engine_path} is up to date (same ONNX, precision, profile, targets and "
                        f"{device_info.library}): reusing it, no rebuild (--force rebuilds)")
                    return BuiltEngine(engine_path, existing, reused=True)
                log(f"{engine_path} is up to date; storing it {_encoding(codec)} (no rebuild)")
                return BuiltEngine(engine_path, _write_engine(engine_path, plan, existing, codec), reused=True)
        except EngineFileError as exc:
            warn(f"existing engine unusable ({exc}); rebuilding")

    log(f"building {engine_path} from {onnx_path} ({precision}, strongly typed) with {device_info.library} "
        f"{where}, profile min {profile.min} opt {profile.opt} max {profile.max}, opt level {options.opt_level}, "
        f"workspace {options.workspace_mib} MiB ...")
    start = time.perf_counter()
    plan = build_serialized_engine(trt, flavour, onnx_path, profile, options, timing_cache_file=timing_file,
                                   targets=targets, verbose=verbose, warn=warn)
    seconds = time.perf_counter() - start

    from jarrn_deploy.model.contract import CONTRACT_VERSION

    if command is None:
        command = _equivalent_arguments(onnx_path, engine_path, flavour, profile, options, rtx_targets,
                                        runtime_cache, compress)
    build: dict[str, Any] = {
        "opt_level": options.opt_level,
        "workspace_mib": options.workspace_mib,
        "network_flags": network_creation_flags(trt.__version__, flavour),
        "strongly_typed": True,
        "build_seconds": round(seconds, 1),
        "command": shlex.join([*BUILD_COMMAND.split(), *command]),
    }
    if flavour == TENSORRT_RTX:
        build.update(cpu_only_aot=True, runtime_cache=runtime_cache or "")
    else:
        build["timing_cache"] = str(timing_file)
    manifest = EngineManifest(
        onnx_path=str(onnx_path.resolve()),
        onnx_sha256=onnx_digest,
        precision=precision,
        tensorrt_version=device_info.tensorrt_version,
        gpu_name=device_info.gpu_name,
        compute_capability=device_info.compute_capability,
        profile=profile.to_dict(),
        build=build,
        cache_key=key,
        engine_file=engine_path.name,
        engine_sha256=hashlib.sha256(plan).hexdigest(),
        engine_bytes=len(plan),
        contract_version=CONTRACT_VERSION,
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        flavour=flavour,
        compute_capabilities=list(rtx_targets),
    )
    manifest = _write_engine(engine_path, plan, manifest, codec)
    stored = manifest.file_bytes if codec else len(plan)
    log(f"wrote {engine_path} ({_encoding(codec)}, {stored / 2**20:.1f} MiB"
        + (f" from {len(plan) / 2**20:.1f} MiB" if codec else "") + f") and {sidecar.name} in {seconds:.1f} s")
    return BuiltEngine(engine_path, manifest, reused=False)


def _equivalent_arguments(onnx_path: Path, engine_path: Path, flavour: str, profile: Profile, options: BuildOptions,
                          rtx_targets: tuple[str, ...], runtime_cache: str | None, compress: bool) -> list[str]:
    """The ``jarrn build-engine`` arguments that make the same build (recorded when the caller gives none)."""
    args = ["--onnx", str(onnx_path), "--out", str(engine_path), "--flavour", flavour,
            *profile.cli_args(), *options.cli_args()]
    if rtx_targets and tuple(rtx_targets) != RTX_PORTABLE_TARGETS:
        args += ["--compute-capability", ",".join(rtx_targets)]
    if runtime_cache:
        args += ["--runtime-cache", runtime_cache]
    return args + (["--compress"] if compress else [])


def _encoding(codec: str) -> str:
    return "zstd-compressed" if codec else "uncompressed"


def _write_engine(engine_path: Path, plan: bytes, manifest: EngineManifest, codec: str) -> EngineManifest:
    """Write ``plan`` (compressed with ``codec``) and its manifest, recording the encoding; returns the manifest."""
    stored = compress_plan(plan) if codec == ZSTD else plan
    manifest = dataclasses.replace(manifest, compression=codec, file_bytes=len(stored) if codec else 0,
                                   file_sha256=hashlib.sha256(stored).hexdigest() if codec else "")
    # Engine first, manifest second: a crash in between leaves an engine whose (old or missing) manifest fails the
    # checks, so it is rebuilt rather than trusted.
    atomic_write_bytes(engine_path, stored)
    manifest.save(manifest_path(engine_path))
    return manifest


# ---------------------------------------------------------------------------------------------------------------------
# the only parts that touch TensorRT


_LOGGERS: dict[Any, Any] = {}  # library module -> its logger


def _recording_logger(trt: Any, verbose: bool) -> Any:
    """The process's logger for ``trt``: prints warnings (everything with ``verbose``) and keeps the builder's errors
    for the one-line message. One per library and process: TensorRT keeps the first logger it is given and ignores
    later ones, so a fresh logger per build would miss the errors of every build after the first."""
    severity = trt.ILogger.Severity
    logger = _LOGGERS.get(trt)
    if logger is None:

        class RecordingLogger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []
                self.shown = int(severity.WARNING)

            def log(self, level: Any, message: str) -> None:
                if int(level) <= int(severity.ERROR):  # reported once, in the one-line error of the failed step
                    self.errors.append(" ".join(str(message).split()))
                elif int(level) <= self.shown:
                    print(f"[{trt.__name__}] {message}", file=sys.stderr)

        logger = _LOGGERS[trt] = RecordingLogger()
    logger.errors = []
    logger.shown = int(severity.VERBOSE if verbose else severity.WARNING)
    return logger


def build_serialized_engine(
    trt: Any,
    flavour: str,
    onnx_path: Path,
    profile: Profile,
    options: BuildOptions,
    *,
    timing_cache_file: Path | None = None,
    targets: tuple[str, ...] = RTX_PORTABLE_TARGETS,
    verbose: bool = False,
    warn: Log = stderr_warn,
) -> bytes:
    """Parse the ONNX into a strongly typed network and build the engine; :class:`CheckFailedError` with the
    library's own error text when parsing or building fails.

    TensorRT: updates ``timing_cache_file``. TensorRT-RTX: sets the target compute capabilities (none for the portable
    default) and uses no timing cache, so the build needs no GPU.
    """
    title = FLAVOUR_TITLES[flavour]
    logger = _recording_logger(trt, verbose)
    builder = trt.Builder(logger)
    flags = 0
    for flag_name in network_creation_flags(trt.__version__, flavour):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, flag_name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors))
        raise CheckFailedError(f"{onnx_path}: {title}'s ONNX parser failed: {errors or '; '.join(logger.errors)}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(inputs) != sorted(INPUT_CHANNELS):
        raise InputError(f"--onnx: {onnx_path} has inputs {inputs}; expected {sorted(INPUT_CHANNELS)} "
                         "(a graph from python export/to_onnx.py)")

    config = builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mib) << 20)
    config.builder_optimization_level = int(options.opt_level)
    trt_profile = builder.create_optimization_profile()
    for name in inputs:
        trt_profile.set_shape(name, *profile.tensor_shapes(name))
    config.add_optimization_profile(trt_profile)

    if flavour == TENSORRT_RTX:
        if tuple(targets) != RTX_PORTABLE_TARGETS:
            config.num_compute_capabilities = len(targets)
            for index, target in enumerate(targets):
                config.set_compute_capability(getattr(trt.ComputeCapability, RTX_COMPUTE_CAPABILITIES[target]), index)
    elif timing_cache_file is not None:
        cache_bytes = timing_cache_file.read_bytes() if timing_cache_file.is_file() else b""
        timing_cache = config.create_timing_cache(cache_bytes)
        if not config.set_timing_cache(timing_cache, ignore_mismatch=False):
            warn(f"timing cache {timing_cache_file} does not match this GPU/TensorRT: starting a new one")
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        reason = " | ".join(logger.errors) or "no error text from the builder (run with --verbose)"
        raise CheckFailedError(f"{onnx_path}: {title} {trt.__version__} could not build an engine: {reason}")
    if flavour == TENSORRT and timing_cache_file is not None:
        atomic_write_bytes(timing_cache_file, memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(plan))
