"""The pieces of ``jarrn bag`` on their own: tf lookups, projection with the CameraInfo model, PointCloud2 parsing,
time pairing and image decoding."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jarrn_deploy.errors import InputError
from jarrn_deploy.runtime.bag.cloud import cloud_xyz
from jarrn_deploy.runtime.bag.decode import decode_image
from jarrn_deploy.runtime.bag.pairing import NearestSweep
from jarrn_deploy.runtime.bag.projection import CameraModel, sparse_depth
from jarrn_deploy.runtime.bag.tf import NoTransformAtTime, NoTransformPath, Transform, TransformBuffer, read_extrinsics

S = 1_000_000_000


def _transform(axis: str, degrees: float, translation: tuple[float, float, float]) -> Transform:
    return Transform(Rotation.from_euler(axis, degrees, degrees=True).as_matrix(), np.array(translation))


# -- tf ------------------------------------------------------------------------------------------------------------


def test_lookup_walks_up_to_the_common_parent_and_down_like_tf2() -> None:
    # map -> base -> camera and base -> lidar -> lidar_optical: lidar_optical to camera crosses base
    edges = {("map", "base"): _transform("z", 30, (5, 1, 0)), ("base", "camera"): _transform("x", -90, (1, 0, 1.5)),
             ("base", "lidar"): _transform("z", 10, (0.2, 0, 1.8)),
             ("lidar", "lidar_optical"): _transform("y", 5, (0, 0.1, 0))}
    tf = TransformBuffer()
    for (parent, child), transform in edges.items():
        tf.add(parent, child, 0, transform, static=True)
    found = tf.lookup("camera", "lidar_optical")
    expected = edges["base", "camera"].inverse() @ edges["base", "lidar"] @ edges["lidar", "lidar_optical"]
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 10.0]])
    np.testing.assert_allclose(found.apply(points), expected.apply(points), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("lidar_optical", "camera").apply(found.apply(points)), points, atol=1e-12)


def test_dynamic_edge_is_interpolated_and_out_of_range_times_beyond_the_tolerance_fail() -> None:
    tf = TransformBuffer(tolerance_ns=S // 20)
    tf.add("odom", "base", 1 * S, _transform("z", 0, (0, 0, 0)), static=False)
    tf.add("odom", "base", 2 * S, _transform("z", 90, (2, 0, 0)), static=False)
    middle = tf.lookup("odom", "base", 3 * S // 2)
    np.testing.assert_allclose(middle.translation, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(middle.rotation, Rotation.from_euler("z", 45, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("odom", "base", 2 * S + S // 50).translation, [2, 0, 0])  # within tolerance
    with pytest.raises(NoTransformAtTime, match="odom -> base at t=3.000 s"):
        tf.lookup("odom", "base", 3 * S)


def test_frames_that_are_not_connected_name_both_frames_and_the_way_out() -> None:
    tf = TransformBuffer()
    tf.add("base", "camera", 0, Transform.identity(), static=True)
    tf.add("odom", "lidar", 0, Transform.identity(), static=True)
    with pytest.raises(NoTransformPath, match="'lidar' and the camera's frame 'camera'.*--extrinsics") as error:
        tf.lookup("camera", "lidar")
    assert isinstance(error.value, InputError)


EXTRINSICS_FILE_PROBLEMS = {
    "short_translation": ('{"translation": [1, 2], "rotation": [0, 0, 0, 1]}', "bad.json: expected JSON"),
    "not_json": ("translation: [1, 2, 3]", "bad.json: expected JSON"),
    "no_rotation": ('{"translation": [1, 2, 3]}', "bad.json: expected JSON"),
    "missing": (None, "no such file .*bad.json"),
    "folder": ("", "bad.json is a folder, expected a JSON file"),
}


def test_extrinsics_file_is_read(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"translation": [1, 2, 3], "rotation": [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)]}))
    np.testing.assert_allclose(read_extrinsics(good).apply(np.array([[1.0, 0, 0]])), [[1, 3, 3]], atol=1e-12)


@pytest.mark.parametrize("case", sorted(EXTRINSICS_FILE_PROBLEMS))
def test_a_missing_folder_or_malformed_extrinsics_file_is_an_input_error(case: str, tmp_path: Path) -> None:
    text, message = EXTRINSICS_FILE_PROBLEMS[case]
    bad = tmp_path / "bad.json"
    if text == "":
        bad.mkdir()
    elif text is not None:
        bad.write_text(text)
    with pytest.raises(InputError, match=f"^--extrinsics: .*{message}") as error:
        read_extrinsics(bad)
    assert error.value.exit_code == 3


# -- projection ----------------------------------------------------------------------------------------------------


def _info(D=(0.0,) * 5, model="plumb_bob", K=(100.0, 0, 50, 0, 100.0, 40, 0, 0, 1), P=None, width=100, height=80):
    P = P if P is not None else (*K[:3], 0.0, *K[3:6], 0.0, *K[6:], 0.0)
    return SimpleNamespace(width=width, height=height, k=K, d=D, r=(1, 0, 0, 0, 1, 0, 0, 0, 1), p=P,
                           distortion_model=model)


def test_nearest_point_per_pixel_is_kept_and_points_behind_the_camera_are_dropped() -> None:
    camera = CameraModel.from_camera_info(_info())
    points = np.array([[0.0, 0.0, 4.0], [0.0, 0.0, 2.0], [0.001, 0.0, 3.0],  # all on pixel (50, 40): 2 m wins
                       [0.5, 0.2, 5.0],  # pixel (60, 44)
                       [0.0, 0.0, -2.0], [10.0, 0.0, 1.0]])  # behind the camera; outside the image
    depth = sparse_depth(points, camera)
    assert depth.shape == (80, 100) and depth.dtype == np.float32
    assert depth[40, 50] == 2.0 and depth[44, 60] == 5.0 and np.count_nonzero(depth) == 2


def test_plumb_bob_and_rational_polynomial_distortion_follow_the_opencv_model() -> None:
    point = np.array([[0.2, 0.1, 1.0]])  # normalised (0.2, 0.1), r^2 = 0.05
    k1, k2, p1, p2, k3 = 0.1, 0.01, 0.001, 0.002, 0.0
    plumb = CameraModel.from_camera_info(_info(D=(k1, k2, p1, p2, k3)))
    assert not plumb.rectified
    r2 = 0.05
    radial = 1 + k1 * r2 + k2 * r2 ** 2
    x = 0.2 * radial + 2 * p1 * 0.02 + p2 * (r2 + 2 * 0.04)
    y = 0.1 * radial + p1 * (r2 + 2 * 0.01) + 2 * p2 * 0.02
    u, v, z = plumb.pixels(point)
    np.testing.assert_allclose([u[0], v[0], z[0]], [100 * x + 50, 100 * y + 40, 1.0], rtol=1e-12)
    rational = CameraModel.from_camera_info(_info(D=(k1, 0, 0, 0, 0, 0.5, 0, 0), model="rational_polynomial"))
    u, _, _ = rational.pixels(point)
    np.testing.assert_allclose(u[0], 100 * 0.2 * (1 + k1 * r2) / (1 + 0.5 * r2) + 50, rtol=1e-12)


def test_rectified_images_use_p_including_its_baseline_column() -> None:
    P = (80.0, 0, 45, -8.0, 0, 80.0, 35, 0, 0, 0, 1, 0)  # a right stereo camera: P[0,3] = -fx * 0.1 m
    camera = CameraModel.from_camera_info(_info(D=(0.1, 0, 0, 0, 0), P=P), rectified="yes")
    u, v, z = camera.pixels(np.array([[0.5, 0.25, 2.0]]))
    np.testing.assert_allclose([u[0], v[0], z[0]], [(80 * 0.5 - 8) / 2 + 45, 80 * 0.25 / 2 + 35, 2.0])
    assert CameraModel.from_camera_info(_info(D=(0.1, 0, 0, 0, 0)), image_topic="/cam/image_rect_color").rectified
    with pytest.raises(InputError, match="distortion model 'equidistant' is not supported"):
        CameraModel.from_camera_info(_info(D=(0.1, 0, 0, 0), model="equidistant"))


# -- PointCloud2 ---------------------------------------------------------------------------------------------------


def _cloud(records: np.ndarray, fields: list[tuple[str, int, int]], *, height: int = 1, row_pad: int = 0,
           big_endian: bool = False) -> SimpleNamespace:
    point_step = records.dtype.itemsize
    width = len(records) // height
    rows = records.tobytes()
    row_bytes = width * point_step
    data = b"".join(rows[r * row_bytes:(r + 1) * row_bytes] + b"\xff" * row_pad for r in range(height))
    return SimpleNamespace(
        fields=[SimpleNamespace(name=n, offset=o, datatype=t, count=1) for n, o, t in fields], height=height,
        width=width, point_step=point_step, row_step=row_bytes + row_pad, is_bigendian=big_endian,
        data=np.frombuffer(data, dtype=np.uint8))


def test_cloud_reads_any_layout_and_drops_points_without_a_return() -> None:
    xyz = np.array([[1, 2, 3], [4, 5, 6], [np.nan, 0, 0], [7, 8, 9]], dtype=np.float64)
    layout = np.dtype({"names": ["intensity", "x", "y", "z"], "formats": [">f4", ">f8", ">f8", ">f8"],
                       "offsets": [0, 4, 12, 20], "itemsize": 32})  # big-endian FLOAT64, padding at the end
    records = np.zeros(4, dtype=layout)
    records["x"], records["y"], records["z"] = xyz.T
    message = _cloud(records, [("intensity", 0, 7), ("x", 4, 8), ("y", 12, 8), ("z", 20, 8)], height=2, row_pad=8,
                     big_endian=True)
    np.testing.assert_array_equal(cloud_xyz(message, "/points"), xyz[[0, 1, 3]])
    with pytest.raises(InputError, match="/points: PointCloud2 without field"):
        cloud_xyz(_cloud(records, [("x", 4, 8)]), "/points")


# -- pairing -------------------------------------------------------------------------------------------------------


def test_images_pair_with_the_nearest_sweep_within_max_dt_in_one_pass() -> None:
    pairing: NearestSweep[str, str] = NearestSweep(max_dt_ns=50)
    events = [("sweep", 0, "s0"), ("image", 10, "i10"), ("sweep", 40, "s40"), ("image", 100, "i100"),
              ("sweep", 70, "s70"), ("image", 300, "i300"), ("sweep", 310, "s310"), ("image", 330, "i330")]
    paired = []
    for kind, stamp, name in events:
        paired += (pairing.add_image if kind == "image" else pairing.add_sweep)(stamp, name)
    assert paired == [("i10", "s0"), ("i100", "s70")]  # i10: s0 (10) beats s40 (30); i100: s70 (30)
    assert pairing.finish() == [("i300", "s310"), ("i330", "s310")]
    lonely: NearestSweep[str, str] = NearestSweep(max_dt_ns=5)
    assert lonely.add_sweep(0, "s0") == [] and lonely.add_image(100, "i100") == []
    assert lonely.finish() == [("i100", None)]


def test_images_do_not_wait_for_a_lidar_that_stopped_publishing() -> None:
    from jarrn_deploy.runtime.bag.pairing import MAX_RECORD_LAG_NS

    pairing: NearestSweep[str, str] = NearestSweep(max_dt_ns=50)
    assert pairing.add_sweep(0, "s0") == [] and pairing.add_image(10, "i10") == []
    assert pairing.add_image(30, "i30") == []  # a sweep recorded late may still come
    assert pairing.add_image(30 + 50 + MAX_RECORD_LAG_NS, "i_late") == [("i10", "s0")]  # i30 waits: not late yet
    assert pairing.add_image(30 + 51 + MAX_RECORD_LAG_NS, "i_later") == [("i30", "s0")]


# -- decoding ------------------------------------------------------------------------------------------------------


def _raw(pixels: np.ndarray, encoding: str, pad: int = 0) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    data = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=height, width=width, step=data.shape[1], data=data.reshape(-1))


def test_raw_encodings_and_compressed_images_decode_to_rgb() -> None:
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    image = "sensor_msgs/msg/Image"
    np.testing.assert_array_equal(decode_image(_raw(rgb, "rgb8", pad=3), image, "/c"), rgb)
    np.testing.assert_array_equal(decode_image(_raw(rgb[..., ::-1].copy(), "bgr8"), image, "/c"), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.full((6, 5, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(decode_image(_raw(bgra, "bgra8"), image, "/c"), rgb)
    grey = rgb[..., :1].copy()
    np.testing.assert_array_equal(decode_image(_raw(grey, "mono8"), image, "/c"), np.repeat(grey, 3, 2))
    ramp = np.linspace(0, 1, 32)
    smooth = (np.stack(np.broadcast_arrays(200 * ramp[:, None], 60 * ramp[None, :], np.full((32, 32), 20.0)), 2)
              .astype(np.uint8))  # red rises down the rows, green along them: a swapped channel order shows
    for fmt, tolerance in (("png", 0), ("jpeg", 3)):
        buffer = io.BytesIO()
        Image.fromarray(smooth).save(buffer, format=fmt.upper(), quality=95)
        data = np.frombuffer(buffer.getvalue(), np.uint8)
        message = SimpleNamespace(format=f"rgb8; {fmt} compressed bgr8", data=data)
        decoded = decode_image(message, "sensor_msgs/msg/CompressedImage", "/c")
        assert decoded.shape == smooth.shape and np.abs(decoded.astype(int) - smooth).mean() <= tolerance
    with pytest.raises(InputError, match="'compressedDepth' cannot be decoded"):
        decode_image(SimpleNamespace(format="compressedDepth", data=b""), "sensor_msgs/msg/CompressedImage", "/d")
