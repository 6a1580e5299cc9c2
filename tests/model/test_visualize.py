"""Tests for the depth pictures (model/visualize.py): colour map, display range, point dilation, panels."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from model.visualize import Tile, colorize_depth, dilate_points, display_range, tile_grid_png


def test_colorize_depth_paints_invalid_black_and_valid_non_black():
    depth = np.array([[0.0, 1.0, np.nan], [5.0, -2.0, 10.0]], np.float32)
    img = colorize_depth(depth)
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    for r, c in [(0, 0), (0, 2), (1, 1)]:
        assert img[r, c].tolist() == [0, 0, 0]
    for r, c in [(0, 1), (1, 0), (1, 2)]:
        assert img[r, c].any()


def test_colorize_depth_uses_given_range_and_clips_outside():
    depth = np.array([[1.0, 2.0, 3.0, 50.0]], np.float32)
    img = colorize_depth(depth, vmin=2.0, vmax=3.0)
    assert img[0, 0].tolist() == img[0, 1].tolist()  # below vmin -> low end
    assert img[0, 2].tolist() == img[0, 3].tolist()  # above vmax -> high end
    assert img[0, 1].tolist() != img[0, 2].tolist()


def test_colorize_depth_all_invalid_is_all_black():
    assert not colorize_depth(np.zeros((3, 3), np.float32)).any()


def test_colorize_depth_rejects_vmax_below_vmin():
    with pytest.raises(ValueError, match="vmax must be >= vmin"):
        colorize_depth(np.ones((2, 2), np.float32), vmin=5.0, vmax=1.0)


def test_dilate_points_grows_points_and_the_nearer_point_wins():
    sparse = np.zeros((7, 7), np.float32)
    sparse[3, 3], sparse[3, 4] = 5.0, 2.0
    grown = dilate_points(sparse, 3)
    assert grown[2, 2] == 5.0 and grown[2, 5] == 2.0
    assert grown[3, 3] == 2.0  # both squares cover it: the nearer point wins
    assert grown[0, 0] == 0.0
    assert dilate_points(sparse, 1) is sparse


def test_display_range_ignores_invalid_pixels_and_outliers():
    depth = np.concatenate([np.linspace(1.0, 3.0, 1000), [0.0, np.nan, 500.0]]).reshape(1, -1)
    lo, hi = display_range(depth)
    assert 1.0 <= lo < 1.1 and 2.9 < hi < 3.1
    assert display_range(np.zeros((2, 2))) == (0.0, 1.0)


def test_tile_grid_png_draws_every_tile():
    depth = np.linspace(1.0, 4.0, 48 * 64).reshape(48, 64)
    rgb = np.zeros((48, 64, 3), np.uint8)
    tiles = [Tile("RGB", rgb), Tile("depth", depth, "turbo", (1.0, 4.0)), Tile("error", depth * 0, "magma", (0, 1))]
    png = tile_grid_png(tiles, "case")
    with Image.open(io.BytesIO(png)) as image:
        assert image.width > image.height > 48


def test_visualize_imports_without_torch():
    code = "import sys, model.visualize; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
