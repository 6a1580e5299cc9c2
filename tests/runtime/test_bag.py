"""``jarrn bag`` end to end on recordings built from the bundled KITTI frame (tests/runtime/bag_support.py): the
round trip reproduces the frame's own LiDAR depth, the depth equals DepthCompleter on it (locally and through a real
``jarrn serve`` with ``--server``), and each bad input exits with its code and leaves no OUT."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from jarrn_deploy.errors import EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_UNAVAILABLE, EXIT_USAGE  # noqa: E402
from jarrn_deploy.runtime import DepthCompleter  # noqa: E402
from jarrn_deploy.runtime.bag.cli import main as bag_main  # noqa: E402
from jarrn_deploy.runtime.bag.output import DEPTH_TOPIC, SPARSE_TOPIC  # noqa: E402
from tests.runtime.bag_support import CAMERA_FRAME, BagSpec, kitti_frame, write_bag  # noqa: E402


@pytest.fixture(scope="module")
def model_onnx() -> Path:
    """The bundled model's ONNX export, cached by content (exported once per machine, then reused)."""
    from jarrn_deploy.runtime.default_model import bundled_onnx

    return bundled_onnx(lambda message: None)


@pytest.fixture(scope="module")
def frame():
    return kitti_frame()


@pytest.fixture(scope="module")
def expected_depth(model_onnx: Path, frame) -> np.ndarray:
    with DepthCompleter.from_onnx(model_onnx) as completer:
        return completer.complete(frame.rgb, frame.sparse)


def run(model_onnx: Path, bag: Path, out: Path, *extra: str) -> int:
    return bag_main([str(bag), "--out", str(out), "--model", str(model_onnx), "--no-progress", *extra])


def read_images(out: Path) -> dict[str, list]:
    """Topic -> [(header, HxW float32)] of OUT, read back with rosbags' reader."""
    from rosbags.highlevel import AnyReader

    found: dict[str, list] = {}
    with AnyReader([out]) as reader:
        for connection, _, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            assert message.encoding == "32FC1" and message.step == message.width * 4
            pixels = np.frombuffer(message.data.tobytes(), "<f4").reshape(message.height, message.width)
            found.setdefault(connection.topic, []).append((message.header, pixels))
    return found


def bag_name(storage: str) -> str:
    return "in.bag" if storage == "ros1" else "in"


ROUND_TRIPS = {
    "mcap_rgb8_one_transform": (BagSpec(storage="mcap", image="rgb8"), "mcap"),
    "sqlite3_png_chain": (BagSpec(storage="sqlite3", image="png", chain=True), "sqlite3"),
    "ros1_bgr8_chain": (BagSpec(storage="ros1", image="bgr8", chain=True), "mcap"),
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_round_trip_reproduces_the_frames_lidar_depth_and_completes_it_like_depth_completer(
        case: str, tmp_path: Path, model_onnx: Path, frame, expected_depth: np.ndarray) -> None:
    spec, storage = ROUND_TRIPS[case]
    bag = write_bag(tmp_path / bag_name(spec.storage), spec, frame)
    out = tmp_path / "out"
    assert run(model_onnx, bag, out, "--write-sparse", "--storage", storage) == EXIT_OK
    images = read_images(out)
    (header, sparse), = images[SPARSE_TOPIC]
    (depth_header, depth), = images[DEPTH_TOPIC]
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (1, 0, CAMERA_FRAME)
    assert depth_header.frame_id == CAMERA_FRAME and depth_header.stamp.sec == 1
    np.testing.assert_array_equal(np.isnan(sparse), frame.sparse == 0)  # NaN marks "no point" (REP 118)
    np.testing.assert_allclose(np.nan_to_num(sparse), frame.sparse, rtol=1e-6, atol=1e-5)
    valid = expected_depth > 0  # pixels <= 0 are written as NaN, "no depth"
    np.testing.assert_array_equal(np.isnan(depth), ~valid)
    assert valid.mean() > 0.99 and np.abs(depth[valid] - expected_depth[valid]).max() < 0.01
    assert (out / f"out.{'db3' if storage == 'sqlite3' else 'mcap'}").is_file()


def test_each_image_gets_the_nearest_sweep_and_an_image_without_one_is_warned_and_counted(
        tmp_path: Path, model_onnx: Path, frame, capsys: pytest.CaptureFixture) -> None:
    # image 1.0 s: sweeps at 0.97 and 1.02 s, the later one is nearer (and carries the true points); image 2.0 s: none
    spec = BagSpec(images_at=(1.0, 2.0), sweeps_at=(0.97, 1.02))
    bag = write_bag(tmp_path / "in", spec, frame)
    assert run(model_onnx, bag, tmp_path / "out", "--write-sparse") == EXIT_OK
    (_, sparse), = read_images(tmp_path / "out")[SPARSE_TOPIC]
    np.testing.assert_allclose(np.nan_to_num(sparse), frame.sparse, rtol=1e-6, atol=1e-5)
    err = capsys.readouterr().err
    assert "/camera/image at 2.000 s: no /velodyne_points sweep within --max-dt 50 ms; skipped" in err
    assert "2 images: 1 completed, 1 skipped (no sweep within --max-dt 50 ms)" in err


def test_a_sweep_beyond_max_dt_is_not_paired(tmp_path: Path, model_onnx: Path, frame,
                                             capsys: pytest.CaptureFixture) -> None:
    bag = write_bag(tmp_path / "in", BagSpec(sweeps_at=(1.03,)), frame)
    assert run(model_onnx, bag, tmp_path / "out", "--max-dt", "0.02") == EXIT_OK
    assert DEPTH_TOPIC not in read_images(tmp_path / "out")
    assert "1 skipped (no sweep within --max-dt 20 ms)" in capsys.readouterr().err


def test_extrinsics_file_replaces_tf(tmp_path: Path, model_onnx: Path, frame) -> None:
    import json

    from tests.runtime.bag_support import LIDAR_IN_CAMERA_T, lidar_rotation, quaternion

    bag = write_bag(tmp_path / "in", BagSpec(transforms=False), frame)
    extrinsics = tmp_path / "lidar_to_camera.json"
    extrinsics.write_text(json.dumps({"translation": LIDAR_IN_CAMERA_T.tolist(),
                                      "rotation": quaternion(lidar_rotation()).tolist()}))
    assert run(model_onnx, bag, tmp_path / "out", "--write-sparse", "--extrinsics", str(extrinsics)) == EXIT_OK
    (_, sparse), = read_images(tmp_path / "out")[SPARSE_TOPIC]
    np.testing.assert_allclose(np.nan_to_num(sparse), frame.sparse, rtol=1e-6, atol=1e-5)


def test_copy_input_and_preview_panels(tmp_path: Path, model_onnx: Path, frame) -> None:
    from PIL import Image

    bag = write_bag(tmp_path / "in", BagSpec(image="png"), frame)
    out, preview = tmp_path / "out", tmp_path / "preview"
    assert run(model_onnx, bag, out, "--copy-input", "--preview", str(preview)) == EXIT_OK
    from rosbags.highlevel import AnyReader

    with AnyReader([out]) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {
            "/tf_static": 1, "/camera/camera_info": 1, "/camera/image": 1, "/velodyne_points": 1, DEPTH_TOPIC: 1}
    with Image.open(preview / "frame_00.png") as panel:
        assert panel.mode == "RGB" and panel.width > frame.rgb.shape[1]


def test_a_sweep_with_no_point_in_the_image_is_warned_skipped_and_counted(tmp_path: Path, model_onnx: Path, frame,
                                                                          capsys: pytest.CaptureFixture) -> None:
    import json

    bag = write_bag(tmp_path / "in", BagSpec(images_at=(1.0, 2.0), sweeps_at=(1.0, 2.0)), frame)
    behind = tmp_path / "behind.json"  # the camera turned round: every point lands behind it
    behind.write_text(json.dumps({"translation": [0, 0, 0], "rotation": [0, 1, 0, 0]}))
    assert run(model_onnx, bag, tmp_path / "out", "--extrinsics", str(behind)) == EXIT_OK
    err = capsys.readouterr().err
    assert "/camera/image at 1.000 s: no point of the /velodyne_points sweep falls in the image; skipped" in err
    assert "2 images: 0 completed, 2 skipped (no LiDAR point in the image)" in err
    assert DEPTH_TOPIC not in read_images(tmp_path / "out")


def test_without_rosbags_the_command_names_the_install_command(tmp_path: Path, monkeypatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rosbags", None)  # import rosbags now raises ImportError
    assert bag_main([str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == EXIT_UNAVAILABLE
    assert 'pip install -e ".[bag]"' in capsys.readouterr().err


def test_copy_input_of_a_ros1_bag_is_refused_with_the_way_out(tmp_path: Path, model_onnx: Path, frame,
                                                              capsys: pytest.CaptureFixture) -> None:
    bag = write_bag(tmp_path / "in.bag", BagSpec(storage="ros1"), frame)
    capsys.readouterr()
    assert run(model_onnx, bag, tmp_path / "out", "--copy-input") == EXIT_USAGE
    assert "rosbags-convert" in capsys.readouterr().err and not (tmp_path / "out").exists()


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in keep)


BAD_INPUTS = {
    "no_camera_info": (BagSpec(camera_info=False), EXIT_INPUT, "IN: no CameraInfo topic"),
    "no_transform": (BagSpec(transforms=False), EXIT_INPUT, "no transform between the cloud's frame 'velodyne' and "
                                                            "the camera's frame 'camera_optical'"),
    "bayer_image": (BagSpec(image="bayer_rggb8"), EXIT_INPUT, "image encoding 'bayer_rggb8' cannot be decoded"),
    "16uc1_image": (BagSpec(image="16UC1"), EXIT_INPUT, "image encoding '16UC1' cannot be decoded"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_with_its_exit_code_and_no_out(case: str, tmp_path: Path, model_onnx: Path, frame,
                                                             capsys: pytest.CaptureFixture) -> None:
    spec, code, message = BAD_INPUTS[case]
    bag = write_bag(tmp_path / "in", spec, frame)
    capsys.readouterr()
    assert run(model_onnx, bag, tmp_path / "out") == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert _leftovers(tmp_path, {"in"}) == []


def _truncated(tmp_path: Path, frame, storage: str) -> Path:
    bag = write_bag(tmp_path / bag_name(storage), BagSpec(storage=storage), frame)
    data_file = bag if storage == "ros1" else next(bag.glob("*.mcap"))
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) // 2])
    return bag


def _empty(tmp_path: Path, frame, storage: str) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(tmp_path / "in", version=8, storage_plugin=StoragePlugin.MCAP):
        pass
    return tmp_path / "in"


def _not_a_bag(tmp_path: Path, frame, storage: str) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a recording")
    return path


@pytest.mark.parametrize("make, storage", [(_truncated, "mcap"), (_truncated, "ros1"), (_empty, "mcap"),
                                           (_not_a_bag, "")],
                         ids=["truncated_mcap", "truncated_ros1", "empty_rosbag2", "not_a_bag"])
def test_empty_truncated_or_foreign_bag_exits_3_with_one_line_and_no_out(make, storage: str, tmp_path: Path,
                                                                         model_onnx: Path, frame, monkeypatch,
                                                                         capsys: pytest.CaptureFixture) -> None:
    bag = make(tmp_path, frame, storage)
    capsys.readouterr()
    if make is not _truncated:  # refused from what the bag holds, before any model loads
        import jarrn_deploy.runtime.infer

        monkeypatch.setattr(jarrn_deploy.runtime.infer, "build_completer", lambda *args: pytest.fail("the model was loaded"))
    assert run(model_onnx, bag, tmp_path / "out") == EXIT_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: IN: ")
    assert _leftovers(tmp_path, {bag.name}) == []


def test_existing_out_is_refused_unless_overwrite(tmp_path: Path, model_onnx: Path, frame,
                                                  capsys: pytest.CaptureFixture) -> None:
    bag = write_bag(tmp_path / "in", BagSpec(), frame)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert run(model_onnx, bag, out) == EXIT_OUTPUT
    assert capsys.readouterr().err.strip() == f"error: --out: {out} exists; pass --overwrite to replace it"
    assert (out / "keep.txt").read_text() == "mine"
    assert run(model_onnx, bag, out, "--overwrite") == EXIT_OK
    assert not (out / "keep.txt").exists() and DEPTH_TOPIC in read_images(out)
    assert _leftovers(tmp_path, {"in", "out"}) == []


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _no_model(monkeypatch) -> None:
    import jarrn_deploy.runtime.infer

    monkeypatch.setattr(jarrn_deploy.runtime.infer, "build_completer", lambda *args: pytest.fail("the model was loaded"))


# (storage of IN, IN relative to tmp_path, OUT relative to tmp_path, what the one line says)
OUT_REPLACING_IN = {
    "out_is_in": ("mcap", "in", "in", "IN: {tmp}/in would be replaced by the output in written to --out"),
    "out_holds_in": ("mcap", "in", ".", "holds IN ({tmp}/in), which --overwrite would delete"),
    "out_inside_in": ("mcap", "in", "in/depth", "--out: {tmp}/in/depth lies inside IN's rosbag2 folder {tmp}/in"),
    "out_is_in_s_mcap_file": ("mcap", "in/in.mcap", "in/in.mcap", "lies inside IN's rosbag2 folder {tmp}/in"),
    "out_is_the_ros1_bag": ("ros1", "in.bag", "in.bag", "IN: {tmp}/in.bag would be replaced by the output"),
}


@pytest.mark.parametrize("case", sorted(OUT_REPLACING_IN))
def test_out_that_would_replace_in_is_refused_with_exit_4_before_any_work_even_with_overwrite(
        case: str, tmp_path: Path, model_onnx: Path, frame, monkeypatch, capsys: pytest.CaptureFixture) -> None:
    storage, source, out, message = OUT_REPLACING_IN[case]
    write_bag(tmp_path / bag_name(storage), BagSpec(storage=storage), frame)
    before = _tree(tmp_path)
    _no_model(monkeypatch)
    capsys.readouterr()
    out_path = tmp_path if out == "." else tmp_path / out
    assert run(model_onnx, tmp_path / source, out_path, "--overwrite") == EXIT_OUTPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(tmp=tmp_path) in err[0] and "choose another --out" in err[0]
    assert _tree(tmp_path) == before


FILE_PROBLEMS = {  # option -> what the one line says; each file is missing, a folder, or (JSON) malformed
    "missing_model": (["--model", "{tmp}/nope.onnx"], "--model: no such file {tmp}/nope.onnx"),
    "folder_model": (["--model", "{tmp}"], "--model: {tmp} is a folder, expected a checkpoint, ONNX or engine file"),
    "missing_extrinsics": (["--extrinsics", "{tmp}/nope.json"], "--extrinsics: no such file {tmp}/nope.json"),
    "folder_extrinsics": (["--extrinsics", "{tmp}"], "--extrinsics: {tmp} is a folder, expected a JSON file"),
    "corrupt_extrinsics": (["--extrinsics", "{tmp}/in/metadata.yaml"], "--extrinsics: {tmp}/in/metadata.yaml: "
                                                                      "expected JSON"),
}


@pytest.mark.parametrize("case", sorted(FILE_PROBLEMS))
def test_a_missing_folder_or_corrupt_model_or_extrinsics_file_exits_3_naming_the_option(
        case: str, tmp_path: Path, frame, monkeypatch, capsys: pytest.CaptureFixture) -> None:
    flags, message = FILE_PROBLEMS[case]
    bag = write_bag(tmp_path / "in", BagSpec(), frame)
    _no_model(monkeypatch)
    capsys.readouterr()
    argv = [str(bag), "--out", str(tmp_path / "out"), "--no-progress", *(f.format(tmp=tmp_path) for f in flags)]
    assert bag_main(argv) == EXIT_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message.format(tmp=tmp_path)}")
    assert _leftovers(tmp_path, {"in"}) == []


IGNORED_OPTIONS = {  # extra arguments -> the warning lines, worded as jarrn infer words them
    "torch": (["--backend", "torch", "--cuda-graphs", "--providers", "cpu", "--device", "cpu"], [
        "--cuda-graphs has no effect: only TensorRT replays CUDA graphs, and torch runs the model; ignored",
        "--providers has no effect: only ONNX Runtime takes execution providers, and torch runs the model; ignored"]),
    "onnxruntime": (["--backend", "onnxruntime", "--device", "cuda", "--providers", "cpu"], [
        "--device has no effect: only PyTorch takes a device (onnxruntime runs the model; choose its device with "
        "--providers); ignored"]),
    "server": (["--server", "127.0.0.1:1", "--device", "cuda", "--cuda-graphs"], [
        "--cuda-graphs has no effect: the model of the jarrn serve at 127.0.0.1:1 runs the frames; ignored",
        "--device has no effect: the model of the jarrn serve at 127.0.0.1:1 runs the frames; ignored"]),
    "repeated": (["--backend", "torch", "--max-dt", "0.1", "--max-dt=0.2", "--storage", "mcap"],
                 ["--max-dt given 2 times; only the last one is used"]),
    "none": (["--backend", "onnxruntime", "--providers", "cpu"], []),
}


@pytest.mark.parametrize("case", sorted(IGNORED_OPTIONS))
def test_options_that_do_nothing_warn_like_infer_and_a_missing_in_is_one_plain_line(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.runtime.infer import parse_args, warn_ignored_options

    extra, warnings = IGNORED_OPTIONS[case]
    missing = tmp_path / "nope"
    assert bag_main([str(missing), "--out", str(tmp_path / "out"), *extra]) == EXIT_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"warning: {line}" for line in warnings] + [f"error: IN: no such file or folder {missing}"]
    if case in ("torch", "onnxruntime"):  # the very lines jarrn infer prints for the same options
        infer_args = parse_args(["--rgb", "a.png", "--sparse", "b.png", "--out", "o", *extra])
        warn_ignored_options(infer_args, extra[1])
        assert capsys.readouterr().err.strip().splitlines() == lines[:-1]


def test_interrupted_run_leaves_no_out(tmp_path: Path, model_onnx: Path, frame, monkeypatch) -> None:
    from jarrn_deploy.runtime.bag import pipeline

    bag = write_bag(tmp_path / "in", BagSpec(), frame)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "sparse_depth", interrupt)
    assert run(model_onnx, bag, tmp_path / "out") == 130
    assert _leftovers(tmp_path, {"in"}) == []


def test_ambiguous_or_unknown_topic_is_a_usage_error(tmp_path: Path, model_onnx: Path, frame,
                                                     capsys: pytest.CaptureFixture) -> None:
    bag = write_bag(tmp_path / "in", BagSpec(), frame)
    capsys.readouterr()
    assert run(model_onnx, bag, tmp_path / "out", "--image-topic", "/nope") == EXIT_USAGE
    assert "--image-topic /nope: no such topic in IN" in capsys.readouterr().err
    assert run(model_onnx, bag, tmp_path / "out", "--cloud-topic", "/camera/image") == EXIT_USAGE
    assert "--cloud-topic /camera/image: is sensor_msgs/msg/Image, expected" in capsys.readouterr().err
    assert _leftovers(tmp_path, {"in"}) == []


# -- --server: a real jarrn serve (ONNX Runtime, the bundled model) on a free loopback port, started in ~5-10 s


def test_frames_completed_by_jarrn_serve_equal_depth_completer(tmp_path: Path, model_onnx: Path, frame) -> None:
    pytest.importorskip("tritonclient.grpc")
    from jarrn_deploy.runtime.serve import RunningServer, ServeOptions
    from jarrn_deploy.runtime.serving_model import CompleterSettings

    bag = write_bag(tmp_path / "in", BagSpec(images_at=(1.0, 1.1), sweeps_at=(1.0, 1.1)), frame)
    settings = CompleterSettings(backend="onnxruntime", model=str(model_onnx), threads=1)
    options = ServeOptions(completer=settings, http_port=0, grpc_port=0, metrics_port=0)
    with RunningServer(options, log=lambda message: None) as server:
        status = bag_main([str(bag), "--out", str(tmp_path / "out"), "--server", server.grpc_url, "--no-progress"])
    assert status == EXIT_OK
    with DepthCompleter.from_onnx(model_onnx) as completer:
        expected = completer.complete(frame.rgb, frame.sparse)
    valid = expected > 0
    depths = read_images(tmp_path / "out")[DEPTH_TOPIC]
    assert len(depths) == 2
    for _, depth in depths:
        np.testing.assert_array_equal(np.isnan(depth), ~valid)
        assert np.abs(depth[valid] - expected[valid]).max() < 1e-3


def test_no_server_at_the_address_is_one_line_exit_5_and_no_out(tmp_path: Path, frame,
                                                                 capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("tritonclient.grpc")
    from jarrn_deploy.runtime.serve import free_port

    bag = write_bag(tmp_path / "in", BagSpec(), frame)
    capsys.readouterr()
    status = bag_main([str(bag), "--out", str(tmp_path / "out"), "--server", f"127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == EXIT_UNAVAILABLE and len(err) == 1 and "no jarrn serve answers there" in err[0]
    assert not (tmp_path / "out").exists()
    assert bag_main([str(bag), "--out", str(tmp_path / "out"), "--server", "nohost"]) == EXIT_USAGE


def test_jarrn_cli_lists_and_runs_the_bag_verb(capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.cli import main as jarrn_main

    assert jarrn_main(["--help"]) == 0
    assert "  bag " in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        jarrn_main(["bag", "--help"])
    assert exited.value.code == 0 and "/jarrn/depth" in capsys.readouterr().out
