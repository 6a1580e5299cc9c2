"""runtime.DepthCompleter over PyTorch and ONNX Runtime, and the jarrn_deploy.runtime.infer command line."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jarrn_deploy.errors import UnavailableError
from jarrn_deploy.model import save_model
from jarrn_deploy.model.checkpoint import DEFAULT_CHECKPOINT
from jarrn_deploy.model.depth_io import read_depth_png, read_rgb
from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames
from jarrn_deploy.runtime import BackendUnavailable, DepthCompleter
from jarrn_deploy.runtime.backends import GraphError
from jarrn_deploy.runtime.backends.onnxruntime_backend import resolve_providers, tensorrt_provider_options
from jarrn_deploy.runtime.infer import InferError, choose_backend, main as infer_main

from tests.support import tiny_network as build_tiny_network

from tests.support import REPO
KITTI = REPO / "data" / "real" / "kitti_2011_09_26_drive_0001_f5"
TINY_WIDTHS = (16, 16, 16, 16, 8, 8, 8)
# Tolerance of ONNX Runtime against PyTorch: 1e-3 m, plus 5e-4 relative because a random-weight network extrapolates
# to ~300 m on the KITTI frame where FP32 summation-order differences reach a few mm (indoor frames: < 4e-4 m).
ATOL_M, RTOL = 1e-3, 5e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("runtime")
    net = build_tiny_network(TINY_WIDTHS)
    checkpoint = save_model(net, folder / "tiny.safetensors")
    onnx_path = folder / "tiny.onnx"
    try:
        from jarrn_deploy.export.onnx_graph import ExportOptions, export_onnx

        export_onnx(net, onnx_path, ExportOptions())
    except ImportError:  # exporter not available: the plain TorchScript export of the same graph
        from jarrn_deploy.model import MetricJarrn

        names = ("rgb", "sparse_depth", "depth")
        torch.onnx.export(MetricJarrn(net), (torch.rand(1, 3, 100, 130), torch.rand(1, 1, 100, 130)), str(onnx_path),
                          input_names=list(names[:2]), output_names=["depth"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 2: "height", 3: "width"} for n in names})
    return {"net": net, "checkpoint": checkpoint, "onnx": onnx_path, "folder": folder,
            "torch": DepthCompleter.from_checkpoint(checkpoint), "ort": DepthCompleter.from_onnx(onnx_path)}


def _cases() -> list:
    return evaluation_cases(load_real_frames())


def _shrunk(case, max_side: int):
    step = max(1, -(-max(case.rgb.shape[:2]) // max_side))
    return case.rgb[::step, ::step], case.sparse[::step, ::step]


# ---------------------------------------------------------------------------------------------------------------------
# backends agree


@pytest.mark.parametrize("index", range(6), ids=["kitti_02", "kitti_03", "tum@500", "tum@100", "kinect2@500", "kinect2@100"])
def test_onnxruntime_matches_torch_on_real_frames(tiny: dict, index: int) -> None:
    case = _cases()[index]
    # KITTI camera 02 at full size (375x1242: padded to 384x1280 inside the graph); the others shrunk for speed
    rgb, sparse = (case.rgb, case.sparse) if index == 0 else _shrunk(case, 320)
    reference = tiny["torch"].complete(rgb, sparse)
    got = tiny["ort"].complete(rgb, sparse)
    assert got.shape == reference.shape == sparse.shape and got.dtype == np.float32
    assert reference.max() > 1.0  # a non-degenerate output, so the comparison means something
    np.testing.assert_allclose(got, reference, rtol=RTOL, atol=ATOL_M)


def test_batches_match_single_images_and_backends(tiny: dict) -> None:
    case = _cases()[2]  # tum_desk@500
    rgb, sparse = _shrunk(case, 160)
    rgb_b = np.stack([rgb, rgb[:, ::-1]])
    sparse_b = np.stack([sparse, sparse[:, ::-1]])
    by_torch = tiny["torch"].complete(rgb_b, sparse_b)
    by_ort = tiny["ort"].complete(rgb_b, sparse_b)
    assert by_torch.shape == by_ort.shape == sparse_b.shape
    np.testing.assert_allclose(by_ort, by_torch, rtol=RTOL, atol=ATOL_M)
    for i in range(2):
        np.testing.assert_allclose(by_ort[i], tiny["ort"].complete(rgb_b[i], sparse_b[i]), rtol=1e-5, atol=1e-5)
    # float RGB in [0, 1] is the same as uint8 / 255
    np.testing.assert_allclose(tiny["ort"].complete(rgb.astype(np.float32) / 255, sparse), by_ort[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="bundled default model not trained yet")
def test_bundled_model_backends_agree_within_a_millimetre(tmp_path: Path) -> None:
    from jarrn_deploy.export.onnx_graph import ExportOptions, export_onnx
    from jarrn_deploy.model import load_model

    net = load_model()
    reference = DepthCompleter.from_network(net)
    ort = DepthCompleter.from_onnx(export_onnx(net, tmp_path / "default.onnx", ExportOptions()))
    for case in _cases():
        np.testing.assert_allclose(ort.complete(case.rgb, case.sparse), reference.complete(case.rgb, case.sparse),
                                   rtol=0, atol=1e-3, err_msg=case.name)


# ---------------------------------------------------------------------------------------------------------------------
# bad input: the same errors from every backend, naming the argument


@pytest.mark.parametrize("backend", ["torch", "ort"])
def test_bad_inputs_name_the_argument(tiny: dict, backend: str) -> None:
    completer = tiny[backend]
    rgb = np.zeros((64, 80, 3), np.uint8)
    sparse = np.zeros((64, 80), np.float32)
    with pytest.raises(ValueError, match="sparse_depth: expected float metres, got dtype uint16"):
        completer.complete(rgb, sparse.astype(np.uint16))
    with pytest.raises(ValueError, match="rgb: expected uint8"):
        completer.complete(rgb.astype(np.int32), sparse)
    with pytest.raises(ValueError, match="rgb and sparse_depth: sizes differ, rgb is 64x80 .* sparse_depth is 64x96"):
        completer.complete(rgb, np.zeros((64, 96), np.float32))
    with pytest.raises(ValueError, match="rgb: expected HxWx3"):
        completer.complete(rgb[..., :2], sparse)
    with pytest.raises(TypeError, match="sparse_depth: expected a numpy array"):
        completer.complete(rgb, [[0.0]])


# ---------------------------------------------------------------------------------------------------------------------
# thread safety: one completer shared by two threads gives the single-threaded results


@pytest.mark.parametrize("backend", ["torch", "ort"])
def test_two_threads_share_one_completer(tiny: dict, backend: str) -> None:
    completer = tiny[backend]
    rng = np.random.default_rng(1)
    inputs = []
    for i in range(6):
        h, w = (48 + 16 * (i % 3), 64 + 8 * i)  # different sizes per call
        sparse = (rng.random((h, w)) * 20 * (rng.random((h, w)) < 0.05)).astype(np.float32)
        inputs.append((rng.integers(0, 256, (h, w, 3), dtype=np.uint8), sparse))
    expected = [completer.complete(*pair) for pair in inputs]
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(tid: int) -> None:
        try:
            barrier.wait()
            for repeat in range(2):
                for i in (range(6) if tid == 0 else reversed(range(6))):
                    results[(tid, i, repeat)] = completer.complete(*inputs[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 24
    for (tid, i, _), got in results.items():
        np.testing.assert_array_equal(got, expected[i])


# ---------------------------------------------------------------------------------------------------------------------
# ONNX Runtime providers and loading errors


def test_provider_resolution() -> None:
    available = ["CPUExecutionProvider"]
    assert resolve_providers("cpu", available) == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailable, match="'cuda' .*CUDAExecutionProvider.*install onnxruntime-gpu"):
        resolve_providers(("cuda", "cpu"), available)
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    options = {"trt_engine_cache_enable": "True"}
    resolved = resolve_providers(["tensorrt", "cuda"], gpu, trt_options=options)
    assert resolved == [("TensorrtExecutionProvider", options), "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="at least one"):
        resolve_providers([], gpu)


def test_tensorrt_provider_options_pin_the_profile(tmp_path: Path) -> None:
    from jarrn_deploy.export.engine.profile import Profile

    options = tensorrt_provider_options(tmp_path, Profile.parse("1x64x64", "1x320x320", "2x480x640"))
    assert options["trt_engine_cache_path"] == str(tmp_path) and options["trt_timing_cache_enable"] == "True"
    assert options["trt_profile_min_shapes"] == "rgb:1x3x64x64,sparse_depth:1x1x64x64"
    assert options["trt_profile_max_shapes"] == "rgb:2x3x480x640,sparse_depth:2x1x480x640"
    assert options["trt_fp16_enable"] == "False"  # precision comes from the ONNX


def test_onnx_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="onnx: no such file"):
        DepthCompleter.from_onnx(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    with pytest.raises(GraphError, match="broken.onnx: ONNX Runtime could not load the model"):
        DepthCompleter.from_onnx(broken)


def test_onnxruntime_backend_reports_its_session_settings(tiny: dict) -> None:
    settings = DepthCompleter.from_onnx(tiny["onnx"], intra_op_threads=1).backend.session_settings
    assert settings["providers"] == ["CPUExecutionProvider"]
    assert settings["session_options"]["intra_op_num_threads"] == 1
    assert settings["session_options"]["graph_optimization_level"].endswith("ORT_ENABLE_ALL")


def test_onnxruntime_backend_can_give_its_run_memory_back_with_the_same_answer(tiny: dict) -> None:
    from jarrn_deploy.runtime.backends.options import OnnxRuntimeOptions

    keeping = DepthCompleter.from_backend("onnxruntime", str(tiny["onnx"]), OnnxRuntimeOptions())
    releasing = DepthCompleter.from_backend("onnxruntime", str(tiny["onnx"]),
                                            OnnxRuntimeOptions(release_memory_above_pixels=64 * 64))
    shrink = "memory.enable_memory_arena_shrinkage"
    assert releasing.backend._fresh_run_options(64 * 96).get_run_config_entry(shrink) == "cpu:0"
    for backend, pixels in ((releasing.backend, 64 * 64), (keeping.backend, 4096 * 4096)):
        with pytest.raises(RuntimeError):  # not set: ONNX Runtime keeps its arena
            backend._fresh_run_options(pixels).get_run_config_entry(shrink)
    rgb, sparse = np.full((64, 96, 3), 128, np.uint8), np.zeros((64, 96), np.float32)
    sparse[::6, ::6] = 5.0
    np.testing.assert_array_equal(keeping.complete(rgb, sparse), releasing.complete(rgb, sparse))


def test_completer_surface(tiny: dict) -> None:
    assert tiny["torch"].backend_name == "torch" and tiny["ort"].backend_name == "onnxruntime"
    assert "onnxruntime" in repr(tiny["ort"]) and tiny["ort"].backend.providers == ["CPUExecutionProvider"]
    with DepthCompleter.from_onnx(tiny["onnx"]) as completer:
        assert completer(np.zeros((64, 64, 3), np.uint8), np.ones((64, 64), np.float32)).shape == (64, 64)


# ---------------------------------------------------------------------------------------------------------------------
# jarrn_deploy.runtime.infer


@pytest.fixture(scope="module")
def kitti_crop(tiny: dict) -> dict:
    """A 160x320 crop of the KITTI frame as the user would have it: RGB PNG, KITTI uint16 PNG, .npy metres."""
    folder = tiny["folder"] / "inputs"
    folder.mkdir()
    rgb = read_rgb(KITTI / "image_02.png")[200:360, 400:720]
    raw = np.asarray(Image.open(KITTI / "velodyne_raw_02.png"))[200:360, 400:720]
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(raw.astype(np.uint16)).save(folder / "sparse.png")
    np.save(folder / "sparse.npy", raw.astype(np.float32) / 256.0)
    Image.fromarray((raw // 256).astype(np.uint8)).save(folder / "sparse_8bit.png")
    Image.fromarray(rgb[:, :300]).save(folder / "rgb_narrow.png")
    return {"rgb": folder / "rgb.png", "sparse": folder / "sparse.png", "npy": folder / "sparse.npy",
            "sparse8": folder / "sparse_8bit.png", "narrow": folder / "rgb_narrow.png",
            "rgb_array": rgb, "sparse_m": raw.astype(np.float32) / 256.0}


@pytest.mark.parametrize(("model_key", "backend"), [("checkpoint", "torch"), ("onnx", "onnxruntime")])
def test_infer_cli_writes_three_pngs(tiny: dict, kitti_crop: dict, tmp_path: Path, model_key: str, backend: str,
                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = infer_main(["--rgb", str(kitti_crop["rgb"]), "--sparse", str(kitti_crop["sparse"]), "--out", str(out),
                       "--model", str(tiny[model_key])])
    assert code == 0
    assert capsys.readouterr().out.startswith(backend)
    assert sorted(p.name for p in out.iterdir()) == ["depth.png", "depth_color.png", "panel.png"]  # no temp files left
    with Image.open(out / "depth.png") as im:
        assert im.size == (320, 160) and np.asarray(im).dtype == np.uint16
    expected = tiny["torch"].complete(kitti_crop["rgb_array"], kitti_crop["sparse_m"])
    stored = read_depth_png(out / "depth.png", scale=256)
    # uint16 at 1/256 m: half a step of rounding on top of the backend tolerance
    np.testing.assert_allclose(stored, np.clip(expected, 0, 65535 / 256), rtol=RTOL, atol=0.5 / 256 + ATOL_M)
    with Image.open(out / "depth_color.png") as im:  # the depth picture plus a title and a colour bar in metres
        assert im.mode == "RGB" and im.size[0] >= 320 and im.size[1] > 160 + 40
    with Image.open(out / "panel.png") as im:
        assert im.mode == "RGB" and im.size[0] > 3 * 320 and im.size[1] > 160  # three tiles side by side + titles


def test_infer_cli_npy_and_sparse_scale(tiny: dict, kitti_crop: dict, tmp_path: Path) -> None:
    assert infer_main(["--rgb", str(kitti_crop["rgb"]), "--sparse", str(kitti_crop["npy"]), "--out",
                       str(tmp_path / "a"), "--model", str(tiny["onnx"])]) == 0
    assert infer_main(["--rgb", str(kitti_crop["rgb"]), "--sparse", str(kitti_crop["sparse"]), "--out",
                       str(tmp_path / "b"), "--model", str(tiny["onnx"]), "--sparse-scale", "256"]) == 0
    a = read_depth_png(tmp_path / "a" / "depth.png", scale=256)
    b = read_depth_png(tmp_path / "b" / "depth.png", scale=256)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("which", "says"),
    [
        ("missing", "error: --sparse: no such file"),
        ("sizes", "error: --rgb and --sparse: sizes differ, rgb is 300x160, sparse is 320x160"),
        ("8bit", "error: --sparse: .*expected a 16-bit single-channel depth PNG, found mode 'L'"),
        ("backend", "error: --backend tensorrt needs --model to be an engine"),
        ("mm", "error: sparse_depth: values up to"),
    ],
)
def test_infer_cli_bad_input_one_line(tiny: dict, kitti_crop: dict, tmp_path: Path, which: str, says: str,
                                      capsys: pytest.CaptureFixture) -> None:
    rgb, sparse = str(kitti_crop["rgb"]), str(kitti_crop["sparse"])
    extra = ["--model", str(tiny["onnx"])]
    if which == "missing":
        sparse = str(tmp_path / "nope.png")
    elif which == "sizes":
        rgb = str(kitti_crop["narrow"])
    elif which == "8bit":
        sparse = str(kitti_crop["sparse8"])
    elif which == "backend":
        extra += ["--backend", "tensorrt"]
    elif which == "mm":
        extra += ["--sparse-scale", "0.01"]  # values far too large to be metres
    code = infer_main(["--rgb", rgb, "--sparse", sparse, "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == (2 if which == "backend" else 3) and len(err.strip().splitlines()) == 1, err
    import re

    assert re.search(says, err), err
    assert not (tmp_path / "o").exists()


def test_infer_cli_subprocess_error_has_no_traceback(kitti_crop: dict, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jarrn_deploy.runtime.infer", "--rgb", str(kitti_crop["narrow"]), "--sparse",
         str(kitti_crop["sparse"]), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: --rgb and --sparse: sizes differ")


def test_default_backend_rule(tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jarrn_deploy.runtime.infer as infer
    from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path

    assert choose_backend(None, None)[:2] == ("torch", None)
    assert choose_backend("m.safetensors", None)[0] == "torch"
    assert choose_backend("m.onnx", None)[0] == "onnxruntime"
    with pytest.raises(InferError, match="--backend onnxruntime needs --model to be an ONNX file"):
        choose_backend("m.pth", "onnxruntime")
    engine = tmp_path / "m.engine"
    monkeypatch.setattr(infer, "_tensorrt_available", lambda engine=None: True)
    assert choose_backend(str(engine), None)[0] == "tensorrt"
    monkeypatch.setattr(infer, "_tensorrt_available", lambda engine=None: False)
    with pytest.raises(UnavailableError, match="TensorRT is not installed"):
        choose_backend(str(engine), None)
    EngineManifest(onnx_path=str(tiny["onnx"]), onnx_sha256="", precision="fp32", tensorrt_version="10.3.0.30",
                   gpu_name="g", compute_capability="8.7", profile={"min": [1, 1, 1], "opt": [1, 1, 1], "max": [1, 1, 1]},
                   build={}, cache_key="").save(manifest_path(engine))
    backend, model, why = choose_backend(str(engine), None)
    assert (backend, model) == ("onnxruntime", str(tiny["onnx"])) and "TensorRT not installed" in why


@pytest.mark.parametrize("flavour", ["tensorrt", "tensorrt-rtx"])
def test_infer_looks_for_the_library_the_engine_manifest_names(tmp_path: Path, flavour: str) -> None:
    import importlib.util

    from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path
    from jarrn_deploy.runtime import infer

    engine = tmp_path / "m.engine"
    EngineManifest(onnx_path="m.onnx", onnx_sha256="", precision="fp32", tensorrt_version="1.7.1",
                   gpu_name="g", compute_capability="8.6", profile={"min": [1, 1, 1], "opt": [1, 1, 1], "max": [1, 1, 1]},
                   build={}, cache_key="", flavour=flavour).save(manifest_path(engine))
    module = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}[flavour]
    assert infer._tensorrt_available(str(engine)) == (importlib.util.find_spec(module) is not None)


def test_infer_outputs_appear_all_together_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jarrn_deploy.model.depth_io as depth_io
    from jarrn_deploy.runtime.infer import write_outputs

    rgb = np.zeros((64, 96, 3), np.uint8)
    sparse = np.zeros((64, 96), np.float32)
    sparse[::8, ::8] = 5.0
    depth = np.full((64, 96), 5.0, np.float32)
    real_write = depth_io.write_rgb_png

    def full_disk_on_the_panel(path, image):  # noqa: ANN001, ANN202
        if Path(path).name == "panel.png":
            raise OSError(28, "No space left on device")
        return real_write(path, image)

    monkeypatch.setattr(depth_io, "write_rgb_png", full_disk_on_the_panel)
    with pytest.raises(OSError):
        write_outputs(tmp_path / "out", rgb, sparse, depth, "test")
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(depth_io, "write_rgb_png", real_write)
    written = write_outputs(tmp_path / "out", rgb, sparse, depth, "test")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["depth.png", "depth_color.png", "panel.png"]
    assert all(p.is_file() for p in written)
