import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jarrn_deploy.model.depth_io import (
    read_depth_png,
    read_kitti_depth,
    read_millimetre_depth,
    read_rgb,
    read_tum_depth,
    write_depth_png,
    write_rgb_png,
)


def _save_uint16(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.uint16)).save(path)
    return path


RAW = np.array([[0, 256, 5000], [1000, 65535, 512]], np.uint16)


@pytest.mark.parametrize(
    "reader, scale",
    [(read_kitti_depth, 256.0), (read_tum_depth, 5000.0), (read_millimetre_depth, 1000.0)],
)
def test_depth_readers_divide_raw_values_by_their_scale(tmp_path, reader, scale):
    path = _save_uint16(tmp_path / "d.png", RAW)
    depth = reader(path)
    assert depth.dtype == np.float32 and depth.shape == RAW.shape
    np.testing.assert_allclose(depth, RAW / scale, rtol=1e-6)
    assert depth[0, 0] == 0.0


def test_read_depth_png_accepts_str_path_and_custom_scale(tmp_path):
    path = _save_uint16(tmp_path / "d.png", RAW)
    np.testing.assert_allclose(read_depth_png(str(path), scale=100.0), RAW / 100.0, rtol=1e-6)


def test_kitti_reader_rejects_8bit_png(tmp_path):
    path = tmp_path / "eight.png"
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"eight\.png.*16-bit.*'L'"):
        read_kitti_depth(path)


def test_depth_reader_rejects_rgb_png(tmp_path):
    path = tmp_path / "colour.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"colour\.png.*'RGB'"):
        read_tum_depth(path)


def test_depth_reader_rejects_non_png_file(tmp_path):
    path = tmp_path / "depth.tiff"
    Image.fromarray(RAW).save(path)
    with pytest.raises(ValueError, match=r"depth\.tiff.*TIFF"):
        read_kitti_depth(path)


def test_depth_reader_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_kitti_depth(missing)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_read_depth_png_rejects_non_positive_scale(tmp_path, scale):
    path = _save_uint16(tmp_path / "d.png", RAW)
    with pytest.raises(ValueError, match="scale"):
        read_depth_png(path, scale=scale)


def test_write_then_read_depth_round_trips_to_quantisation(tmp_path):
    depth = np.random.default_rng(0).uniform(0.5, 80.0, (30, 40)).astype(np.float32)
    depth[::7, ::5] = 0.0
    path = write_depth_png(tmp_path / "out.png", depth)
    back = read_kitti_depth(path)
    np.testing.assert_allclose(back, depth, atol=0.5 / 256 + 1e-6)
    np.testing.assert_array_equal(back == 0, depth == 0)


def test_write_depth_png_writes_16bit_single_channel(tmp_path):
    path = write_depth_png(tmp_path / "out.png", np.ones((3, 3), np.float32), scale=1000.0)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
        assert np.asarray(im)[0, 0] == 1000


def test_write_depth_png_clips_to_uint16_and_zeroes_invalid(tmp_path):
    depth = np.array([[300.0, -1.0, np.nan, np.inf]], np.float32)
    path = write_depth_png(tmp_path / "out.png", depth, scale=256.0)
    with Image.open(path) as im:
        raw = np.asarray(im)
    assert raw.tolist() == [[65535, 0, 0, 0]]


def test_write_depth_png_replaces_existing_file_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    write_depth_png(target, np.full((2, 2), 2.0, np.float32))
    np.testing.assert_allclose(read_kitti_depth(target), 2.0)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_write_depth_png_failure_while_saving_keeps_old_file_and_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_depth_png(target, np.ones((2, 2), np.float32))
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_write_depth_png_rejects_non_2d_depth(tmp_path):
    with pytest.raises(ValueError, match="depth_m must be a 2-D"):
        write_depth_png(tmp_path / "out.png", np.ones((2, 2, 2), np.float32))


def test_write_depth_png_missing_directory_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        write_depth_png(tmp_path / "no_such_dir" / "out.png", np.ones((2, 2), np.float32))


def test_read_rgb_returns_uint8_hxwx3(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    out = read_rgb(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


def test_read_rgb_expands_greyscale_and_drops_alpha(tmp_path):
    Image.fromarray(np.full((3, 4), 9, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((3, 4, 4), 200, np.uint8)).save(tmp_path / "a.png")
    assert read_rgb(tmp_path / "g.png").shape == (3, 4, 3)
    assert read_rgb(tmp_path / "g.png")[0, 0].tolist() == [9, 9, 9]
    assert read_rgb(tmp_path / "a.png")[0, 0].tolist() == [200, 200, 200]


def test_read_rgb_rejects_16bit_depth_png(tmp_path):
    path = _save_uint16(tmp_path / "d.png", RAW)
    with pytest.raises(ValueError, match=r"d\.png.*'I;16'"):
        read_rgb(path)


def test_read_rgb_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_rgb.png"):
        read_rgb(tmp_path / "missing_rgb.png")


def test_write_rgb_png_round_trips(tmp_path):
    img = np.arange(36, dtype=np.uint8).reshape(3, 4, 3) * 7
    path = write_rgb_png(tmp_path / "c.png", img)
    np.testing.assert_array_equal(read_rgb(path), img)
