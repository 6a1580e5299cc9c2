"""Benchmark rows (one way of running a backend, at one precision): the one owner of row keys, labels, which rows exist,
why one cannot run here, and the options it runs with. ``benchmarks/run.py``, its report and the device check all read
them from here.

Rows come from the registries: every backend of :data:`jarrn_deploy.runtime.backends.registry.BACKENDS` gets rows, at
every precision of :data:`jarrn_deploy.export.precisions.PRECISIONS` its files can have (a checkpoint backend: the
precisions its options accept). :data:`VARIANTS` adds the benchmark's own ways of running a backend (PyTorch eager vs
torch.compile, TensorRT vs TensorRT-RTX engines); a backend without one gets a row family under its own name and label.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from jarrn_deploy.errors import UsageError
from jarrn_deploy.export.precisions import PRECISIONS, precision_spec
from jarrn_deploy.runtime.backends import registry

BASELINE_KEY = "torch:fp32"
KITTI_HW = (375, 1242)
DEFAULT_SIZES = ((320, 320), KITTI_HW)
DEFAULT_BATCHES = (1, 4)


@dataclass(frozen=True)
class Variant:
    """A family of benchmark rows: one registered backend run one particular way."""

    name: str
    """The row key's first part, e.g. 'torch-compile'."""
    backend: str
    """The registry backend it runs on, e.g. 'torch'."""
    label: str | None = None
    """The row label before the precision (None: the backend's registry label)."""
    compile: bool = False
    """PyTorch: torch.compile reduce-overhead (``TorchBackendOptions.compile``)."""
    flavour: str | None = None
    """Engine backends: the engine flavour to build (None: the installed one)."""


VARIANTS: tuple[Variant, ...] = (
    Variant("torch", "torch", "PyTorch eager"),
    Variant("torch-compile", "torch", "torch.compile reduce-overhead (CUDA graphs)", compile=True),
    Variant("tensorrt", "tensorrt", flavour="tensorrt"),
    Variant("tensorrt-rtx", "tensorrt", "TensorRT-RTX", flavour="tensorrt-rtx"),
)
"""The benchmark's ways of running a backend that differ from the backend's defaults (or its label)."""


def variants() -> dict[str, Variant]:
    """Every row family by name, in the registry's backend order, each backend's variants in :data:`VARIANTS` order."""
    out: dict[str, Variant] = {}
    for name in registry.BACKENDS:
        own = [v for v in VARIANTS if v.backend == name] or [Variant(name, name)]
        out.update((v.name, v) for v in own)
    return out


def row_backends() -> tuple[str, ...]:
    """The ``--backends`` choices: every row family's name."""
    return tuple(variants())


def variant(name: str) -> Variant:
    try:
        return variants()[name]
    except KeyError:
        raise UsageError(f"benchmark row: unknown backend {name!r}; expected one of "
                         f"{', '.join(row_backends())}") from None


@dataclass(frozen=True)
class Row:
    """One benchmark row: a row family (a backend run one way) at a precision."""

    backend: str
    """The row family (:func:`variants`), e.g. 'torch-compile'."""
    precision: str
    """A precision of the registry, e.g. 'int8'."""

    @classmethod
    def from_key(cls, key: str) -> "Row":
        """The row of a key such as 'torch-compile:fp16'."""
        backend, _, precision = key.partition(":")
        return cls(backend, precision)

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.precision}"

    @property
    def variant(self) -> Variant:
        return variant(self.backend)

    @property
    def spec(self) -> registry.BackendSpec:
        return registry.backend_spec(self.variant.backend)

    @property
    def uses_onnx(self) -> bool:
        """Whether it runs an exported graph (directly, or an engine built from one)."""
        return self.spec.model_kind != "checkpoint"

    @property
    def label(self) -> str:
        v = self.variant
        text = f"{v.label or self.spec.label} {precision_spec(self.precision).label}"
        options = self.options()
        if getattr(options, "precision", "fp32") == "fp16":
            text += " autocast"
        if getattr(options, "channels_last", False):
            text += " + channels-last"
        return text

    def options(self, device: str = "cpu", threads: int | None = None) -> Any:
        """The backend's options (its registry ``options_type``) for this row on ``device`` ('cpu', 'cuda' or
        'cuda:N') with ``threads``: every option the row decides is set by its field name; None when it takes none."""
        return _options(self.spec, self.variant, self.precision, device, threads)


def _options(spec: registry.BackendSpec, v: Variant, precision: str, device: str, threads: int | None) -> Any:
    if spec.options_type is None:
        return None
    on_gpu = device.partition(":")[0] == "cuda"
    decided = {
        "precision": precision,  # a checkpoint backend runs the row's precision itself (PyTorch: FP16 autocast)
        "compile": v.compile,
        "channels_last": precision == "fp16",  # the layout FP16 tensor-core convolutions use
        "providers": ("cuda",) if on_gpu else ("cpu",),
        "intra_op_threads": threads,
        "threads": threads,
        "flavour": v.flavour,
    }
    values = {}
    for f in dataclasses.fields(spec.options_type):
        if f.name in decided:
            values[f.name] = decided[f.name]
        elif f.name == "device" and isinstance(f.default, str):  # a device name (PyTorch); an index keeps its default
            values[f.name] = device  # 'cpu', 'cuda' or 'cuda:N'
    return spec.options_type(**values)


def precisions_of(family: str) -> tuple[str, ...]:
    """The precisions a row family has: all of them for exported files; for a checkpoint, those its options accept."""
    v = variant(family)
    spec = registry.backend_spec(v.backend)
    if spec.model_kind != "checkpoint":
        return PRECISIONS
    accepted = []
    for precision in PRECISIONS:
        try:
            _options(spec, v, precision, "cpu", None)
        except UsageError:
            continue
        accepted.append(precision)
    return tuple(accepted)


def applicable_rows(backends: Iterable[str], precisions: Iterable[str]) -> list[Row]:
    """Rows that exist at all (PyTorch has no INT8 path); whether this machine runs them is :func:`row_reason`'s."""
    precisions = list(precisions)
    return [Row(b, p) for b in backends for p in precisions if p in precisions_of(b)]


def row_reason(row: Row, device: str) -> str | None:
    """Why ``row`` cannot be measured on ``device`` ('cpu' or 'cuda'), or None when it can (as far as is known before
    it runs): the backend's library (registry ``missing``), then where it runs."""
    spec = row.spec
    label = row.variant.label or spec.label
    missing = spec.missing()
    if missing:
        return f"unavailable: {missing}"
    options = row.options(device)
    if hasattr(options, "check_device"):
        try:
            options.check_device(device)
        except UsageError as exc:
            return f"not measured on {device.upper()}: {exc}"
    if spec.device_flag is None:  # one device: an engine's GPU, else the CPU
        if spec.model_kind == "engine" and device != "cuda":
            return (f"unavailable: {label} engines need an NVIDIA GPU (run with --device cuda on a GPU "
                    "machine)")
        if spec.model_kind != "engine" and device == "cuda":
            return f"not measured on the GPU: {label} runs on the CPU here (run with --device cpu)"
    if device == "cuda" and "providers" in getattr(options, "__dataclass_fields__", {}):
        return _cuda_provider_missing()
    return None


def _cuda_provider_missing() -> str | None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return ("unavailable: this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu); "
                "run with --device cpu for the CPU rows")
    return None


def size_label(hw: Sequence[int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def config_key(hw: Sequence[int], batch: int) -> str:
    return f"{size_label(hw)}_b{batch}"


def padded_hw(hw: Sequence[int], multiple: int = 64) -> tuple[int, int]:
    return tuple(-(-int(v) // multiple) * multiple for v in hw)  # type: ignore[return-value]
