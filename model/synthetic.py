"""Procedural synthetic RGB-D scenes for training JARRN.

Each sample is a small 3D scene (an indoor room or an outdoor street) made of analytic primitives (planes, boxes,
cylinders, spheres) and ray cast through a pinhole camera, so every depth discontinuity lies on a silhouette and hence
on an image edge. Surfaces get a procedural texture (checker, stripes, value noise, planks, bricks, windows, lane
markings) and Lambert + ambient shading from a random directional light.

Pipeline: :func:`_sample_scene` draws a :class:`SceneSpec` from ``numpy.random.default_rng(seed)`` (pure Python
floats), then :func:`_render` ray casts it over the whole pixel grid with an array-module shim (:class:`_NumpyOps` or
:class:`_TorchOps`), so the same maths runs with numpy (:func:`generate_scene`) or with torch on any device
(:func:`generate_batch`). Outputs are deterministic per seed.

Conventions: camera frame x right, y down, z forward (OpenCV); world frame y up. Rays are ``(u - cx)/fx, (v - cy)/fy,
1`` in camera coordinates, so the ray parameter of a hit *is* its z-depth. Depth is in metres, 0 = invalid (sky, or a
hit outside the configured depth range, like a range-limited sensor).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

KINDS = ("random", "indoor", "outdoor")
MIN_SIZE = 16
_LATTICE_SIZE = 64
_EPS = 1e-4

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]


# --------------------------------------------------------------------------------------------------------------------
# Public configuration and results
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneConfig:
    """Sampling ranges for the procedural scenes."""

    indoor_depth_range: tuple[float, float] = (0.5, 10.0)
    """Valid indoor depth interval in metres; hits outside it are marked invalid (0)."""
    outdoor_depth_range: tuple[float, float] = (2.0, 80.0)
    """Valid outdoor depth interval in metres; hits outside it (and the sky) are marked invalid (0)."""
    hfov_deg_range: tuple[float, float] = (55.0, 85.0)
    """Horizontal field of view in degrees; the focal length is fx = (W / 2) / tan(hfov / 2)."""
    focal_aspect_jitter: float = 0.02
    """Largest relative difference between fy and fx."""
    principal_point_jitter: float = 0.03
    """Largest principal-point offset from the image centre, as a fraction of the width / height."""
    outdoor_probability: float = 0.5
    """Probability that kind="random" gives an outdoor street rather than an indoor room."""
    ambient_range: tuple[float, float] = (0.25, 0.45)
    """Ambient light fraction; the rest comes from one Lambertian directional light."""

    def __post_init__(self) -> None:
        for name in ("indoor_depth_range", "outdoor_depth_range", "hfov_deg_range", "ambient_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo < hi:
                raise ValueError(f"{name} must satisfy 0 < low < high, got {(lo, hi)}")
        if self.hfov_deg_range[1] >= 170:
            raise ValueError(f"hfov_deg_range must stay below 170 degrees, got {self.hfov_deg_range}")
        if self.ambient_range[1] > 1:
            raise ValueError(f"ambient_range must lie in (0, 1], got {self.ambient_range}")
        if not 0 <= self.outdoor_probability <= 1:
            raise ValueError(f"outdoor_probability must lie in [0, 1], got {self.outdoor_probability}")
        for name in ("focal_aspect_jitter", "principal_point_jitter"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must lie in [0, 0.5), got {getattr(self, name)}")


DEFAULT_CONFIG = SceneConfig()


@dataclass(frozen=True, eq=False)
class SyntheticSample:
    """One rendered scene."""

    rgb: np.ndarray
    """uint8 HxWx3 image."""
    depth: np.ndarray
    """float32 HxW z-depth in metres, 0 = invalid (sky or out of range)."""
    intrinsics: tuple[float, float, float, float]
    """Pinhole intrinsics (fx, fy, cx, cy) in pixels; pixel centres at integer coordinates."""
    kind: str
    """"indoor" or "outdoor"."""


@dataclass(frozen=True, eq=False)
class SyntheticBatch:
    """A batch rendered with torch by :func:`generate_batch`."""

    rgb: torch.Tensor
    """float32 [B,3,H,W] in [0,1] (quantised to 8-bit levels, like the numpy path)."""
    depth: torch.Tensor
    """float32 [B,1,H,W] z-depth in metres, 0 = invalid."""
    intrinsics: torch.Tensor
    """float32 [B,4] rows (fx, fy, cx, cy)."""
    kinds: tuple[str, ...]
    """"indoor" / "outdoor" per sample."""


# --------------------------------------------------------------------------------------------------------------------
# Scene description (internal)
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """Procedural surface appearance: albedo = lerp(base, accent, pattern(u, v)) * (1 + grain * noise)."""

    base: Vec3
    """Main albedo, linear RGB in [0,1]."""
    accent: Vec3
    """Second albedo mixed in by the pattern."""
    pattern: str = "plain"
    """One of plain, checker, stripes, noise, planks, bricks, windows, lanes."""
    scale: tuple[float, float] = (1.0, 1.0)
    """Pattern cell size in metres along the surface's u and v axes."""
    grain: float = 0.05
    """Amplitude of the fine multiplicative value-noise grain."""
    grain_scale: float = 0.05
    """Grain lattice cell size in metres."""


@dataclass(frozen=True)
class Plane:
    """One-sided infinite plane {p : normal . p = offset}, visible from the side the normal points to."""

    normal: Vec3
    """Unit normal pointing to the visible side."""
    offset: float
    """Plane offset along the normal."""
    tangent_u: Vec3
    """Unit texture axis u on the plane."""
    tangent_v: Vec3
    """Unit texture axis v on the plane."""
    material: Material
    """Surface appearance."""


@dataclass(frozen=True)
class Box:
    """Oriented box seen from outside."""

    center: Vec3
    """Centre in world coordinates."""
    half: Vec3
    """Half extents along the local axes."""
    rotation: Mat3 | None
    """World-to-local rotation (rows = local axes in world); None = axis-aligned."""
    material: Material
    """Surface appearance."""


@dataclass(frozen=True)
class Cylinder:
    """Capped cylinder along its local y axis, seen from outside."""

    center: Vec3
    """Centre in world coordinates."""
    radius: float
    """Radius in metres."""
    half_height: float
    """Half length along the axis."""
    rotation: Mat3 | None
    """World-to-local rotation; None = vertical axis."""
    material: Material
    """Surface appearance."""


@dataclass(frozen=True)
class Sphere:
    """Sphere seen from outside."""

    center: Vec3
    """Centre in world coordinates."""
    radius: float
    """Radius in metres."""
    material: Material
    """Surface appearance."""


Primitive = Plane | Box | Cylinder | Sphere


@dataclass(frozen=True, eq=False)
class SceneSpec:
    """Everything needed to render one scene."""

    kind: str
    """"indoor" or "outdoor"."""
    intrinsics: tuple[float, float, float, float]
    """(fx, fy, cx, cy) in pixels."""
    cam_pos: Vec3
    """Camera centre in world coordinates."""
    cam_rot: Mat3
    """Camera-to-world rotation (columns = camera x, y, z axes in world)."""
    primitives: tuple[Primitive, ...]
    """Scene content; the nearest hit along each ray wins."""
    light_dir: Vec3
    """Unit direction towards the directional light (world)."""
    light_colour: Vec3
    """Light tint multiplying the shaded albedo."""
    ambient: float
    """Ambient fraction of the shading."""
    sky: tuple[Vec3, Vec3] | None
    """(horizon, zenith) sky colours for rays that hit nothing; None = closed scene."""
    fog_distance: float | None
    """Distance in metres at which the colour is 63% haze (horizon colour); None = no haze."""
    depth_range: tuple[float, float]
    """Valid depth interval; hits outside are invalid."""
    lattice: np.ndarray
    """float32 LxL value-noise lattice in [0,1] shared by all textures of the scene."""


# --------------------------------------------------------------------------------------------------------------------
# Array-module shim: the ray caster only uses these operations plus arithmetic, comparisons, slicing and masks.
# --------------------------------------------------------------------------------------------------------------------


class _NumpyOps:
    """numpy backend (float32)."""

    inf = math.inf

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.float32)

    def full(self, shape: tuple[int, ...], value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float32)

    def full_int(self, shape: tuple[int, ...], value: int) -> np.ndarray:
        return np.full(shape, value, dtype=np.int32)

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32)

    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    sqrt = staticmethod(np.sqrt)
    floor = staticmethod(np.floor)
    abs = staticmethod(np.abs)
    exp = staticmethod(np.exp)
    atan2 = staticmethod(np.arctan2)
    round = staticmethod(np.round)

    def clip(self, x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
        return np.clip(x, lo, hi)

    def stack(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(xs, axis=-1)

    def to_index(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.intp)

    def f32(self, m: np.ndarray) -> np.ndarray:
        return m.astype(np.float32)

    def any(self, m: np.ndarray) -> bool:
        return bool(m.any())

    def group(self, ids: np.ndarray, n: int) -> tuple[np.ndarray, list[int]]:
        """Stable order that sorts ids in [-1, n-1], and the count of each id."""
        shifted = (ids + 1).astype(np.int16)  # 16-bit keys get numpy's radix sort
        return np.argsort(shifted, kind="stable"), np.bincount(shifted, minlength=n).tolist()


class _TorchOps:
    """torch backend (float32) on a given device."""

    inf = math.inf

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32, device=self.device)

    def full(self, shape: tuple[int, ...], value: float) -> torch.Tensor:
        return torch.full(shape, value, dtype=torch.float32, device=self.device)

    def full_int(self, shape: tuple[int, ...], value: int) -> torch.Tensor:
        return torch.full(shape, value, dtype=torch.int32, device=self.device)

    def asarray(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=self.device)

    where = staticmethod(torch.where)
    minimum = staticmethod(torch.minimum)
    maximum = staticmethod(torch.maximum)
    sqrt = staticmethod(torch.sqrt)
    floor = staticmethod(torch.floor)
    abs = staticmethod(torch.abs)
    exp = staticmethod(torch.exp)
    atan2 = staticmethod(torch.atan2)
    round = staticmethod(torch.round)

    def clip(self, x: torch.Tensor, lo: float | None, hi: float | None) -> torch.Tensor:
        return torch.clamp(x, lo, hi)

    def stack(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(xs), dim=-1)

    def to_index(self, x: torch.Tensor) -> torch.Tensor:
        return x.long()

    def f32(self, m: torch.Tensor) -> torch.Tensor:
        return m.to(torch.float32)

    def any(self, m: torch.Tensor) -> bool:
        return bool(m.any())

    def group(self, ids: torch.Tensor, n: int) -> tuple[torch.Tensor, list[int]]:
        """Stable order that sorts ids in [-1, n-1], and the count of each id."""
        shifted = (ids + 1).long()
        return torch.argsort(shifted, stable=True), torch.bincount(shifted, minlength=n).tolist()


Ops = _NumpyOps | _TorchOps
Array = Any  # np.ndarray or torch.Tensor


# --------------------------------------------------------------------------------------------------------------------
# Small vector helpers (pure Python / float64 numpy on a handful of values)
# --------------------------------------------------------------------------------------------------------------------


def _vec(a: Sequence[float]) -> Vec3:
    return (float(a[0]), float(a[1]), float(a[2]))


def _mat(m: np.ndarray) -> Mat3:
    return (_vec(m[0]), _vec(m[1]), _vec(m[2]))


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _world_to_local(local_to_world: np.ndarray) -> Mat3:
    return _mat(local_to_world.T)


def _normalize(v: Sequence[float]) -> Vec3:
    a = np.asarray(v, dtype=np.float64)
    return _vec(a / np.linalg.norm(a))


# --------------------------------------------------------------------------------------------------------------------
# Ray casting
# --------------------------------------------------------------------------------------------------------------------


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


def _screen_window(p: Primitive, spec: SceneSpec, h: int, w: int) -> tuple[int, int, int, int] | None:
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


def _intersect(
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


# --------------------------------------------------------------------------------------------------------------------
# Surface attributes and textures
# --------------------------------------------------------------------------------------------------------------------


def _surface(p: Primitive, pts: Sequence[Array], ops: Ops) -> tuple[list[Array], Array, Array]:
    """World normal (3 arrays) and texture coordinates (u, v) in metres for hit points ``pts``."""
    if isinstance(p, Plane):
        tu, tv = p.tangent_u, p.tangent_v
        u = tu[0] * pts[0] + tu[1] * pts[1] + tu[2] * pts[2]
        v = tv[0] * pts[0] + tv[1] * pts[1] + tv[2] * pts[2]
        one = u * 0.0 + 1.0
        return [one * p.normal[0], one * p.normal[1], one * p.normal[2]], u, v
    rel = [pts[i] - p.center[i] for i in range(3)]
    rot = getattr(p, "rotation", None)
    q = rel if rot is None else [r[0] * rel[0] + r[1] * rel[1] + r[2] * rel[2] for r in rot]
    if isinstance(p, Box):
        nl, u, v = _box_surface(p, q, ops)
    elif isinstance(p, Cylinder):
        nl, u, v = _cylinder_surface(p, q, ops)
    else:
        r = p.radius
        nl = [q[0] / r, q[1] / r, q[2] / r]
        u, v = ops.atan2(q[2], q[0]) * r, q[1]
    if rot is not None:
        nl = [rot[0][i] * nl[0] + rot[1][i] * nl[1] + rot[2][i] * nl[2] for i in range(3)]
    return nl, u, v


def _box_surface(b: Box, q: Sequence[Array], ops: Ops) -> tuple[list[Array], Array, Array]:
    ax, ay, az = (ops.abs(q[i]) / b.half[i] for i in range(3))
    is_x = (ax >= ay) & (ax >= az)
    is_y = (~is_x) & (ay >= az)
    is_z = (~is_x) & (~is_y)
    sgn = [ops.f32(q[i] >= 0) * 2.0 - 1.0 for i in range(3)]
    nl = [sgn[0] * ops.f32(is_x), sgn[1] * ops.f32(is_y), sgn[2] * ops.f32(is_z)]
    # Coordinates measured from the box corner so patterns (e.g. windows) line up with the edges.
    qx, qy, qz = (q[i] + b.half[i] for i in range(3))
    u = ops.where(is_x, qz, qx)
    v = ops.where(is_y, qz, qy)
    return nl, u, v


def _cylinder_surface(c: Cylinder, q: Sequence[Array], ops: Ops) -> tuple[list[Array], Array, Array]:
    rr = ops.sqrt(q[0] * q[0] + q[2] * q[2])
    cap = ops.abs(ops.abs(q[1]) - c.half_height) < ops.abs(rr - c.radius)
    inv_r = 1.0 / ops.clip(rr, 1e-9, None)
    capf = ops.f32(cap)
    side = 1.0 - capf
    nl = [q[0] * inv_r * side, (ops.f32(q[1] >= 0) * 2.0 - 1.0) * capf, q[2] * inv_r * side]
    u = ops.where(cap, q[0], ops.atan2(q[2], q[0]) * c.radius)
    v = ops.where(cap, q[2], q[1] + c.half_height)
    return nl, u, v


def _padded_lattice(lattice: np.ndarray) -> np.ndarray:
    """Flattened (L+1)x(L+1) copy with wrapped last row/column, so the four corners need no modulo."""
    return np.pad(lattice, ((0, 1), (0, 1)), mode="wrap").reshape(-1)


def _value_noise(a: Array, b: Array, lattice: Array, ops: Ops) -> Array:
    """Smooth periodic value noise in [0,1] with one lattice cell per unit of (a, b); ``lattice`` is padded flat."""
    fa0, fb0 = ops.floor(a), ops.floor(b)
    fa, fb = a - fa0, b - fb0
    fa = fa * fa * (3.0 - 2.0 * fa)
    fb = fb * fb * (3.0 - 2.0 * fb)
    # The lattice side is a power of two, so `& (L - 1)` wraps negative indices too.
    idx = (ops.to_index(fa0) & (_LATTICE_SIZE - 1)) * (_LATTICE_SIZE + 1) + (ops.to_index(fb0) & (_LATTICE_SIZE - 1))
    v00, v01 = lattice[idx], lattice[idx + 1]
    v10, v11 = lattice[idx + (_LATTICE_SIZE + 1)], lattice[idx + (_LATTICE_SIZE + 2)]
    top = v00 + (v10 - v00) * fa
    bottom = v01 + (v11 - v01) * fa
    return top + (bottom - top) * fb


def _frac(x: Array, ops: Ops) -> Array:
    return x - ops.floor(x)


def _pattern(m: Material, u: Array, v: Array, lattice: Array, ops: Ops) -> Array | None:
    """Mix weight in [0,1] between base (0) and accent (1); None for plain surfaces."""
    a, b = u / m.scale[0], v / m.scale[1]
    kind = m.pattern
    if kind == "plain":
        return None
    if kind == "checker":
        return (ops.floor(a) + ops.floor(b)) % 2.0
    if kind == "stripes":
        return ops.floor(a) % 2.0
    if kind == "noise":
        return _value_noise(a, b, lattice, ops)
    if kind == "planks":  # boards along u, rows along v: per-board shade plus dark seams
        row = ops.floor(b)
        shade = _value_noise(row * 7.31, ops.floor(a * 0.25 + row * 0.5) * 3.7 + 11.0, lattice, ops)
        seam = ops.f32(_frac(b, ops) < 0.06)
        return ops.clip(shade * 0.8 + seam, 0.0, 1.0)
    if kind == "bricks":  # accent = mortar
        row = ops.floor(b)
        fa = _frac(a + 0.5 * (row % 2.0), ops)
        return ops.f32((fa < 0.06) | (_frac(b, ops) < 0.1))
    if kind == "windows":  # accent = glass
        fa, fb = _frac(a, ops), _frac(b, ops)
        return ops.f32((fa > 0.2) & (fa < 0.8) & (fb > 0.3) & (fb < 0.8))
    if kind == "lanes":  # lines every scale[0] metres across u, dashed with period scale[1] along v
        dist = ops.abs(_frac(a + 0.5, ops) - 0.5) * m.scale[0]
        return ops.f32((dist < 0.08) & (_frac(b, ops) < 0.5))
    raise ValueError(f"unknown pattern {kind!r}")


def _albedo(m: Material, u: Array, v: Array, lattice: Array, ops: Ops) -> list[Array]:
    p = _pattern(m, u, v, lattice, ops)
    g = 1.0 + m.grain * (2.0 * _value_noise(u / m.grain_scale + 17.3, v / m.grain_scale + 5.1, lattice, ops) - 1.0)
    if p is None:
        return [g * m.base[i] for i in range(3)]
    return [(m.base[i] + (m.accent[i] - m.base[i]) * p) * g for i in range(3)]


# --------------------------------------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------------------------------------


def _render(spec: SceneSpec, h: int, w: int, ops: Ops) -> tuple[Array, Array]:
    """Ray cast ``spec``: float32 HxWx3 RGB in [0,1] (not yet quantised) and HxW depth (0 = invalid)."""
    fx, fy, cx, cy = spec.intrinsics
    xs = ((ops.arange(w) - cx) / fx)[None, :]
    ys = ((ops.arange(h) - cy) / fy)[:, None]
    rot = spec.cam_rot
    d = [rot[i][0] * xs + rot[i][1] * ys + rot[i][2] for i in range(3)]
    inv = [1.0 / x for x in d]

    tbest = ops.full((h, w), ops.inf)
    ids = ops.full_int((h, w), -1)
    for k, prim in enumerate(spec.primitives):
        win = _screen_window(prim, spec, h, w)
        if win is None:
            continue
        sl = (slice(win[0], win[1]), slice(win[2], win[3]))
        t = _intersect(prim, spec, win, [x[sl] for x in d], [x[sl] for x in inv], ops)
        t_old = tbest[sl]
        better = t < t_old
        tbest[sl] = ops.where(better, t, t_old)
        ids[sl] = ops.where(better, k, ids[sl])

    rgb = _shade(spec, d, tbest, ids, ops).reshape(h, w, 3)
    lo, hi = spec.depth_range
    depth = ops.where((ids >= 0) & (tbest >= lo) & (tbest <= hi), tbest, 0.0)
    return ops.clip(rgb, 0.0, 1.0), depth


def _shade(spec: SceneSpec, d: Sequence[Array], tbest: Array, ids: Array, ops: Ops) -> Array:
    """(H*W, 3) colours: Lambert + ambient shaded, hazed albedo for hits, sky (or black) elsewhere.

    Pixels are sorted by primitive id once, so each primitive shades one contiguous run instead of masking the image.
    """
    lattice = ops.asarray(_padded_lattice(spec.lattice))
    light = spec.light_dir
    cam = spec.cam_pos
    order, counts = ops.group(ids.reshape(-1), len(spec.primitives) + 1)  # id -1 (no hit) first
    t_all = tbest.reshape(-1)[order]
    d_all = [x.reshape(-1)[order] for x in d]
    out = ops.full((t_all.shape[0], 3), 0.0)
    start = counts[0]
    if spec.sky is not None and start > 0:
        out[:start] = _sky_colour(spec, [x[:start] for x in d_all], ops)
    for prim, n in zip(spec.primitives, counts[1:], strict=True):
        if n == 0:
            continue
        seg = slice(start, start + n)
        start += n
        t = t_all[seg]
        pts = [cam[i] + t * d_all[i][seg] for i in range(3)]
        normal, u, v = _surface(prim, pts, ops)
        albedo = _albedo(prim.material, u, v, lattice, ops)
        cos = normal[0] * light[0] + normal[1] * light[1] + normal[2] * light[2]
        # A weak fill from the opposite side stands in for bounce light (ceilings would be flat ambient otherwise).
        lam = ops.clip(cos, 0.0, None) - 0.25 * ops.clip(cos, None, 0.0)
        shade = spec.ambient + (1.0 - spec.ambient) * lam
        colour = [albedo[i] * (shade * spec.light_colour[i]) for i in range(3)]
        if spec.fog_distance is not None and spec.sky is not None:
            f = ops.exp(t * (-1.0 / spec.fog_distance))
            colour = [spec.sky[0][i] + (colour[i] - spec.sky[0][i]) * f for i in range(3)]
        out[seg] = ops.stack(colour)
    rgb = ops.full((t_all.shape[0], 3), 0.0)
    rgb[order] = out
    return rgb


def _sky_colour(spec: SceneSpec, d: Sequence[Array], ops: Ops) -> Array:
    """(N,3) sky colours for ray directions ``d``: horizon colour blending to zenith colour with elevation."""
    assert spec.sky is not None
    horizon, zenith = spec.sky
    norm = ops.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    e = ops.clip(d[1] / norm * 2.5, 0.0, 1.0)
    return ops.stack([horizon[i] + (zenith[i] - horizon[i]) * e for i in range(3)])


# --------------------------------------------------------------------------------------------------------------------
# Scene sampling
# --------------------------------------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _hsv(
    rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]
) -> Vec3:
    return _vec(colorsys.hsv_to_rgb(_u(rng, *hue) % 1.0, _u(rng, *sat), _u(rng, *val)))


def _scaled(c: Vec3, f: float) -> Vec3:
    return (min(c[0] * f, 1.0), min(c[1] * f, 1.0), min(c[2] * f, 1.0))


def _pick(rng: np.random.Generator, options: Sequence[str], weights: Sequence[float]) -> str:
    p = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _intrinsics(rng: np.random.Generator, h: int, w: int, cfg: SceneConfig) -> tuple[float, float, float, float]:
    hfov = math.radians(_u(rng, *cfg.hfov_deg_range))
    fx = (w / 2.0) / math.tan(hfov / 2.0)
    fy = fx * (1.0 + _u(rng, -cfg.focal_aspect_jitter, cfg.focal_aspect_jitter))
    cx = (w - 1) / 2.0 + _u(rng, -1, 1) * cfg.principal_point_jitter * w
    cy = (h - 1) / 2.0 + _u(rng, -1, 1) * cfg.principal_point_jitter * h
    return (fx, fy, cx, cy)


def _camera_rotation(yaw: float, pitch_down: float, roll: float) -> Mat3:
    flip = np.diag([1.0, -1.0, 1.0])  # camera y points down, world y up
    return _mat(_rot_y(yaw) @ _rot_x(pitch_down) @ _rot_z(roll) @ flip)


def _light(rng: np.random.Generator, elevation_deg: tuple[float, float]) -> Vec3:
    el = math.radians(_u(rng, *elevation_deg))
    az = _u(rng, 0.0, 2.0 * math.pi)
    return (math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az))


def _random_material(rng: np.random.Generator, colour: Vec3 | None = None) -> Material:
    """Generic object material: random colour, random pattern."""
    base = colour if colour is not None else _hsv(rng, (0, 1), (0.15, 0.9), (0.25, 0.95))
    pattern = _pick(rng, ("plain", "noise", "stripes", "checker"), (0.45, 0.25, 0.15, 0.15))
    accent = _scaled(base, _u(rng, 0.45, 0.8)) if rng.random() < 0.6 else _hsv(rng, (0, 1), (0, 0.8), (0.2, 1.0))
    s = _u(rng, 0.05, 0.4)
    return Material(base, accent, pattern, (s, s * _u(rng, 0.7, 1.5)), _u(rng, 0.02, 0.12), _u(rng, 0.01, 0.08))


def _axis_plane(normal: Vec3, offset: float, material: Material) -> Plane:
    n = np.asarray(normal, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0]) if abs(n[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    tu = np.cross(up, n)
    tu /= np.linalg.norm(tu)
    tv = np.cross(n, tu)
    return Plane(_vec(n), float(offset), _vec(tu), _vec(tv), material)


class _Placer:
    """Draws floor positions that keep a clearance from the camera and stay inside given bounds."""

    def __init__(self, rng: np.random.Generator, cam: Vec3, x: tuple[float, float], z: tuple[float, float]):
        self.rng, self.cam, self.x, self.z = rng, cam, x, z

    def spot(self, radius: float, clearance: float) -> tuple[float, float] | None:
        for _ in range(12):
            x = _u(self.rng, self.x[0] + radius, self.x[1] - radius)
            z = _u(self.rng, self.z[0] + radius, self.z[1] - radius)
            if math.hypot(x - self.cam[0], z - self.cam[2]) > radius + clearance and z > self.cam[2] - 0.5:
                return x, z
        return None


def _sample_indoor(rng: np.random.Generator, h: int, w: int, cfg: SceneConfig) -> SceneSpec:
    intr = _intrinsics(rng, h, w, cfg)
    rw, rd, rh = _u(rng, 3.0, 7.0), _u(rng, 4.0, 9.0), _u(rng, 2.4, 3.3)
    x0, x1 = -rw / 2, rw / 2
    cam = (_u(rng, x0 + 0.6, x1 - 0.6), _u(rng, 1.0, min(1.8, rh - 0.5)), _u(rng, 0.3, 0.3 * rd))
    rot = _camera_rotation(math.radians(_u(rng, -30, 30)), math.radians(_u(rng, -5, 22)), math.radians(_u(rng, -3, 3)))

    wall = _wall_material(rng)
    prims: list[Primitive] = [
        _axis_plane((0, 1, 0), 0.0, _floor_material(rng)),
        _axis_plane((0, -1, 0), -rh, Material(_hsv(rng, (0, 1), (0, 0.1), (0.75, 0.95)), (1, 1, 1), "plain")),
    ]
    for normal, off in (((1, 0, 0), x0), ((-1, 0, 0), -x1), ((0, 0, 1), 0.0), ((0, 0, -1), -rd)):
        prims.append(_axis_plane(normal, off, wall if rng.random() < 0.75 else _wall_material(rng)))
    if rng.random() < 0.35:  # attic: a slanted ceiling cutting one side of the room
        side = 1.0 if rng.random() < 0.5 else -1.0
        a = math.radians(_u(rng, 25, 50))
        n = (-side * math.sin(a), -math.cos(a), 0.0)
        anchor = (side * rw / 2, rh * _u(rng, 0.5, 0.8), 0.0)
        off = sum(n[i] * anchor[i] for i in range(3))
        if sum(n[i] * cam[i] for i in range(3)) - off > 0.4:
            prims.append(Plane(n, off, (0.0, 0.0, 1.0), _vec(np.cross(n, (0.0, 0.0, 1.0))), prims[1].material))

    placer = _Placer(rng, cam, (x0, x1), (0.0, rd))
    for _ in range(int(rng.integers(4, 11))):
        kind = _pick(
            rng, ("cabinet", "table", "cylinder", "ball", "picture", "lamp", "slab"), (3, 2, 2, 1.5, 1.5, 1, 1)
        )
        prims.extend(_furniture(rng, kind, placer, (x0, x1, rd, rh)))
    return SceneSpec(
        kind="indoor",
        intrinsics=intr,
        cam_pos=cam,
        cam_rot=rot,
        primitives=tuple(prims),
        light_dir=_light(rng, (35, 80)),
        light_colour=_hsv(rng, (0.05, 0.15), (0.0, 0.25), (0.95, 1.0)),
        ambient=_u(rng, *cfg.ambient_range),
        sky=None,
        fog_distance=None,
        depth_range=cfg.indoor_depth_range,
        lattice=rng.random((_LATTICE_SIZE, _LATTICE_SIZE), dtype=np.float32),
    )


def _wall_material(rng: np.random.Generator) -> Material:
    base = _hsv(rng, (0, 1), (0.03, 0.35), (0.6, 0.95))
    pattern = _pick(rng, ("plain", "noise", "stripes", "bricks", "checker"), (3, 2.5, 2, 1.5, 0.5))
    if pattern == "bricks":
        return Material(
            _hsv(rng, (0.0, 0.08), (0.4, 0.7), (0.4, 0.7)),
            _hsv(rng, (0, 1), (0, 0.1), (0.7, 0.9)),
            "bricks",
            (0.24, 0.075),
            0.1,
            0.03,
        )
    accent = _scaled(base, _u(rng, 0.7, 0.92))
    s = _u(rng, 0.05, 0.3) if pattern != "noise" else _u(rng, 0.2, 1.0)
    return Material(base, accent, pattern, (s, s), _u(rng, 0.01, 0.06), 0.05)


def _floor_material(rng: np.random.Generator) -> Material:
    pattern = _pick(rng, ("planks", "checker", "noise"), (4, 3, 3))
    if pattern == "planks":
        base = _hsv(rng, (0.04, 0.11), (0.35, 0.75), (0.3, 0.75))
        return Material(base, _scaled(base, 0.55), "planks", (_u(rng, 0.6, 1.5), _u(rng, 0.1, 0.25)), 0.12, 0.02)
    if pattern == "checker":
        base = _hsv(rng, (0, 1), (0, 0.4), (0.5, 0.95))
        accent = _hsv(rng, (0, 1), (0, 0.5), (0.1, 0.5))
        s = _u(rng, 0.25, 0.6)
        return Material(base, accent, "checker", (s, s), 0.04, 0.05)
    base = _hsv(rng, (0, 1), (0.1, 0.6), (0.2, 0.7))
    return Material(base, _scaled(base, 0.7), "noise", (0.15, 0.15), 0.15, 0.01)


def _yaw_box(center: Vec3, half: Vec3, yaw: float, material: Material, tilt: float = 0.0) -> Box:
    return Box(center, half, _world_to_local(_rot_y(yaw) @ _rot_x(tilt)) if (yaw or tilt) else None, material)


def _furniture(
    rng: np.random.Generator, kind: str, placer: _Placer, room: tuple[float, float, float, float]
) -> list[Primitive]:
    x0, x1, rd, rh = room
    mat = _random_material(rng)
    if kind == "picture":  # thin panel on a side or back wall
        wdt, hgt = _u(rng, 0.3, 1.4), _u(rng, 0.3, 1.0)
        y = _u(rng, 1.0, max(1.1, rh - hgt / 2 - 0.2))
        if rng.random() < 0.5:
            side = x0 if rng.random() < 0.5 else x1
            c = (side + (0.02 if side == x0 else -0.02), y, _u(rng, 0.5, rd - 0.5))
            return [Box(c, (0.02, hgt / 2, wdt / 2), None, mat)]
        return [Box((_u(rng, x0 + 0.5, x1 - 0.5), y, rd - 0.02), (wdt / 2, hgt / 2, 0.02), None, mat)]
    if kind == "cabinet":
        half = (_u(rng, 0.2, 0.9), _u(rng, 0.2, 1.0), _u(rng, 0.15, 0.4))
        spot = placer.spot(math.hypot(half[0], half[2]), 0.9)
        if spot is None:
            return []
        return [_yaw_box((spot[0], half[1], spot[1]), half, _u(rng, -math.pi, math.pi), mat)]
    if kind == "slab":  # a board leaning at an angle: slanted surfaces
        half = (_u(rng, 0.3, 0.8), _u(rng, 0.4, 1.0), _u(rng, 0.02, 0.1))
        spot = placer.spot(max(half[0], half[1]), 0.9)
        if spot is None:
            return []
        tilt = math.radians(_u(rng, 10, 50))
        return [_yaw_box((spot[0], half[1] * math.cos(tilt), spot[1]), half, _u(rng, -math.pi, math.pi), mat, tilt)]
    if kind == "table":
        hx, hz, top = _u(rng, 0.3, 0.8), _u(rng, 0.25, 0.5), _u(rng, 0.65, 0.8)
        spot = placer.spot(math.hypot(hx, hz), 0.9)
        if spot is None:
            return []
        yaw = _u(rng, -math.pi, math.pi)
        r = _rot_y(yaw)
        parts: list[Primitive] = [_yaw_box((spot[0], top, spot[1]), (hx, 0.025, hz), yaw, mat)]
        leg_mat = mat if rng.random() < 0.5 else _random_material(rng)
        for sx in (-1, 1):
            for sz in (-1, 1):
                off = r @ np.array([sx * (hx - 0.05), 0.0, sz * (hz - 0.05)])
                leg = (spot[0] + off[0], top / 2, spot[1] + off[2])
                parts.append(_yaw_box(leg, (0.025, top / 2, 0.025), yaw, leg_mat))
        if rng.random() < 0.4:
            rad = _u(rng, 0.06, 0.15)
            parts.append(Sphere((spot[0], top + 0.025 + rad, spot[1]), rad, _random_material(rng)))
        return parts
    if kind == "cylinder":
        pillar = rng.random() < 0.25
        rad = _u(rng, 0.1, 0.35)
        hh = rh / 2 if pillar else _u(rng, 0.15, 0.6)
        spot = placer.spot(rad, 0.9)
        return [] if spot is None else [Cylinder((spot[0], hh, spot[1]), rad, hh, None, mat)]
    if kind == "ball":
        rad = _u(rng, 0.1, 0.45)
        spot = placer.spot(rad, 0.9)
        return [] if spot is None else [Sphere((spot[0], rad, spot[1]), rad, mat)]
    # lamp: thin pole with a shade
    hh = _u(rng, 0.6, 0.9)
    spot = placer.spot(0.25, 0.9)
    if spot is None:
        return []
    shade = Material(_hsv(rng, (0.05, 0.15), (0.1, 0.5), (0.7, 1.0)), (1, 1, 1), "plain", grain=0.02)
    return [
        Cylinder((spot[0], hh, spot[1]), 0.02, hh, None, Material((0.15, 0.15, 0.15), (0.3, 0.3, 0.3))),
        Cylinder((spot[0], 2 * hh + 0.1, spot[1]), _u(rng, 0.12, 0.25), 0.12, None, shade),
    ]


def _sample_outdoor(rng: np.random.Generator, h: int, w: int, cfg: SceneConfig) -> SceneSpec:
    intr = _intrinsics(rng, h, w, cfg)
    road = _u(rng, 4.0, 9.0)  # half width of the carriageway
    walk = _u(rng, 1.5, 4.0)
    cam = (_u(rng, -road + 1.5, road - 1.5), _u(rng, 1.3, 2.2), 0.0)
    rot = _camera_rotation(math.radians(_u(rng, -20, 20)), math.radians(_u(rng, -3, 8)), math.radians(_u(rng, -3, 3)))

    asphalt = _hsv(rng, (0, 1), (0, 0.08), (0.18, 0.35))
    line = (0.9, 0.9, 0.85) if rng.random() < 0.7 else (0.85, 0.7, 0.15)
    lane_w = road if rng.random() < 0.5 else road / 2
    prims: list[Primitive] = [
        Plane(
            (0.0, 1.0, 0.0),
            0.0,
            (1.0, 0.0, 0.0),
            (0.0, 0.0, 1.0),
            Material(asphalt, line, "lanes", (lane_w, _u(rng, 4, 10)), 0.25, 0.04),
        ),
    ]
    pave = _hsv(rng, (0, 1), (0, 0.15), (0.4, 0.7))
    s = _u(rng, 0.3, 0.6)
    pave_mat = Material(pave, _scaled(pave, 0.85), "checker", (s, s), 0.1, 0.03)
    for side in (-1.0, 1.0):
        prims.append(Box((side * (road + walk / 2), 0.075, 70.0), (walk / 2, 0.075, 90.0), None, pave_mat))
        prims.extend(_street_side(rng, side, road + walk))
    if rng.random() < 0.5:  # a building closing the street
        zc, half_h = _u(rng, 45, 90), _u(rng, 4, 15)
        prims.append(Box((0.0, half_h, zc + 10), (80.0, half_h, 10.0), None, _facade_material(rng)))
    for _ in range(int(rng.integers(0, 8))):
        prims.extend(_vehicle(rng, road, cam))
    for _ in range(int(rng.integers(2, 10))):
        prims.extend(_pole_or_tree(rng, road, walk))

    overcast = rng.random() < 0.3
    if overcast:
        grey = _u(rng, 0.6, 0.85)
        sky = ((grey, grey, grey * 1.02), (grey * 0.85, grey * 0.87, grey * 0.92))
    else:
        sky = (_hsv(rng, (0.55, 0.62), (0.1, 0.3), (0.8, 0.95)), _hsv(rng, (0.57, 0.65), (0.4, 0.75), (0.6, 0.9)))
    return SceneSpec(
        kind="outdoor",
        intrinsics=intr,
        cam_pos=cam,
        cam_rot=rot,
        primitives=tuple(prims),
        light_dir=_light(rng, (15, 70)),
        light_colour=(1.0, 1.0, 1.0) if overcast else _hsv(rng, (0.08, 0.14), (0.0, 0.2), (0.95, 1.0)),
        ambient=_u(rng, *cfg.ambient_range) + (0.2 if overcast else 0.0),
        sky=(_vec(sky[0]), _vec(sky[1])),
        fog_distance=_u(rng, 120, 400),
        depth_range=cfg.outdoor_depth_range,
        lattice=rng.random((_LATTICE_SIZE, _LATTICE_SIZE), dtype=np.float32),
    )


def _facade_material(rng: np.random.Generator) -> Material:
    style = _pick(rng, ("brick", "plaster", "concrete", "glass"), (3, 3, 2, 1))
    if style == "brick":
        base = _hsv(rng, (0.0, 0.07), (0.4, 0.75), (0.3, 0.6))
    elif style == "plaster":
        base = _hsv(rng, (0.05, 0.17), (0.1, 0.4), (0.6, 0.95))
    elif style == "concrete":
        base = _hsv(rng, (0, 1), (0.0, 0.08), (0.4, 0.75))
    else:
        base = _hsv(rng, (0.5, 0.62), (0.2, 0.5), (0.3, 0.6))
    if rng.random() < 0.7:  # dark glass
        glass = _hsv(rng, (0.55, 0.65), (0.1, 0.4), (0.08, 0.35))
    else:  # reflective glass
        glass = _hsv(rng, (0.5, 0.6), (0.1, 0.3), (0.6, 0.85))
    return Material(base, glass, "windows", (_u(rng, 1.5, 3.5), _u(rng, 2.8, 3.6)), _u(rng, 0.03, 0.12), 0.1)


def _street_side(rng: np.random.Generator, side: float, edge: float) -> list[Primitive]:
    """A row of buildings along z on one side of the street, starting ``edge`` metres from the centre line."""
    out: list[Primitive] = []
    z = _u(rng, -20, -5)
    while z < 130:
        length = _u(rng, 6, 25)
        if rng.random() < 0.12:  # gap between buildings
            z += _u(rng, 3, 12)
            continue
        setback = 0.0 if rng.random() < 0.5 else _u(rng, 0.5, 6.0)
        depth, height = _u(rng, 8, 20), _u(rng, 4, 35)
        x_near = edge + setback
        out.append(
            Box(
                (side * (x_near + depth / 2), height / 2, z + length / 2),
                (depth / 2, height / 2, length / 2),
                None,
                _facade_material(rng),
            )
        )
        z += length
    return out


def _vehicle(rng: np.random.Generator, road: float, cam: Vec3) -> list[Primitive]:
    length, width = _u(rng, 3.8, 5.0), _u(rng, 1.7, 2.0)
    x = _u(rng, -road + width / 2 + 0.2, road - width / 2 - 0.2)
    z = _u(rng, 5, 70)
    if math.hypot(x - cam[0], z - cam[2]) < length / 2 + 4:
        return []
    yaw = _u(rng, -0.15, 0.15) + (math.pi if rng.random() < 0.3 else 0.0)
    body_h = _u(rng, 0.7, 0.95)
    lift = 0.3
    r = _rot_y(yaw)
    paint = _hsv(rng, (0, 1), (0.0, 0.9), (0.15, 0.9))
    body = Material(paint, paint, "plain", grain=0.02)
    glass = Material(_hsv(rng, (0.55, 0.65), (0.1, 0.3), (0.1, 0.3)), (0, 0, 0), "plain", grain=0.02)
    cab_len, cab_h = length * _u(rng, 0.45, 0.6), _u(rng, 0.45, 0.65)
    cab_off = r @ np.array([0.0, 0.0, _u(rng, -0.4, 0.1)])
    parts: list[Primitive] = [
        _yaw_box((x, lift + body_h / 2, z), (width / 2, body_h / 2, length / 2), yaw, body),
        _yaw_box(
            (x + cab_off[0], lift + body_h + cab_h / 2, z + cab_off[2]),
            (width / 2 - 0.08, cab_h / 2, cab_len / 2),
            yaw,
            glass,
        ),
    ]
    tyre = Material((0.05, 0.05, 0.05), (0.1, 0.1, 0.1), "plain", grain=0.02)
    wheel_rot = _world_to_local(r @ _rot_z(-math.pi / 2))
    for sx in (-1, 1):
        for sz in (-1, 1):
            off = r @ np.array([sx * (width / 2 - 0.1), 0.0, sz * (length / 2 - 0.8)])
            parts.append(Cylinder((x + off[0], 0.32, z + off[2]), 0.32, 0.12, wheel_rot, tyre))
    return parts


def _pole_or_tree(rng: np.random.Generator, road: float, walk: float) -> list[Primitive]:
    side = 1.0 if rng.random() < 0.5 else -1.0
    z = _u(rng, 3, 80)
    if rng.random() < 0.45:  # tree on the sidewalk
        x = side * (road + _u(rng, 0.5, max(0.6, walk - 0.5)))
        trunk_h, crown = _u(rng, 1.5, 3.5), _u(rng, 1.0, 2.5)
        bark_colour = _hsv(rng, (0.05, 0.1), (0.3, 0.6), (0.15, 0.35))
        bark = Material(bark_colour, (0.1, 0.07, 0.05), "noise", (0.1, 0.3), 0.1, 0.05)
        leaf = _hsv(rng, (0.2, 0.35), (0.4, 0.8), (0.2, 0.5))
        foliage = Material(leaf, _scaled(leaf, 0.5), "noise", (0.25, 0.25), 0.2, 0.05)
        return [
            Cylinder((x, trunk_h / 2, z), _u(rng, 0.1, 0.25), trunk_h / 2, None, bark),
            Sphere((x, trunk_h + crown * 0.7, z), crown, foliage),
        ]
    x = side * (road + _u(rng, 0.2, 0.6))
    hgt = _u(rng, 3.0, 8.0)
    metal = Material(_hsv(rng, (0, 1), (0, 0.3), (0.15, 0.6)), (0.2, 0.2, 0.2), "plain", grain=0.03)
    parts: list[Primitive] = [Cylinder((x, hgt / 2, z), _u(rng, 0.05, 0.15), hgt / 2, None, metal)]
    if rng.random() < 0.5:  # sign or lamp head
        sign = Material(_hsv(rng, (0, 1), (0.5, 1.0), (0.5, 1.0)), (1, 1, 1), "plain", grain=0.02)
        parts.append(Box((x - side * 0.4, hgt - 0.4, z), (0.45, 0.3, 0.03), None, sign))
    return parts


def _sample_scene(seed: int, height: int, width: int, kind: str, config: SceneConfig) -> SceneSpec:
    rng = np.random.default_rng(seed)
    # Always draw the coin, so kind="random" and the kind it picks give the same scene for a seed.
    outdoor = rng.random() < config.outdoor_probability
    if kind != "random":
        outdoor = kind == "outdoor"
    sampler = _sample_outdoor if outdoor else _sample_indoor
    return sampler(rng, height, width, config)


# --------------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_args(seed: object, height: object, width: object, kind: object, config: object) -> tuple[int, int, int]:
    s = _check_int("seed", seed, 0)
    h = _check_int("height", height, MIN_SIZE)
    w = _check_int("width", width, MIN_SIZE)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(config, SceneConfig):
        raise ValueError(f"config must be a SceneConfig, got {type(config).__name__}")
    return s, h, w


def generate_scene(
    seed: int, height: int, width: int, kind: str = "random", config: SceneConfig = DEFAULT_CONFIG
) -> SyntheticSample:
    """Render one procedural scene with numpy; the same arguments always give bit-identical output."""
    seed, height, width = _check_args(seed, height, width, kind, config)
    spec = _sample_scene(seed, height, width, kind, config)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rgb, depth = _render(spec, height, width, _NumpyOps())
    return SyntheticSample(
        rgb=np.rint(rgb * 255.0).astype(np.uint8),
        depth=depth.astype(np.float32, copy=False),
        intrinsics=spec.intrinsics,
        kind=spec.kind,
    )


def generate_batch(
    seeds: Sequence[int],
    height: int,
    width: int,
    device: str | torch.device = "cpu",
    kind: str = "random",
    config: SceneConfig = DEFAULT_CONFIG,
) -> SyntheticBatch:
    """Render several scenes with torch on ``device`` (the ray casting runs there); matches :func:`generate_scene`."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError("seeds must be a non-empty sequence of ints")
    checked = [_check_args(s, height, width, kind, config) for s in seeds]
    height, width = checked[0][1], checked[0][2]
    ops = _TorchOps(device)
    rgbs, depths, intrinsics, kinds = [], [], [], []
    for seed, _, _ in checked:
        spec = _sample_scene(seed, height, width, kind, config)
        rgb, depth = _render(spec, height, width, ops)
        rgbs.append(torch.round(rgb * 255.0).permute(2, 0, 1) / 255.0)
        depths.append(depth[None])
        intrinsics.append(spec.intrinsics)
        kinds.append(spec.kind)
    return SyntheticBatch(
        rgb=torch.stack(rgbs),
        depth=torch.stack(depths),
        intrinsics=torch.tensor(intrinsics, dtype=torch.float32, device=ops.device),
        kinds=tuple(kinds),
    )


class SyntheticDepthDataset(Dataset):
    """Map-style dataset of procedural scenes: item ``i`` is the scene of seed ``seed_offset + i``.

    Items are dicts {"rgb": float32 [3,H,W] in [0,1], "depth": float32 [1,H,W] metres, 0 = invalid}.
    """

    def __init__(
        self,
        length: int,
        height: int,
        width: int,
        seed_offset: int = 0,
        kind: str = "random",
        config: SceneConfig = DEFAULT_CONFIG,
    ) -> None:
        self.length = _check_int("length", length, 1)
        self.seed_offset = _check_int("seed_offset", seed_offset, 0)
        _, self.height, self.width = _check_args(0, height, width, kind, config)
        self.kind = kind
        self.config = config

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        s = generate_scene(self.seed_offset + int(index), self.height, self.width, self.kind, self.config)
        rgb = torch.from_numpy(s.rgb).permute(2, 0, 1).float().div_(255.0)
        return {"rgb": rgb.contiguous(), "depth": torch.from_numpy(s.depth)[None]}
