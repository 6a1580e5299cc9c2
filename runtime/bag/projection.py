"""Projecting LiDAR points into a camera with its ``sensor_msgs/CameraInfo`` model, into a sparse depth map.

A rectified image is projected with ``R`` and ``P`` (``[u v w] = P [R p; 1]``, as ROS ``image_geometry`` does); a raw
one with ``K`` and the distortion ``D`` (``plumb_bob``: k1 k2 p1 p2 k3; ``rational_polynomial``: k1 k2 p1 p2 k3 k4
k5 k6; OpenCV's model). The depth of a pixel is the point's z in the (rectified) optical frame, metres. Points at or
behind the camera are dropped; a point lands on the pixel whose centre is nearest (integer coordinates are pixel
centres); when several land on one pixel the nearest is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jarrn_deploy.errors import InputError

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")
MIN_DEPTH_M = 1e-3
"""Points closer than this along the optical axis (or behind the camera) are dropped."""
RECTIFIED_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class CameraModel:
    """The parts of a ``CameraInfo`` that the projection uses."""

    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    K: np.ndarray
    """3x3 intrinsics of the raw image."""
    D: np.ndarray
    """Distortion coefficients (see ``distortion_model``)."""
    distortion_model: str
    """``plumb_bob`` or ``rational_polynomial`` (or empty when ``D`` is all zero)."""
    R: np.ndarray
    """3x3 rectification rotation (identity for a monocular camera)."""
    P: np.ndarray
    """3x4 projection matrix of the rectified image."""
    rectified: bool
    """Project with ``R`` and ``P`` (True) or ``K`` and ``D`` (False)."""

    @classmethod
    def from_camera_info(cls, info: Any, *, rectified: str = "auto", image_topic: str = "") -> "CameraModel":
        """``rectified``: "yes", "no", or "auto": rectified when ``D`` is all zero or the image topic says so
        (``image_rect``, ``image_rect_color``, as image_proc names them)."""
        K, P, R, D = (np.asarray(_matrix(info, name), dtype=np.float64) for name in "kprd")
        K, P, R, D = K.reshape(3, 3), P.reshape(3, 4), R.reshape(3, 3), D.reshape(-1)
        if rectified == "auto":
            use_p = not np.any(D) or "rect" in image_topic.rpartition("/")[2]
        else:
            use_p = rectified == "yes"
        if not np.any(R):  # an unset R (all zero) means no rectification rotation
            R = np.eye(3)
        if use_p and not np.any(P):
            raise InputError("CameraInfo: P is all zero, so a rectified image cannot be projected; pass "
                             "--rectified no to use K and D")
        if not use_p:
            if not np.any(K):
                raise InputError("CameraInfo: K is all zero (an uncalibrated camera)")
            if np.any(D) and info.distortion_model not in DISTORTION_MODELS:
                raise InputError(f"CameraInfo: distortion model '{info.distortion_model}' is not supported "
                                 f"(supported: {', '.join(DISTORTION_MODELS)}); rectify the images first "
                                 "(image_proc) and pass --rectified yes")
        return cls(int(info.width), int(info.height), K, D, info.distortion_model, R, P, use_p)

    def pixels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, depth) of Nx3 points in the camera's optical frame, for the points in front of the camera."""
        if self.rectified:
            points = points @ self.R.T
        z = points[:, 2]
        front = z > MIN_DEPTH_M
        points, z = points[front], z[front]
        if self.rectified:
            uvw = points @ self.P[:, :3].T + self.P[:, 3]
            return uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2], z
        x, y = distort(points[:, 0] / z, points[:, 1] / z, self.D)
        K = self.K
        return K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2], z


def _matrix(info: Any, name: str) -> Any:
    """A CameraInfo matrix: ROS 2 spells the fields k, p, r, d, ROS 1 K, P, R, D."""
    return getattr(info, name) if hasattr(info, name) else getattr(info, name.upper())


def distort(x: np.ndarray, y: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's radial-tangential model on normalised coordinates: ``D`` = k1 k2 p1 p2 [k3 [k4 k5 k6]]."""
    k = np.zeros(8)
    k[: min(len(D), 8)] = D[:8]
    k1, k2, p1, p2, k3, k4, k5, k6 = k
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def sparse_depth(points_camera: np.ndarray, camera: CameraModel) -> np.ndarray:
    """HxW float32 metres, 0 = no point: the nearest point per pixel."""
    u, v, z = camera.pixels(points_camera)
    column, row = np.floor(u + 0.5), np.floor(v + 0.5)
    inside = (column >= 0) & (column < camera.width) & (row >= 0) & (row < camera.height)
    flat = row[inside].astype(np.int64) * camera.width + column[inside].astype(np.int64)
    z = z[inside]
    order = np.lexsort((z, flat))  # by pixel, then nearest first
    pixels, first = np.unique(flat[order], return_index=True)
    depth = np.zeros(camera.height * camera.width, dtype=np.float32)
    depth[pixels] = z[order][first]
    return depth.reshape(camera.height, camera.width)
