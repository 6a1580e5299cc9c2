"""Finding the camera image, CameraInfo and PointCloud2 topics of a recording: by type when there is exactly one of
each, else as chosen with ``--image-topic``, ``--camera-info-topic`` and ``--cloud-topic``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jarrn_deploy.errors import InputError, UsageError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"
TF_TOPICS = ("/tf", "/tf_static")
TF_TYPE = "tf2_msgs/msg/TFMessage"


@dataclass(frozen=True)
class Topics:
    """The three topics the command reads."""

    image: str
    """Camera topic (``sensor_msgs/Image`` or ``CompressedImage``)."""
    image_type: str
    """Its message type, rosbag2 spelling (``sensor_msgs/msg/Image``)."""
    camera_info: str
    """``sensor_msgs/CameraInfo`` topic of that camera."""
    cloud: str
    """``sensor_msgs/PointCloud2`` topic of the LiDAR."""


def topic_types(connections: Iterable[Any]) -> dict[str, str]:
    """Topic -> message type of the bag's connections."""
    return {connection.topic: connection.msgtype for connection in connections}


def _namespace(topic: str) -> str:
    return topic.rpartition("/")[0]


def _pick(types: dict[str, str], wanted: tuple[str, ...], chosen: str | None, flag: str, what: str,
          near: str | None = None) -> str:
    if chosen is not None:
        if chosen not in types:
            raise UsageError(f"{flag} {chosen}: no such topic in IN (topics: {', '.join(sorted(types))})")
        if types[chosen] not in wanted:
            raise UsageError(f"{flag} {chosen}: is {types[chosen]}, expected {' or '.join(wanted)}")
        return chosen
    found = sorted(topic for topic, msgtype in types.items() if msgtype in wanted)
    if near is not None and len(found) > 1:  # the camera's own CameraInfo: same namespace as its image
        siblings = [topic for topic in found if _namespace(topic) == _namespace(near)]
        found = siblings if len(siblings) == 1 else found
    if not found:
        raise InputError(f"IN: no {what} topic ({' or '.join(wanted)}); the bag has: "
                         f"{', '.join(sorted(types)) or 'no topics'}")
    if len(found) > 1:
        raise UsageError(f"IN has {len(found)} {what} topics ({', '.join(found)}): choose one with {flag}")
    return found[0]


def find_topics(connections: Iterable[Any], *, image: str | None = None, camera_info: str | None = None,
                cloud: str | None = None) -> Topics:
    """The topics to read; one line naming the option to use when the choice is missing or ambiguous."""
    types = topic_types(connections)
    image_topic = _pick(types, (IMAGE, COMPRESSED_IMAGE), image, "--image-topic", "camera image")
    info_topic = _pick(types, (CAMERA_INFO,), camera_info, "--camera-info-topic", "CameraInfo", near=image_topic)
    cloud_topic = _pick(types, (POINT_CLOUD,), cloud, "--cloud-topic", "PointCloud2")
    return Topics(image_topic, types[image_topic], info_topic, cloud_topic)
