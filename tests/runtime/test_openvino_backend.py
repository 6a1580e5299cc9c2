"""The OpenVINO backend: runs the exported graph on the CPU like ONNX Runtime (the bundled KITTI frame within 1 cm),
checks the graph the same way, and without openvino installed says how to install it (exit 5)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jarrn_deploy.errors import EXIT_UNAVAILABLE, UsageError
from jarrn_deploy.runtime import DepthCompleter
from jarrn_deploy.runtime.backends import GraphError
from jarrn_deploy.runtime.backends.options import OpenVinoOptions
from tests.reliability_support import contract_graph
from tests.support import REPO

KITTI = REPO / "data" / "real" / "kitti_2011_09_26_drive_0001_f5"
pytest.importorskip("openvino")


def _frame(size: tuple[int, int] = (48, 64)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    sparse = np.where(rng.random(size) < 0.1, rng.uniform(1, 50, size), 0).astype(np.float32)
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8), sparse


def test_both_inputs_reach_the_graph_for_single_images_and_batches(tmp_path: Path) -> None:
    rgb, sparse = _frame()
    with DepthCompleter.from_backend("openvino", contract_graph(tmp_path), OpenVinoOptions(threads=1)) as completer:
        assert completer.backend_name == "openvino" and completer.memory_guard is not None
        np.testing.assert_array_equal(completer.complete(rgb, sparse), sparse)  # the graph: depth = sparse_depth
        batch = completer.complete(np.stack([rgb, rgb[::-1]]), np.stack([sparse, sparse[::-1]]))
        np.testing.assert_array_equal(batch, np.stack([sparse, sparse[::-1]]))
        completer.backend.cancel()  # nothing running: the next call runs normally
        np.testing.assert_array_equal(completer.complete(rgb, sparse), sparse)


def test_the_graph_is_checked_like_onnx_runtime_checks_it(tmp_path: Path) -> None:
    bare = contract_graph(tmp_path, name="bare.onnx", metadata=None)
    with pytest.raises(GraphError, match="jarrn.contract_version"):
        DepthCompleter.from_backend("openvino", bare)
    DepthCompleter.from_backend("openvino", bare, OpenVinoOptions(check_metadata=False)).close()
    with pytest.raises(GraphError, match="rgb"):
        DepthCompleter.from_backend("openvino", contract_graph(tmp_path, name="x.onnx", input_names=("image", "sparse_depth")))
    with pytest.raises(UsageError, match="threads: expected a non-negative integer"):
        OpenVinoOptions(threads=-1)


def test_openvino_completes_the_bundled_kitti_frame_within_a_centimetre_of_onnx_runtime(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.model.depth_io import read_depth_png, read_rgb
    from jarrn_deploy.runtime.default_model import bundled_onnx
    from jarrn_deploy.runtime.infer import main as infer_main

    rgb_path, sparse_path = KITTI / "image_02.png", KITTI / "velodyne_raw_02.png"
    rgb, sparse = read_rgb(rgb_path), read_depth_png(sparse_path, scale=256.0)
    onnx_path = bundled_onnx(lambda message: None)  # the bundled model's cached export, as jarrn infer uses it
    with DepthCompleter.from_onnx(onnx_path, intra_op_threads=2) as ort:
        reference = ort.complete(rgb, sparse)
    with DepthCompleter.from_backend("openvino", onnx_path, OpenVinoOptions(threads=2)) as openvino:
        assert np.abs(openvino.complete(rgb, sparse) - reference).max() < 0.01
    # the command line, no --model: the same cached export
    assert infer_main(["--rgb", str(rgb_path), "--sparse", str(sparse_path), "--out", str(tmp_path),
                       "--backend", "openvino"]) == 0
    assert capsys.readouterr().out.startswith("openvino fp32")
    depth = np.asarray(Image.open(tmp_path / "depth.png"), dtype=np.float64) / 256.0  # KITTI PNG: metres x 256
    expected = np.round(np.clip(reference, 0, 255.99) * 256.0) / 256.0
    assert np.abs(depth - expected).max() < 0.01


def test_without_openvino_infer_exits_5_with_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.runtime.infer import main as infer_main

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails as if it were not installed
    args = ["--rgb", str(KITTI / "image_02.png"), "--sparse", str(KITTI / "velodyne_raw_02.png"),
            "--backend", "openvino"]
    for model in (["--model", str(contract_graph(tmp_path))], []):  # a given graph, and the bundled model
        assert infer_main([*args, *model, "--out", str(tmp_path / "out")]) == EXIT_UNAVAILABLE
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "OpenVINO is not installed: `pip install openvino`" in error[0]
    assert not (tmp_path / "out").exists()


def test_cancel_stops_a_running_call_from_another_thread_and_the_next_call_runs() -> None:
    import threading
    import time

    from jarrn_deploy.runtime.default_model import bundled_onnx

    rgb, sparse = _frame((1024, 1024))
    with DepthCompleter.from_backend("openvino", bundled_onnx(lambda message: None), OpenVinoOptions(threads=1)) as ov:
        done = threading.Event()

        def cancel_until_done() -> None:  # as the serving model's AbandonWatch does, every 50 ms
            while not done.wait(0.05):
                ov.backend.cancel()

        watcher = threading.Thread(target=cancel_until_done)
        started = time.perf_counter()
        watcher.start()
        try:
            with pytest.raises(RuntimeError, match="cancel"):
                ov.complete(rgb, sparse)
        finally:
            done.set()
            watcher.join()
        assert time.perf_counter() - started < 1.5  # a whole 1024x1024 run takes seconds on a CPU
        assert ov.complete(*_frame((64, 64))).shape == (64, 64)
