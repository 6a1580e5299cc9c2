"""Command-line recipes equivalent to ``jarrn build-engine``: ``trtexec`` (TensorRT) and ``tensorrt_rtx``
(TensorRT-RTX).

Printed by ``jarrn build-engine --print-trtexec``; pure Python, no TensorRT needed. Every flag printed is one the
tool's documentation names (:data:`DOCUMENTED_OPTIONS`, checked by tests/export/test_engine_recipes.py); a build
option a tool documents no flag for is said in a comment line instead of being dropped silently.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from jarrn_deploy.export.engine.flavours import PORTABLE, RTX_PORTABLE_TARGETS, network_creation_flags
from jarrn_deploy.export.engine.manifest import beside_engine
from jarrn_deploy.export.engine.profile import DEFAULT_OPT_LEVEL, INPUT_CHANNELS, BuildOptions, Profile, Shape

JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
TRTEXEC_CLI = "trtexec"
TENSORRT_RTX_CLI = "tensorrt_rtx"

DOCUMENTED_OPTIONS: dict[str, frozenset[str]] = {
    # trtexec, TensorRT 10/11: https://docs.nvidia.com/deeplearning/tensorrt/latest/reference/command-line-programs.html
    # (its --help text: samples/common/sampleOptions.cpp in github.com/NVIDIA/TensorRT)
    TRTEXEC_CLI: frozenset({
        "--onnx", "--saveEngine", "--loadEngine", "--minShapes", "--optShapes", "--maxShapes", "--shapes",
        "--stronglyTyped", "--builderOptimizationLevel", "--memPoolSize", "--timingCacheFile", "--skipInference",
        "--useCudaGraph", "--noDataTransfers",
    }),
    # tensorrt_rtx, TensorRT-RTX 1.x (the SDK archive's CLI; the pip wheel has none):
    # https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/performance/benchmarking.html (transfers excluded and
    #   whole-graph CUDA capture on by default: --includeDataTransfers, --noSpinWait, --rtxCudaGraphStrategy)
    # https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/performance/optimization.html (--minShapes/--optShapes/
    #   --maxShapes, --saveEngine, --skipInference, --loadEngine, --shapes, --runtimeCacheFile, --specializeStrategyDS)
    # https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/inference-library/cpu-engines.html (--computeCapabilities)
    # No builder optimization level and no memory-pool (workspace) flag is documented for it.
    TENSORRT_RTX_CLI: frozenset({
        "--onnx", "--saveEngine", "--loadEngine", "--minShapes", "--optShapes", "--maxShapes", "--shapes",
        "--skipInference", "--computeCapabilities", "--useGpu", "--runtimeCacheFile", "--rtxCudaGraphStrategy",
        "--includeDataTransfers", "--noSpinWait", "--specializeStrategyDS",
    }),
}
"""Tool -> the options its NVIDIA documentation names (sources in the comments above); recipes print no others."""


# ---------------------------------------------------------------------------------------------------------------------
# trtexec equivalents (printed by build_engine.py --print-trtexec; no TensorRT needed)

TRTEXEC_TARGETS = ("desktop-trt10", "desktop-trt11", "jetson-trt10")


def _shape_arg(shape: Shape) -> str:
    return ",".join(f"{name}:{'x'.join(str(v) for v in shape.tensor_shape(name))}" for name in INPUT_CHANNELS)


def trtexec_command(
    target: str,
    onnx_path: str,
    engine_path: str,
    profile: Profile,
    options: BuildOptions,
    timing_cache: str | None = None,
) -> list[str]:
    """argv of the ``trtexec`` build equivalent to ``build_engine.py`` on ``target`` (see :data:`TRTEXEC_TARGETS`)."""
    if target not in TRTEXEC_TARGETS:
        raise ValueError(f"trtexec target: expected one of {TRTEXEC_TARGETS}, got {target!r}")
    major = 11 if target.endswith("trt11") else 10
    binary = JETSON_TRTEXEC if target.startswith("jetson") else TRTEXEC_CLI
    argv = [binary, f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if "STRONGLY_TYPED" in network_creation_flags(f"{major}.0"):
        argv.append("--stronglyTyped")  # TRT 11: always strongly typed, the flag is not needed
    argv += [
        f"--minShapes={_shape_arg(profile.min)}",
        f"--optShapes={_shape_arg(profile.opt)}",
        f"--maxShapes={_shape_arg(profile.max)}",
        f"--builderOptimizationLevel={options.opt_level}",
    ]
    if options.workspace_mib is not None:
        argv.append(f"--memPoolSize=workspace:{options.workspace_mib}M")
    if timing_cache:
        argv.append(f"--timingCacheFile={timing_cache}")
    argv.append("--skipInference")
    return argv


def trtexec_benchmark_command(target: str, engine_path: str, shape: Shape) -> list[str]:
    """argv timing an engine at ``shape`` the way the runtime uses it (CUDA graph, no host transfers)."""
    if target not in TRTEXEC_TARGETS:
        raise ValueError(f"trtexec target: expected one of {TRTEXEC_TARGETS}, got {target!r}")
    binary = JETSON_TRTEXEC if target.startswith("jetson") else TRTEXEC_CLI
    argv = [binary, f"--loadEngine={engine_path}", f"--shapes={_shape_arg(shape)}"]
    if not target.endswith("trt11"):  # TRT 11: CUDA graphs on and transfers off by default (the flags are no-ops)
        argv += ["--useCudaGraph", "--noDataTransfers"]
    return argv


def trtexec_commands_text(
    onnx_path: str, engine_path: str, profile: Profile, options: BuildOptions, cache_dir: str | None = None
) -> str:
    """Human-readable block with the desktop (TRT 10 and 11) and Jetson (TRT 10) build and benchmark commands.

    Each target gets its own timing-cache file name: caches are only valid for one GPU model and TensorRT version.
    """
    titles = {
        "desktop-trt10": "Desktop GPU, TensorRT 10.x (e.g. docker/Dockerfile with a TensorRT 10 base tag)",
        "desktop-trt11": "Desktop GPU, TensorRT 11.x (strongly typed is the only mode: no --stronglyTyped, no --fp16/--int8)",
        "jetson-trt10": "Jetson, JetPack 6 (TensorRT 10.3; `sudo nvpmodel -m 0 && sudo jetson_clocks` first for stable timings)",
    }
    folder = cache_dir or "."
    lines = [
        "# Equivalent trtexec builds. Precision comes from the ONNX itself (FP16 casts, INT8 Q/DQ): never add",
        "# --fp16/--int8/--best, they would override the graph's types on TensorRT 10 and do not exist on 11.",
        "# trtexec writes no manifest: load its engines with DepthCompleter.from_engine(path, require_manifest=False).",
    ]
    for target in TRTEXEC_TARGETS:
        cache = str(Path(folder) / f"timing_{target}.cache")
        build = trtexec_command(target, onnx_path, engine_path, profile, options, cache)
        bench = trtexec_benchmark_command(target, engine_path, profile.opt)
        lines += ["", f"# {titles[target]}", " \\\n    ".join(shlex.quote(a) for a in build),
                  "# benchmark:", shlex.join(bench)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# tensorrt_rtx equivalents (TensorRT-RTX's command-line tool, shipped with its SDK archive; the pip wheel has none)


def tensorrt_rtx_command(
    onnx_path: str,
    engine_path: str,
    profile: Profile,
    targets: tuple[str, ...] = RTX_PORTABLE_TARGETS,
) -> list[str]:
    """argv of the ``tensorrt_rtx`` CPU-only AOT build equivalent to ``jarrn build-engine --flavour tensorrt-rtx``.

    Strongly typed is the only mode (no --stronglyTyped, no precision flags); no timing cache (it would make the AOT
    build look for a GPU). The portable default sets no ``--computeCapabilities``. The opt level and workspace have
    no documented flag here: :func:`tensorrt_rtx_unsupported` says what the recipe cannot carry.
    """
    argv = [TENSORRT_RTX_CLI, f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--minShapes={_shape_arg(profile.min)}",
            f"--optShapes={_shape_arg(profile.opt)}",
            f"--maxShapes={_shape_arg(profile.max)}"]
    if tuple(targets) != RTX_PORTABLE_TARGETS:
        argv.append("--computeCapabilities=" + ",".join(t.replace(".", "") for t in targets))
    argv.append("--skipInference")
    return argv


def tensorrt_rtx_unsupported(options: BuildOptions) -> list[str]:
    """Comment lines for the build options ``tensorrt_rtx`` documents no flag for and that differ from what the tool
    does anyway (an opt level other than the library's default 3, a workspace limit)."""
    lines = []
    if options.opt_level != DEFAULT_OPT_LEVEL:
        lines.append(f"# --opt-level {options.opt_level}: tensorrt_rtx documents no builder optimization level flag, so "
                     f"this recipe builds at the library default ({DEFAULT_OPT_LEVEL}); jarrn build-engine sets "
                     f"{options.opt_level}.")
    if options.workspace_mib is not None:
        lines.append(f"# --workspace {options.workspace_mib}: tensorrt_rtx documents no workspace (memory pool) flag; "
                     "it builds with the library's default limit.")
    return lines


def tensorrt_rtx_benchmark_command(engine_path: str, shape: Shape, runtime_cache: str | None = None) -> list[str]:
    """argv timing a TensorRT-RTX engine at ``shape``. The tool excludes host transfers and captures the whole graph
    by default (what the runtime's ``cuda_graphs=True`` does); the strategy is still spelled out, ``runtime_cache``
    keeps the just-in-time compiled kernels."""
    argv = [TENSORRT_RTX_CLI, f"--loadEngine={engine_path}", f"--shapes={_shape_arg(shape)}",
            "--rtxCudaGraphStrategy=wholeGraph"]
    if runtime_cache:
        argv.append(f"--runtimeCacheFile={runtime_cache}")
    return argv


def tensorrt_rtx_commands_text(
    onnx_path: str,
    engine_path: str,
    profile: Profile,
    options: BuildOptions,
    targets: tuple[str, ...] = RTX_PORTABLE_TARGETS,
    runtime_cache: str | None = None,
) -> str:
    """Human-readable block with the ``tensorrt_rtx`` build (runs on a CPU) and benchmark (needs the GPU).

    ``runtime_cache`` as given to ``jarrn build-engine --runtime-cache``: a relative name is relative to the engine's
    folder there, so it is printed joined to that folder (the tool resolves it against the current folder).
    """
    described = PORTABLE + " (" + " ".join(RTX_PORTABLE_TARGETS) + " and newer 12.x)" \
        if tuple(targets) == RTX_PORTABLE_TARGETS else " ".join(targets)
    build = tensorrt_rtx_command(onnx_path, engine_path, profile, targets)
    cache = str(beside_engine(engine_path, runtime_cache)) if runtime_cache else f"{engine_path}.runtime.cache"
    bench = tensorrt_rtx_benchmark_command(engine_path, profile.opt, cache)
    lines = [
        "# Equivalent tensorrt_rtx build (TensorRT-RTX's CLI from its SDK archive). Ahead-of-time, on a CPU, for compute",
        f"# capabilities {described}. Precision comes from the ONNX; there are no --fp16/--int8 flags.",
        "# tensorrt_rtx writes no manifest: load its engines with",
        "# DepthCompleter.from_engine(path, require_manifest=False, flavour='tensorrt-rtx').",
        *tensorrt_rtx_unsupported(options),
        "",
        " \\\n    ".join(shlex.quote(a) for a in build),
        "# benchmark on the GPU (kernels are compiled just in time on the first run and kept in the runtime cache;",
        "# host transfers are excluded by default, add --includeDataTransfers to count them):",
        shlex.join(bench),
    ]
    return "\n".join(lines) + "\n"
