"""How much memory one JARRN inference needs, before it runs: a pure-Python estimate shared by the runtime's guard
and the exporter's static-size check (no numpy, no torch).

Peak memory grows with the padded pixel count and the network's activation channels. Measured on CPU with the
bundled default model (widths 128,128,96,64,48,32,16) at 512x512 and 1024x1024, and from the 4000x6000 ONNX Runtime
run of issue 14 (15.8 GiB): about 570-710 bytes per padded pixel for ONNX Runtime and 630-960 for PyTorch eager, i.e.
about 22-26 bytes per padded pixel per unit of :func:`activation_channels` (28.5 for the default model). The
estimate below rounds up; it is a guard against sizes that cannot fit, not an accounting.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

PAD_MULTIPLE = 64
"""The graph pads height and width to this multiple (model.contract.CONTRACT.pad_multiple; pinned by a test)."""
FULL_WIDTHS = (512, 512, 512, 512, 256, 128, 64)
"""Assumed when a model's widths are unknown: the largest standard configuration, so the guard errs on the safe side."""
BYTES_PER_PIXEL_CHANNEL = {"onnxruntime": 26.0, "torch": 28.0, "export": 40.0}
"""Peak bytes per padded pixel per activation channel (see the module docstring); 'export' is tracing plus the
ONNX Runtime validation run at a static size."""
HEADROOM = 0.9
"""The share of the available memory an inference may plan to use (the rest: the process, fragmentation, the OS)."""
GIB = 2**30


def padded(size: int) -> int:
    return -(-int(size) // PAD_MULTIPLE) * PAD_MULTIPLE


def activation_channels(widths: Sequence[int] | None) -> float:
    """Activation channels per full-resolution pixel: each U-Net level's width over the area it has shrunk by
    (widths innermost first, the outermost level at full resolution)."""
    widths = tuple(widths) if widths else FULL_WIDTHS
    return sum(w / 4.0**level for level, w in enumerate(reversed(widths)))


def estimate_peak_bytes(height: int, width: int, batch: int = 1, *, widths: Sequence[int] | None = None,
                        backend: str = "onnxruntime") -> int:
    """Estimated extra peak memory of one call at ``batch`` x ``height`` x ``width`` on ``backend``."""
    per_channel = BYTES_PER_PIXEL_CHANNEL.get(backend, max(BYTES_PER_PIXEL_CHANNEL.values()))
    pixels = padded(height) * padded(width) * max(int(batch), 1)
    return int(pixels * per_channel * activation_channels(widths))


def available_host_bytes() -> int | None:
    """Memory the system can still give this process (Linux MemAvailable, capped by a cgroup limit); None if unknown."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None and hasattr(os, "sysconf"):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            available = None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as handle:
                limit_text = handle.read().strip()
            with open(usage_file, encoding="ascii") as handle:
                usage = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if limit_text.isdigit() and int(limit_text) < 2**60:
            room = max(int(limit_text) - usage, 0)
            available = room if available is None else min(available, room)
        break
    return available


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB"
