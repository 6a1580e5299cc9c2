"""A preview panel: RGB, sparse input and completed depth side by side, titled, with a shared colour bar in metres."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.depth_io import colorize_depth

MAX_TILE_SIDE = 900
_BG = (255, 255, 255)
_FG = (20, 20, 20)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # noqa: BLE001 - any font will do
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()


def display_range(depth_m: np.ndarray) -> tuple[float, float]:
    """Robust colour range (1st to 99th percentile of valid pixels), so a few outliers do not flatten the image."""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(valid, [1, 99]))
    return (lo, hi) if hi > lo else (lo, lo + 1e-3)


def _dilate_points(sparse_m: np.ndarray, size: int) -> np.ndarray:
    """Grow each sparse point to a ``size`` x ``size`` square (nearer point wins) so it stays visible when scaled."""
    if size <= 1:
        return sparse_m
    from scipy.ndimage import minimum_filter

    far = np.where(sparse_m > 0, sparse_m, np.inf)
    grown = minimum_filter(far, size=size, mode="constant", cval=np.inf)
    return np.where(np.isfinite(grown), grown, 0.0).astype(np.float32)


def _colorbar(width: int, lo: float, hi: float, font: ImageFont.ImageFont, pad: int) -> Image.Image:
    """A horizontal turbo ramp from ``lo`` to ``hi`` metres with round-number ticks."""
    bar_h, tick_h = 16, 6
    ramp = np.linspace(lo, hi, max(width - 2 * pad, 2), dtype=np.float64)[None].repeat(bar_h, 0)
    colours = colorize_depth(np.maximum(ramp, 1e-6), lo if lo > 0 else 1e-6, hi)
    text_h = font.getbbox("0")[3] + 4
    canvas = Image.new("RGB", (width, bar_h + tick_h + text_h + pad), _BG)
    canvas.paste(Image.fromarray(colours), (pad, 0))
    draw = ImageDraw.Draw(canvas)
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 1.0
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    value = math.ceil(lo / step) * step
    while value <= hi + 1e-9:
        x = pad + int(round((value - lo) / span * (width - 2 * pad - 1))) if span > 0 else pad
        draw.line([(x, bar_h), (x, bar_h + tick_h)], fill=_FG, width=1)
        label = f"{value:g}"
        tw = draw.textlength(label, font=font)
        draw.text((min(max(x - tw / 2, 0), width - tw), bar_h + tick_h), label, fill=_FG, font=font)
        value += step
    return canvas


def make_panel(
    rgb: np.ndarray,
    sparse_m: np.ndarray,
    depth_m: np.ndarray,
    *,
    titles: tuple[str, str, str] = ("RGB", "sparse input", "completed depth"),
    layout: str = "auto",
) -> np.ndarray:
    """uint8 panel image: RGB | sparse input | completed depth (same colour scale), titles above, colour bar below.

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
    tiles = [
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)),
        Image.fromarray(colorize_depth(_dilate_points(sparse_m, grow), lo, hi)),
        Image.fromarray(colorize_depth(depth_m, lo, hi)),
    ]
    tiles = [t.resize((tile_w, tile_h), Image.Resampling.BILINEAR) if scale < 1 else t for t in tiles]

    font_size = max(14, min(26, tile_w // 28))
    font, small = _font(font_size), _font(max(12, font_size - 4))
    pad, title_h = 10, font_size + 14
    cols, rows = (3, 1) if layout == "row" else (1, 3)
    panel_w = cols * tile_w + (cols + 1) * pad
    bar = _colorbar(min(panel_w, max(480, tile_w)), lo, hi, small, pad)
    unit_h = font_size + 8
    panel_h = rows * (tile_h + title_h) + (rows + 1) * pad + unit_h + bar.height
    canvas = Image.new("RGB", (panel_w, panel_h), _BG)
    draw = ImageDraw.Draw(canvas)
    for i, (tile, title) in enumerate(zip(tiles, titles)):
        col, row = (i, 0) if layout == "row" else (0, i)
        x = pad + col * (tile_w + pad)
        y = pad + row * (tile_h + title_h + pad)
        draw.text((x + (tile_w - draw.textlength(title, font=font)) / 2, y + 2), title, fill=_FG, font=font)
        canvas.paste(tile, (x, y + title_h))
    bar_x = (panel_w - bar.width) // 2
    bar_y = panel_h - bar.height - unit_h
    label = "depth (m), colour scale shared by the sparse input and the completed depth"
    draw.text(((panel_w - draw.textlength(label, font=small)) / 2, bar_y), label, fill=_FG, font=small)
    canvas.paste(bar, (bar_x, bar_y + unit_h))
    return np.asarray(canvas)
