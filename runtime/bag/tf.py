"""Rigid transforms between frames, looked up as tf2 does: ``/tf_static`` and ``/tf`` messages form a tree of frames
(each child has one parent), and a lookup walks the chain from the source frame up to the common ancestor and down to
the target. A ``/tf`` edge is interpolated between its two nearest samples (linear translation, slerp rotation); a
time before the first or after the last sample uses that sample when it is within ``tolerance_ns``, as a recording's
edges start late or end early by a few milliseconds.

Or, with ``--extrinsics FILE``, one fixed cloud-to-camera transform from a JSON file (see :func:`read_extrinsics`).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jarrn_deploy.errors import InputError


@dataclass(frozen=True)
class Transform:
    """``p_parent = rotation @ p_child + translation``: a child frame's ``geometry_msgs/Transform`` in its parent."""

    rotation: np.ndarray
    """3x3 rotation matrix."""
    translation: np.ndarray
    """3-vector, metres."""

    @classmethod
    def from_quaternion(cls, translation: Any, quaternion_xyzw: Any) -> "Transform":
        from scipy.spatial.transform import Rotation

        quaternion = np.asarray(quaternion_xyzw, dtype=np.float64)
        if quaternion.shape != (4,) or not np.isfinite(quaternion).all() or np.linalg.norm(quaternion) < 1e-9:
            raise ValueError(f"a rotation quaternion needs 4 finite values (x, y, z, w), not all 0; got {quaternion}")
        return cls(Rotation.from_quat(quaternion).as_matrix(), np.asarray(translation, dtype=np.float64).reshape(3))

    @classmethod
    def from_message(cls, transform: Any) -> "Transform":
        """From a ``geometry_msgs/Transform`` message."""
        t, q = transform.translation, transform.rotation
        return cls.from_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))

    @classmethod
    def identity(cls) -> "Transform":
        return cls(np.eye(3), np.zeros(3))

    def __matmul__(self, other: "Transform") -> "Transform":
        """``(a @ b)`` maps points of b's child frame into a's parent frame."""
        return Transform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def inverse(self) -> "Transform":
        return Transform(self.rotation.T, -self.rotation.T @ self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Nx3 points of the child frame in the parent frame (float64)."""
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation


def _interpolate(a: Transform, b: Transform, weight: float) -> Transform:
    from scipy.spatial.transform import Rotation, Slerp

    rotations = Rotation.from_matrix(np.stack([a.rotation, b.rotation]))
    rotation = Slerp([0.0, 1.0], rotations)([weight]).as_matrix()[0]
    return Transform(rotation, (1.0 - weight) * a.translation + weight * b.translation)


class NoTransformPath(InputError):
    """The two frames are not connected in /tf_static and /tf: no frame can be projected (exit 3)."""


class NoTransformAtTime(InputError):
    """The frames are connected, but a /tf edge has no sample near the time asked: that frame is skipped."""


@dataclass
class _Edge:
    parent: str
    static: Transform | None = None
    stamps: list[int] = field(default_factory=list)
    samples: list[Transform] = field(default_factory=list)


class TransformBuffer:
    """The frames of ``/tf_static`` and ``/tf`` and lookups between them (module docstring)."""

    def __init__(self, tolerance_ns: int = 0) -> None:
        self.tolerance_ns = tolerance_ns
        self._edges: dict[str, _Edge] = {}

    def add(self, parent: str, child: str, stamp_ns: int, transform: Transform, *, static: bool) -> None:
        """One ``TransformStamped``: ``child``'s pose in ``parent`` (a child's newest parent wins, as in tf2)."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent:
            edge = self._edges[child] = _Edge(parent)
        if static:
            edge.static = transform
            return
        index = bisect.bisect(edge.stamps, stamp_ns)
        edge.stamps.insert(index, stamp_ns)
        edge.samples.insert(index, transform)

    def add_message(self, message: Any, *, static: bool) -> None:
        """Every transform of one ``tf2_msgs/TFMessage``."""
        for stamped in message.transforms:
            stamp = stamped.header.stamp
            self.add(stamped.header.frame_id, stamped.child_frame_id, stamp.sec * 1_000_000_000 + stamp.nanosec,
                     Transform.from_message(stamped.transform), static=static)

    @property
    def frames(self) -> set[str]:
        return set(self._edges) | {edge.parent for edge in self._edges.values()}

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges and len(chain) <= len(self._edges) + 1:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _edge_at(self, child: str, stamp_ns: int | None) -> Transform:
        edge = self._edges[child]
        if edge.static is not None:
            return edge.static
        if stamp_ns is None:
            return edge.samples[-1]
        index = bisect.bisect_left(edge.stamps, stamp_ns)
        if index < len(edge.stamps) and edge.stamps[index] == stamp_ns:
            return edge.samples[index]
        if 0 < index < len(edge.stamps):
            before, after = edge.stamps[index - 1], edge.stamps[index]
            return _interpolate(edge.samples[index - 1], edge.samples[index], (stamp_ns - before) / (after - before))
        nearest = 0 if index == 0 else len(edge.stamps) - 1
        if abs(edge.stamps[nearest] - stamp_ns) <= self.tolerance_ns:
            return edge.samples[nearest]
        raise NoTransformAtTime(f"/tf has no transform {edge.parent} -> {child} at t={stamp_ns / 1e9:.3f} s "
                                f"(its samples span {edge.stamps[0] / 1e9:.3f}..{edge.stamps[-1] / 1e9:.3f} s)")

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> Transform:
        """The transform mapping points of ``source`` into ``target`` at ``stamp_ns`` (None: the latest)."""
        target, source = target.lstrip("/"), source.lstrip("/")
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((frame for frame in up_source if frame in up_target), None)
        if common is None:
            known = ", ".join(sorted(self.frames)) or "none"
            raise NoTransformPath(f"no transform between the cloud's frame '{source}' and the camera's frame "
                                  f"'{target}' in /tf_static or /tf (frames: {known}); give one with --extrinsics FILE")
        source_to_common = Transform.identity()
        for child in up_source[: up_source.index(common)]:
            source_to_common = self._edge_at(child, stamp_ns) @ source_to_common
        target_to_common = Transform.identity()
        for child in up_target[: up_target.index(common)]:
            target_to_common = self._edge_at(child, stamp_ns) @ target_to_common
        return target_to_common.inverse() @ source_to_common


EXTRINSICS_FORMAT = """\
extrinsics file (--extrinsics FILE, instead of /tf_static and /tf):
  JSON with the pose of the cloud's frame in the camera's optical frame, as tf2 would give it
  (p_camera = R(rotation) p_cloud + translation), metres and a unit quaternion in ROS order:
    {"translation": [x, y, z], "rotation": [qx, qy, qz, qw]}"""


def read_extrinsics(path: Path) -> Transform:
    """The cloud-to-camera transform of an ``--extrinsics`` file (format: :data:`EXTRINSICS_FORMAT`); a missing,
    unreadable or malformed file is an :class:`InputError` naming the option."""
    from jarrn_deploy.model.atomic import check_input_file

    check_input_file(path, "--extrinsics", "a JSON file (format in jarrn bag --help)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        translation, rotation = data["translation"], data["rotation"]
        if len(translation) != 3 or len(rotation) != 4:
            raise ValueError("translation needs 3 values and rotation 4 (qx, qy, qz, qw)")
        return Transform.from_quaternion([float(v) for v in translation], [float(v) for v in rotation])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--extrinsics: {path}: expected JSON {{\"translation\": [x, y, z], \"rotation\": "
                         f"[qx, qy, qz, qw]}} ({type(exc).__name__}: {exc})") from None
