"""Build a strongly typed TensorRT or TensorRT-RTX engine from the exported ONNX, with a sidecar manifest and reuse.

    jarrn build-engine --onnx artifacts/jarrn_fp16.onnx                      # -> artifacts/jarrn_fp16.engine
    jarrn build-engine --onnx m.onnx --flavour tensorrt-rtx                  # CPU-only, RTX/A100 GPUs
    jarrn build-engine --onnx m.onnx --flavour tensorrt-rtx --compute-capability 8.6,8.9 --compress
    jarrn build-engine --onnx m.onnx --out m.engine --min 1x64x64 --opt 1x320x320 --max 4x384x1280 \\
        --opt-level 3 --workspace 4096
    jarrn build-engine --onnx m.onnx --print-trtexec                         # no TensorRT needed

(``python export/build_engine.py`` and ``python -m jarrn_deploy.export.build_engine`` run the same command; from
Python, call ``jarrn_deploy.export.engine.build.build_engine``, which this command wraps.)

- Flavour (``--flavour``; default: the installed one, standard TensorRT first): ``tensorrt`` builds on the GPU that
  will run the engine (Jetson, H100/H200, any NVIDIA GPU); ``tensorrt-rtx`` builds ahead of time on the CPU for a set of
  compute capabilities (``--compute-capability``, default its portable set 8.0 8.6 8.9 12.0 12.1: A100, RTX 30/40/50).
- Precision comes from the ONNX (FP16 casts, INT8 Q/DQ; see export/precision/ and export/precision_specs.py): the network is strongly typed and no
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
import logging
import sys
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

from jarrn_deploy.export.engine.build import (  # noqa: E402
    build_engine,
    choose_flavour,
    default_engine_path,
    resolve_profile,
)
from jarrn_deploy.export.engine.flavours import (  # noqa: E402
    FLAVOURS,
    PORTABLE,
    RTX_COMPUTE_CAPABILITIES,
    RTX_PORTABLE_TARGETS,
    TENSORRT_RTX,
    FlavourError,
    parse_compute_capabilities,
)
from jarrn_deploy.export.engine.manifest import default_cache_dir  # noqa: E402
from jarrn_deploy.progress import progress_logger  # noqa: E402
from jarrn_deploy.export.engine.profile import (  # noqa: E402
    DEFAULT_MAX,
    DEFAULT_MIN,
    DEFAULT_OPT,
    DEFAULT_OPT_LEVEL,
    DEFAULT_WORKSPACE_MIB,
    BUILD_COMMAND,
    BuildOptions,
    Profile,
    ProfileError,
)
from jarrn_deploy.export.engine.recipes import tensorrt_rtx_commands_text, trtexec_commands_text  # noqa: E402
from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import UsageError  # noqa: E402

__all__ = ["build_engine", "default_engine_path", "main", "parse_args", "run"]


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


def _say(message: str) -> None:
    print(f"[build_engine] {message}", flush=True)


_warn = progress_logger("build_engine")


def run(args: argparse.Namespace) -> int:
    """The command: check the options, then print the recipes or build (jarrn_deploy.export.engine.build)."""
    onnx_path: Path = args.onnx
    engine_path: Path = args.out or default_engine_path(onnx_path)
    flavour = choose_flavour(args.flavour, args.compute_capability, args.runtime_cache)
    try:
        options = BuildOptions(args.opt_level, args.workspace)
        targets = parse_compute_capabilities(args.compute_capability)
        profile = None
        if (args.min, args.opt, args.max) != (None, None, None):
            profile = Profile.parse(args.min or DEFAULT_MIN, args.opt or DEFAULT_OPT, args.max or DEFAULT_MAX)
    except (ProfileError, FlavourError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    if args.print_trtexec:
        profile = resolve_profile(onnx_path, profile)
        if flavour == TENSORRT_RTX:
            text = tensorrt_rtx_commands_text(str(onnx_path), str(engine_path), profile, options, targets,
                                              args.runtime_cache)
        else:
            cache_dir: Path = args.timing_cache_dir or default_cache_dir()
            text = trtexec_commands_text(str(onnx_path), str(engine_path), profile, options, str(cache_dir))
        print(text, end="")
        return 0

    build_engine(onnx_path, engine_path, flavour=flavour, profile=profile, options=options,
                 targets=args.compute_capability, runtime_cache=args.runtime_cache,
                 timing_cache_dir=args.timing_cache_dir, device=args.device, force=args.force,
                 compress=args.compress, verbose=args.verbose, command=getattr(args, "command_line", []),
                 log=_say, warn=_warn)
    return 0


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
