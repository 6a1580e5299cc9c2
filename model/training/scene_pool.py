"""A pool of rendered synthetic scenes on the training device (``--scene-pool N``, ``--scene-reuse K``).

Drawing a scene is most of a synthetic sample's cost, and the in-process renderer is launch-bound on a GPU, so making
every batch from new scenes caps training at the scene rate. The pool keeps ``N`` rendered scenes (uint8 RGB, float
depth in metres, intrinsics) on the device; every batch draws its scenes from it and gets fresh crops, sparse
patterns, flips and colour jitter (:meth:`~jarrn_deploy.model.training.device_batches.DeviceSyntheticBatches.pooled_batch`), and
before each step new scenes replace the oldest ones at ``batch / K`` scenes per step on average, so each scene is
drawn about ``K`` times while it is in the pool (K = 1: as many new scenes as samples; larger K: faster, less varied).

Scenes come in chunks of ``round(batch / K)`` scenes that share a render size (drawn like
:func:`~jarrn_deploy.model.training.device_batches.plan_scenes`, from ``(seed, rank, chunk)``); scene number ``n`` lives in slot
``n mod N`` (the pool is a ring, oldest out first). Slots have the largest render size and a scene fills its top-left
corner; the host keeps every slot's size, so no value is read back from the device.

- In-process rendering (``--workers 0``): chunk ``c`` is rendered before the step whose refresh it belongs to, so the
  pool at step ``t`` is a function of ``t``; a resumed run re-renders the ``N`` newest scenes of step ``t`` and
  continues bit for bit like an uninterrupted one.
- ``--workers M``: M loader processes ray cast the chunks with numpy in order; a step takes the chunks that are ready
  and never waits for one (except while the pool is first filled). Which step a chunk arrives at depends on timing,
  so batches are not reproducible bit for bit, and a resumed run restarts from the pool an on-time run would have.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_POOL_SCENES = 512
"""Scenes in the pool with ``--scene-pool auto`` on a GPU (fewer when the run draws fewer samples)."""
DEFAULT_REUSE = 8.0
"""``--scene-reuse`` default: each scene is drawn about this many times (with a fresh crop, pattern and jitter)."""
MEMORY_SHARE = 0.5
"""A pool may take at most this share of the device's free memory (the rest is the model's)."""
RGB_BYTES, DEPTH_BYTES, INTRINSICS_BYTES = 3, 4, 16


@dataclass(frozen=True)
class PoolLayout:
    """How big the pool is and how it is refreshed."""

    scenes: int
    """Slots (a multiple of ``chunk``)."""
    chunk: int
    """Scenes rendered together at one size; the refresh unit."""
    reuse: float
    """Each scene is drawn about this many times."""
    height: int
    """Slot height: the largest render height."""
    width: int
    """Slot width: the largest render width."""

    @property
    def bytes_per_scene(self) -> int:
        return self.height * self.width * (RGB_BYTES + DEPTH_BYTES) + INTRINSICS_BYTES

    @property
    def bytes(self) -> int:
        return self.scenes * self.bytes_per_scene

    def chunks_due(self, step: int, batch_size: int) -> int:
        """Refresh chunks rendered before step ``step``'s batch: ``batch / reuse`` scenes per step."""
        return int(math.floor(step * batch_size / (self.reuse * self.chunk) + 1e-9))

    def describe(self) -> str:
        return (f"scene pool: {self.scenes} scenes of up to {self.height}x{self.width} "
                f"({self.bytes_per_scene / 1e6:.2f} MB each, {self.bytes / 1e9:.2f} GB), refreshed {self.chunk} "
                f"at a time so that each scene is drawn ~{self.reuse:g} times")


def slot_size(crop: tuple[int, int], render_scale: tuple[float, float], max_aspect: float) -> tuple[int, int]:
    """The largest scene :func:`~jarrn_deploy.model.training.device_batches.plan_scenes` can draw for ``crop``."""
    ch, cw = crop
    height = max(ch, int(round(ch * render_scale[1])))
    return height, max(cw, int(round(height * max_aspect)))


def pool_layout(scenes: int, reuse: float, batch_size: int, crop: tuple[int, int],
                render_scale: tuple[float, float], max_aspect: float) -> PoolLayout:
    """The layout of a pool of about ``scenes`` scenes (rounded up to whole chunks)."""
    chunk = max(1, int(round(batch_size / reuse)))
    height, width = slot_size(crop, render_scale, max_aspect)
    return PoolLayout(chunk * math.ceil(scenes / chunk), chunk, float(reuse), height, width)


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` (CUDA: the driver's count; CPU: available physical memory), None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            with open("/proc/meminfo", encoding="ascii") as meminfo:  # MemAvailable counts reclaimable caches
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (RuntimeError, ValueError, OSError, AttributeError):
        return None
    return None


def memory_problem(layout: PoolLayout, device: torch.device) -> str | None:
    """Why the pool does not fit ``device`` (one line), or None."""
    free = free_memory_bytes(device)
    if free is None or layout.bytes <= MEMORY_SHARE * free:
        return None
    return (f"--scene-pool {layout.scenes}: {layout.bytes / 1e9:.2f} GB ({layout.bytes_per_scene / 1e6:.2f} MB per "
            f"scene of up to {layout.height}x{layout.width}) is more than {MEMORY_SHARE:.0%} of the "
            f"{free / 1e9:.2f} GB free on {device}; lower --scene-pool or --render-scale")


Chunk = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""A chunk's uint8 RGB ``[C,3,H,W]``, depth ``[C,1,H,W]`` (metres) and intrinsics ``[C,4]``."""


class ScenePool:
    """The pool's tensors on ``device`` and its refresh; ``render_chunk(c)`` renders chunk ``c`` in this process,
    ``worker_chunks(first)`` (with loader workers) yields chunks ``first, first + 1, ...`` rendered elsewhere."""

    def __init__(self, layout: PoolLayout, device: torch.device, batch_size: int,
                 chunk_size_of: Callable[[int], tuple[int, int]], render_chunk: Callable[[int], Chunk],
                 worker_chunks: Callable[[int], Iterator[Chunk]] | None = None, log: Callable[[str], None] = print):
        self.layout, self.device, self.batch_size, self.log = layout, device, batch_size, log
        self.chunk_size_of, self.render_chunk, self.worker_chunks = chunk_size_of, render_chunk, worker_chunks
        n, h, w = layout.scenes, layout.height, layout.width
        self.rgb = torch.zeros(n, 3, h, w, dtype=torch.uint8, device=device)
        self.depth = torch.zeros(n, 1, h, w, dtype=torch.float32, device=device)
        self.intrinsics = torch.zeros(n, 4, dtype=torch.float32, device=device)
        self.sizes = np.zeros((n, 2), dtype=np.int64)
        """Each slot's scene height and width, on the host."""
        self.chunks_done = -1
        """Chunks written so far (the first ``scenes / chunk`` fill the pool); -1 before the first fill."""
        self.scenes_written = 0
        self.samples_drawn = 0
        self.steps_short = 0
        """Steps that began before the workers had every due refresh chunk ready (they reuse older scenes)."""
        self._queue: queue.Queue | None = None
        self._stop: threading.Event | None = None

    @property
    def fill_chunks(self) -> int:
        return self.layout.scenes // self.layout.chunk

    def ready_for(self, step: int) -> None:
        """Fill the pool (first call) and refresh it for step ``step``."""
        target = self.fill_chunks + self.layout.chunks_due(step, self.batch_size)
        if self.chunks_done < 0:
            self._fill(target)
            return
        if self._queue is None:
            while self.chunks_done < target:
                self._write(self.chunks_done, *self.render_chunk(self.chunks_done))
            return
        while self.chunks_done < target:
            try:
                chunk = self._queue.get_nowait()
            except queue.Empty:
                self.steps_short += 1
                return
            self._write(self.chunks_done, *chunk)

    def _fill(self, target: int) -> None:
        first = target - self.fill_chunks
        started, total = time.monotonic(), self.layout.scenes
        self.log(self.layout.describe() + f"; rendering {total} scenes"
                 + (" (loader workers)" if self.worker_chunks else ""))
        if self.worker_chunks is not None:
            self._start_workers(first)
        report_every = max(1, self.fill_chunks // 4)
        for k, chunk_index in enumerate(range(first, target)):
            chunk = self._queue.get() if self._queue is not None else self.render_chunk(chunk_index)
            self._write(chunk_index, *chunk)
            if (k + 1) % report_every == 0 or k + 1 == self.fill_chunks:
                self.log(f"scene pool: {(k + 1) * self.layout.chunk}/{total} scenes "
                         f"({time.monotonic() - started:.1f} s)")
        self.chunks_done = target

    def _write(self, chunk_index: int, rgb: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor) -> None:
        h, w = self.chunk_size_of(chunk_index)
        c = self.layout.chunk
        start = (chunk_index * c) % self.layout.scenes
        self.rgb[start:start + c, :, :h, :w] = rgb.to(self.device, non_blocking=True)
        self.depth[start:start + c, :, :h, :w] = depth.to(self.device, non_blocking=True)
        self.intrinsics[start:start + c] = intrinsics.to(self.device, non_blocking=True)
        self.sizes[start:start + c] = (h, w)
        self.scenes_written += c
        self.chunks_done = chunk_index + 1 if self.chunks_done >= 0 else self.chunks_done

    def _start_workers(self, first: int) -> None:
        assert self.worker_chunks is not None
        chunks = self.worker_chunks(first)
        self._queue = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        thread = threading.Thread(target=_pull_chunks, args=(chunks, self._queue, self._stop), daemon=True,
                                  name="scene-pool-chunks")
        thread.start()
        weakref.finalize(self, self._stop.set)

    def close(self) -> None:
        """Stop the loader workers (if any)."""
        if self._stop is not None:
            self._stop.set()

    def stats(self) -> dict:
        """Scenes rendered (the first fill included), samples drawn, and samples per scene rendered after the fill
        (about ``reuse`` when the refresh keeps up)."""
        return {"pool_scenes": self.layout.scenes, "scenes_rendered": self.scenes_written,
                "samples_drawn": self.samples_drawn, "steps_short": self.steps_short,
                "draws_per_new_scene": self.samples_drawn / max(self.scenes_written - self.layout.scenes, 1)}


def _pull_chunks(chunks: Iterator[Chunk], into: queue.Queue, stop: threading.Event) -> None:
    """Move rendered chunks from the loader into ``into`` until ``stop`` (a thread: the step never waits on it)."""
    try:
        for chunk in chunks:
            while not stop.is_set():
                try:
                    into.put(chunk, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
