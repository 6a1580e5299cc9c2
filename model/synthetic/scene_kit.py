"""Building blocks of the scene samplers: random draws, colours, camera intrinsics and pose, light, materials,
planes, boxes and a floor placer that keeps objects clear of the camera."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np

from jarrn_deploy.model.synthetic.config import SceneConfig
from jarrn_deploy.model.synthetic.scene import Box, Mat3, Material, Plane, Vec3, mat3, rot_x, rot_y, rot_z, vec3, world_to_local


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def hsv(
    rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]
) -> Vec3:
    return vec3(colorsys.hsv_to_rgb(uniform(rng, *hue) % 1.0, uniform(rng, *sat), uniform(rng, *val)))


def scaled(c: Vec3, f: float) -> Vec3:
    return (min(c[0] * f, 1.0), min(c[1] * f, 1.0), min(c[2] * f, 1.0))


def pick(rng: np.random.Generator, options: Sequence[str], weights: Sequence[float]) -> str:
    p = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def intrinsics(rng: np.random.Generator, h: int, w: int, cfg: SceneConfig) -> tuple[float, float, float, float]:
    hfov = math.radians(uniform(rng, *cfg.hfov_deg_range))
    fx = (w / 2.0) / math.tan(hfov / 2.0)
    fy = fx * (1.0 + uniform(rng, -cfg.focal_aspect_jitter, cfg.focal_aspect_jitter))
    cx = (w - 1) / 2.0 + uniform(rng, -1, 1) * cfg.principal_point_jitter * w
    cy = (h - 1) / 2.0 + uniform(rng, -1, 1) * cfg.principal_point_jitter * h
    return (fx, fy, cx, cy)


def camera_rotation(yaw: float, pitch_down: float, roll: float) -> Mat3:
    flip = np.diag([1.0, -1.0, 1.0])  # camera y points down, world y up
    return mat3(rot_y(yaw) @ rot_x(pitch_down) @ rot_z(roll) @ flip)


def light_direction(rng: np.random.Generator, elevation_deg: tuple[float, float]) -> Vec3:
    el = math.radians(uniform(rng, *elevation_deg))
    az = uniform(rng, 0.0, 2.0 * math.pi)
    return (math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az))


def random_material(rng: np.random.Generator, colour: Vec3 | None = None) -> Material:
    """Generic object material: random colour, random pattern."""
    base = colour if colour is not None else hsv(rng, (0, 1), (0.15, 0.9), (0.25, 0.95))
    pattern = pick(rng, ("plain", "noise", "stripes", "checker"), (0.45, 0.25, 0.15, 0.15))
    accent = scaled(base, uniform(rng, 0.45, 0.8)) if rng.random() < 0.6 else hsv(rng, (0, 1), (0, 0.8), (0.2, 1.0))
    s = uniform(rng, 0.05, 0.4)
    cell = (s, s * uniform(rng, 0.7, 1.5))
    return Material(base, accent, pattern, cell, uniform(rng, 0.02, 0.12), uniform(rng, 0.01, 0.08))


def axis_plane(normal: Vec3, offset: float, material: Material) -> Plane:
    n = np.asarray(normal, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0]) if abs(n[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    tu = np.cross(up, n)
    tu /= np.linalg.norm(tu)
    tv = np.cross(n, tu)
    return Plane(vec3(n), float(offset), vec3(tu), vec3(tv), material)


class Placer:
    """Draws floor positions that keep a clearance from the camera and stay inside given bounds."""

    def __init__(self, rng: np.random.Generator, cam: Vec3, x: tuple[float, float], z: tuple[float, float]):
        self.rng, self.cam, self.x, self.z = rng, cam, x, z

    def spot(self, radius: float, clearance: float) -> tuple[float, float] | None:
        for _ in range(12):
            x = uniform(self.rng, self.x[0] + radius, self.x[1] - radius)
            z = uniform(self.rng, self.z[0] + radius, self.z[1] - radius)
            if math.hypot(x - self.cam[0], z - self.cam[2]) > radius + clearance and z > self.cam[2] - 0.5:
                return x, z
        return None


def yaw_box(center: Vec3, half: Vec3, yaw: float, material: Material, tilt: float = 0.0) -> Box:
    return Box(center, half, world_to_local(rot_y(yaw) @ rot_x(tilt)) if (yaw or tilt) else None, material)
