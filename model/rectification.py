"""The joint absolute-relative rectification: blends the coarse depth with its scaled-and-shifted version."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

PROB_ACTIVATIONS = frozenset({"softmax_height", "sigmoid"})
OFFSET_LIMIT = 0.5


class Rectified(NamedTuple):
    depth: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    prob: torch.Tensor


class Rectification(nn.Module):
    """``depth = (coarse*scale + offset)*prob + coarse*(1-prob)`` from the refine branch's three raw channels.

    ``scale = 2*sigmoid(c0)``, ``offset = clamp(c1, -0.5, 0.5)``; ``prob`` is either the official softmax over image
    rows (each column sums to 1, so values average 1/H and depend on the input height) or a per-pixel sigmoid.
    """

    def __init__(self, prob_activation: str = "softmax_height") -> None:
        super().__init__()
        if prob_activation not in PROB_ACTIVATIONS:
            raise ValueError(f"prob_activation: expected one of {sorted(PROB_ACTIVATIONS)}, got {prob_activation!r}")
        self.prob_activation = prob_activation

    def forward(self, coarse: torch.Tensor, maps: torch.Tensor) -> Rectified:
        scale = 2.0 * torch.sigmoid(maps[:, 0:1])
        offset = torch.clamp(maps[:, 1:2], -OFFSET_LIMIT, OFFSET_LIMIT)
        logits = maps[:, 2:3]
        if self.prob_activation == "softmax_height":
            prob = torch.softmax(logits, dim=2)
        else:
            prob = torch.sigmoid(logits)
        depth = (coarse * scale + offset) * prob + coarse * (1.0 - prob)
        return Rectified(depth, scale, offset, prob)
