"""Pairing each camera image with the LiDAR sweep nearest in time (header stamps), in one pass over a recording.

An image waits until a sweep stamped more than ``max_dt`` after it has arrived (no nearer one can follow), an image
stamped more than ``max_dt`` + :data:`MAX_RECORD_LAG_NS` after it has arrived (a LiDAR that stopped publishing does not
hold the camera's images in memory), or the recording ends; then it gets the nearest sweep within ``max_dt`` (the earlier one on a tie), or ``None`` when there
is none (the command warns about that frame, skips it and counts it). Sweeps too old for any later image are dropped,
so memory holds a few sweeps, not the recording.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

MAX_RECORD_LAG_NS = 1_000_000_000
"""How much later than its stamp a sweep may still be recorded and paired (recorders write with some delay)."""

Image = TypeVar("Image")
Sweep = TypeVar("Sweep")


class NearestSweep(Generic[Image, Sweep]):
    """Feed images and sweeps in recording order; each call returns the images it could now pair."""

    def __init__(self, max_dt_ns: int) -> None:
        self.max_dt_ns = max_dt_ns
        self._sweeps: deque[tuple[int, Sweep]] = deque()
        self._images: deque[tuple[int, Image]] = deque()

    def add_sweep(self, stamp_ns: int, sweep: Sweep) -> list[tuple[Image, Sweep | None]]:
        self._sweeps.append((stamp_ns, sweep))
        return self._resolve(final=False)

    def add_image(self, stamp_ns: int, image: Image) -> list[tuple[Image, Sweep | None]]:
        self._images.append((stamp_ns, image))
        return self._resolve(final=False)

    def finish(self) -> list[tuple[Image, Sweep | None]]:
        """The images still waiting, paired with what there is (the recording has ended)."""
        return self._resolve(final=True)

    def _nearest(self, stamp_ns: int) -> Sweep | None:
        best, best_dt = None, None
        for sweep_stamp, sweep in self._sweeps:
            dt = abs(sweep_stamp - stamp_ns)
            if dt <= self.max_dt_ns and (best_dt is None or dt < best_dt):
                best, best_dt = sweep, dt
        return best

    def _resolve(self, final: bool) -> list[tuple[Image, Sweep | None]]:
        paired = []
        latest_sweep = max((stamp for stamp, _ in self._sweeps), default=None)
        latest_image = max(stamp for stamp, _ in self._images) if self._images else None
        last_stamp = None
        while self._images:
            stamp, image = self._images[0]
            sweep_passed = latest_sweep is not None and latest_sweep > stamp + self.max_dt_ns
            given_up = latest_image > stamp + self.max_dt_ns + MAX_RECORD_LAG_NS
            if not (final or sweep_passed or given_up):
                break
            paired.append((image, self._nearest(stamp)))
            self._images.popleft()
            last_stamp = stamp
        oldest = self._images[0][0] if self._images else last_stamp
        if oldest is not None:  # later images are stamped later: older sweeps can no longer be the nearest
            while len(self._sweeps) > 1 and self._sweeps[0][0] < oldest - self.max_dt_ns:
                self._sweeps.popleft()
        return paired
