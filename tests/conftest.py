from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tests.support import OFFICIAL_DIR


# One intra-op thread per pytest-xdist worker (two workers share the two cores), two when run in one process.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


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


@pytest.fixture
def one_torch_thread():
    """Runs the test with one torch intra-op thread (timing-sensitive CPU tests), then restores the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
