"""The one crop/pad of frames to a static size (model/crop.py)."""

import numpy as np
import pytest

from jarrn_deploy.model.crop import crop_or_pad


def test_larger_frames_are_centre_cropped_and_smaller_ones_padded_at_the_bottom_right():
    frame = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    np.testing.assert_array_equal(crop_or_pad(frame, (2, 4)), frame[2:4, 2:6])
    padded = crop_or_pad(frame, (8, 10))
    assert padded.shape == (8, 10)
    np.testing.assert_array_equal(padded[:6, :8], frame)
    assert not padded[6:].any() and not padded[:, 8:].any()  # zeros: no depth
    edge = crop_or_pad(frame, (8, 10), mode="edge")
    np.testing.assert_array_equal(edge[7], edge[5])


def test_explicit_corner_and_channels():
    image = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    out = crop_or_pad(image, (4, 4), top=2, left=3)
    np.testing.assert_array_equal(out, image[2:6, 3:7])


def test_nchw_arrays_crop_their_last_two_axes():
    batch = np.random.default_rng(1).random((2, 3, 10, 12)).astype(np.float32)
    out = crop_or_pad(batch, (6, 14), mode="edge", channels_last=False)
    assert out.shape == (2, 3, 6, 14)
    np.testing.assert_array_equal(out[..., :12], batch[:, :, 2:8, :])
    np.testing.assert_array_equal(out[..., 13], out[..., 11])


def test_bad_size_is_rejected():
    with pytest.raises(ValueError, match="hw"):
        crop_or_pad(np.zeros((4, 4)), (0, 4))
