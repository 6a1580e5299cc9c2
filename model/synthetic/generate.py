"""Public entry points: render scenes with numpy (:func:`generate_scene`) or torch (:func:`generate_batch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from jarrn_deploy.model.synthetic.array_ops import NumpyOps
from jarrn_deploy.model.synthetic.config import DEFAULT_CONFIG, KINDS, MIN_SIZE, SceneConfig, SyntheticSample
from jarrn_deploy.model.synthetic.render import render
from jarrn_deploy.model.synthetic.sampling import sample_scene

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class SyntheticBatch:
    """A batch rendered with torch by :func:`generate_batch`."""

    rgb: torch.Tensor
    """float32 [B,3,H,W] in [0,1] (quantised to 8-bit levels, like the numpy path)."""
    depth: torch.Tensor
    """float32 [B,1,H,W] z-depth in metres, 0 = invalid."""
    intrinsics: torch.Tensor
    """float32 [B,4] rows (fx, fy, cx, cy)."""
    kinds: tuple[str, ...]
    """"indoor" / "outdoor" per sample."""


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_args(seed: object, height: object, width: object, kind: object, config: object) -> tuple[int, int, int]:
    s = _check_int("seed", seed, 0)
    h = _check_int("height", height, MIN_SIZE)
    w = _check_int("width", width, MIN_SIZE)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(config, SceneConfig):
        raise ValueError(f"config must be a SceneConfig, got {type(config).__name__}")
    return s, h, w


def generate_scene(
    seed: int, height: int, width: int, kind: str = "random", config: SceneConfig = DEFAULT_CONFIG
) -> SyntheticSample:
    """Render one procedural scene with numpy; the same arguments always give bit-identical output."""
    seed, height, width = _check_args(seed, height, width, kind, config)
    spec = sample_scene(seed, height, width, kind, config)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rgb, depth = render(spec, height, width, NumpyOps())
    return SyntheticSample(
        rgb=np.rint(rgb * 255.0).astype(np.uint8),
        depth=depth.astype(np.float32, copy=False),
        intrinsics=spec.intrinsics,
        kind=spec.kind,
    )


def generate_batch(
    seeds: Sequence[int],
    height: int,
    width: int,
    device: str | torch.device = "cpu",
    kind: str = "random",
    config: SceneConfig = DEFAULT_CONFIG,
) -> SyntheticBatch:
    """Render several scenes with torch on ``device`` (the ray casting runs there); matches :func:`generate_scene`."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError("seeds must be a non-empty sequence of ints")
    checked = [_check_args(s, height, width, kind, config) for s in seeds]
    height, width = checked[0][1], checked[0][2]
    import torch

    from jarrn_deploy.model.synthetic.torch_ops import TorchOps

    ops = TorchOps(device)
    rgbs, depths, intrinsics, kinds = [], [], [], []
    for seed, _, _ in checked:
        spec = sample_scene(seed, height, width, kind, config)
        rgb, depth = render(spec, height, width, ops)
        rgbs.append(torch.round(rgb * 255.0).permute(2, 0, 1) / 255.0)
        depths.append(depth[None])
        intrinsics.append(spec.intrinsics)
        kinds.append(spec.kind)
    return SyntheticBatch(
        rgb=torch.stack(rgbs),
        depth=torch.stack(depths),
        intrinsics=torch.tensor(intrinsics, dtype=torch.float32, device=ops.device),
        kinds=tuple(kinds),
    )
