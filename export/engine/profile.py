"""Optimization profiles (batch x height x width) and build options of an engine. Needs numpy only (the contract)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from jarrn_deploy.errors import InputError
from jarrn_deploy.model.contract import CONTRACT

BUILD_COMMAND = "jarrn build-engine"
"""How users run export/build_engine.py (the ``jarrn`` console script); every rebuild hint names it."""

INPUT_CHANNELS: dict[str, int] = CONTRACT.input_channels
"""Graph inputs (rgb [B,3,H,W], sparse_depth [B,1,H,W]) from the tensor contract."""
OUTPUT_NAME = CONTRACT.depth_name

DEFAULT_MIN = "1x64x64"
DEFAULT_OPT = "1x320x320"
DEFAULT_MAX = "4x384x1280"
DEFAULT_OPT_LEVEL = 3
DEFAULT_WORKSPACE_MIB = 4096
OPT_LEVELS = range(0, 6)  # IBuilderConfig.builder_optimization_level: 0..5 (TensorRT 10 and 11), default 3


class ProfileError(InputError):
    """An invalid optimization profile, or an input shape outside the engine's profile."""


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

    @classmethod
    def fixed(cls, shape: Shape) -> "Profile":
        """The only profile a graph with fixed input shapes accepts: min = opt = max."""
        return cls(shape, shape, shape)

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
            f"{BUILD_COMMAND} and a wider --min/--max"
        )



@dataclass(frozen=True)
class BuildOptions:
    """Builder settings that change the engine (and so belong to its cache key)."""

    opt_level: int = DEFAULT_OPT_LEVEL
    """``IBuilderConfig.builder_optimization_level`` 0..5."""
    workspace_mib: int | None = DEFAULT_WORKSPACE_MIB
    """Workspace memory-pool limit in MiB; None leaves the library's default."""

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
