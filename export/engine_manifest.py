"""TensorRT engine bookkeeping that needs no TensorRT: profiles, the sidecar manifest, cache keys, compatibility
checks, version-dependent build flags and the equivalent ``trtexec`` command lines.

Everything here is pure Python (plus ``onnx`` to read an ONNX file's precision) so it is tested on machines without a
GPU. ``export/build_engine.py`` (building) and ``runtime/backends/tensorrt_backend.py`` (loading) hold the few lines
that touch TensorRT and CUDA.

An engine ``model.engine`` always travels with ``model.engine.json`` (:class:`EngineManifest`): the ONNX it came from
(sha256), its precision, the TensorRT version, GPU and compute capability it was built for, the optimization profile
and the build options. The runtime reads it *before* deserialising: an engine built for another GPU or TensorRT version
is refused with the exact command that rebuilds it from the ONNX, and a truncated or altered file is refused instead of
crashing inside TensorRT.
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
from typing import Any, Iterable, Mapping

from model.atomic import atomic_write_bytes, atomic_write_text, file_sha256  # noqa: F401 - re-exported for export/ callers

MANIFEST_FORMAT = "jarrn-tensorrt-engine"
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".json"
BUILD_SCRIPT = "export/build_engine.py"

# Graph I/O (model.contract.CONTRACT): rgb [B,3,H,W], sparse_depth [B,1,H,W] -> depth [B,1,H,W].
INPUT_CHANNELS: dict[str, int] = {"rgb": 3, "sparse_depth": 1}
OUTPUT_NAME = "depth"

DEFAULT_MIN = "1x64x64"
DEFAULT_OPT = "1x320x320"
DEFAULT_MAX = "4x384x1280"
DEFAULT_OPT_LEVEL = 3
DEFAULT_WORKSPACE_MIB = 4096
OPT_LEVELS = range(0, 6)  # IBuilderConfig.builder_optimization_level: 0..5 (TensorRT 10 and 11), default 3

JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"

TENSORRT_INSTALL_HINT = (
    "TensorRT is not installed: run this inside NVIDIA's TensorRT container (docker/Dockerfile, based on "
    "nvcr.io/nvidia/tensorrt:<yy.mm>-py3), on a Jetson with JetPack 6 where TensorRT comes with the system "
    "(docker/Dockerfile.jetson), or `pip install tensorrt cuda-python` on a machine with an NVIDIA GPU and driver."
)


class ProfileError(ValueError):
    """An invalid optimization profile, or an input shape outside the engine's profile."""


class EngineMismatchError(RuntimeError):
    """The engine was built for another GPU or TensorRT version: it must be rebuilt from the ONNX on this machine."""


class EngineFileError(RuntimeError):
    """The engine file or its manifest is missing, truncated, corrupt or not an engine."""


# ---------------------------------------------------------------------------------------------------------------------
# optimization profile: batch x height x width


@dataclass(frozen=True)
class Shape:
    """One ``BxHxW`` point of the profile (channels are fixed by the contract)."""

    batch: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.batch}x{self.height}x{self.width}"

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.batch, self.height, self.width)

    def tensor_shape(self, name: str) -> tuple[int, int, int, int]:
        """The 4-D shape of graph tensor ``name`` (rgb: 3 channels; sparse_depth and depth: 1)."""
        channels = INPUT_CHANNELS.get(name, 1)
        return (self.batch, channels, self.height, self.width)


def parse_shape(text: str, what: str = "shape") -> Shape:
    """``"1x320x320"`` (batch x height x width) -> :class:`Shape`; also accepts ``,`` or ``*`` as separators."""
    if not isinstance(text, str):
        raise ProfileError(f"{what}: expected BxHxW such as 1x320x320, got {text!r}")
    parts = [p for p in re.split(r"[x,*X]", text.strip()) if p != ""]
    if len(parts) != 3 or not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
        raise ProfileError(f"{what}: expected BxHxW (batch x height x width) such as 1x320x320, got {text!r}")
    batch, height, width = (int(p) for p in parts)
    if batch < 1 or height < 1 or width < 1:
        raise ProfileError(f"{what}: batch, height and width must be positive, got {text!r}")
    return Shape(batch, height, width)


@dataclass(frozen=True)
class Profile:
    """A TensorRT optimization profile over batch, height and width (the same for both inputs)."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for label, lo, hi in (("min", self.min, self.opt), ("opt", self.opt, self.max)):
            upper = "opt" if label == "min" else "max"
            for axis, a, b in zip(("batch", "height", "width"), lo.as_tuple(), hi.as_tuple()):
                if a > b:
                    raise ProfileError(
                        f"profile: {label} {axis} {a} is larger than {upper} {axis} {b} "
                        f"(need min <= opt <= max in every dimension; got min {self.min}, opt {self.opt}, max {self.max})"
                    )

    @classmethod
    def parse(cls, min_text: str = DEFAULT_MIN, opt_text: str = DEFAULT_OPT, max_text: str = DEFAULT_MAX) -> "Profile":
        return cls(parse_shape(min_text, "--min"), parse_shape(opt_text, "--opt"), parse_shape(max_text, "--max"))

    def tensor_shapes(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) 4-D shapes of input ``name``, as given to ``IOptimizationProfile.set_shape``."""
        return (self.min.tensor_shape(name), self.opt.tensor_shape(name), self.max.tensor_shape(name))

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min.as_tuple()), "opt": list(self.opt.as_tuple()), "max": list(self.max.as_tuple())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[int]]) -> "Profile":
        try:
            return cls(*(Shape(*(int(v) for v in data[k])) for k in ("min", "opt", "max")))
        except (KeyError, TypeError) as exc:
            raise ProfileError(f"profile: expected {{'min','opt','max'}} lists of [B,H,W], got {data!r}") from exc

    def cli_args(self) -> list[str]:
        return ["--min", str(self.min), "--opt", str(self.opt), "--max", str(self.max)]

    def contains(self, batch: int, height: int, width: int) -> bool:
        return all(lo <= v <= hi for lo, v, hi in zip(self.min.as_tuple(), (batch, height, width), self.max.as_tuple()))


def check_shape_in_range(
    name: str, shape: tuple[int, ...], min_shape: tuple[int, ...], max_shape: tuple[int, ...]
) -> None:
    """Raise :class:`ProfileError` naming input ``name`` and the profile range when ``shape`` lies outside it."""
    shape, lo, hi = tuple(int(s) for s in shape), tuple(int(s) for s in min_shape), tuple(int(s) for s in max_shape)
    if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
        fmt = lambda s: "x".join(str(v) for v in s)  # noqa: E731
        raise ProfileError(
            f"{name}: shape {fmt(shape)} is outside the engine's optimization profile "
            f"(min {fmt(lo)}, max {fmt(hi)}, as [B,C,H,W]); resize the input, or rebuild the engine with "
            f"{BUILD_SCRIPT} and a wider --min/--max"
        )


# ---------------------------------------------------------------------------------------------------------------------
# versions and version-dependent choices


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


def network_creation_flags(tensorrt_version: str) -> list[str]:
    """``NetworkDefinitionCreationFlag`` names to OR together for ``Builder.create_network``.

    TensorRT 10 builds weakly typed networks unless asked: set STRONGLY_TYPED so the ONNX's own types (FP16 casts,
    Q/DQ) decide precision. TensorRT 11 removed weak typing: every network is strongly typed and no flag is needed.
    """
    major = parse_version(tensorrt_version)[0]
    if major < 10:
        raise ValueError(f"TensorRT {tensorrt_version} is too old: this project needs TensorRT 10 or newer")
    return ["STRONGLY_TYPED"] if major == 10 else []


# ---------------------------------------------------------------------------------------------------------------------
# files: hashing, atomic writes, ONNX precision


def onnx_sha256(path: str | os.PathLike) -> str:
    """sha256 of the ONNX file and, if its weights are stored as external data, of those files too."""
    path = Path(path)
    external = _external_data_files(path)
    if not external:
        return file_sha256(path)
    digest = hashlib.sha256(file_sha256(path).encode())
    for file in external:
        digest.update(file.name.encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def _external_data_files(path: Path) -> list[Path]:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a base dependency
        return []
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return [path.parent / loc for loc in sorted(locations)]


_ONNX_FLOAT16, _ONNX_BFLOAT16 = 10, 16
_QUANT_TYPES = {3: "int8", 2: "int8", 17: "fp8", 18: "fp8", 19: "fp8", 20: "fp8", 21: "int4", 22: "int4", 23: "fp4"}
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8", "int4", "fp4")


def precision_from_onnx(model_or_path: Any) -> str:
    """The ONNX graph's precision: the exporter's ``metadata_props`` entry (a key ending in ``precision``) when
    present, else read from the graph (Q/DQ zero-point type -> int8/fp8/int4; FP16/BF16 initialisers or casts -> fp16
    /bf16; otherwise fp32)."""
    import onnx

    model = model_or_path
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model_or_path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key.lower().split(".")[-1].split(":")[-1] == "precision" and prop.value.strip():
            return prop.value.strip().lower()
    return _precision_from_graph(model.graph)


def _precision_from_graph(graph: Any) -> str:
    initialisers = {t.name: t for t in graph.initializer}
    found: set[str] = set()
    for node in _all_nodes(graph):
        if node.op_type == "QuantizeLinear":
            zero_point = node.input[2] if len(node.input) > 2 else ""
            if zero_point in initialisers:
                found.add(_QUANT_TYPES.get(initialisers[zero_point].data_type, "int8"))
            else:
                found.add("int8")  # ONNX default zero-point type is uint8/int8
        elif node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == _ONNX_FLOAT16:
                    found.add("fp16")
                elif attr.name == "to" and attr.i == _ONNX_BFLOAT16:
                    found.add("bf16")
    for tensor in graph.initializer:
        if tensor.data_type == _ONNX_FLOAT16:
            found.add("fp16")
        elif tensor.data_type == _ONNX_BFLOAT16:
            found.add("bf16")
    for precision in ("fp4", "int4", "fp8", "int8", "bf16", "fp16"):  # the lowest precision present names the graph
        if precision in found:
            return precision
    return "fp32"


def _all_nodes(graph: Any) -> Iterable[Any]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and len(attr.g.node):
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)


# ---------------------------------------------------------------------------------------------------------------------
# device and build identity


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the GPU model, its compute capability and the TensorRT version."""

    gpu_name: str
    compute_capability: str  # "8.7"
    tensorrt_version: str

    @staticmethod
    def format_cc(major: int, minor: int) -> str:
        return f"{int(major)}.{int(minor)}"


@dataclass(frozen=True)
class BuildOptions:
    opt_level: int = DEFAULT_OPT_LEVEL
    workspace_mib: int | None = DEFAULT_WORKSPACE_MIB

    def __post_init__(self) -> None:
        if isinstance(self.opt_level, bool) or int(self.opt_level) not in OPT_LEVELS:
            raise ValueError(f"--opt-level: expected an integer 0..5 (TensorRT builder optimization level), got {self.opt_level!r}")
        if self.workspace_mib is not None and (isinstance(self.workspace_mib, bool) or int(self.workspace_mib) < 1):
            raise ValueError(f"--workspace: expected a positive number of MiB, got {self.workspace_mib!r}")

    def cli_args(self) -> list[str]:
        args = ["--opt-level", str(self.opt_level)]
        if self.workspace_mib is not None:
            args += ["--workspace", str(self.workspace_mib)]
        return args


def cache_key(
    *,
    onnx_sha256: str,
    precision: str,
    profile: Profile,
    device: DeviceInfo,
    options: BuildOptions,
) -> str:
    """The identity of a build: equal keys mean the existing engine is what a rebuild would produce.

    It covers the ONNX content, its precision, the profile, the TensorRT version, GPU model, compute capability, the
    network creation flags and the build options; not file names, paths or times.
    """
    identity = {
        "manifest_version": MANIFEST_VERSION,
        "onnx_sha256": onnx_sha256,
        "precision": precision,
        "profile": profile.to_dict(),
        "tensorrt_version": device.tensorrt_version,
        "gpu_name": device.gpu_name,
        "compute_capability": device.compute_capability,
        "network_flags": network_creation_flags(device.tensorrt_version),
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
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jarrn-deploy" / "tensorrt"


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
    format: str = MANIFEST_FORMAT
    manifest_version: int = MANIFEST_VERSION

    @property
    def device(self) -> DeviceInfo:
        return DeviceInfo(self.gpu_name, self.compute_capability, self.tensorrt_version)

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


def rebuild_command(manifest: EngineManifest, engine_path: str | os.PathLike) -> str:
    """The exact ``build_engine.py`` command that rebuilds ``engine_path`` from the recorded ONNX on this machine."""
    args = ["python", BUILD_SCRIPT, "--onnx", manifest.onnx_path, "--out", str(engine_path)]
    args += manifest.profile_obj.cli_args() + manifest.build_options.cli_args()
    return shlex.join(args)


def check_compatible(manifest: EngineManifest, device: DeviceInfo, engine_path: str | os.PathLike) -> None:
    """Refuse an engine built for another TensorRT version, compute capability or GPU model (before deserialising).

    TensorRT plans are only valid for the exact TensorRT version and GPU they were built on; deserialising a foreign
    one fails deep inside TensorRT or, worse, runs with wrong tactics.
    """
    problems = []
    if manifest.tensorrt_version != device.tensorrt_version:
        problems.append(f"TensorRT {manifest.tensorrt_version}, this machine has TensorRT {device.tensorrt_version}")
    if manifest.compute_capability != device.compute_capability or manifest.gpu_name != device.gpu_name:
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
    """Read the engine after checks that catch missing, truncated, altered or mistaken files; return its bytes."""
    path = Path(engine_path)
    hint = (f" Rebuild it with: {rebuild_command(manifest, path)}" if manifest is not None
            else f" Build one with: python {BUILD_SCRIPT} --onnx MODEL.onnx --out {path}")
    if not path.is_file():
        raise EngineFileError(f"{path}: no such engine file.{hint}")
    if path.suffix.lower() == ".onnx":
        raise EngineFileError(
            f"{path}: this is an ONNX model, not a TensorRT engine; use DepthCompleter.from_onnx, or build an engine "
            f"with python {BUILD_SCRIPT} --onnx {path}"
        )
    data = path.read_bytes()
    if len(data) < _MIN_ENGINE_BYTES:
        raise EngineFileError(f"{path}: {len(data)} bytes is too small to be a TensorRT engine (truncated or empty).{hint}")
    if manifest is not None:
        if manifest.engine_bytes and len(data) != manifest.engine_bytes:
            raise EngineFileError(
                f"{path}: engine is {len(data)} bytes but its manifest records {manifest.engine_bytes} "
                f"(truncated or replaced).{hint}"
            )
        if verify_hash and manifest.engine_sha256 and hashlib.sha256(data).hexdigest() != manifest.engine_sha256:
            raise EngineFileError(f"{path}: engine content does not match its manifest's sha256 (corrupt or replaced).{hint}")
    return data


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
    binary = JETSON_TRTEXEC if target.startswith("jetson") else "trtexec"
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
    binary = JETSON_TRTEXEC if target.startswith("jetson") else "trtexec"
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
        "# Equivalent trtexec builds. Precision comes from the ONNX itself (FP16 casts, INT8/FP8 Q/DQ): never add",
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
