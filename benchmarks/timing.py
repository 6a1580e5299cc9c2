"""Latency statistics and CPU interference: how long calls took, and how much of the machine other processes used
meanwhile (Linux ``/proc``)."""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def latency_stats(samples_s: Sequence[float], batch: int = 1) -> dict:
    """Summary of per-call latencies given in seconds: milliseconds and images per second.

    Percentiles use linear interpolation between order statistics (numpy's default), so with fewer than 100 samples
    p99 lies between the two largest values. ``throughput_ips`` is images per second over the whole timed run
    (``batch * n / sum``), i.e. based on the mean, not the median.
    """
    values = np.asarray(list(samples_s), dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("latency_stats: expected at least one latency sample")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("latency_stats: latencies must be finite and non-negative")
    if batch < 1:
        raise ValueError(f"latency_stats: batch must be >= 1, got {batch}")
    ms = values * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(ms, PERCENTILES))
    mean = float(ms.mean())
    return {
        "n": int(ms.size),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": mean,
        "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "throughput_ips": float(batch * 1e3 / mean) if mean > 0 else float("inf"),
    }


def iteration_count(first_s: float, *, seconds: float, min_iterations: int, max_iterations: int) -> int:
    """How many timed iterations fit into ``seconds`` given one call's duration, within [min, max]."""
    if first_s <= 0:
        return max_iterations
    return int(min(max_iterations, max(min_iterations, round(seconds / first_s))))


QUIET_SHARE = 0.10
"""A timed call counts as *quiet* when other processes used less than this share of the machine's CPU time."""


class CpuInterference:
    """Share of the machine's CPU time that *other* processes used during a time window (Linux ``/proc``).

    ``(busy jiffies of all CPUs - this process's utime+stime) / (window x CPUs)``; 0 = nobody else ran, 1 = every
    CPU was busy with other work. Resolution is one clock tick (10 ms) per CPU, so it is meaningful for calls of
    100 ms and more. On systems without ``/proc/stat`` every share is None.
    """

    def __init__(self) -> None:
        self.tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.cpus = os.cpu_count() or 1
        self.available = self._read() is not None

    @staticmethod
    def _read() -> tuple[float, int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
            with open("/proc/self/stat", encoding="ascii") as handle:
                own = handle.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        if len(fields) > 8:
            busy -= sum(fields[8:10])  # guest time is already counted in user / nice
        return time.perf_counter(), busy, int(own[11]) + int(own[12])

    def snapshot(self) -> tuple[float, int, int] | None:
        return self._read() if self.available else None

    def share(self, start: tuple | None, end: tuple | None) -> float | None:
        if start is None or end is None or end[0] <= start[0]:
            return None
        others = (end[1] - start[1]) - (end[2] - start[2])
        return max(0.0, others / (self.tick * (end[0] - start[0]) * self.cpus))


def wait_for_quiet(max_wait_s: float, *, window_s: float = 1.0, threshold: float = QUIET_SHARE) -> dict:
    """Sleep in ``window_s`` steps until other processes use less than ``threshold`` of the CPU over a window, or
    ``max_wait_s`` has passed. Returns ``{"waited_s", "quiet", "share"}`` (share of the last window)."""
    cpu = CpuInterference()
    start = time.perf_counter()
    share = None
    while cpu.available:
        before = cpu.snapshot()
        time.sleep(window_s)
        share = cpu.share(before, cpu.snapshot())
        if share is not None and share < threshold:
            return {"waited_s": round(time.perf_counter() - start, 1), "quiet": True, "share": share}
        if time.perf_counter() - start >= max_wait_s:
            break
    return {"waited_s": round(time.perf_counter() - start, 1), "quiet": bool(not cpu.available), "share": share}


def quiet_stats(samples_s: Sequence[float], shares: Sequence[float | None], batch: int = 1,
                threshold: float = QUIET_SHARE, minimum: int = 3) -> dict | None:
    """:func:`latency_stats` of the calls during which other processes used < ``threshold`` of the CPU; None when
    fewer than ``minimum`` such calls exist (or no share could be measured)."""
    quiet = [s for s, share in zip(samples_s, shares) if share is not None and share < threshold]
    return latency_stats(quiet, batch) if len(quiet) >= minimum else None


def interference_summary(shares: Sequence[float | None]) -> dict | None:
    values = [s for s in shares if s is not None]
    if not values:
        return None
    return {"median": float(np.median(values)), "max": float(np.max(values)),
            "quiet_calls": int(sum(v < QUIET_SHARE for v in values)), "calls": len(values)}
