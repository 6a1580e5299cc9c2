"""Build a strongly typed TensorRT or TensorRT-RTX engine from the exported ONNX, with a sidecar manifest and reuse.

    jarrn build-engine --onnx artifacts/jarrn_fp16.onnx                      # -> artifacts/jarrn_fp16.engine
    jarrn build-engine --onnx m.onnx --flavour tensorrt-rtx                  # CPU-only, RTX/A100 GPUs
    jarrn build-engine --onnx m.onnx --flavour tensorrt-rtx --compute-capability 8.6,8.9 --compress
    jarrn build-engine --onnx m.onnx --out m.engine --min 1x64x64 --opt 1x320x320 --max 4x384x1280 \\
        --opt-level 3 --workspace 4096
    jarrn build-engine --onnx m.onnx --print-trtexec                         # no TensorRT needed

(``python export/build_engine.py`` and ``python -m jarrn_deploy.export.build_engine`` run the same command.)

- Flavour (``--flavour``; default: the installed one, standard TensorRT first): ``tensorrt`` builds on the GPU that
  will run the engine (Jetson, H100/H200, any NVIDIA GPU); ``tensorrt-rtx`` builds ahead of time on the CPU for a set of
  compute capabilities (``--compute-capability``, default its portable set 8.0 8.6 8.9 12.0 12.1: A100, RTX 30/40/50).
- Precision comes from the ONNX (FP16 casts, INT8 Q/DQ; see export/precision.py): the network is strongly typed and no
  precision flag is set.
- One optimization profile over batch, height and width for both inputs (``--min/--opt/--max`` as BxHxW); a graph
  exported with ``--static``/``--batch`` gets its fixed shape (min = opt = max).
- TensorRT: a timing cache per GPU model and TensorRT version (``--timing-cache-dir``) makes rebuilds fast.
  TensorRT-RTX: no timing cache (deprecated there, and it would make the build look for a GPU); ``--runtime-cache``
  names the file where the runtime keeps its just-in-time compiled kernels between runs.
- The engine and ``<engine>.json`` (the manifest: ONNX sha256, precision, flavour and library version, GPU or target
  compute capabilities, profile, build options, cache key) are written atomically. When the manifest beside an existing
  engine has the same cache key, the build is skipped (``--force`` rebuilds).
- ``--compress`` stores the engine as one zstd frame (for distributing it: TensorRT-RTX engines shrink to about a
  third, export/README.md); the manifest records the codec and the size and sha256 of both the file and the plan, and
  ``DepthCompleter.from_engine`` decompresses it after its checks, before TensorRT sees it. Asking for the other
  encoding of an up-to-date engine re-encodes it without rebuilding.

Exit codes (jarrn_deploy.errors): 0 built or reused; 2 bad arguments; 3 unusable ONNX; 5 library or GPU missing; 6 the
builder failed (its own error text is in the message).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

from jarrn_deploy.export.engine.flavours import (  # noqa: E402
    FLAVOURS,
    FLAVOUR_TITLES,
    PORTABLE,
    RTX_COMPUTE_CAPABILITIES,
    RTX_PORTABLE_TARGETS,
    TENSORRT,
    TENSORRT_RTX,
    FlavourError,
    default_flavour,
    import_flavour,
    network_creation_flags,
    parse_compute_capabilities,
)
from jarrn_deploy.export.engine.graph import (  # noqa: E402
    check_profile_fits_graph,
    fixed_profile,
    onnx_input_shapes,
    onnx_sha256,
    precision_from_onnx,
)
from jarrn_deploy.export.engine.manifest import (  # noqa: E402
    DeviceInfo,
    EngineManifest,
    cache_key,
    check_engine_file,
    default_cache_dir,
    manifest_path,
    timing_cache_path,
)
from jarrn_deploy.export.engine.compression import ZSTD, compress, zstandard_module  # noqa: E402
from jarrn_deploy.export.export_errors import EngineFileError  # noqa: E402
from jarrn_deploy.export.engine.profile import (  # noqa: E402
    DEFAULT_MAX,
    DEFAULT_MIN,
    DEFAULT_OPT,
    DEFAULT_OPT_LEVEL,
    DEFAULT_WORKSPACE_MIB,
    BUILD_COMMAND,
    INPUT_CHANNELS,
    BuildOptions,
    Profile,
    ProfileError,
)
from jarrn_deploy.export.engine.recipes import tensorrt_rtx_commands_text, trtexec_commands_text  # noqa: E402
from jarrn_deploy.model.atomic import atomic_write_bytes  # noqa: E402
from jarrn_deploy.export.gpu_probe import probe_gpu  # noqa: E402
from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import CheckFailedError, InputError, UnavailableError, UsageError  # noqa: E402


def default_engine_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".engine")


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
            print(f"[build_engine] timing cache {timing_cache_file} does not match this GPU/TensorRT: starting a new one",
                  file=sys.stderr)
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        reason = " | ".join(logger.errors) or "no error text from the builder (run with --verbose)"
        raise CheckFailedError(f"{onnx_path}: {title} {trt.__version__} could not build an engine: {reason}")
    if flavour == TENSORRT and timing_cache_file is not None:
        atomic_write_bytes(timing_cache_file, memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(plan))


# ---------------------------------------------------------------------------------------------------------------------
# CLI


HELP_EPILOG = """\
examples:
  jarrn build-engine --onnx artifacts/jarrn_fp16.onnx          # -> artifacts/jarrn_fp16.engine
  jarrn build-engine --onnx m.onnx --out m.engine --min 1x64x64 --opt 1x320x320 --max 4x384x1280
  jarrn build-engine --onnx m.onnx --flavour tensorrt-rtx --compress   # zstd-compressed, for distribution
  jarrn build-engine --onnx m.onnx --print-trtexec             # the trtexec commands; no TensorRT needed
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=BUILD_COMMAND,
        description="Build a strongly typed TensorRT or TensorRT-RTX engine (+ JSON manifest) from the exported JARRN ONNX.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--onnx", required=True, type=Path, help="exported graph (export/to_onnx.py)")
    parser.add_argument("--out", type=Path, default=None, help="engine path (default: the ONNX path with .engine)")
    parser.add_argument("--flavour", choices=FLAVOURS, default=None,
                        help="tensorrt: build on the GPU that runs the engine (Jetson, H100/H200, any NVIDIA GPU); "
                             "tensorrt-rtx: build on the CPU for RTX-class GPUs (A100, RTX 30/40/50). "
                             "Default: the installed one, tensorrt first")
    parser.add_argument("--compute-capability", default=None, metavar="LIST",
                        help=f"TensorRT-RTX only: target compute capabilities, comma-separated, from "
                             f"{', '.join(RTX_COMPUTE_CAPABILITIES)} (default '{PORTABLE}': "
                             f"{' '.join(RTX_PORTABLE_TARGETS)} and newer 12.x)")
    parser.add_argument("--runtime-cache", default=None, metavar="FILE",
                        help="TensorRT-RTX only: file where the runtime keeps its just-in-time compiled kernels "
                             "(relative paths are relative to the engine's folder); recorded in the manifest")
    parser.add_argument("--min", default=None, help=f"smallest BxHxW the engine accepts (default {DEFAULT_MIN})")
    parser.add_argument("--opt", default=None, help=f"BxHxW that kernels are tuned for (default {DEFAULT_OPT})")
    parser.add_argument("--max", default=None, help=f"largest BxHxW; buffers are sized for it (default {DEFAULT_MAX})")
    parser.add_argument("--opt-level", type=int, default=DEFAULT_OPT_LEVEL,
                        help=f"builder optimization level 0..5 (default {DEFAULT_OPT_LEVEL}; higher builds slower, may run faster)")
    parser.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MIB,
                        help=f"builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MIB}; less on small Jetsons)")
    parser.add_argument("--timing-cache-dir", type=Path, default=None,
                        help=f"TensorRT only: where timing caches live, one per GPU and TensorRT version "
                             f"(default {default_cache_dir()})")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0; TensorRT only)")
    parser.add_argument("--force", action="store_true", help="rebuild even when an up-to-date engine exists")
    parser.add_argument("--compress", action="store_true",
                        help="store the engine zstd-compressed (for distribution; needs the zstandard package); "
                             "DepthCompleter.from_engine reads it back transparently")
    parser.add_argument("--print-trtexec", action="store_true",
                        help="print the equivalent command lines and exit: trtexec (TensorRT 10/11 desktop, Jetson) or "
                             "tensorrt_rtx (TensorRT-RTX)")
    parser.add_argument("--verbose", action="store_true", help="verbose builder log")
    args = parser.parse_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)  # recorded in the manifest
    return args


def _profile_from_args(args: argparse.Namespace, shapes: dict[str, tuple[int | None, ...]]) -> Profile:
    """The requested profile; a graph with fixed shapes gets its own shape when no --min/--opt/--max was given."""
    fixed = fixed_profile(shapes) if shapes else None
    if fixed is not None and (args.min, args.opt, args.max) == (None, None, None):
        return fixed
    profile = Profile.parse(args.min or DEFAULT_MIN, args.opt or DEFAULT_OPT, args.max or DEFAULT_MAX)
    if shapes:
        check_profile_fits_graph(profile, shapes, str(args.onnx))
    return profile


def _choose_flavour(args: argparse.Namespace) -> str | None:
    """--flavour; else TensorRT-RTX when an option only it has was given; else the installed one, TensorRT first."""
    rtx_only = [name for name, value in (("--compute-capability", args.compute_capability),
                                         ("--runtime-cache", args.runtime_cache)) if value is not None]
    if args.flavour == TENSORRT and rtx_only:
        raise UsageError(f"{rtx_only[0]}: only for --flavour tensorrt-rtx (standard TensorRT builds for the GPU it "
                         "runs on, with no runtime cache)")
    if args.flavour is None and rtx_only:
        return TENSORRT_RTX
    return args.flavour or default_flavour()


def _unreadable_onnx(onnx_path: Path, exc: Exception) -> InputError:
    return InputError(f"--onnx: {onnx_path} could not be read as ONNX ({type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:300]})")


def run(args: argparse.Namespace) -> int:
    onnx_path: Path = args.onnx
    engine_path: Path = args.out or default_engine_path(onnx_path)
    flavour = _choose_flavour(args)
    shapes: dict[str, tuple[int | None, ...]] = {}
    if onnx_path.is_file():
        try:
            shapes = onnx_input_shapes(onnx_path)
        except Exception as exc:  # noqa: BLE001 - a corrupt file makes onnx raise several types
            raise _unreadable_onnx(onnx_path, exc) from None
    try:
        options = BuildOptions(args.opt_level, args.workspace)
        targets = parse_compute_capabilities(args.compute_capability)
        profile = _profile_from_args(args, shapes)
    except (ProfileError, FlavourError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    cache_dir: Path = args.timing_cache_dir or default_cache_dir()

    if args.print_trtexec:
        if flavour == TENSORRT_RTX:
            text = tensorrt_rtx_commands_text(str(onnx_path), str(engine_path), profile, options, targets,
                                              args.runtime_cache)
        else:
            text = trtexec_commands_text(str(onnx_path), str(engine_path), profile, options, str(cache_dir))
        print(text, end="")
        return 0

    if not onnx_path.is_file():
        raise InputError(f"--onnx: no such file {onnx_path}")
    if engine_path.suffix.lower() == ".onnx":
        raise UsageError(f"--out: {engine_path} would overwrite an ONNX file; use a .engine or .plan name")
    try:
        precision = precision_from_onnx(onnx_path)
        onnx_digest = onnx_sha256(onnx_path)
    except EngineFileError as exc:  # readable, but a precision the exporter never produces
        raise InputError(f"--onnx: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes onnx raise several types
        raise _unreadable_onnx(onnx_path, exc) from None

    if flavour is None:
        flavour = TENSORRT  # neither installed: say how to get standard TensorRT (or use --flavour tensorrt-rtx)
    try:
        trt = import_flavour(flavour)
    except ImportError as exc:
        raise UnavailableError(str(exc)) from None

    if flavour == TENSORRT_RTX:
        device = DeviceInfo("", "", trt.__version__, TENSORRT_RTX)
        where = f"on the CPU (ahead of time) for compute capabilities {' '.join(targets)}"
        timing_file = None
    else:
        found = probe_gpu(args.device)
        if found is None:
            raise UnavailableError(
                "no CUDA GPU found (checked cuda-python and nvidia-smi): TensorRT engines are built on the GPU that "
                "will run them; for A100 or RTX 30/40/50 GPUs, --flavour tensorrt-rtx builds on a machine without one"
            )
        device = DeviceInfo(found[0], found[1], trt.__version__, TENSORRT)
        timing_file = timing_cache_path(cache_dir, device)
        where = f"on {device.gpu_name} (sm {device.compute_capability}), timing cache {timing_file}"
    rtx_targets = targets if flavour == TENSORRT_RTX else ()
    key = cache_key(onnx_sha256=onnx_digest, precision=precision, profile=profile, device=device, options=options,
                    targets=rtx_targets)
    sidecar = manifest_path(engine_path)

    codec = ZSTD if args.compress else ""
    if codec:
        zstandard_module()  # missing: say so now, not after the build
    if not args.force and sidecar.is_file() and engine_path.is_file():
        try:
            existing = EngineManifest.load(sidecar)
            if existing.cache_key == key:
                plan = check_engine_file(engine_path, existing)
                if existing.compression == codec:
                    print(f"[build_engine] {engine_path} is up to date (same ONNX, precision, profile, targets and "
                          f"{device.library}): reusing it, no rebuild (--force rebuilds)")
                    return 0
                print(f"[build_engine] {engine_path} is up to date; storing it {_encoding(codec)} (no rebuild)")
                _write_engine(engine_path, plan, existing, codec)
                return 0
        except EngineFileError as exc:
            print(f"[build_engine] existing engine unusable ({exc}); rebuilding", file=sys.stderr)

    print(f"[build_engine] building {engine_path} from {onnx_path} ({precision}, strongly typed) with {device.library} "
          f"{where}, profile min {profile.min} opt {profile.opt} max {profile.max}, opt level {options.opt_level}, "
          f"workspace {options.workspace_mib} MiB ...", flush=True)
    start = time.perf_counter()
    plan = build_serialized_engine(trt, flavour, onnx_path, profile, options, timing_cache_file=timing_file,
                                   targets=targets, verbose=args.verbose)
    seconds = time.perf_counter() - start

    from jarrn_deploy.model.contract import CONTRACT_VERSION

    build: dict[str, Any] = {
        "opt_level": options.opt_level,
        "workspace_mib": options.workspace_mib,
        "network_flags": network_creation_flags(trt.__version__, flavour),
        "strongly_typed": True,
        "build_seconds": round(seconds, 1),
        "command": shlex.join([*BUILD_COMMAND.split(), *getattr(args, "command_line", [])]),
    }
    if flavour == TENSORRT_RTX:
        build.update(cpu_only_aot=True, runtime_cache=args.runtime_cache or "")
    else:
        build["timing_cache"] = str(timing_file)
    manifest = EngineManifest(
        onnx_path=str(onnx_path.resolve()),
        onnx_sha256=onnx_digest,
        precision=precision,
        tensorrt_version=device.tensorrt_version,
        gpu_name=device.gpu_name,
        compute_capability=device.compute_capability,
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
    stored = _write_engine(engine_path, plan, manifest, codec)
    print(f"[build_engine] wrote {engine_path} ({_encoding(codec)}, {stored / 2**20:.1f} MiB"
          + (f" from {len(plan) / 2**20:.1f} MiB" if codec else "") + f") and {sidecar.name} in {seconds:.1f} s")
    return 0


def _encoding(codec: str) -> str:
    return "zstd-compressed" if codec else "uncompressed"


def _write_engine(engine_path: Path, plan: bytes, manifest: EngineManifest, codec: str) -> int:
    """Write ``plan`` (compressed with ``codec``) and its manifest, recording the encoding; returns the file's size."""
    stored = compress(plan) if codec == ZSTD else plan
    manifest = dataclasses.replace(manifest, compression=codec, file_bytes=len(stored) if codec else 0,
                                   file_sha256=hashlib.sha256(stored).hexdigest() if codec else "")
    # Engine first, manifest second: a crash in between leaves an engine whose (old or missing) manifest fails the
    # checks, so it is rebuilt rather than trusted.
    atomic_write_bytes(engine_path, stored)
    manifest.save(manifest_path(engine_path))
    return len(stored)


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
