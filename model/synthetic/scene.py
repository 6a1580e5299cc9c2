"""Scene description (primitives, materials, camera, light) and the small vector helpers that build it.

Conventions: camera frame x right, y down, z forward (OpenCV); world frame y up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LATTICE_SIZE = 64
"""Side of the square value-noise lattice shared by a scene's textures (a power of two)."""

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]


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


def vec3(a: Sequence[float]) -> Vec3:
    return (float(a[0]), float(a[1]), float(a[2]))


def mat3(m: np.ndarray) -> Mat3:
    return (vec3(m[0]), vec3(m[1]), vec3(m[2]))


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def world_to_local(local_to_world: np.ndarray) -> Mat3:
    return mat3(local_to_world.T)
