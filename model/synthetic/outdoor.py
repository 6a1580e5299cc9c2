"""A random outdoor street: road, pavements, facades, vehicles, poles and trees under a sky with haze."""

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
    Vec3,
    rot_y,
    rot_z,
    vec3,
    world_to_local,
)
from jarrn_deploy.model.synthetic.scene_kit import camera_rotation, hsv, intrinsics, light_direction, pick, scaled, uniform, yaw_box


def sample_outdoor(rng: np.random.Generator, h: int, w: int, cfg: SceneConfig) -> SceneSpec:
    intr = intrinsics(rng, h, w, cfg)
    road = uniform(rng, 4.0, 9.0)  # half width of the carriageway
    walk = uniform(rng, 1.5, 4.0)
    cam = (uniform(rng, -road + 1.5, road - 1.5), uniform(rng, 1.3, 2.2), 0.0)
    rot = camera_rotation(math.radians(uniform(rng, -20, 20)), math.radians(uniform(rng, -3, 8)),
                          math.radians(uniform(rng, -3, 3)))

    asphalt = hsv(rng, (0, 1), (0, 0.08), (0.18, 0.35))
    line = (0.9, 0.9, 0.85) if rng.random() < 0.7 else (0.85, 0.7, 0.15)
    lane_w = road if rng.random() < 0.5 else road / 2
    prims: list[Primitive] = [
        Plane(
            (0.0, 1.0, 0.0),
            0.0,
            (1.0, 0.0, 0.0),
            (0.0, 0.0, 1.0),
            Material(asphalt, line, "lanes", (lane_w, uniform(rng, 4, 10)), 0.25, 0.04),
        ),
    ]
    pave = hsv(rng, (0, 1), (0, 0.15), (0.4, 0.7))
    s = uniform(rng, 0.3, 0.6)
    pave_mat = Material(pave, scaled(pave, 0.85), "checker", (s, s), 0.1, 0.03)
    for side in (-1.0, 1.0):
        prims.append(Box((side * (road + walk / 2), 0.075, 70.0), (walk / 2, 0.075, 90.0), None, pave_mat))
        prims.extend(_street_side(rng, side, road + walk))
    if rng.random() < 0.5:  # a building closing the street
        zc, half_h = uniform(rng, 45, 90), uniform(rng, 4, 15)
        prims.append(Box((0.0, half_h, zc + 10), (80.0, half_h, 10.0), None, _facade_material(rng)))
    for _ in range(int(rng.integers(0, 8))):
        prims.extend(_vehicle(rng, road, cam))
    for _ in range(int(rng.integers(2, 10))):
        prims.extend(_pole_or_tree(rng, road, walk))

    overcast = rng.random() < 0.3
    if overcast:
        grey = uniform(rng, 0.6, 0.85)
        sky = ((grey, grey, grey * 1.02), (grey * 0.85, grey * 0.87, grey * 0.92))
    else:
        sky = (hsv(rng, (0.55, 0.62), (0.1, 0.3), (0.8, 0.95)), hsv(rng, (0.57, 0.65), (0.4, 0.75), (0.6, 0.9)))
    return SceneSpec(
        kind="outdoor",
        intrinsics=intr,
        cam_pos=cam,
        cam_rot=rot,
        primitives=tuple(prims),
        light_dir=light_direction(rng, (15, 70)),
        light_colour=(1.0, 1.0, 1.0) if overcast else hsv(rng, (0.08, 0.14), (0.0, 0.2), (0.95, 1.0)),
        ambient=uniform(rng, *cfg.ambient_range) + (0.2 if overcast else 0.0),
        sky=(vec3(sky[0]), vec3(sky[1])),
        fog_distance=uniform(rng, 120, 400),
        depth_range=cfg.outdoor_depth_range,
        lattice=rng.random((LATTICE_SIZE, LATTICE_SIZE), dtype=np.float32),
    )


def _facade_material(rng: np.random.Generator) -> Material:
    style = pick(rng, ("brick", "plaster", "concrete", "glass"), (3, 3, 2, 1))
    if style == "brick":
        base = hsv(rng, (0.0, 0.07), (0.4, 0.75), (0.3, 0.6))
    elif style == "plaster":
        base = hsv(rng, (0.05, 0.17), (0.1, 0.4), (0.6, 0.95))
    elif style == "concrete":
        base = hsv(rng, (0, 1), (0.0, 0.08), (0.4, 0.75))
    else:
        base = hsv(rng, (0.5, 0.62), (0.2, 0.5), (0.3, 0.6))
    if rng.random() < 0.7:  # dark glass
        glass = hsv(rng, (0.55, 0.65), (0.1, 0.4), (0.08, 0.35))
    else:  # reflective glass
        glass = hsv(rng, (0.5, 0.6), (0.1, 0.3), (0.6, 0.85))
    cell = (uniform(rng, 1.5, 3.5), uniform(rng, 2.8, 3.6))
    return Material(base, glass, "windows", cell, uniform(rng, 0.03, 0.12), 0.1)


def _street_side(rng: np.random.Generator, side: float, edge: float) -> list[Primitive]:
    """A row of buildings along z on one side of the street, starting ``edge`` metres from the centre line."""
    out: list[Primitive] = []
    z = uniform(rng, -20, -5)
    while z < 130:
        length = uniform(rng, 6, 25)
        if rng.random() < 0.12:  # gap between buildings
            z += uniform(rng, 3, 12)
            continue
        setback = 0.0 if rng.random() < 0.5 else uniform(rng, 0.5, 6.0)
        depth, height = uniform(rng, 8, 20), uniform(rng, 4, 35)
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
    length, width = uniform(rng, 3.8, 5.0), uniform(rng, 1.7, 2.0)
    x = uniform(rng, -road + width / 2 + 0.2, road - width / 2 - 0.2)
    z = uniform(rng, 5, 70)
    if math.hypot(x - cam[0], z - cam[2]) < length / 2 + 4:
        return []
    yaw = uniform(rng, -0.15, 0.15) + (math.pi if rng.random() < 0.3 else 0.0)
    body_h = uniform(rng, 0.7, 0.95)
    lift = 0.3
    r = rot_y(yaw)
    paint = hsv(rng, (0, 1), (0.0, 0.9), (0.15, 0.9))
    body = Material(paint, paint, "plain", grain=0.02)
    glass = Material(hsv(rng, (0.55, 0.65), (0.1, 0.3), (0.1, 0.3)), (0, 0, 0), "plain", grain=0.02)
    cab_len, cab_h = length * uniform(rng, 0.45, 0.6), uniform(rng, 0.45, 0.65)
    cab_off = r @ np.array([0.0, 0.0, uniform(rng, -0.4, 0.1)])
    parts: list[Primitive] = [
        yaw_box((x, lift + body_h / 2, z), (width / 2, body_h / 2, length / 2), yaw, body),
        yaw_box(
            (x + cab_off[0], lift + body_h + cab_h / 2, z + cab_off[2]),
            (width / 2 - 0.08, cab_h / 2, cab_len / 2),
            yaw,
            glass,
        ),
    ]
    tyre = Material((0.05, 0.05, 0.05), (0.1, 0.1, 0.1), "plain", grain=0.02)
    wheel_rot = world_to_local(r @ rot_z(-math.pi / 2))
    for sx in (-1, 1):
        for sz in (-1, 1):
            off = r @ np.array([sx * (width / 2 - 0.1), 0.0, sz * (length / 2 - 0.8)])
            parts.append(Cylinder((x + off[0], 0.32, z + off[2]), 0.32, 0.12, wheel_rot, tyre))
    return parts


def _pole_or_tree(rng: np.random.Generator, road: float, walk: float) -> list[Primitive]:
    side = 1.0 if rng.random() < 0.5 else -1.0
    z = uniform(rng, 3, 80)
    if rng.random() < 0.45:  # tree on the sidewalk
        x = side * (road + uniform(rng, 0.5, max(0.6, walk - 0.5)))
        trunk_h, crown = uniform(rng, 1.5, 3.5), uniform(rng, 1.0, 2.5)
        bark_colour = hsv(rng, (0.05, 0.1), (0.3, 0.6), (0.15, 0.35))
        bark = Material(bark_colour, (0.1, 0.07, 0.05), "noise", (0.1, 0.3), 0.1, 0.05)
        leaf = hsv(rng, (0.2, 0.35), (0.4, 0.8), (0.2, 0.5))
        foliage = Material(leaf, scaled(leaf, 0.5), "noise", (0.25, 0.25), 0.2, 0.05)
        return [
            Cylinder((x, trunk_h / 2, z), uniform(rng, 0.1, 0.25), trunk_h / 2, None, bark),
            Sphere((x, trunk_h + crown * 0.7, z), crown, foliage),
        ]
    x = side * (road + uniform(rng, 0.2, 0.6))
    hgt = uniform(rng, 3.0, 8.0)
    metal = Material(hsv(rng, (0, 1), (0, 0.3), (0.15, 0.6)), (0.2, 0.2, 0.2), "plain", grain=0.03)
    parts: list[Primitive] = [Cylinder((x, hgt / 2, z), uniform(rng, 0.05, 0.15), hgt / 2, None, metal)]
    if rng.random() < 0.5:  # sign or lamp head
        sign = Material(hsv(rng, (0, 1), (0.5, 1.0), (0.5, 1.0)), (1, 1, 1), "plain", grain=0.02)
        parts.append(Box((x - side * 0.4, hgt - 0.4, z), (0.45, 0.3, 0.03), None, sign))
    return parts
