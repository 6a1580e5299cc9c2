"""JARRN: the Joint Absolute-Relative Relation Network, module for module as in the paper's code.

Two U-Nets of identical shape: the visual branch maps ``cat(rgb, sparse, mask)`` to a coarse depth, the refine
branch maps ``cat(sparse, mask, coarse)`` to scale, offset and probability maps that the rectification combines.
Attribute names reproduce the official state-dict keys (``rgb_x_block.2.block.1.block.0.left.3.weight`` ...), so
official checkpoints load without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

from jarrn_deploy.model.metric_jarrn import DEPTH_NORMALISATIONS, SPARSE_FILLS, complete_depth
from jarrn_deploy.model.rectification import PROB_ACTIVATIONS, Rectification

FULL_WIDTHS: tuple[int, ...] = (512, 512, 512, 512, 256, 128, 64)
SMALL_WIDTHS: tuple[int, ...] = (128, 128, 96, 64, 48, 32, 16)
_LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class JarrnConfig:
    """Architecture hyper-parameters; everything needed to rebuild the module from scratch."""

    widths: tuple[int, ...] = FULL_WIDTHS
    """U-Net channel list, innermost level first (7 entries; the official model uses 512,512,512,512,256,128,64)."""
    prob_activation: str = "softmax_height"
    """'softmax_height' (official: softmax over image rows) or 'sigmoid' (per pixel)."""
    depth_normalisation: str = "max"
    """How metric sparse depth becomes network input: 'max' (divide by the image's largest sparse depth) or 'minmax'."""
    sparse_fill: str = "none"
    """What the network's sparse channel carries: 'none' (the sparse points, official) or 'pushpull' (the points plus
    a push-pull interpolation into every empty pixel; the mask still marks the measured pixels)."""

    def __post_init__(self) -> None:
        widths = tuple(int(w) for w in self.widths)
        if len(widths) != 7 or any(w < 4 or w % 4 for w in widths):
            raise ValueError(f"widths: expected 7 channel counts, each a multiple of 4 and >= 4, got {self.widths!r}")
        object.__setattr__(self, "widths", widths)
        if self.prob_activation not in PROB_ACTIVATIONS:
            raise ValueError(
                f"prob_activation: expected one of {sorted(PROB_ACTIVATIONS)}, got {self.prob_activation!r}"
            )
        if self.depth_normalisation not in DEPTH_NORMALISATIONS:
            raise ValueError(
                f"depth_normalisation: expected one of {sorted(DEPTH_NORMALISATIONS)}, got {self.depth_normalisation!r}"
            )
        if self.sparse_fill not in SPARSE_FILLS:
            raise ValueError(f"sparse_fill: expected one of {sorted(SPARSE_FILLS)}, got {self.sparse_fill!r}")

    @classmethod
    def full(cls, **overrides: str) -> "JarrnConfig":
        return cls(FULL_WIDTHS, **overrides)

    @classmethod
    def small(cls, **overrides: str) -> "JarrnConfig":
        return cls(SMALL_WIDTHS, **overrides)

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "prob_activation": self.prob_activation,
                "depth_normalisation": self.depth_normalisation, "sparse_fill": self.sparse_fill}

    @classmethod
    def from_dict(cls, data: dict) -> "JarrnConfig":
        return cls(tuple(data["widths"]), data.get("prob_activation", "softmax_height"),
                   data.get("depth_normalisation", "max"), data.get("sparse_fill", "none"))


class JarrnOutput(NamedTuple):
    """Network outputs, all ``[B,1,H,W]`` in the normalised depth domain (scale and prob are unitless)."""

    depth: torch.Tensor
    coarse: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    prob: torch.Tensor


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


class Bottleneck(nn.Module):
    """ReZero bottleneck: ``alpha * left(a) + skip(a)`` with ``a = LeakyReLU(x)`` and ``alpha`` starting at 0."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = in_channels // 4
        self.alpha = nn.Parameter(torch.zeros(()))
        self.left = nn.Sequential(
            nn.LeakyReLU(_LEAKY_SLOPE),
            nn.Conv2d(in_channels, mid, kernel_size=1),
            nn.LeakyReLU(_LEAKY_SLOPE),
            conv3x3(mid, mid),
            nn.LeakyReLU(_LEAKY_SLOPE),
            nn.Conv2d(mid, out_channels, kernel_size=1),
        )
        self.right = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The official left branch starts with an in-place LeakyReLU, so its skip path also sees the activated input;
        # official checkpoints were trained with that, so it is reproduced here without the in-place side effect.
        activated = self.left[0](x)
        branch = activated
        for layer in list(self.left)[1:]:
            branch = layer(branch)
        skip = activated if self.right is None else self.right(activated)
        return self.alpha * branch + skip


class Stacked(nn.Module):
    """Three bottlenecks ``a -> b -> b -> b``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Bottleneck(in_channels, out_channels),
            Bottleneck(out_channels, out_channels),
            Bottleneck(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class InnermostLevel(nn.Module):
    """``x -> cat(x, up(stacked(down(x))))`` at the bottom of the U."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(in_channels, out_channels, stride=2),
            Stacked(out_channels, out_channels),
            Upsample2x(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.block(x)), dim=1)


class Level(nn.Module):
    """One U-Net level wrapping the next: ``x -> cat(x, up(stacked(inner(stacked(down(x))))))``."""

    def __init__(self, in_channels: int, mid_channels: int, inner: nn.Module) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(in_channels, mid_channels, stride=2),
            Stacked(mid_channels, mid_channels),
            inner,
            Stacked(2 * mid_channels, in_channels),
            Upsample2x(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.block(x)), dim=1)


def build_unet(in_channels: int, out_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """The official U-Net as a Sequential whose indices match the official keys."""
    inner: nn.Module = InnermostLevel(widths[1], widths[0])
    for k in range(2, 7):
        inner = Level(widths[k], widths[k - 1], inner)
    outer = widths[6]
    return nn.Sequential(
        conv3x3(in_channels, outer),
        Stacked(outer, outer),
        inner,
        Stacked(2 * outer, outer),
        conv3x3(outer, out_channels),
    )


def init_weights(module: nn.Module) -> None:
    """Official initialisation: kaiming normal (a=0.2) for convolutions, zero biases, rezero alphas at 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=_LEAKY_SLOPE)
            nn.init.zeros_(m.bias)


class Jarrn(nn.Module):
    """The network on normalised inputs: ``rgb`` in [0,1], ``sparse`` normalised depth, ``mask`` 1 where sparse is valid.

    H and W must be multiples of 64; :mod:`jarrn_deploy.model.contract` pads user inputs and maps depth to and from metres.
    """

    def __init__(self, config: JarrnConfig | None = None) -> None:
        super().__init__()
        self.config = config or JarrnConfig()
        self.source_path: str | None = None
        """The checkpoint file this network was loaded from (set by ``load_model``); None when built in memory."""
        self.rgb_x_block = build_unet(5, 1, self.config.widths)
        self.sfmap_block = build_unet(3, 3, self.config.widths)
        self.rectification = Rectification(self.config.prob_activation)
        init_weights(self)

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor, mask: torch.Tensor) -> JarrnOutput:
        coarse = self.rgb_x_block(torch.cat((rgb, sparse, mask), dim=1))
        maps = self.sfmap_block(torch.cat((sparse, mask, coarse), dim=1))
        rectified = self.rectification(coarse, maps)
        return JarrnOutput(rectified.depth, coarse, rectified.scale, rectified.offset, rectified.prob)

    def complete(self, rgb, sparse_depth_m):  # noqa: ANN001, ANN201 - numpy in, numpy out; see jarrn_deploy.model.contract
        """Dense metric depth from user inputs (numpy, any H and W); see :func:`jarrn_deploy.model.metric_jarrn.complete_depth`."""
        return complete_depth(self, rgb, sparse_depth_m)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
