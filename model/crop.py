"""Crop a frame to a fixed size, padding where it is too small: the one crop/pad used to feed static-shape graphs
(calibration, export validation, the benchmark). numpy only."""

from __future__ import annotations

import numpy as np


def crop_or_pad(
    array: np.ndarray,
    hw: tuple[int, int],
    *,
    mode: str = "constant",
    top: int | None = None,
    left: int | None = None,
    channels_last: bool = True,
) -> np.ndarray:
    """``array`` cropped to ``hw`` = (height, width) at (``top``, ``left``), then padded at the bottom / right where it
    is smaller (``mode``: "edge" for images, "constant" = zeros for depth, where 0 means no depth).

    ``channels_last``: the spatial axes are the first two (HxW or HxWxC); False: the last two (...xHxW, e.g. NCHW).
    ``top`` / ``left`` default to a centred crop. Returns a view when nothing is padded.
    """
    height, width = hw
    if height < 1 or width < 1:
        raise ValueError(f"hw: expected a positive (height, width), got {hw}")
    axis = 0 if channels_last else array.ndim - 2
    if array.ndim < 2:
        raise ValueError(f"array: expected at least 2 dimensions, got shape {array.shape}")
    have_h, have_w = array.shape[axis], array.shape[axis + 1]
    top = max((have_h - height) // 2, 0) if top is None else top
    left = max((have_w - width) // 2, 0) if left is None else left
    index = [slice(None)] * array.ndim
    index[axis], index[axis + 1] = slice(top, top + height), slice(left, left + width)
    out = array[tuple(index)]
    pad = [(0, 0)] * array.ndim
    pad[axis], pad[axis + 1] = (0, height - out.shape[axis]), (0, width - out.shape[axis + 1])
    return np.pad(out, pad, mode=mode) if pad[axis][1] or pad[axis + 1][1] else out
