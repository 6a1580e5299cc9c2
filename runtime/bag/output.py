"""OUT: a rosbag2 (MCAP by default, or sqlite3) written by rosbags, all or nothing.

The bag is written inside a hidden staging folder beside OUT (``.<OUT name>.pid<PID>.<random>.tmp``, the naming of
:mod:`jarrn_deploy.model.atomic`, so a later run removes what a killed one left) and renamed to OUT when complete; an error or
Ctrl-C removes it, and an existing OUT is replaced only at that last step (and only with ``--overwrite``).

Depth images follow REP 118: ``sensor_msgs/Image``, encoding ``32FC1``, metres, with the camera image's header
(stamp and frame_id), so they line up pixel for pixel with the image. "No depth" is NaN (REP 118's marker for no
measurement): where the completed depth is not finite and positive, and every empty pixel of ``/jarrn/sparse_depth``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jarrn_deploy.errors import OutputError
from jarrn_deploy.model.atomic import refuse_overwriting_inputs, remove_stale_temp_files, temp_prefix, write_probe
from jarrn_deploy.runtime.bag.source import bag_paths, import_rosbags, typestore

STORAGES = ("mcap", "sqlite3")
DEPTH_TOPIC = "/jarrn/depth"
SPARSE_TOPIC = "/jarrn/sparse_depth"
DEPTH_ENCODING = "32FC1"
ROSBAG2_VERSION = 8
"""rosbag2 metadata version written: the oldest that rosbags writes (8 or 9)."""


def check_out(out: Path, overwrite: bool, source: Path | None = None) -> None:
    """Refuse OUT before any work: one that would replace IN (``source``), an existing one without ``--overwrite``,
    or a folder that does not exist."""
    if source is not None:
        refuse_replacing_input(out, source)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise OutputError(f"--out: {out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise OutputError(f"--out: folder {out.parent} does not exist")
    write_probe(out.parent, "--out")  # a read-only or full filesystem fails now, not after the work


def refuse_replacing_input(out: Path, source: Path) -> None:
    """:class:`OutputError` (exit 4) when OUT is IN, holds IN (``--overwrite`` would delete it) or lies inside IN's
    rosbag2 folder; an IN that does not exist is left to the reader's error."""
    if not source.exists():
        return
    recording = bag_paths(source)[0]  # IN's rosbag2 folder when IN is its .mcap/.db3 file
    refuse_overwriting_inputs([out], {"IN": recording}, "--out")
    out_path, recording_path = out.resolve(), recording.resolve()
    why = ""
    if recording_path.is_relative_to(out_path):
        why = f"holds IN ({source}), which --overwrite would delete"
    elif recording.is_dir() and out_path.is_relative_to(recording_path):
        why = f"lies inside IN's rosbag2 folder {recording}"
    if why:
        raise OutputError(f"--out: {out} {why}; choose another --out (no command writes over its inputs)")


def depth_image(depth: np.ndarray, header: Any, store: Any) -> Any:
    """A ``32FC1`` ``sensor_msgs/Image`` of float metres; 0, negative and non-finite values become NaN."""
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype("<f4")
    height, width = depth.shape
    return store.types["sensor_msgs/msg/Image"](
        header=header, height=height, width=width, encoding=DEPTH_ENCODING, is_bigendian=0, step=width * 4,
        data=np.frombuffer(depth.tobytes(), dtype=np.uint8))


def ros2_header(header: Any, store: Any) -> Any:
    """The same stamp and frame_id as a ROS 2 ``std_msgs/Header`` (a ROS 1 header also has ``seq``, dropped)."""
    time = store.types["builtin_interfaces/msg/Time"](sec=header.stamp.sec, nanosec=header.stamp.nanosec)
    return store.types["std_msgs/msg/Header"](stamp=time, frame_id=header.frame_id)


class OutputBag:
    """``with OutputBag(out, "mcap", overwrite) as bag: bag.write(...)``: OUT appears only when the block succeeds."""

    def __init__(self, out: Path, storage: str = "mcap", overwrite: bool = False, source: Path | None = None) -> None:
        """``source``: IN, which OUT must not replace."""
        self.out, self.storage, self.overwrite, self.source = Path(out), storage, overwrite, source
        self.store = typestore()
        self._staging: Path | None = None
        self._writer: Any = None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "OutputBag":
        import_rosbags()
        from rosbags.rosbag2 import StoragePlugin, Writer

        check_out(self.out, self.overwrite, self.source)
        remove_stale_temp_files(self.out)
        self._staging = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=temp_prefix(self.out), suffix=".tmp"))
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._staging / self.out.name, version=ROSBAG2_VERSION, storage_plugin=plugin)
        self._writer.open()
        return self

    def write(self, topic: str, msgtype: str, timestamp_ns: int, message: Any) -> None:
        """Serialise ``message`` (of the ROS 2 type store) to CDR and write it."""
        self.write_raw(topic, msgtype, timestamp_ns, self.store.serialize_cdr(message, msgtype))

    def write_raw(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes | np.ndarray,
                  msgdef: str | None = None) -> None:
        """Write CDR bytes (a copied input message; ``msgdef`` for a type the ROS 2 type store does not know)."""
        connection = self._connections.get(topic)
        if connection is None:
            kwargs = {"msgdef": msgdef} if msgdef and msgtype not in self.store.types else {"typestore": self.store}
            connection = self._connections[topic] = self._writer.add_connection(topic, msgtype, **kwargs)
        self._writer.write(connection, timestamp_ns, data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        staging = self._staging
        try:
            try:
                self._writer.close()
            except Exception as close_error:  # noqa: BLE001 - a full disk surfaces here
                if exc_type is None:
                    raise OutputError(f"--out: writing {self.out} failed ({close_error})") from None
            if exc_type is None:
                self._move_into_place(staging / self.out.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _move_into_place(self, written: Path) -> None:
        old = None
        if self.out.exists() or self.out.is_symlink():  # --overwrite: set the old one aside, then swap
            old = self._staging / f"{self.out.name}.old"
            os.replace(self.out, old)
        try:
            os.replace(written, self.out)
        except OSError as exc:
            if old is not None:
                os.replace(old, self.out)
            raise OutputError(f"--out: could not move the finished bag to {self.out} ({exc})") from None
