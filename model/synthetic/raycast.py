"""Ray casting: ray/primitive intersections and the screen window each primitive can cover.

Rays are ``(u - cx)/fx, (v - cy)/fy, 1`` in camera coordinates, so the ray parameter of a hit *is* its z-depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jarrn_deploy.model.synthetic.array_ops import Array, Ops
from jarrn_deploy.model.synthetic.scene import Box, Cylinder, Mat3, Plane, Primitive, SceneSpec, Sphere, Vec3

_EPS = 1e-4


def _local_rays(rot: Mat3 | None, center: Vec3, cam: Vec3, d: Sequence[Array]) -> tuple[Vec3, list[Array]]:
    """Ray origin (scalars: every ray starts at the camera) and directions in a primitive's local frame."""
    o = (cam[0] - center[0], cam[1] - center[1], cam[2] - center[2])
    if rot is None:
        return o, list(d)
    ol = tuple(r[0] * o[0] + r[1] * o[1] + r[2] * o[2] for r in rot)
    dl = [r[0] * d[0] + r[1] * d[1] + r[2] * d[2] for r in rot]
    return ol, dl  # type: ignore[return-value]


def _hit_plane(p: Plane, cam: Vec3, d: Sequence[Array], ops: Ops) -> Array:
    n = p.normal
    denom = n[0] * d[0] + n[1] * d[1] + n[2] * d[2]
    num = p.offset - (n[0] * cam[0] + n[1] * cam[1] + n[2] * cam[2])
    # The camera is on the visible side (num < 0), so t > 0 exactly when the ray points towards the plane.
    return ops.where(denom < -1e-9, num / denom, ops.inf)


def _hit_box(
    b: Box, cam: Vec3, d: Sequence[Array], inv: Sequence[Array] | None, corner_dirs: np.ndarray, ops: Ops
) -> Array:
    o, dl = _local_rays(b.rotation, b.center, cam, d)
    if b.rotation is not None or inv is None:
        inv = [1.0 / x for x in dl]
    # Directions are linear in pixel coordinates, so the four window-corner rays give each component's sign range;
    # where it is fixed, the slab's entry and exit planes are known without a per-pixel min/max.
    corners = corner_dirs if b.rotation is None else corner_dirs @ np.asarray(b.rotation).T
    tnear = tfar = None
    for a in range(3):
        t1 = (-b.half[a] - o[a]) * inv[a]
        t2 = (b.half[a] - o[a]) * inv[a]
        if (corners[:, a] > 0).all():
            lo, hi = t1, t2
        elif (corners[:, a] < 0).all():
            lo, hi = t2, t1
        else:
            lo, hi = ops.minimum(t1, t2), ops.maximum(t1, t2)
        tnear = lo if tnear is None else ops.maximum(tnear, lo)
        tfar = hi if tfar is None else ops.minimum(tfar, hi)
    return ops.where((tfar >= tnear) & (tnear > _EPS), tnear, ops.inf)


def _hit_cylinder(c: Cylinder, cam: Vec3, d: Sequence[Array], ops: Ops) -> Array:
    o, (dx, dy, dz) = _local_rays(c.rotation, c.center, cam, d)
    hh, r = c.half_height, c.radius
    a = dx * dx + dz * dz
    b = o[0] * dx + o[2] * dz
    cc = o[0] * o[0] + o[2] * o[2] - r * r
    disc = b * b - a * cc
    ts = (-b - ops.sqrt(ops.clip(disc, 0.0, None))) / a
    y = o[1] + ts * dy
    t = ops.where((disc >= 0) & (ts > _EPS) & (ops.abs(y) <= hh), ts, ops.inf)
    if abs(o[1]) > hh:  # only the cap facing the camera can be seen
        cap_y = hh if o[1] > 0 else -hh
        tc = (cap_y - o[1]) / dy
        x, z = o[0] + tc * dx, o[2] + tc * dz
        t = ops.minimum(t, ops.where((tc > _EPS) & (x * x + z * z <= r * r), tc, ops.inf))
    return t


def _hit_sphere(s: Sphere, cam: Vec3, d: Sequence[Array], ops: Ops) -> Array:
    o = (cam[0] - s.center[0], cam[1] - s.center[1], cam[2] - s.center[2])
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    cc = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - s.radius * s.radius
    disc = b * b - a * cc
    t = (-b - ops.sqrt(ops.clip(disc, 0.0, None))) / a
    return ops.where((disc >= 0) & (t > _EPS), t, ops.inf)


def _bounds_half(p: Primitive) -> tuple[Vec3, Mat3 | None]:
    if isinstance(p, Box):
        return p.half, p.rotation
    if isinstance(p, Cylinder):
        return (p.radius, p.half_height, p.radius), p.rotation
    assert isinstance(p, Sphere)
    return (p.radius, p.radius, p.radius), None


def screen_window(p: Primitive, spec: SceneSpec, h: int, w: int) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (r0, r1, c0, c1) that contains the primitive's projection, or None when it is off-screen.

    Projects the corners of the primitive's oriented bounding box: when all lie in front of the camera, the convex
    hull of their projections contains the projection of the primitive.
    """
    if isinstance(p, Plane):
        return _plane_window(p, spec, h, w)
    half, rot = _bounds_half(p)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    local = signs * np.asarray(half)
    world = local if rot is None else local @ np.asarray(rot)  # rows: R^T x
    world = world + np.asarray(p.center)
    cam = (world - np.asarray(spec.cam_pos)) @ np.asarray(spec.cam_rot)  # camera coords: R_cw^T (x - c)
    z = cam[:, 2]
    if z.max() <= _EPS:
        return None
    if z.min() <= 1e-3:
        return 0, h, 0, w
    fx, fy, cx, cy = spec.intrinsics
    u = fx * cam[:, 0] / z + cx
    v = fy * cam[:, 1] / z + cy
    c0, c1 = max(int(math.floor(u.min())), 0), min(int(math.ceil(u.max())) + 1, w)
    r0, r1 = max(int(math.floor(v.min())), 0), min(int(math.ceil(v.max())) + 1, h)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _plane_window(p: Plane, spec: SceneSpec, h: int, w: int) -> tuple[int, int, int, int] | None:
    # n . d is linear in the pixel coordinates, so it is non-negative everywhere iff it is at the four corners.
    fx, fy, cx, cy = spec.intrinsics
    n_cam = np.asarray(p.normal) @ np.asarray(spec.cam_rot)
    for u in (0, w - 1):
        for v in (0, h - 1):
            if n_cam @ np.array([(u - cx) / fx, (v - cy) / fy, 1.0]) < 0:
                return 0, h, 0, w
    return None


def _corner_dirs(spec: SceneSpec, win: tuple[int, int, int, int]) -> np.ndarray:
    """4x3 world ray directions through the corner pixels of a window."""
    fx, fy, cx, cy = spec.intrinsics
    r0, r1, c0, c1 = win
    cam = np.array([[(u - cx) / fx, (v - cy) / fy, 1.0] for u in (c0, c1 - 1) for v in (r0, r1 - 1)])
    return cam @ np.asarray(spec.cam_rot).T


def intersect(
    p: Primitive,
    spec: SceneSpec,
    win: tuple[int, int, int, int],
    d: Sequence[Array],
    inv: Sequence[Array] | None,
    ops: Ops,
) -> Array:
    if isinstance(p, Plane):
        return _hit_plane(p, spec.cam_pos, d, ops)
    if isinstance(p, Box):
        return _hit_box(p, spec.cam_pos, d, inv, _corner_dirs(spec, win), ops)
    if isinstance(p, Cylinder):
        return _hit_cylinder(p, spec.cam_pos, d, ops)
    return _hit_sphere(p, spec.cam_pos, d, ops)
