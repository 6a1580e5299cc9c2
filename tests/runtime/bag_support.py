"""Building ROS recordings for the ``jarrn bag`` tests (not a test module) from the bundled real KITTI frame: its
LiDAR depth back-projected into 3-D points, moved into a LiDAR frame with ROS axes (x forward, y left, z up) by a
known transform that ``/tf_static`` records, and written as a PointCloud2 beside the camera image and its CameraInfo.

``python -m tests.runtime.bag_support OUT`` writes such a recording of the full 375x1242 frame (the README's demo).
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from jarrn_deploy.model.depth_io import read_kitti_depth, read_rgb
from jarrn_deploy.model.real_frames import DEFAULT_ROOT, KITTI_DIR, _read_kitti_intrinsics

NS = 1_000_000_000
CAMERA_FRAME = "camera_optical"
LIDAR_FRAME = "velodyne"
BASE_FRAME = "base_link"
IMAGE_TOPIC, INFO_TOPIC, CLOUD_TOPIC = "/camera/image", "/camera/camera_info", "/velodyne_points"
WRONG_SWEEP_SHIFT_M = 0.5
"""A sweep that must not be paired carries the points moved this far, so pairing it shows in the depth."""

OPTICAL_FROM_ROS = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
"""Rotation of ROS axes (x forward, y left, z up) into the optical frame (x right, y down, z forward)."""
LIDAR_IN_CAMERA_T = np.array([0.06, -0.08, -0.27])
"""Where the LiDAR sits in the camera's optical frame (metres): a little left, up and behind, as on the KITTI car."""
CAMERA_IN_BASE_T = np.array([1.2, 0.1, 1.6])
"""Where the camera sits in base_link (the chain test): forward, left, up."""


@dataclass(frozen=True)
class Frame:
    """A crop of the KITTI frame with its pinhole intrinsics."""

    rgb: np.ndarray
    """uint8 HxWx3."""
    sparse: np.ndarray
    """float32 HxW metres, 0 = no point (the real projected LiDAR)."""
    K: np.ndarray
    """3x3 intrinsics of the crop."""


def kitti_frame(height: int | None = 128, width: int | None = 256) -> Frame:
    """The bundled KITTI left image and LiDAR depth, cropped to the bottom middle (where the LiDAR points are)."""
    folder = DEFAULT_ROOT / KITTI_DIR
    rgb, sparse = read_rgb(folder / "image_02.png"), read_kitti_depth(folder / "velodyne_raw_02.png")
    fx, fy, cx, cy = _read_kitti_intrinsics(folder / "calib_cam_to_cam.txt", "02")
    full_h, full_w = sparse.shape
    height, width = height or full_h, width or full_w
    top, left = full_h - height, (full_w - width) // 2
    K = np.array([[fx, 0.0, cx - left], [0.0, fy, cy - top], [0.0, 0.0, 1.0]])
    return Frame(np.ascontiguousarray(rgb[top:top + height, left:left + width]),
                 np.ascontiguousarray(sparse[top:top + height, left:left + width]), K)


def camera_points(frame: Frame) -> np.ndarray:
    """Nx3 points in the optical frame whose projection is exactly ``frame.sparse``."""
    rows, cols = np.nonzero(frame.sparse > 0)
    z = frame.sparse[rows, cols].astype(np.float64)
    K = frame.K
    return np.stack([(cols - K[0, 2]) * z / K[0, 0], (rows - K[1, 2]) * z / K[1, 1], z], axis=1)


def lidar_rotation() -> np.ndarray:
    """Rotation of the LiDAR frame in the camera frame: ROS axes, turned 2 degrees about z so nothing is trivial."""
    from scipy.spatial.transform import Rotation

    return OPTICAL_FROM_ROS @ Rotation.from_euler("z", 2.0, degrees=True).as_matrix()


def quaternion(rotation: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rotation).as_quat()  # x, y, z, w


@dataclass(frozen=True)
class BagSpec:
    """What a test recording holds."""

    storage: str = "mcap"
    """"mcap", "sqlite3" (rosbag2) or "ros1" (a .bag file)."""
    image: str = "rgb8"
    """Image encoding: "rgb8", "bgr8", "mono8", "png", "jpeg" (CompressedImage), or one it must refuse."""
    chain: bool = False
    """Transforms base_link -> camera_optical and base_link -> velodyne instead of one camera_optical -> velodyne."""
    images_at: tuple[float, ...] = (1.0,)
    """Image stamps, seconds."""
    sweeps_at: tuple[float, ...] = (1.0,)
    """Sweep stamps; the sweep nearest each image carries the true points, the others are moved by 0.5 m."""
    camera_info: bool = True
    """Write the CameraInfo topic."""
    transforms: bool = True
    """Write /tf_static."""


def _header(store: Any, ros1: bool, stamp: float, frame_id: str) -> Any:
    sec = int(stamp)
    time = store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((stamp - sec) * NS)))
    fields = {"seq": 0} if ros1 else {}
    return store.types["std_msgs/msg/Header"](**fields, stamp=time, frame_id=frame_id)


def _transform_stamped(store: Any, ros1: bool, parent: str, child: str, rotation: np.ndarray,
                       translation: np.ndarray) -> Any:
    types = store.types
    q = quaternion(rotation)
    return types["geometry_msgs/msg/TransformStamped"](
        header=_header(store, ros1, 0.0, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=float(translation[0]), y=float(translation[1]),
                                                           z=float(translation[2])),
            rotation=types["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                           w=float(q[3]))))


def _tf_static(store: Any, ros1: bool, chain: bool) -> Any:
    rotation, translation = lidar_rotation(), LIDAR_IN_CAMERA_T
    if not chain:
        transforms = [_transform_stamped(store, ros1, CAMERA_FRAME, LIDAR_FRAME, rotation, translation)]
    else:  # base_link is the parent of both: camera pose C, LiDAR pose C @ (camera <- lidar)
        camera_rotation = OPTICAL_FROM_ROS.T
        transforms = [
            _transform_stamped(store, ros1, BASE_FRAME, CAMERA_FRAME, camera_rotation, CAMERA_IN_BASE_T),
            _transform_stamped(store, ros1, BASE_FRAME, LIDAR_FRAME, camera_rotation @ rotation,
                               camera_rotation @ translation + CAMERA_IN_BASE_T),
        ]
    return store.types["tf2_msgs/msg/TFMessage"](transforms=transforms)


def _cloud(store: Any, ros1: bool, stamp: float, points_camera: np.ndarray) -> Any:
    """A PointCloud2 with x, y, z, intensity (float32, 16 bytes a point) in the LiDAR frame."""
    points = (points_camera - LIDAR_IN_CAMERA_T) @ lidar_rotation()  # R^T (p - t), row-wise
    records = np.zeros(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    records["x"], records["y"], records["z"] = points.T
    records["intensity"] = 0.5
    field = store.types["sensor_msgs/msg/PointField"]
    fields = [field(name=name, offset=4 * i, datatype=7, count=1)
              for i, name in enumerate(("x", "y", "z", "intensity"))]
    return store.types["sensor_msgs/msg/PointCloud2"](
        header=_header(store, ros1, stamp, LIDAR_FRAME), height=1, width=len(points), fields=fields,
        is_bigendian=False, point_step=16, row_step=16 * len(points),
        data=np.frombuffer(records.tobytes(), dtype=np.uint8), is_dense=True)


def _image(store: Any, ros1: bool, stamp: float, rgb: np.ndarray, encoding: str) -> tuple[str, Any]:
    header = _header(store, ros1, stamp, CAMERA_FRAME)
    if encoding in ("png", "jpeg"):
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format=encoding.upper())
        return "sensor_msgs/msg/CompressedImage", store.types["sensor_msgs/msg/CompressedImage"](
            header=header, format=encoding, data=np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1]}.get(encoding, rgb[..., :1])
    if encoding == "16UC1":
        pixels = np.repeat(pixels, 2, axis=2)
    height, width = rgb.shape[:2]
    data = np.ascontiguousarray(pixels).reshape(-1)
    return "sensor_msgs/msg/Image", store.types["sensor_msgs/msg/Image"](
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
        step=data.size // height, data=data)


def _camera_info(store: Any, ros1: bool, stamp: float, frame: Frame) -> Any:
    height, width = frame.rgb.shape[:2]
    P = np.hstack([frame.K, np.zeros((3, 1))])
    names = ("D", "K", "R", "P") if ros1 else ("d", "k", "r", "p")
    values = (np.zeros(5), frame.K.reshape(-1), np.eye(3).reshape(-1), P.reshape(-1))
    roi = store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return store.types["sensor_msgs/msg/CameraInfo"](
        header=_header(store, ros1, stamp, CAMERA_FRAME), height=height, width=width, distortion_model="plumb_bob",
        **dict(zip(names, values)), binning_x=0, binning_y=0, roi=roi)


def messages(spec: BagSpec, frame: Frame, store: Any, ros1: bool) -> list[tuple[int, str, str, Any]]:
    """(time ns, topic, type, message) in time order."""
    points = camera_points(frame)
    items: list[tuple[float, str, str, Any]] = []
    if spec.transforms:
        items.append((0.0, "/tf_static", "tf2_msgs/msg/TFMessage", _tf_static(store, ros1, spec.chain)))
    for stamp in spec.images_at:
        if spec.camera_info:
            items.append((stamp, INFO_TOPIC, "sensor_msgs/msg/CameraInfo", _camera_info(store, ros1, stamp, frame)))
        items.append((stamp, IMAGE_TOPIC, *_image(store, ros1, stamp, frame.rgb, spec.image)))
    nearest = {min(spec.sweeps_at, key=lambda sweep: abs(sweep - stamp)) for stamp in spec.images_at}
    for stamp in spec.sweeps_at:
        shifted = points if stamp in nearest else points + np.array([WRONG_SWEEP_SHIFT_M, 0.0, 0.0])
        items.append((stamp, CLOUD_TOPIC, "sensor_msgs/msg/PointCloud2", _cloud(store, ros1, stamp, shifted)))
    items.sort(key=lambda item: item[0])
    return [(int(round(stamp * NS)), topic, msgtype, message) for stamp, topic, msgtype, message in items]


def write_bag(path: Path, spec: BagSpec = BagSpec(), frame: Frame | None = None) -> Path:
    """Write the recording ``spec`` describes to ``path`` (a rosbag2 folder, or a .bag file for "ros1")."""
    from rosbags.typesys import Stores, get_typestore

    frame = frame or kitti_frame()
    ros1 = spec.storage == "ros1"
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    if ros1:  # Noetic's store lacks tf2_msgs: its one message, from its definition
        from rosbags.typesys import get_types_from_msg

        store.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    if ros1:
        from rosbags.rosbag1 import Writer as Ros1Writer

        writer = Ros1Writer(path)
        serialize = store.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if spec.storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(path, version=8, storage_plugin=plugin)
        serialize = store.serialize_cdr
    connections: dict[str, Any] = {}
    with writer:
        for time_ns, topic, msgtype, message in messages(spec, frame, store, ros1):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], time_ns, serialize(message, msgtype))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a ROS recording of the bundled KITTI frame (375x1242).")
    parser.add_argument("out", type=Path)
    parser.add_argument("--storage", choices=("mcap", "sqlite3", "ros1"), default="mcap")
    parser.add_argument("--frames", type=int, default=1, help="images (one a tenth of a second, each with its sweep)")
    args = parser.parse_args(argv)
    stamps = tuple(1.0 + 0.1 * i for i in range(args.frames))
    write_bag(args.out, replace(BagSpec(storage=args.storage), images_at=stamps, sweeps_at=stamps),
              kitti_frame(None, None))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
