"""Surface attributes at hit points (normal, texture coordinates) and the procedural material textures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jarrn_deploy.model.synthetic.array_ops import Array, Ops
from jarrn_deploy.model.synthetic.scene import LATTICE_SIZE, Box, Cylinder, Material, Plane, Primitive


def surface(p: Primitive, pts: Sequence[Array], ops: Ops) -> tuple[list[Array], Array, Array]:
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


def padded_lattice(lattice: np.ndarray) -> np.ndarray:
    """Flattened (L+1)x(L+1) copy with wrapped last row/column, so the four corners need no modulo."""
    return np.pad(lattice, ((0, 1), (0, 1)), mode="wrap").reshape(-1)


def _value_noise(a: Array, b: Array, lattice: Array, ops: Ops) -> Array:
    """Smooth periodic value noise in [0,1] with one lattice cell per unit of (a, b); ``lattice`` is padded flat."""
    fa0, fb0 = ops.floor(a), ops.floor(b)
    fa, fb = a - fa0, b - fb0
    fa = fa * fa * (3.0 - 2.0 * fa)
    fb = fb * fb * (3.0 - 2.0 * fb)
    # The lattice side is a power of two, so `& (L - 1)` wraps negative indices too.
    idx = (ops.to_index(fa0) & (LATTICE_SIZE - 1)) * (LATTICE_SIZE + 1) + (ops.to_index(fb0) & (LATTICE_SIZE - 1))
    v00, v01 = lattice[idx], lattice[idx + 1]
    v10, v11 = lattice[idx + (LATTICE_SIZE + 1)], lattice[idx + (LATTICE_SIZE + 2)]
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


def material_albedo(m: Material, u: Array, v: Array, lattice: Array, ops: Ops) -> list[Array]:
    p = _pattern(m, u, v, lattice, ops)
    g = 1.0 + m.grain * (2.0 * _value_noise(u / m.grain_scale + 17.3, v / m.grain_scale + 5.1, lattice, ops) - 1.0)
    if p is None:
        return [g * m.base[i] for i in range(3)]
    return [(m.base[i] + (m.accent[i] - m.base[i]) * p) * g for i in range(3)]
