"""What the tests share (not a test module): the repository paths and the one way to build a tiny network."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OFFICIAL_DIR = Path(__file__).parent / "data" / "official_jarrn"

TINY_WIDTHS = (8,) * 7
"""Decoder widths of the smallest network the tests build (fast, but every branch present)."""


def randomise_alphas(network: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero rezero alphas so every branch contributes (fresh networks start with alpha = 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in network.named_parameters():
            if name.endswith("alpha"):
                param.copy_(torch.rand((), generator=gen) * 0.5 + 0.1)
    return network


def tiny_network(widths: tuple[int, ...] = TINY_WIDTHS, *, seed: int = 0, **config):
    """A tiny JARRN in eval mode with every branch switched on (``config``: other JarrnConfig fields)."""
    from jarrn_deploy.model import Jarrn, JarrnConfig

    torch.manual_seed(seed)
    return randomise_alphas(Jarrn(JarrnConfig(tuple(widths), **config)), seed=seed).eval()
