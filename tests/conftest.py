from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

OFFICIAL_DIR = Path(__file__).parent / "data" / "official_jarrn"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def golden_state_dict() -> dict[str, torch.Tensor]:
    data = np.load(OFFICIAL_DIR / "golden_state_dict.npz")
    return {k: torch.from_numpy(data[k]) for k in data.files}


@pytest.fixture(scope="session")
def golden_io() -> dict[str, np.ndarray]:
    data = np.load(OFFICIAL_DIR / "golden_io.npz")
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def golden_widths() -> tuple[int, ...]:
    return tuple(json.loads((OFFICIAL_DIR / "golden_config.json").read_text())["widths"])


@pytest.fixture(scope="session")
def official_full_keys() -> dict[str, list[int]]:
    return json.loads((OFFICIAL_DIR / "state_dict_keys_full.json").read_text())


def randomise_alphas(network: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero rezero alphas so every branch contributes (fresh networks start with alpha = 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in network.named_parameters():
            if name.endswith("alpha"):
                param.copy_(torch.rand((), generator=gen) * 0.5 + 0.1)
    return network
