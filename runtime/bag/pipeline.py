"""The frame loop of ``jarrn bag``: read the recording once for CameraInfo and transforms, then once in order for
images and sweeps; pair, project, complete and write each frame.

Frames that cannot be completed are warned about one line each, skipped (no ``/jarrn/depth`` message) and counted in
the summary: an image with no sweep within ``--max-dt``, a sweep with no point in front of the camera inside the
image (completion needs at least one measured point to give metres), and a time at which a ``/tf`` edge has no sample.
Everything else that is wrong with the input stops the run with one line and leaves no OUT.

The transform is looked up at the sweep's stamp (the points are expressed in the camera frame of that instant); the
camera's motion between the sweep and the image (at most ``--max-dt``) is not compensated.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jarrn_deploy.errors import InputError, UsageError
from jarrn_deploy.progress import warn as progress_warn
from jarrn_deploy.runtime.bag.cloud import cloud_xyz
from jarrn_deploy.runtime.bag.decode import decode_image
from jarrn_deploy.runtime.bag.output import DEPTH_TOPIC, SPARSE_TOPIC, OutputBag, depth_image, ros2_header
from jarrn_deploy.runtime.bag.pairing import NearestSweep
from jarrn_deploy.runtime.bag.projection import CameraModel, sparse_depth
from jarrn_deploy.runtime.bag.source import messages, open_bag
from jarrn_deploy.runtime.bag.tf import NoTransformAtTime, Transform, TransformBuffer, read_extrinsics
from jarrn_deploy.runtime.bag.topics import IMAGE, TF_TOPICS, TF_TYPE, find_topics

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class BagOptions:
    """What ``jarrn bag`` reads, how it pairs and projects, and what it writes."""

    input: Path
    """IN: rosbag2 folder or file (MCAP or sqlite3) or a ROS 1 .bag."""
    out: Path
    """OUT: the rosbag2 folder to write."""
    storage: str = "mcap"
    """OUT's storage: "mcap" or "sqlite3"."""
    overwrite: bool = False
    """Replace an existing OUT (at the end, once the new one is complete)."""
    image_topic: str | None = None
    """Camera topic; None: the only Image or CompressedImage topic."""
    camera_info_topic: str | None = None
    """CameraInfo topic; None: the only one (or the one beside the image topic)."""
    cloud_topic: str | None = None
    """PointCloud2 topic; None: the only one."""
    extrinsics: Path | None = None
    """JSON cloud-to-camera transform replacing /tf_static and /tf (tf.EXTRINSICS_FORMAT)."""
    max_dt_s: float = 0.05
    """Largest |image stamp - sweep stamp| for a pair, seconds."""
    rectified: str = "auto"
    """Project with P ("yes"), with K and D ("no"), or decide from D and the topic name ("auto")."""
    write_sparse: bool = False
    """Also write /jarrn/sparse_depth (the projected points, 32FC1, NaN = no point)."""
    copy_input: bool = False
    """Also copy the image, CameraInfo, cloud and /tf topics into OUT (rosbag2 input only)."""
    preview_count: int = 0
    """Keep this many completed frames for the --preview panels."""
    progress: bool = True
    """Show a progress bar with frames per second."""


@dataclass
class BagSummary:
    """What a run did, for the closing lines."""

    images: int = 0
    """Images read."""
    completed: int = 0
    """Images with a /jarrn/depth message written."""
    unpaired: int = 0
    """Skipped: no sweep within --max-dt."""
    no_points: int = 0
    """Skipped: no point of the sweep inside the image."""
    no_transform: int = 0
    """Skipped: a /tf edge with no sample near the sweep's time."""
    seconds: float = 0.0
    """Wall time of the frame loop."""
    topics: Any = None
    """The :class:`jarrn_deploy.runtime.bag.topics.Topics` read."""
    previews: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = field(default_factory=list)
    """(rgb, sparse, depth, stamp in s) of the first completed frames, for --preview."""

    @property
    def frames_per_second(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def lines(self, max_dt_s: float) -> list[str]:
        skipped = [(self.unpaired, f"no sweep within --max-dt {max_dt_s * 1000:g} ms"),
                   (self.no_points, "no LiDAR point in the image"), (self.no_transform, "no transform at their time")]
        text = f"{self.images} images: {self.completed} completed"
        text += "".join(f", {count} skipped ({why})" for count, why in skipped if count)
        return [text, f"{self.frames_per_second:.2f} frames/s ({self.seconds:.1f} s for the frame loop)"]


def stamp_ns(header: Any, fallback: int) -> int:
    """Header stamp in nanoseconds (the bag's record time when the stamp is unset)."""
    value = header.stamp.sec * NS_PER_S + header.stamp.nanosec
    return value if value > 0 else fallback


@dataclass(frozen=True)
class _Frame:
    """An image or sweep message waiting to be paired."""

    time: int
    """Record time in the bag, ns (OUT's messages keep their image's)."""
    stamp: int
    """Header stamp, ns (what pairing compares)."""
    message: Any
    """The deserialised message."""


class BagRun:
    """One run over one recording (see the module docstring). ``make_completer()`` returns an object with
    ``complete(rgb, sparse)`` and ``close()``; it is called once the input has passed its checks (topics, CameraInfo),
    so a bad bag is refused before a model loads."""

    def __init__(self, options: BagOptions, make_completer: Callable[[], Any],
                 warn: Callable[[str], None] | None = None) -> None:
        self.options, self.make_completer, self.completer = options, make_completer, None
        self.warn = warn or progress_warn
        self.summary = BagSummary()
        self.max_dt_ns = int(round(options.max_dt_s * NS_PER_S))
        self._extrinsics = read_extrinsics(options.extrinsics) if options.extrinsics else None
        self._tf = TransformBuffer(tolerance_ns=self.max_dt_ns)
        self._infos: list[tuple[int, Any]] = []
        self._cameras: dict[int, CameraModel] = {}

    def run(self) -> BagSummary:
        options = self.options
        reader = open_bag(options.input)
        try:
            topics = self.summary.topics = find_topics(reader.connections, image=options.image_topic,
                                                       camera_info=options.camera_info_topic, cloud=options.cloud_topic)
            if options.copy_input and not reader.is2:
                raise UsageError("--copy-input: IN is a ROS 1 bag; convert it first (rosbags-convert --src IN "
                                 "--dst IN2) or leave --copy-input out")
            self._read_calibration(reader, topics)
            self.completer = self.make_completer()
            with OutputBag(options.out, options.storage, options.overwrite, options.input) as out:
                self._frames(reader, topics, out)
        finally:
            reader.close()
            if self.completer is not None:
                self.completer.close()
        return self.summary

    def _read_calibration(self, reader: Any, topics: Any) -> None:
        wanted = [c for c in reader.connections if c.topic == topics.camera_info]
        if self._extrinsics is None:
            wanted += [c for c in reader.connections if c.topic in TF_TOPICS and c.msgtype == TF_TYPE]
        for connection, time_ns, raw in messages(reader, wanted, self.options.input):
            message = self._deserialize(reader, raw, connection)
            if connection.topic == topics.camera_info:
                self._infos.append((stamp_ns(message.header, time_ns), message))
            else:
                self._tf.add_message(message, static=connection.topic == "/tf_static")
        if not self._infos:
            raise InputError(f"{topics.camera_info}: no CameraInfo message in IN, so the points cannot be projected")
        self._infos.sort(key=lambda item: item[0])

    def _deserialize(self, reader: Any, raw: Any, connection: Any) -> Any:
        try:
            return reader.deserialize(raw, connection.msgtype)
        except Exception as exc:  # noqa: BLE001 - a damaged message: rosbags raises struct/index errors
            raise InputError(f"{connection.topic}: a message could not be decoded ({type(exc).__name__}: {exc}); "
                             "IN is damaged or truncated") from None

    def _frames(self, reader: Any, topics: Any, out: OutputBag) -> None:
        from tqdm import tqdm

        options = self.options
        streamed = [c for c in reader.connections if c.topic in (topics.image, topics.cloud)]
        if options.copy_input:
            streamed += [c for c in reader.connections if c.topic == topics.camera_info or
                         (c.topic in TF_TOPICS and c.msgtype == TF_TYPE)]
        total = sum(c.msgcount for c in reader.connections if c.topic == topics.image)
        if total == 0:
            raise InputError(f"{topics.image}: no image message in IN")
        pairing: NearestSweep[_Frame, _Frame] = NearestSweep(self.max_dt_ns)
        bar = tqdm(total=total, unit="frame", desc="bag", disable=not options.progress, file=sys.stderr,
                   dynamic_ncols=True)
        self.warn = _above_bar(self.warn, bar)
        start = time.perf_counter()
        try:
            for connection, time_ns, raw in messages(reader, streamed, options.input):
                if options.copy_input:
                    out.write_raw(connection.topic, connection.msgtype, time_ns, raw)
                if connection.topic not in (topics.image, topics.cloud):
                    continue
                message = self._deserialize(reader, raw, connection)
                frame = _Frame(time_ns, stamp_ns(message.header, time_ns), message)
                add = pairing.add_image if connection.topic == topics.image else pairing.add_sweep
                for image, sweep in add(frame.stamp, frame):
                    self._frame(image, sweep, topics, out)
                    bar.update(1)
            for image, sweep in pairing.finish():
                self._frame(image, sweep, topics, out)
                bar.update(1)
        finally:
            bar.close()
            self.summary.seconds = time.perf_counter() - start

    def _camera(self, stamp: int, topic: str) -> CameraModel:
        """The model of the CameraInfo nearest in time (cached per message)."""
        index = int(np.argmin(np.abs(np.array([item[0] for item in self._infos], dtype=np.int64) - stamp)))
        if index not in self._cameras:
            self._cameras[index] = CameraModel.from_camera_info(self._infos[index][1], rectified=self.options.rectified,
                                                                image_topic=topic)
        return self._cameras[index]

    def _transform(self, camera_frame: str, cloud_frame: str, stamp: int) -> Transform:
        if self._extrinsics is not None:
            return self._extrinsics
        return self._tf.lookup(camera_frame, cloud_frame, stamp)

    def _frame(self, image: _Frame, sweep: _Frame | None, topics: Any, out: OutputBag) -> None:
        summary, at = self.summary, f"{topics.image} at {image.stamp / NS_PER_S:.3f} s"
        summary.images += 1
        if sweep is None:
            summary.unpaired += 1
            self.warn(f"{at}: no {topics.cloud} sweep within --max-dt {self.options.max_dt_s * 1000:g} ms; skipped")
            return
        rgb = decode_image(image.message, topics.image_type, topics.image)
        camera = self._camera(image.stamp, topics.image)
        if (camera.width, camera.height) != (rgb.shape[1], rgb.shape[0]):
            raise InputError(f"{topics.camera_info}: CameraInfo is {camera.width}x{camera.height} but the images of "
                             f"{topics.image} are {rgb.shape[1]}x{rgb.shape[0]}")
        try:
            transform = self._transform(image.message.header.frame_id, sweep.message.header.frame_id, sweep.stamp)
        except NoTransformAtTime as exc:
            summary.no_transform += 1
            self.warn(f"{at}: {exc}; skipped")
            return
        sparse = sparse_depth(transform.apply(cloud_xyz(sweep.message, topics.cloud)), camera)
        if not (sparse > 0).any():
            summary.no_points += 1
            self.warn(f"{at}: no point of the {topics.cloud} sweep falls in the image; skipped")
            return
        depth = self.completer.complete(rgb, sparse)
        store = out.store
        header = ros2_header(image.message.header, store)
        out.write(DEPTH_TOPIC, IMAGE, image.time, depth_image(depth, header, store))
        if self.options.write_sparse:
            out.write(SPARSE_TOPIC, IMAGE, image.time, depth_image(sparse, header, store))
        summary.completed += 1
        if len(summary.previews) < self.options.preview_count:
            summary.previews.append((rgb, sparse, depth, image.stamp / NS_PER_S))


def _above_bar(warn: Callable[[str], None], bar: Any) -> Callable[[str], None]:
    """``warn`` printing above the progress bar instead of through it."""
    from tqdm import tqdm

    if bar.disable:
        return warn

    def write(message: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            warn(message)

    return write


def run_bag(options: BagOptions, make_completer: Callable[[], Any],
            warn: Callable[[str], None] | None = None) -> BagSummary:
    """Complete every paired frame of ``options.input`` into ``options.out`` with the completer ``make_completer()``
    returns (closed at the end); the run's :class:`BagSummary`."""
    return BagRun(options, make_completer, warn).run()
