"""Tests for the depth pictures (model/visualize.py): colour map, display range, point dilation, panels."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jarrn_deploy.model.visualize import Tile, colorize_depth, dilate_points, display_range, tile_grid_png


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


# ---------------------------------------------------------------------------------------------------------------------
# issue 22: colour bar ends, true legends, near depth unlike holes, faded pixels far from every sparse point


def _text_width(text: str) -> float:
    return 8.0 * len(text)


def test_colour_bar_labels_both_ends_with_their_values_and_round_ticks_between():
    from jarrn_deploy.model.visualize import colorbar_labels

    labels = colorbar_labels(5.3, 78.3, 880, _text_width)
    assert labels[0] == (0.0, "5.3") and labels[-1] == (880.0, "78.3")
    assert [text for _, text in labels[1:-1]] == ["20", "40", "60"]
    boxes = [(x - _text_width(t) / 2, x + _text_width(t) / 2) for x, t in labels[1:-1]]
    boxes = [(0.0, _text_width("5.3"))] + boxes + [(880 - _text_width("78.3"), 880.0)]
    assert all(a[1] < b[0] for a, b in zip(boxes, boxes[1:]))  # nothing overlaps
    # a round tick too close to an end is left out rather than drawn over the end's value
    crowded = colorbar_labels(9.8, 41.0, 200, _text_width)
    assert crowded[0][1] == "9.8" and crowded[-1][1] == "41.0" and "10" not in [t for _, t in crowded]
    narrow = colorbar_labels(1.2041, 1.2062, 400, _text_width)  # enough decimals to tell the ends apart
    assert (narrow[0][1], narrow[-1][1]) == ("1.2041", "1.2062")


def test_near_depth_is_bright_and_only_holes_are_black():
    from jarrn_deploy.model.visualize import NO_DEPTH_RGB

    depth = np.array([[5.3, 78.3, 0.0]], np.float32)
    img = colorize_depth(depth, 5.3, 78.3)
    assert img[0, 2].tolist() == list(NO_DEPTH_RGB)
    assert int(img[0, 0].max()) >= 190 and int(img[0, 0].sum()) >= 300  # the nearest colour is a clear blue
    ramp = colorize_depth(np.linspace(5.3, 78.3, 500, dtype=np.float32)[None], 5.3, 78.3)[0].astype(int)
    assert ramp.sum(axis=1).min() > 120  # no colour of the map comes near black


def test_legend_explains_black_only_for_pictures_with_holes_and_names_the_fade_radius():
    from jarrn_deploy.model.visualize import depth_legend

    assert depth_legend(holes=False, far_radius_px=None) == "depth (m)"
    assert depth_legend(holes=True, far_radius_px=None) == "depth (m); black = no depth"
    assert depth_legend(holes=False, far_radius_px=24) == "depth (m); faded = no sparse point within 24 px"


def test_legend_gives_the_depth_span_only_when_it_reaches_past_the_colour_bar():
    from jarrn_deploy.model.visualize import depth_legend, display_range, span_beyond

    depth = np.linspace(5.33, 78.28, 10_000, dtype=np.float32).reshape(100, 100)
    lo, hi = display_range(depth)  # 1st..99th percentile: the bar's ends lie inside the depth's span
    assert span_beyond(depth, lo, hi) == pytest.approx((5.33, 78.28), abs=1e-4)
    assert span_beyond(depth, 5.0, 80.0) is None
    assert depth_legend(holes=False, far_radius_px=None, beyond_scale=(5.33, 78.28)) == (
        "depth (m); depth spans 5.3-78.3 m, colours stop at the bar's ends")


def test_pictures_pass_their_own_holes_and_fading_to_the_legend(monkeypatch):
    import jarrn_deploy.model.visualize as visualize

    seen = []
    real = visualize.depth_legend
    monkeypatch.setattr(visualize, "depth_legend", lambda **kw: seen.append(kw) or real(**kw))
    full = np.full((30, 40), 7.0, np.float32)
    holed = full.copy()
    holed[0, 0] = 0.0
    sparse = np.zeros_like(full)
    sparse[15, 5] = 7.0
    visualize.depth_with_colorbar(full)
    visualize.depth_with_colorbar(holed)
    visualize.depth_with_colorbar(full, sparse_m=sparse, far_radius_px=6)
    visualize.depth_with_colorbar(full, sparse_m=np.full_like(full, 7.0), far_radius_px=6)  # every pixel has a point
    visualize.make_panel(np.zeros((30, 40, 3), np.uint8), sparse, full, far_radius_px=6)
    assert [(kw["holes"], kw["far_radius_px"]) for kw in seen] == [(False, None), (True, None), (False, 6),
                                                                   (False, None), (True, 6)]


def test_far_from_points_marks_pixels_beyond_the_radius_of_every_point():
    from jarrn_deploy.model.visualize import far_from_points

    sparse = np.zeros((21, 21), np.float32)
    sparse[10, 10], sparse[0, 20] = 4.0, 9.0
    far = far_from_points(sparse, 3)
    assert not far[10, 10] and not far[10, 13] and far[10, 14]  # distance 3 is within, 4 is not
    assert not far[12, 12] and far[13, 13]  # 2.83 within, 4.24 not
    assert not far[0, 17] and far[0, 16]  # the second point has its own disc
    rows, cols = np.indices(sparse.shape)
    expected = (np.hypot(rows - 10, cols - 10) > 3) & (np.hypot(rows - 0, cols - 20) > 3)
    np.testing.assert_array_equal(far, expected)
    assert far_from_points(np.zeros((3, 4)), 100).all()  # no point anywhere: nothing is near one


def test_far_pixels_are_drawn_faded_and_only_they_change():
    from jarrn_deploy.model.visualize import depth_with_colorbar, far_from_points

    depth = np.tile(np.linspace(5.0, 50.0, 40, dtype=np.float32), (30, 1))
    sparse = np.zeros_like(depth)
    sparse[5:25:4, 2:12:3] = 10.0
    plain = depth_with_colorbar(depth, value_range=(5.0, 50.0), title=None)
    faded = depth_with_colorbar(depth, value_range=(5.0, 50.0), title=None, sparse_m=sparse, far_radius_px=4)
    top, left = 10, (max(40 + 20, 360) - 40) // 2  # where the 40x30 map sits on the canvas
    changed = (plain[top:top + 30, left:left + 40] != faded[top:top + 30, left:left + 40]).any(axis=2)
    np.testing.assert_array_equal(changed, far_from_points(sparse, 4))
    region = (slice(top, top + 30), slice(left, left + 40))
    assert (faded[region][changed].astype(int) >= plain[region][changed].astype(int)).all()  # towards white
