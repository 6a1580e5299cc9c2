"""The x, y, z of a ``sensor_msgs/PointCloud2`` as an Nx3 array (any field layout, padding, endianness; FLOAT32 or
FLOAT64 coordinates); points with a NaN or infinite coordinate (no return) are dropped."""

from __future__ import annotations

from typing import Any

import numpy as np

from jarrn_deploy.errors import InputError

POINT_FIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
"""``sensor_msgs/PointField`` datatype constants -> numpy type codes."""


def cloud_xyz(message: Any, topic: str) -> np.ndarray:
    """Nx3 float64 points in the cloud's frame (``message.header.frame_id``)."""
    fields = {field.name: field for field in message.fields}
    missing = [name for name in "xyz" if name not in fields]
    if missing:
        raise InputError(f"{topic}: PointCloud2 without field(s) {', '.join(missing)} "
                         f"(fields: {', '.join(fields) or 'none'})")
    order = ">" if message.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in "xyz":
        datatype = fields[name].datatype
        if datatype not in (7, 8):
            raise InputError(f"{topic}: PointCloud2 field {name} has datatype {datatype}, expected FLOAT32 (7) "
                             "or FLOAT64 (8)")
        names.append(name)
        formats.append(order + POINT_FIELD_DTYPES[datatype])
        offsets.append(fields[name].offset)
    point = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": message.point_step})
    height, width, row_step = int(message.height), int(message.width), int(message.row_step)
    row_bytes = width * int(message.point_step)
    if height * width == 0:
        return np.zeros((0, 3))
    data = np.asarray(message.data, dtype=np.uint8)
    if data.size < (height - 1) * row_step + row_bytes:
        raise InputError(f"{topic}: PointCloud2 data holds {data.size} bytes, too few for {height}x{width} points "
                         f"of {message.point_step} bytes")
    if row_step != row_bytes:  # rows with padding: keep each row's points only
        data = np.concatenate([data[row * row_step: row * row_step + row_bytes] for row in range(height)])
    records = np.frombuffer(data[: height * row_bytes].tobytes(), dtype=point)
    xyz = np.stack([records[name].astype(np.float64) for name in "xyz"], axis=1)
    return xyz[np.isfinite(xyz).all(axis=1)]
