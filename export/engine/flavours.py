"""The two engine flavours this project builds and runs, and what differs between them. Pure Python.

- ``tensorrt``: NVIDIA TensorRT 10/11 (module ``tensorrt``). Builds on the GPU that will run the engine; the engine is
  tied to that GPU model and TensorRT version. The only choice for Jetson (JetPack's TensorRT) and Hopper (H100/H200).
- ``tensorrt-rtx``: TensorRT for RTX (module ``tensorrt_rtx``, ``pip install tensorrt-rtx``). Same ONNX parser and graph
  compiler, strongly typed only; its ahead-of-time build runs on a CPU for a set of compute capabilities, and the final
  kernels are compiled just in time on the GPU (kept in an optional runtime cache). Runs on Ampere (A100 8.0, RTX 30
  8.6), Ada (RTX 40 8.9) and Blackwell RTX/GB10 (12.0, 12.1); not on Hopper (9.0), Jetson Orin (8.7) or Thor.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from types import ModuleType
from jarrn_deploy.errors import UsageError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
"""File suffixes read as engines of either flavour (``jarrn infer --model``, Triton repositories); here, in a module
without numpy, so that ``jarrn infer --help`` stays light."""

TENSORRT = "tensorrt"
TENSORRT_RTX = "tensorrt-rtx"
FLAVOURS: tuple[str, ...] = (TENSORRT, TENSORRT_RTX)
"""Engine flavours, in the order ``build_engine.py`` picks the installed one by default."""

FLAVOUR_MODULES: dict[str, str] = {TENSORRT: "tensorrt", TENSORRT_RTX: "tensorrt_rtx"}
"""Python module of each flavour."""

FLAVOUR_TITLES: dict[str, str] = {TENSORRT: "TensorRT", TENSORRT_RTX: "TensorRT-RTX"}

TENSORRT_INSTALL_HINT = (
    "TensorRT is not installed: run this inside NVIDIA's TensorRT container (docker/Dockerfile, based on "
    "nvcr.io/nvidia/tensorrt:<yy.mm>-py3), on a Jetson with JetPack 6 where TensorRT comes with the system "
    "(docker/Dockerfile.jetson), or `pip install tensorrt cuda-python` on a machine with an NVIDIA GPU and driver."
)
TENSORRT_RTX_INSTALL_HINT = (
    "TensorRT-RTX is not installed: `pip install -e \".[trt-rtx]\"` (or `pip install tensorrt-rtx`; it builds engines "
    "on any x86-64 Linux or Windows machine, no GPU needed; running them needs an RTX-class GPU, cuda-python and a driver)"
)
INSTALL_HINTS: dict[str, str] = {TENSORRT: TENSORRT_INSTALL_HINT, TENSORRT_RTX: TENSORRT_RTX_INSTALL_HINT}

# TensorRT-RTX compute-capability targets (``tensorrt_rtx.ComputeCapability`` members) and example GPUs.
RTX_COMPUTE_CAPABILITIES: dict[str, str] = {
    "7.5": "SM75",
    "8.0": "SM80",
    "8.6": "SM86",
    "8.9": "SM89",
    "12.0": "SM120",
    "12.1": "SM121",
}
RTX_TARGET_GPUS: dict[str, str] = {
    "7.5": "Turing, RTX 20 (only when asked for: not in the portable set)",
    "8.0": "Ampere datacenter, A100/A30",
    "8.6": "Ampere, RTX 30 / A10 / A40 / RTX A6000",
    "8.9": "Ada, RTX 40 / L4 / L40 / RTX 6000 Ada",
    "12.0": "Blackwell, RTX 50 / RTX PRO 6000",
    "12.1": "Blackwell, GB10 (DGX Spark)",
}
RTX_PORTABLE_TARGETS: tuple[str, ...] = ("8.0", "8.6", "8.9", "12.0", "12.1")
"""What a TensorRT-RTX 1.x engine targets when no compute capability is set (its loader also accepts newer 12.x)."""
PORTABLE = "portable"

NOT_RTX_GPUS: dict[str, str] = {
    "8.7": "Jetson Orin: use JetPack's TensorRT (--flavour tensorrt on the Jetson)",
    "9.0": "Hopper (H100/H200/GH200): use standard TensorRT (--flavour tensorrt, e.g. in the TensorRT container)",
    "10.0": "Blackwell datacenter (B200/GB200): use standard TensorRT (--flavour tensorrt)",
    "10.3": "Blackwell datacenter (B300): use standard TensorRT (--flavour tensorrt)",
    "11.0": "Jetson Thor: use JetPack's TensorRT (--flavour tensorrt)",
}
"""Compute capabilities TensorRT-RTX does not serve, with what to use there instead."""


class FlavourError(UsageError):
    """An unknown flavour or compute-capability target."""


def check_flavour(flavour: str) -> str:
    if flavour not in FLAVOURS:
        raise FlavourError(f"--flavour: expected one of {', '.join(FLAVOURS)}, got {flavour!r}")
    return flavour


def is_installed(flavour: str) -> bool:
    """Whether the flavour's Python module can be found (not imported: importing loads ~100 MB of libraries)."""
    name = FLAVOUR_MODULES[check_flavour(flavour)]
    if name in sys.modules:  # already imported, or hidden (None) / replaced on purpose
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def default_flavour() -> str | None:
    """The first installed flavour (standard TensorRT before TensorRT-RTX), or None."""
    return next((f for f in FLAVOURS if is_installed(f)), None)


FLAVOUR_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    TENSORRT: ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    TENSORRT_RTX: ("tensorrt-rtx",),
}
"""Package names each flavour's module is installed under (pip wheels, NVIDIA's containers)."""


def installed_version(flavour: str) -> str:
    """The flavour's installed version from its package metadata, without importing it; "" when not found (e.g.
    JetPack's system TensorRT without metadata): the version is then checked after the import."""
    from importlib import metadata

    for distribution in FLAVOUR_DISTRIBUTIONS[check_flavour(flavour)]:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return ""


def same_release(a: str, b: str) -> bool:
    """Whether two version strings agree on every part both have (``"10.3.0"`` and ``"10.3.0.30"`` do): package
    metadata may spell a version shorter than the module's ``__version__``."""
    try:
        left, right = parse_version(a), parse_version(b)
    except ValueError:
        return a == b
    return left[: len(right)] == right[: len(left)]


def import_flavour(flavour: str) -> ModuleType:
    """Import the flavour's module; ImportError carrying its install hint when it is missing or its libraries are."""
    try:
        return importlib.import_module(FLAVOUR_MODULES[check_flavour(flavour)])
    except (ImportError, OSError) as exc:  # OSError: bindings present, shared libraries missing
        raise ImportError(INSTALL_HINTS[flavour]) from exc


# ---------------------------------------------------------------------------------------------------------------------
# versions


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; non-numeric tails (``"11.0.0rc1"``) are cut."""
    numbers = []
    for part in str(version).split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
    if not numbers:
        raise ValueError(f"not a version string: {version!r}")
    return tuple(numbers)


def network_creation_flags(tensorrt_version: str, flavour: str = TENSORRT) -> list[str]:
    """``NetworkDefinitionCreationFlag`` names to OR together for ``Builder.create_network``.

    TensorRT 10 builds weakly typed networks unless asked: set STRONGLY_TYPED so the ONNX's own types (FP16 casts,
    Q/DQ) decide precision. TensorRT 11 removed weak typing: every network is strongly typed and no flag is needed.
    TensorRT-RTX (1.x) keeps the TensorRT 10 flag; strongly typed is what it builds.
    """
    if check_flavour(flavour) == TENSORRT_RTX:
        return ["STRONGLY_TYPED"]
    major = parse_version(tensorrt_version)[0]
    if major < 10:
        raise ValueError(f"TensorRT {tensorrt_version} is too old: this project needs TensorRT 10 or newer")
    return ["STRONGLY_TYPED"] if major == 10 else []


# ---------------------------------------------------------------------------------------------------------------------
# compute capabilities (TensorRT-RTX)


def parse_compute_capabilities(text: str | None) -> tuple[str, ...]:
    """``--compute-capability`` value -> sorted targets; None, "" or "portable" -> :data:`RTX_PORTABLE_TARGETS`.

    Accepts a comma-separated list of ``M.m`` (``8.6``), ``Mm`` (``86``) or ``smMm`` (``sm_86``, ``SM86``).
    """
    if text is None or text.strip().lower() in ("", PORTABLE):
        return RTX_PORTABLE_TARGETS
    targets = []
    for raw in text.split(","):
        item = raw.strip().lower().replace("sm_", "").replace("sm", "")
        if re.fullmatch(r"\d+\.\d", item):
            cc = f"{int(item.split('.')[0])}.{item.split('.')[1]}"
        elif re.fullmatch(r"\d{2,3}", item):
            cc = f"{int(item[:-1])}.{item[-1]}"
        else:
            cc = item
        if cc not in RTX_COMPUTE_CAPABILITIES:
            instead = f"; {cc} is {NOT_RTX_GPUS[cc]}" if cc in NOT_RTX_GPUS else ""
            raise FlavourError(
                f"--compute-capability: {raw.strip()!r} is not a TensorRT-RTX target; expected '{PORTABLE}' or a "
                f"comma-separated list of {', '.join(RTX_COMPUTE_CAPABILITIES)}{instead}"
            )
        targets.append(cc)
    return tuple(sorted(set(targets), key=parse_version))


def rtx_runs_on(targets: tuple[str, ...] | list[str], compute_capability: str) -> bool:
    """Whether a TensorRT-RTX engine built for ``targets`` loads on a GPU of ``compute_capability``.

    Exact match, plus (for the portable set, like TensorRT-RTX's own loader) any 12.x newer than 12.0.
    """
    if compute_capability in targets:
        return True
    portable = tuple(sorted(targets, key=parse_version)) == RTX_PORTABLE_TARGETS
    try:
        version = parse_version(compute_capability)
    except ValueError:
        return False
    return portable and version[0] == 12 and version > (12, 0)


def describe_not_supported(gpu_name: str, compute_capability: str, targets: tuple[str, ...] | list[str]) -> str:
    """Why a TensorRT-RTX engine cannot run on this GPU, and what to use instead."""
    if compute_capability in NOT_RTX_GPUS:
        instead = NOT_RTX_GPUS[compute_capability]
    elif compute_capability in RTX_COMPUTE_CAPABILITIES:
        instead = f"rebuild it with --compute-capability {compute_capability}"
    else:
        instead = "use standard TensorRT (--flavour tensorrt)"
    return (f"{gpu_name} has compute capability {compute_capability}, which this TensorRT-RTX engine does not target "
            f"(targets {', '.join(targets)}); {instead}")
