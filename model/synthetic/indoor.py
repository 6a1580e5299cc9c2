"""A random indoor room: floor, walls and ceiling with furniture, shelves and clutter."""

from __future__ import annotations

import math

import numpy as np

from jarrn_deploy.model.synthetic.config import SceneConfig
from jarrn_deploy.model.synthetic.scene import (
    Box,
    Cylinder,
    LATTICE_SIZE,
    Material,
    Plane,
    Primitive,
    SceneSpec,
    Sphere,
    rot_y,
    vec3,
)
from jarrn_deploy.model.synthetic.scene_kit import (
    Placer,
    axis_plane,
    camera_rotation,
    hsv,
    intrinsics,
    light_direction,
    pick,
    random_material,
    scaled,
    uniform,
    yaw_box,
)


def sample_indoor(rng: np.random.Generator, h: int, w: int, cfg: SceneConfig) -> SceneSpec:
    intr = intrinsics(rng, h, w, cfg)
    rw, rd, rh = uniform(rng, 3.0, 7.0), uniform(rng, 4.0, 9.0), uniform(rng, 2.4, 3.3)
    x0, x1 = -rw / 2, rw / 2
    cam = (uniform(rng, x0 + 0.6, x1 - 0.6), uniform(rng, 1.0, min(1.8, rh - 0.5)), uniform(rng, 0.3, 0.3 * rd))
    rot = camera_rotation(math.radians(uniform(rng, -30, 30)), math.radians(uniform(rng, -5, 22)),
                          math.radians(uniform(rng, -3, 3)))

    wall = _wall_material(rng)
    prims: list[Primitive] = [
        axis_plane((0, 1, 0), 0.0, _floor_material(rng)),
        axis_plane((0, -1, 0), -rh, Material(hsv(rng, (0, 1), (0, 0.1), (0.75, 0.95)), (1, 1, 1), "plain")),
    ]
    for normal, off in (((1, 0, 0), x0), ((-1, 0, 0), -x1), ((0, 0, 1), 0.0), ((0, 0, -1), -rd)):
        prims.append(axis_plane(normal, off, wall if rng.random() < 0.75 else _wall_material(rng)))
    if rng.random() < 0.35:  # attic: a slanted ceiling cutting one side of the room
        side = 1.0 if rng.random() < 0.5 else -1.0
        a = math.radians(uniform(rng, 25, 50))
        n = (-side * math.sin(a), -math.cos(a), 0.0)
        anchor = (side * rw / 2, rh * uniform(rng, 0.5, 0.8), 0.0)
        off = sum(n[i] * anchor[i] for i in range(3))
        if sum(n[i] * cam[i] for i in range(3)) - off > 0.4:
            prims.append(Plane(n, off, (0.0, 0.0, 1.0), vec3(np.cross(n, (0.0, 0.0, 1.0))), prims[1].material))

    placer = Placer(rng, cam, (x0, x1), (0.0, rd))
    for _ in range(int(rng.integers(4, 11))):
        kind = pick(
            rng, ("cabinet", "table", "cylinder", "ball", "picture", "lamp", "slab"), (3, 2, 2, 1.5, 1.5, 1, 1)
        )
        prims.extend(_furniture(rng, kind, placer, (x0, x1, rd, rh)))
    return SceneSpec(
        kind="indoor",
        intrinsics=intr,
        cam_pos=cam,
        cam_rot=rot,
        primitives=tuple(prims),
        light_dir=light_direction(rng, (35, 80)),
        light_colour=hsv(rng, (0.05, 0.15), (0.0, 0.25), (0.95, 1.0)),
        ambient=uniform(rng, *cfg.ambient_range),
        sky=None,
        fog_distance=None,
        depth_range=cfg.indoor_depth_range,
        lattice=rng.random((LATTICE_SIZE, LATTICE_SIZE), dtype=np.float32),
    )


def _wall_material(rng: np.random.Generator) -> Material:
    base = hsv(rng, (0, 1), (0.03, 0.35), (0.6, 0.95))
    pattern = pick(rng, ("plain", "noise", "stripes", "bricks", "checker"), (3, 2.5, 2, 1.5, 0.5))
    if pattern == "bricks":
        return Material(
            hsv(rng, (0.0, 0.08), (0.4, 0.7), (0.4, 0.7)),
            hsv(rng, (0, 1), (0, 0.1), (0.7, 0.9)),
            "bricks",
            (0.24, 0.075),
            0.1,
            0.03,
        )
    accent = scaled(base, uniform(rng, 0.7, 0.92))
    s = uniform(rng, 0.05, 0.3) if pattern != "noise" else uniform(rng, 0.2, 1.0)
    return Material(base, accent, pattern, (s, s), uniform(rng, 0.01, 0.06), 0.05)


def _floor_material(rng: np.random.Generator) -> Material:
    pattern = pick(rng, ("planks", "checker", "noise"), (4, 3, 3))
    if pattern == "planks":
        base = hsv(rng, (0.04, 0.11), (0.35, 0.75), (0.3, 0.75))
        planks = (uniform(rng, 0.6, 1.5), uniform(rng, 0.1, 0.25))
        return Material(base, scaled(base, 0.55), "planks", planks, 0.12, 0.02)
    if pattern == "checker":
        base = hsv(rng, (0, 1), (0, 0.4), (0.5, 0.95))
        accent = hsv(rng, (0, 1), (0, 0.5), (0.1, 0.5))
        s = uniform(rng, 0.25, 0.6)
        return Material(base, accent, "checker", (s, s), 0.04, 0.05)
    base = hsv(rng, (0, 1), (0.1, 0.6), (0.2, 0.7))
    return Material(base, scaled(base, 0.7), "noise", (0.15, 0.15), 0.15, 0.01)


def _furniture(
    rng: np.random.Generator, kind: str, placer: Placer, room: tuple[float, float, float, float]
) -> list[Primitive]:
    x0, x1, rd, rh = room
    mat = random_material(rng)
    if kind == "picture":  # thin panel on a side or back wall
        wdt, hgt = uniform(rng, 0.3, 1.4), uniform(rng, 0.3, 1.0)
        y = uniform(rng, 1.0, max(1.1, rh - hgt / 2 - 0.2))
        if rng.random() < 0.5:
            side = x0 if rng.random() < 0.5 else x1
            c = (side + (0.02 if side == x0 else -0.02), y, uniform(rng, 0.5, rd - 0.5))
            return [Box(c, (0.02, hgt / 2, wdt / 2), None, mat)]
        return [Box((uniform(rng, x0 + 0.5, x1 - 0.5), y, rd - 0.02), (wdt / 2, hgt / 2, 0.02), None, mat)]
    if kind == "cabinet":
        half = (uniform(rng, 0.2, 0.9), uniform(rng, 0.2, 1.0), uniform(rng, 0.15, 0.4))
        spot = placer.spot(math.hypot(half[0], half[2]), 0.9)
        if spot is None:
            return []
        return [yaw_box((spot[0], half[1], spot[1]), half, uniform(rng, -math.pi, math.pi), mat)]
    if kind == "slab":  # a board leaning at an angle: slanted surfaces
        half = (uniform(rng, 0.3, 0.8), uniform(rng, 0.4, 1.0), uniform(rng, 0.02, 0.1))
        spot = placer.spot(max(half[0], half[1]), 0.9)
        if spot is None:
            return []
        tilt = math.radians(uniform(rng, 10, 50))
        return [yaw_box((spot[0], half[1] * math.cos(tilt), spot[1]), half, uniform(rng, -math.pi, math.pi), mat, tilt)]
    if kind == "table":
        hx, hz, top = uniform(rng, 0.3, 0.8), uniform(rng, 0.25, 0.5), uniform(rng, 0.65, 0.8)
        spot = placer.spot(math.hypot(hx, hz), 0.9)
        if spot is None:
            return []
        yaw = uniform(rng, -math.pi, math.pi)
        r = rot_y(yaw)
        parts: list[Primitive] = [yaw_box((spot[0], top, spot[1]), (hx, 0.025, hz), yaw, mat)]
        leg_mat = mat if rng.random() < 0.5 else random_material(rng)
        for sx in (-1, 1):
            for sz in (-1, 1):
                off = r @ np.array([sx * (hx - 0.05), 0.0, sz * (hz - 0.05)])
                leg = (spot[0] + off[0], top / 2, spot[1] + off[2])
                parts.append(yaw_box(leg, (0.025, top / 2, 0.025), yaw, leg_mat))
        if rng.random() < 0.4:
            rad = uniform(rng, 0.06, 0.15)
            parts.append(Sphere((spot[0], top + 0.025 + rad, spot[1]), rad, random_material(rng)))
        return parts
    if kind == "cylinder":
        pillar = rng.random() < 0.25
        rad = uniform(rng, 0.1, 0.35)
        hh = rh / 2 if pillar else uniform(rng, 0.15, 0.6)
        spot = placer.spot(rad, 0.9)
        return [] if spot is None else [Cylinder((spot[0], hh, spot[1]), rad, hh, None, mat)]
    if kind == "ball":
        rad = uniform(rng, 0.1, 0.45)
        spot = placer.spot(rad, 0.9)
        return [] if spot is None else [Sphere((spot[0], rad, spot[1]), rad, mat)]
    # lamp: thin pole with a shade
    hh = uniform(rng, 0.6, 0.9)
    spot = placer.spot(0.25, 0.9)
    if spot is None:
        return []
    shade = Material(hsv(rng, (0.05, 0.15), (0.1, 0.5), (0.7, 1.0)), (1, 1, 1), "plain", grain=0.02)
    return [
        Cylinder((spot[0], hh, spot[1]), 0.02, hh, None, Material((0.15, 0.15, 0.15), (0.3, 0.3, 0.3))),
        Cylinder((spot[0], 2 * hh + 0.1, spot[1]), uniform(rng, 0.12, 0.25), 0.12, None, shade),
    ]
