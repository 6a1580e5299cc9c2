"""Depth pictures, the one place that draws them: the depth colour map, colour bars in metres, point dilation and the
panels written by inference, evaluation and the benchmark.

Torch-free (numpy, matplotlib, pillow), so every floor may import it: the runtime's preview panel
(:func:`make_panel`, :func:`depth_with_colorbar`, drawn with Pillow) and the report panels
(:func:`tile_grid_png`, drawn with matplotlib) share one colour map, one display range and one point dilation.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEPTH_CMAP = "turbo"
"""Colour map of depth pictures: near = blue (low end), far = red, over :data:`DEPTH_SPAN` of it."""
DEPTH_SPAN = (0.1, 0.95)
"""The part of turbo depth is drawn with: its first tenth runs to near-black (48, 18, 59), which near depth (a road 5 m
ahead) would share with the black of "no depth"; the map starts at a clear blue instead."""
NO_DEPTH_RGB = (0, 0, 0)
"""Colour of pixels without depth: black, which is not on the map (see :data:`DEPTH_SPAN`)."""
FAR_RADIUS_PX = 24
"""A completed-depth pixel with no sparse point within this many pixels (of the input frame) is drawn faded: its
depth is an extrapolation, e.g. the sky above a LiDAR's top beam, not a measurement nearby."""
FAR_FADE = 0.6
"""How far a faded pixel is blended towards white (0 = not at all, 1 = white)."""
MAX_TILE_SIDE = 900
"""Longest side of a tile in :func:`make_panel`; larger frames are scaled down."""
_BG = (255, 255, 255)
_FG = (20, 20, 20)


# ---------------------------------------------------------------------------------------------------------------------
# colour map, display range, point dilation


def colorize_depth(
    depth_m: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    *,
    cmap: str = DEPTH_CMAP,
) -> np.ndarray:
    """Colour a depth map (metres, HxW) as uint8 HxWx3; invalid pixels (<= 0, nan) are black (:data:`NO_DEPTH_RGB`).

    The range defaults to the min / max of the valid pixels; near = low end of the colour map, drawn over
    :data:`DEPTH_SPAN` for the depth map (other maps whole).
    """
    from matplotlib import colormaps

    d = np.asarray(depth_m, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth_m must be a 2-D HxW depth map, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape + (3,), dtype=np.uint8)
    if not valid.any():
        return out
    lo = float(d[valid].min()) if vmin is None else float(vmin)
    hi = float(d[valid].max()) if vmax is None else float(vmax)
    if not hi >= lo:
        raise ValueError(f"vmax must be >= vmin, got vmin={lo}, vmax={hi}")
    normed = np.clip((d[valid] - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    start, end = DEPTH_SPAN if cmap == DEPTH_CMAP else (0.0, 1.0)
    out[valid] = colormaps[cmap](start + normed * (end - start), bytes=True)[:, :3]
    return out


def far_from_points(sparse_m: np.ndarray, radius_px: float) -> np.ndarray:
    """Boolean HxW mask of the pixels with no sparse point (> 0) within ``radius_px`` pixels (Euclidean distance to
    the nearest point centre); all True when there is no point at all."""
    from scipy.ndimage import distance_transform_edt

    points = np.isfinite(sparse_m) & (sparse_m > 0)
    if not points.any():
        return np.ones(np.shape(sparse_m), dtype=bool)
    return distance_transform_edt(~points) > radius_px


def fade(image: np.ndarray, mask: np.ndarray, amount: float = FAR_FADE) -> np.ndarray:
    """``image`` (uint8 HxWx3) with the ``mask`` pixels blended ``amount`` of the way to white."""
    out = image.copy()
    out[mask] = np.round(image[mask] * (1.0 - amount) + 255.0 * amount).astype(np.uint8)
    return out


def depth_legend(*, holes: bool, far_radius_px: float | None, shared: bool = False,
                 beyond_scale: tuple[float, float] | None = None) -> str:
    """The line under a depth picture, true for that picture: black is explained only where there are pixels without
    depth, the faded look only where some were faded (``far_radius_px``; None when none were), the full depth span
    only where it reaches past the colour bar's ends (``beyond_scale``: the depth's min and max; None when inside)."""
    parts = ["depth (m)" + (", colour scale shared by the sparse input and the completed depth" if shared else "")]
    if holes:
        parts.append("black = no depth")
    if far_radius_px is not None:
        parts.append(f"faded = no sparse point within {far_radius_px:g} px")
    if beyond_scale is not None:
        parts.append(f"depth spans {beyond_scale[0]:.1f}-{beyond_scale[1]:.1f} m, colours stop at the bar's ends")
    return "; ".join(parts)


def span_beyond(depth_m: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
    """(min, max) of the valid depth when it reaches past the colour range ``lo``..``hi`` by 0.05 m or more."""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return None
    low, high = float(valid.min()), float(valid.max())
    return (low, high) if low < lo - 0.05 or high > hi + 0.05 else None


def display_range(depth_m: np.ndarray) -> tuple[float, float]:
    """Robust colour range (1st to 99th percentile of valid pixels), so a few outliers do not flatten the image."""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(valid, [1, 99]))
    return (lo, hi) if hi > lo else (lo, lo + 1e-3)


def dilate_points(sparse_m: np.ndarray, size: int) -> np.ndarray:
    """Grow each sparse point to a ``size`` x ``size`` square (nearer point wins) so it stays visible when scaled."""
    if size <= 1:
        return sparse_m
    from scipy.ndimage import minimum_filter

    far = np.where(sparse_m > 0, sparse_m, np.inf)
    grown = minimum_filter(far, size=size, mode="constant", cval=np.inf)
    return np.where(np.isfinite(grown), grown, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Pillow pictures: colour bar, single depth map, RGB | sparse | depth panel


def _font(size: int) -> ImageFont.ImageFont:
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # noqa: BLE001 - any font will do
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 x 10^k) giving at most six ticks over ``span``."""
    step = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 1.0
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            return step * mult
    return step * 10


def _end_label(value: float, span: float) -> str:
    """An end of the colour bar with one decimal, more for a narrow range (5.3 and 78.3 m; 1.204 and 1.206 m)."""
    decimals = 1 if span <= 0 else min(4, max(1, 1 - math.floor(math.log10(span))))
    return f"{value:.{decimals}f}"


def colorbar_labels(lo: float, hi: float, length: int, text_width: Any, gap: int = 6) -> list[tuple[float, str]]:
    """(x, text) of the colour bar's labels along a ramp of ``length`` pixels: both ends, with the exact values
    (the left one starts at 0, the right one ends at ``length``), and the round ticks in between whose labels fit
    without touching them or each other. ``text_width(text)`` is the drawn width of a label in pixels."""
    span = hi - lo
    left, right = _end_label(lo, span), _end_label(hi, span)
    labels = [(0.0, left)]
    taken = [(0.0, text_width(left)), (length - text_width(right), float(length))]
    if span > 0:
        step = _tick_step(span)
        value = math.ceil(lo / step) * step
        while value < hi - 1e-9:
            x = (value - lo) / span * (length - 1)
            label = f"{value:g}"
            box = (x - text_width(label) / 2, x + text_width(label) / 2)
            if all(box[1] + gap <= a or box[0] - gap >= b for a, b in taken):
                labels.append((x, label))
                taken.append(box)
            value += step
    labels.append((float(length), right))
    return labels


def _colorbar(width: int, lo: float, hi: float, font: ImageFont.ImageFont, pad: int) -> Image.Image:
    """A horizontal ramp of the depth colour map from ``lo`` to ``hi`` metres, its ends labelled with their values
    and round-number ticks between them (:func:`colorbar_labels`)."""
    bar_h, tick_h = 16, 6
    length = max(width - 2 * pad, 2)
    ramp = np.linspace(lo, hi, length, dtype=np.float64)[None].repeat(bar_h, 0)
    colours = colorize_depth(np.maximum(ramp, 1e-6), lo if lo > 0 else 1e-6, hi)
    text_h = font.getbbox("0")[3] + 4
    canvas = Image.new("RGB", (width, bar_h + tick_h + text_h + pad), _BG)
    canvas.paste(Image.fromarray(colours), (pad, 0))
    draw = ImageDraw.Draw(canvas)
    labels = colorbar_labels(lo, hi, length, lambda text: draw.textlength(text, font=font))
    for index, (x, label) in enumerate(labels):
        tw = draw.textlength(label, font=font)
        tick_x = pad + min(int(round(x)), length - 1)
        draw.line([(tick_x, bar_h), (tick_x, bar_h + tick_h)], fill=_FG, width=2 if index in (0, len(labels) - 1) else 1)
        text_x = pad if index == 0 else pad + length - tw if index == len(labels) - 1 else pad + x - tw / 2
        draw.text((text_x, bar_h + tick_h), label, fill=_FG, font=font)
    return canvas


def _valid(depth_m: np.ndarray) -> np.ndarray:
    return np.isfinite(depth_m) & (depth_m > 0)


def _depth_picture(depth_m: np.ndarray, lo: float, hi: float, sparse_m: np.ndarray | None,
                   far_radius_px: float | None) -> tuple[np.ndarray, bool]:
    """The coloured depth map, faded where no sparse point is within ``far_radius_px``; and whether any pixel was."""
    image = colorize_depth(depth_m, lo, hi)
    if sparse_m is None or far_radius_px is None:
        return image, False
    far = far_from_points(sparse_m, far_radius_px) & _valid(depth_m)
    return (fade(image, far), True) if far.any() else (image, False)


def _legend_lines(legend: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """``legend``'s "; "-separated parts on as few lines of ``width`` pixels as they fit (each line shortened if a
    single part is too long)."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for part in legend.split("; "):
        joined = f"{lines[-1]}; {part}" if lines else part
        if lines and draw.textlength(joined, font=font) <= width:
            lines[-1] = joined
        else:
            lines.append(part)
    return [_fit_text(draw, line, font, width) for line in lines]


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text``, shortened in the middle with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        shorter = text[: keep // 2] + "\u2026" + text[len(text) - (keep - keep // 2):]
        if draw.textlength(shorter, font=font) <= width:
            return shorter
    return text[:4]


def make_panel(
    rgb: np.ndarray,
    sparse_m: np.ndarray,
    depth_m: np.ndarray,
    *,
    titles: tuple[str, str, str] = ("RGB", "sparse input", "completed depth"),
    layout: str = "auto",
    caption: str | None = None,
    far_radius_px: float | None = FAR_RADIUS_PX,
) -> np.ndarray:
    """uint8 panel image: RGB | sparse input | completed depth (same colour scale), titles above, colour bar below
    with both ends labelled, and a legend line true for the picture (:func:`depth_legend`).

    ``caption``: a line above the tiles, e.g. which backend, precision and model file made the depth.
    ``far_radius_px``: completed-depth pixels with no sparse point within this many input pixels are drawn faded
    (:func:`far_from_points`); None draws every pixel alike.

    ``layout``: "row" (side by side), "column" (stacked) or "auto" (side by side unless the images are wider than
    2:1, e.g. KITTI's 1242x375, which are stacked so the panel stays readable).
    """
    height, width = depth_m.shape
    if layout == "auto":
        layout = "column" if width > 2 * height else "row"
    if layout not in ("row", "column"):
        raise ValueError(f"layout: expected 'row', 'column' or 'auto', got {layout!r}")
    scale = min(1.0, MAX_TILE_SIDE / max(height, width))
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    lo, hi = display_range(depth_m)
    density = float((sparse_m > 0).mean()) if sparse_m.size else 0.0
    grow = max(1, int(math.ceil((2 if density > 0.01 else 4) / scale))) | 1  # isolated points drawn larger
    shown_sparse = dilate_points(sparse_m, grow)
    depth_rgb, faded = _depth_picture(depth_m, lo, hi, sparse_m, far_radius_px)
    holes = bool((shown_sparse <= 0).any() or not _valid(depth_m).all())
    tiles = [
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)),
        Image.fromarray(colorize_depth(shown_sparse, lo, hi)),
        Image.fromarray(depth_rgb),
    ]
    tiles = [t.resize((tile_w, tile_h), Image.Resampling.BILINEAR) if scale < 1 else t for t in tiles]

    font_size = max(14, min(26, tile_w // 28))
    font, small = _font(font_size), _font(max(12, font_size - 4))
    pad, title_h = 10, font_size + 14
    cols, rows = (3, 1) if layout == "row" else (1, 3)
    panel_w = cols * tile_w + (cols + 1) * pad
    bar = _colorbar(min(panel_w, max(480, tile_w)), lo, hi, small, pad)
    legend = _legend_lines(depth_legend(holes=holes, far_radius_px=far_radius_px if faded else None, shared=True,
                                        beyond_scale=span_beyond(depth_m, lo, hi)),
                           small, panel_w - 2 * pad)
    line_h = font_size + 4
    unit_h = len(legend) * line_h + 4
    caption_h = title_h if caption else 0
    panel_h = caption_h + rows * (tile_h + title_h) + (rows + 1) * pad + unit_h + bar.height
    canvas = Image.new("RGB", (panel_w, panel_h), _BG)
    draw = ImageDraw.Draw(canvas)
    if caption:
        caption = _fit_text(draw, caption, font, panel_w - 2 * pad)
        draw.text(((panel_w - draw.textlength(caption, font=font)) / 2, pad), caption, fill=_FG, font=font)
    for i, (tile, title) in enumerate(zip(tiles, titles)):
        col, row = (i, 0) if layout == "row" else (0, i)
        x = pad + col * (tile_w + pad)
        y = caption_h + pad + row * (tile_h + title_h + pad)
        title = _fit_text(draw, title, font, tile_w)
        draw.text((x + (tile_w - draw.textlength(title, font=font)) / 2, y + 2), title, fill=_FG, font=font)
        canvas.paste(tile, (x, y + title_h))
    bar_x = (panel_w - bar.width) // 2
    bar_y = panel_h - bar.height - unit_h
    for index, line in enumerate(legend):
        draw.text(((panel_w - draw.textlength(line, font=small)) / 2, bar_y + index * line_h), line, fill=_FG, font=small)
    canvas.paste(bar, (bar_x, bar_y + unit_h))
    return np.asarray(canvas)


def depth_with_colorbar(
    depth_m: np.ndarray,
    *,
    title: str | None = None,
    value_range: tuple[float, float] | None = None,
    sparse_m: np.ndarray | None = None,
    far_radius_px: float | None = FAR_RADIUS_PX,
) -> np.ndarray:
    """uint8 image of a depth map in the depth colour map (near = blue, no depth = black), a title above, a colour
    bar in metres below with both ends labelled, and a legend line true for the picture (:func:`depth_legend`).

    ``value_range`` (metres) defaults to :func:`display_range`. With ``sparse_m`` (the input points), pixels with no
    point within ``far_radius_px`` are drawn faded, as in :func:`make_panel`.
    """
    lo, hi = value_range if value_range is not None else display_range(depth_m)
    height, width = depth_m.shape
    depth_rgb, faded = _depth_picture(depth_m, lo, hi, sparse_m, far_radius_px)
    image = Image.fromarray(depth_rgb)
    font_size = max(14, min(26, width // 40))
    font, small = _font(font_size), _font(max(12, font_size - 4))
    pad = 10
    title_h = font_size + 14 if title else 0
    canvas_w = max(width + 2 * pad, 360)
    bar = _colorbar(min(canvas_w, max(360, width)), lo, hi, small, pad)
    legend = _legend_lines(depth_legend(holes=not _valid(depth_m).all(), far_radius_px=far_radius_px if faded else None,
                                        beyond_scale=span_beyond(depth_m, lo, hi)),
                           small, canvas_w - 2 * pad)
    line_h = font_size + 4
    unit_h = len(legend) * line_h + 4
    canvas = Image.new("RGB", (canvas_w, title_h + height + 2 * pad + unit_h + bar.height), _BG)
    draw = ImageDraw.Draw(canvas)
    if title:
        title = _fit_text(draw, title, font, canvas_w - 2 * pad)
        draw.text(((canvas_w - draw.textlength(title, font=font)) / 2, pad), title, fill=_FG, font=font)
    canvas.paste(image, ((canvas_w - width) // 2, title_h + pad))
    bar_y = title_h + height + 2 * pad
    for index, line in enumerate(legend):
        draw.text(((canvas_w - draw.textlength(line, font=small)) / 2, bar_y + index * line_h), line, fill=_FG,
                  font=small)
    canvas.paste(bar, ((canvas_w - bar.width) // 2, bar_y + unit_h))
    return np.asarray(canvas)


# ---------------------------------------------------------------------------------------------------------------------
# matplotlib pictures: report panels (a grid of tiles, each with its own labelled colour bar)


@dataclass(frozen=True)
class Tile:
    """One picture of a :func:`tile_grid_png` panel."""

    title: str
    """Text above the picture."""
    image: np.ndarray
    """HxWx3 RGB, or HxW values coloured with ``cmap`` (nan / masked pixels are black)."""
    cmap: str | None = None
    """matplotlib colour map name; None for an RGB image (no colour bar)."""
    value_range: tuple[float, float] = (0.0, 1.0)
    """Values mapped to the ends of the colour map."""
    label: str = "depth (m)"
    """Colour bar label, with its unit."""


def figure_png(fig: Any, *, dpi: float | None = None, palette: bool = False) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards); ``palette`` quantises to 256 colours (depth panels: a
    third of the size, same look)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi, bbox_inches="tight")
    plt.close(fig)
    if not palette:
        return buffer.getvalue()
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def bad_black(name: str) -> Any:
    """The matplotlib colour map ``name`` with invalid (nan, masked) pixels drawn black; the depth map
    (:data:`DEPTH_CMAP`) cut to :data:`DEPTH_SPAN`, as :func:`colorize_depth` draws it."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = plt.get_cmap(name)
    if name == DEPTH_CMAP:
        cmap = ListedColormap(cmap(np.linspace(*DEPTH_SPAN, 256)), name=f"{name}_depth")
    if hasattr(cmap, "with_extremes"):
        return cmap.with_extremes(bad="black")
    cmap = cmap.copy()
    cmap.set_bad("black")
    return cmap


def tile_grid_png(
    tiles: Sequence[Tile],
    suptitle: str,
    *,
    ncols: int | None = None,
    tile_width_in: float | None = None,
    dpi: float = 80,
    palette: bool = True,
) -> bytes:
    """PNG of ``tiles`` in a grid, each with a horizontal colour bar labelled in its unit.

    ``ncols`` / ``tile_width_in`` default to 2 columns of 6.5 in for frames wider than 1.8:1 (KITTI), else 3 of 4.6 in.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    height, width = np.shape(tiles[0].image)[:2]
    wide = width / height > 1.8
    ncols = ncols or (2 if wide else 3)
    tile_w = tile_width_in or (6.5 if wide else 4.6)
    nrows = math.ceil(len(tiles) / ncols)
    tile_h = tile_w * height / width + 1.2
    fig, axes = plt.subplots(nrows, ncols, figsize=(tile_w * ncols, tile_h * nrows), dpi=dpi, squeeze=False)
    for ax, tile in zip(axes.flat, tiles):
        if tile.cmap is None:
            ax.imshow(tile.image)
        else:
            lo, hi = tile.value_range
            im = ax.imshow(tile.image, cmap=bad_black(tile.cmap), vmin=lo, vmax=hi, interpolation="nearest")
            bar = fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.03, aspect=40)
            bar.set_label(tile.label, fontsize=8, labelpad=1)
            bar.ax.tick_params(labelsize=7)
            bar.ax.xaxis.set_major_locator(MaxNLocator(5))
            if hi < 0.01:
                bar.formatter.set_powerlimits((-2, 2))
        ax.set_title(tile.title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(tiles):]:
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return figure_png(fig, palette=palette)
