"""The runtime's floor: with numpy, onnxruntime and pillow alone (no torch), the project installs and completes a
real frame through ``DepthCompleter.from_onnx``. Proven in a fresh virtual environment, as a Jetson user would set
it up next to JetPack's own packages."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

from tests.support import tiny_network as build_tiny_network

from tests.support import REPO
KITTI = REPO / "data" / "real" / "kitti_2011_09_26_drive_0001_f5"


@pytest.fixture(scope="module")
def torch_free_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the project (``--no-deps``) plus numpy, onnxruntime and pillow, and nothing else."""
    root = tmp_path_factory.mktemp("torch_free_venv")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    numpy_pin = f"numpy=={np.__version__}"  # the wheel the main environment already holds: no download, no ABI surprise
    subprocess.run([*pip, numpy_pin, "onnxruntime", "pillow"], check=True, timeout=600)
    # Install from a copy: setuptools builds inside the source folder, and the checkout should stay clean.
    source = root / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "artifacts", "runs", "reports", "tests", "__pycache__", "*.egg-info", "data"))
    subprocess.run([*pip, "--no-deps", str(source)], check=True, timeout=600, cwd=root)
    return python


def test_runtime_completes_a_real_frame_without_torch(torch_free_python: Path, tmp_path: Path) -> None:
    from jarrn_deploy.export.onnx_graph import ExportOptions, export_onnx

    network = build_tiny_network()
    graph = export_onnx(network, tmp_path / "tiny.onnx", ExportOptions(simplify=False))

    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from PIL import Image
        from jarrn_deploy.runtime import DepthCompleter
        from jarrn_deploy.model.depth_io import read_kitti_depth, read_rgb
        rgb = read_rgb({str(KITTI / "image_02.png")!r})[-128:, :256]
        sparse = read_kitti_depth({str(KITTI / "velodyne_raw_02.png")!r})[-128:, :256]  # the LiDAR covers the lower rows
        with DepthCompleter.from_onnx({str(graph)!r}) as completer:
            depth = completer.complete(rgb, sparse)
        assert "torch" not in sys.modules, "torch was imported"
        assert depth.shape == (128, 256) and depth.dtype == np.float32 and np.isfinite(depth).all()
        print("ok", completer.backend_name, float(depth.mean()))
    """)
    # Run outside the checkout so the installed copy, not the source tree, is what gets imported.
    result = subprocess.run([str(torch_free_python), "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok"), result.stdout

    check_torch_absent = subprocess.run([str(torch_free_python), "-c", "import torch"], capture_output=True,
                                        cwd=tmp_path)
    assert check_torch_absent.returncode != 0  # the environment really has no torch
