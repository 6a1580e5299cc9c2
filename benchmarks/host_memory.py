"""Host memory of this process (Linux ``/proc``, with ``getrusage`` as the fallback)."""

from __future__ import annotations

import sys


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mib() -> float | None:
    """Current resident set size of this process in MiB."""
    kib = _proc_status_kib("VmRSS")
    return kib / 1024 if kib is not None else None


def peak_rss_mib() -> float | None:
    """High-water mark of this process's RSS in MiB (since start, or since :func:`reset_peak_rss`)."""
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except Exception:  # noqa: BLE001 - not available on this platform
        return None


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
