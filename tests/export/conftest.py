"""Fixtures of the export tests: one tiny checkpoint and network, a small calibration set, the FP32 export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jarrn_deploy.export.onnx_graph import ExportOptions, ExportStats, export_onnx
from jarrn_deploy.model import Jarrn, load_model, save_model

from tests.export.onnx_support import TINY
from tests.support import tiny_network as build_tiny_network


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_model(build_tiny_network(TINY.widths), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def tiny_network(tiny_checkpoint) -> Jarrn:
    return load_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def calibration_npz(tmp_path_factory) -> Path:
    """Four small samples, the same kind of data as the built-in set (kept small for speed)."""
    rng = np.random.default_rng(0)
    rgb = rng.random((4, 3, 64, 96), dtype=np.float32)
    keep = rng.random((4, 1, 64, 96)) < 0.05
    sparse = (rng.uniform(1.0, 50.0, (4, 1, 64, 96)) * keep).astype(np.float32)
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, rgb=rgb, sparse_depth=sparse)
    return path


@pytest.fixture(scope="module")
def fp32_export(tiny_network, tmp_path_factory):
    stats = ExportStats()
    path = export_onnx(tiny_network, tmp_path_factory.mktemp("fp32") / "tiny_fp32.onnx", ExportOptions(), stats=stats)
    return path, stats
