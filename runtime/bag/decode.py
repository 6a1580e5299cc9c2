"""Camera images to uint8 RGB ``HxWx3``: ``sensor_msgs/Image`` in rgb8, bgr8, rgba8, bgra8 or mono8 (rows of
``step`` bytes), and ``sensor_msgs/CompressedImage`` in JPEG or PNG (decoded by Pillow). Other encodings (Bayer
patterns, 16-bit, depth) are refused with one line saying what to do."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from jarrn_deploy.errors import InputError

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
"""Raw encodings this module decodes -> bytes per pixel."""
SUPPORTED = "rgb8, bgr8, rgba8, bgra8, mono8, or a JPEG/PNG CompressedImage"


def _refuse(topic: str, encoding: str) -> InputError:
    hint = "debayer it first (image_proc)" if encoding.startswith("bayer") else "record the colour camera"
    return InputError(f"{topic}: image encoding '{encoding}' cannot be decoded (supported: {SUPPORTED}); {hint}")


def check_encoding(message: Any, msgtype: str, topic: str) -> None:
    """Raise the one-line :class:`InputError` for an image this module cannot decode (checked on the first image)."""
    if msgtype.endswith("CompressedImage"):
        fmt = message.format.lower()
        if "compresseddepth" in fmt or not ("jpeg" in fmt or "jpg" in fmt or "png" in fmt or fmt == ""):
            raise _refuse(topic, message.format)
    elif message.encoding not in CHANNELS:
        raise _refuse(topic, message.encoding)


def decode_image(message: Any, msgtype: str, topic: str) -> np.ndarray:
    """uint8 HxWx3 RGB of one image message."""
    check_encoding(message, msgtype, topic)
    if msgtype.endswith("CompressedImage"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(np.asarray(message.data, dtype=np.uint8).tobytes())) as image:
                if image.mode not in ("RGB", "L", "RGBA", "P"):
                    raise _refuse(topic, f"{message.format} ({image.mode})")
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{topic}: compressed image could not be decoded ({exc})") from None
    channels = CHANNELS[message.encoding]
    height, width, step = int(message.height), int(message.width), int(message.step)
    data = np.asarray(message.data, dtype=np.uint8)
    if step < width * channels or data.size < step * height:
        raise InputError(f"{topic}: image data of {data.size} bytes does not hold {height} rows of {width} "
                         f"{message.encoding} pixels (step {step})")
    pixels = data[: step * height].reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if message.encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    elif channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])
