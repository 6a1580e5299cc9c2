"""Renderer: ray cast a :class:`SceneSpec` over the pixel grid and shade the hits (Lambert + ambient, sky, haze)."""

from __future__ import annotations

from collections.abc import Sequence

from jarrn_deploy.model.synthetic.array_ops import Array, Ops
from jarrn_deploy.model.synthetic.raycast import intersect, screen_window
from jarrn_deploy.model.synthetic.scene import SceneSpec
from jarrn_deploy.model.synthetic.textures import material_albedo, padded_lattice, surface


def render(spec: SceneSpec, h: int, w: int, ops: Ops) -> tuple[Array, Array]:
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
        win = screen_window(prim, spec, h, w)
        if win is None:
            continue
        sl = (slice(win[0], win[1]), slice(win[2], win[3]))
        t = intersect(prim, spec, win, [x[sl] for x in d], [x[sl] for x in inv], ops)
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
    lattice = ops.asarray(padded_lattice(spec.lattice))
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
        normal, u, v = surface(prim, pts, ops)
        albedo = material_albedo(prim.material, u, v, lattice, ops)
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
