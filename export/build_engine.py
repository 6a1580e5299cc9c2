"""Build a strongly typed TensorRT engine from the exported ONNX, with a sidecar manifest and build reuse.

    python export/build_engine.py --onnx artifacts/jarrn_fp16.onnx                      # -> artifacts/jarrn_fp16.engine
    python export/build_engine.py --onnx m.onnx --out m.engine --min 1x64x64 --opt 1x320x320 --max 4x384x1280 \\
        --opt-level 3 --workspace 4096
    python export/build_engine.py --onnx m.onnx --print-trtexec                         # no TensorRT needed

- Precision comes from the ONNX (FP16 casts, INT8 Q/DQ; see export/precision.py): the network is strongly typed
  (TensorRT 10: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; TensorRT 11: the only mode) and no precision flag is set.
- One optimization profile over batch, height and width for both inputs (``--min/--opt/--max`` as BxHxW).
- A timing cache per GPU model and TensorRT version (``--timing-cache-dir``) makes rebuilds fast.
- The engine and ``<engine>.json`` (the manifest: ONNX sha256, precision, TensorRT version, GPU, compute capability,
  profile, build options, cache key) are written atomically. When the manifest beside an existing engine has the same
  cache key, the build is skipped (``--force`` rebuilds).

Exit codes: 0 built or reused; 2 bad arguments or input; 3 TensorRT or a GPU is missing; 4 the build failed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # runnable as `python export/build_engine.py` without installing
    sys.path.insert(0, str(_REPO_ROOT))

from export.engine_manifest import (  # noqa: E402
    DEFAULT_MAX,
    DEFAULT_MIN,
    DEFAULT_OPT,
    DEFAULT_OPT_LEVEL,
    DEFAULT_WORKSPACE_MIB,
    INPUT_CHANNELS,
    TENSORRT_INSTALL_HINT,
    BuildOptions,
    DeviceInfo,
    EngineFileError,
    EngineManifest,
    Profile,
    ProfileError,
    atomic_write_bytes,
    cache_key,
    check_engine_file,
    default_cache_dir,
    manifest_path,
    network_creation_flags,
    onnx_sha256,
    precision_from_onnx,
    timing_cache_path,
    trtexec_commands_text,
)

EXIT_BAD_INPUT, EXIT_NO_TENSORRT, EXIT_BUILD_FAILED = 2, 3, 4


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def default_engine_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".engine")


# ---------------------------------------------------------------------------------------------------------------------
# the only parts that touch TensorRT / the GPU


def probe_gpu(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "M.m") from cuda-python / pycuda, else PyTorch, else nvidia-smi."""
    try:
        from runtime.backends._cuda import load_cuda_api

        api = load_cuda_api(device)
        return api.device_name, DeviceInfo.format_cc(*api.compute_capability)
    except Exception:  # noqa: BLE001 - fall through to the next probe
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(device), DeviceInfo.format_cc(*torch.cuda.get_device_capability(device))
    except Exception:  # noqa: BLE001
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={device}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip().splitlines()[0]
        name, cc = (s.strip() for s in out.rsplit(",", 1))
        return name, cc
    except Exception:  # noqa: BLE001
        raise CliError("no CUDA GPU found (checked cuda-python, pycuda, PyTorch and nvidia-smi): TensorRT engines are "
                       "built on the GPU that will run them", EXIT_NO_TENSORRT) from None


def build_serialized_engine(
    trt,  # noqa: ANN001 - the tensorrt module
    onnx_path: Path,
    profile: Profile,
    options: BuildOptions,
    timing_cache_file: Path,
    verbose: bool = False,
) -> bytes:
    """Parse the ONNX into a strongly typed network and build the engine; update the timing cache file."""
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for flag_name in network_creation_flags(trt.__version__):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, flag_name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CliError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}", EXIT_BUILD_FAILED)
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(inputs) != sorted(INPUT_CHANNELS):
        raise CliError(f"{onnx_path}: expected inputs {sorted(INPUT_CHANNELS)}, found {inputs}")

    config = builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mib) << 20)
    config.builder_optimization_level = int(options.opt_level)
    trt_profile = builder.create_optimization_profile()
    for name in inputs:
        trt_profile.set_shape(name, *profile.tensor_shapes(name))
    config.add_optimization_profile(trt_profile)

    cache_bytes = timing_cache_file.read_bytes() if timing_cache_file.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(timing_cache, ignore_mismatch=False):
        print(f"[build_engine] timing cache {timing_cache_file} does not match this GPU/TensorRT: starting a new one",
              file=sys.stderr)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise CliError(f"{onnx_path}: TensorRT could not build an engine (see the TensorRT log above)", EXIT_BUILD_FAILED)
    atomic_write_bytes(timing_cache_file, memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(plan))


# ---------------------------------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python export/build_engine.py",
        description="Build a strongly typed TensorRT engine (+ JSON manifest) from the exported JARRN ONNX.",
    )
    parser.add_argument("--onnx", required=True, type=Path, help="exported graph (export/to_onnx.py)")
    parser.add_argument("--out", type=Path, default=None, help="engine path (default: the ONNX path with .engine)")
    parser.add_argument("--min", default=DEFAULT_MIN, help=f"smallest BxHxW the engine accepts (default {DEFAULT_MIN})")
    parser.add_argument("--opt", default=DEFAULT_OPT, help=f"BxHxW that kernels are tuned for (default {DEFAULT_OPT})")
    parser.add_argument("--max", default=DEFAULT_MAX, help=f"largest BxHxW; buffers are sized for it (default {DEFAULT_MAX})")
    parser.add_argument("--opt-level", type=int, default=DEFAULT_OPT_LEVEL,
                        help=f"builder optimization level 0..5 (default {DEFAULT_OPT_LEVEL}; higher builds slower, may run faster)")
    parser.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MIB,
                        help=f"builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MIB}; less on small Jetsons)")
    parser.add_argument("--timing-cache-dir", type=Path, default=None,
                        help=f"where timing caches live, one per GPU and TensorRT version (default {default_cache_dir()})")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even when an up-to-date engine exists")
    parser.add_argument("--print-trtexec", action="store_true",
                        help="print the equivalent trtexec commands (desktop TRT 10/11, Jetson TRT 10) and exit")
    parser.add_argument("--verbose", action="store_true", help="verbose TensorRT log")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    try:
        profile = Profile.parse(args.min, args.opt, args.max)
        options = BuildOptions(args.opt_level, args.workspace)
    except (ProfileError, ValueError) as exc:
        raise CliError(str(exc)) from None
    onnx_path: Path = args.onnx
    engine_path: Path = args.out or default_engine_path(onnx_path)
    cache_dir: Path = args.timing_cache_dir or default_cache_dir()

    if args.print_trtexec:
        print(trtexec_commands_text(str(onnx_path), str(engine_path), profile, options, str(cache_dir)), end="")
        return 0

    if not onnx_path.is_file():
        raise CliError(f"--onnx: no such file {onnx_path}")
    if engine_path.suffix.lower() == ".onnx":
        raise CliError(f"--out: {engine_path} would overwrite an ONNX file; use a .engine or .plan name")
    try:
        precision = precision_from_onnx(onnx_path)
        onnx_digest = onnx_sha256(onnx_path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes onnx raise several types
        raise CliError(f"--onnx: {onnx_path} could not be read as ONNX ({type(exc).__name__}: {exc})") from None

    try:
        import tensorrt as trt
    except (ImportError, OSError):
        raise CliError(TENSORRT_INSTALL_HINT, EXIT_NO_TENSORRT) from None

    gpu_name, cc = probe_gpu(args.device)
    device = DeviceInfo(gpu_name, cc, trt.__version__)
    key = cache_key(onnx_sha256=onnx_digest, precision=precision, profile=profile, device=device, options=options)
    sidecar = manifest_path(engine_path)

    if not args.force and sidecar.is_file() and engine_path.is_file():
        try:
            existing = EngineManifest.load(sidecar)
            if existing.cache_key == key:
                check_engine_file(engine_path, existing)
                print(f"[build_engine] {engine_path} is up to date (same ONNX, precision, profile, GPU and TensorRT "
                      f"{device.tensorrt_version}): reusing it, no rebuild (--force rebuilds)")
                return 0
        except EngineFileError as exc:
            print(f"[build_engine] existing engine unusable ({exc}); rebuilding", file=sys.stderr)

    timing_file = timing_cache_path(cache_dir, device)
    print(f"[build_engine] building {engine_path} from {onnx_path} ({precision}, strongly typed) on {gpu_name} "
          f"(sm {cc}), TensorRT {trt.__version__}, profile min {profile.min} opt {profile.opt} max {profile.max}, "
          f"opt level {options.opt_level}, workspace {options.workspace_mib} MiB, timing cache {timing_file}")
    start = time.perf_counter()
    plan = build_serialized_engine(trt, onnx_path, profile, options, timing_file, args.verbose)
    seconds = time.perf_counter() - start

    from model.contract import CONTRACT_VERSION

    manifest = EngineManifest(
        onnx_path=str(onnx_path.resolve()),
        onnx_sha256=onnx_digest,
        precision=precision,
        tensorrt_version=device.tensorrt_version,
        gpu_name=device.gpu_name,
        compute_capability=device.compute_capability,
        profile=profile.to_dict(),
        build={
            "opt_level": options.opt_level,
            "workspace_mib": options.workspace_mib,
            "network_flags": network_creation_flags(trt.__version__),
            "strongly_typed": True,
            "timing_cache": str(timing_file),
            "build_seconds": round(seconds, 1),
            "command": shlex.join(["python", "export/build_engine.py", *sys.argv[1:]]) if sys.argv[1:] else "",
        },
        cache_key=key,
        engine_file=engine_path.name,
        engine_sha256=hashlib.sha256(plan).hexdigest(),
        engine_bytes=len(plan),
        contract_version=CONTRACT_VERSION,
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    # Engine first, manifest second: a crash in between leaves an engine whose (old or missing) manifest fails the
    # checks, so it is rebuilt rather than trusted.
    atomic_write_bytes(engine_path, plan)
    manifest.save(sidecar)
    print(f"[build_engine] wrote {engine_path} ({len(plan) / 2**20:.1f} MiB) and {sidecar.name} in {seconds:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"build_engine: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("build_engine: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
