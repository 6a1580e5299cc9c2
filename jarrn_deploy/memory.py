"""How much memory one JARRN inference needs, before it runs, and the guard that refuses what cannot fit: pure Python
(no numpy; torch imported only to ask a CUDA device for its free memory), shared by the model's own ``complete()``,
the runtime's completers (:mod:`jarrn_deploy.runtime.memory_guard`), ``jarrn infer`` (from the image header, before any pixel is
read) and the exporter's static-size check.

The budget is what this process may still allocate: Linux MemAvailable, capped by the room under every memory limit
of the process's own cgroup and its ancestors (:func:`available_host_bytes`), or a CUDA device's free memory.
Override: ``JARRN_MEMORY_GUARD=off`` (any other value than on/off/1/0/true/false/yes/no is a usage error).

Peak memory grows with the padded pixel count and the network's activation channels. Measured on CPU with the
bundled default model (widths 128,128,96,64,48,32,16) at 512x512 and 1024x1024, and from the 4000x6000 ONNX Runtime
run of issue 14 (15.8 GiB): about 570-710 bytes per padded pixel for ONNX Runtime and 630-960 for PyTorch eager, i.e.
about 22-26 bytes per padded pixel per unit of :func:`activation_channels` (28.5 for the default model). The
estimate below rounds up; it is a guard against sizes that cannot fit, not an accounting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jarrn_deploy.errors import UnavailableError, UsageError

PAD_MULTIPLE = 64
"""The graph pads height and width to this multiple (jarrn_deploy.model.contract.CONTRACT.pad_multiple; pinned by a test)."""
FULL_WIDTHS = (512, 512, 512, 512, 256, 128, 64)
"""Assumed when a model's widths are unknown: the largest standard configuration, so the guard errs on the safe side."""
TORCH_BYTES_PER_PIXEL_CHANNEL = 28.0
"""Peak bytes per padded pixel per activation channel of the network in PyTorch eager (see the module docstring): the
bare model's ``complete()`` and the runtime's PyTorch backend. Each runtime backend's coefficient is in its record
(:mod:`jarrn_deploy.runtime.backends.registry`), which passes it to :class:`MemoryGuard`."""
EXPORT_BYTES_PER_PIXEL_CHANNEL = 40.0
"""The same for an ONNX export at a static size: tracing plus the ONNX Runtime validation run."""
HEADROOM = 0.9
"""The share of the available memory an inference may plan to use (the rest: the process, fragmentation, the OS)."""
GIB = 2**30
UNLIMITED = 2**60
"""cgroup limits at or above this mean 'no limit' (v1 writes 9223372036854771712 for none)."""


def padded(size: int) -> int:
    return -(-int(size) // PAD_MULTIPLE) * PAD_MULTIPLE


def activation_channels(widths: Sequence[int] | None) -> float:
    """Activation channels per full-resolution pixel: each U-Net level's width over the area it has shrunk by
    (widths innermost first, the outermost level at full resolution)."""
    widths = tuple(widths) if widths else FULL_WIDTHS
    return sum(w / 4.0**level for level, w in enumerate(reversed(widths)))


def estimate_peak_bytes(height: int, width: int, batch: int = 1, *, widths: Sequence[int] | None = None,
                        bytes_per_pixel_channel: float) -> int:
    """Estimated extra peak memory of one call at ``batch`` x ``height`` x ``width`` for a runtime whose peak is
    ``bytes_per_pixel_channel`` per padded pixel per activation channel."""
    pixels = padded(height) * padded(width) * max(int(batch), 1)
    return int(pixels * bytes_per_pixel_channel * activation_channels(widths))


def available_host_bytes(root: str | os.PathLike = "/") -> int | None:
    """Memory the system can still give this process: Linux MemAvailable, capped by the room left under every memory
    limit of the process's own cgroup (v2, or v1's memory controller) and its ancestors (Slurm ``--mem``,
    ``systemd-run -p MemoryMax``, a container's limit); None if unknown. ``root``: where ``/proc`` and ``/sys`` are
    read (tests pass a fake tree)."""
    root = Path(root)
    available = _meminfo_available(root)
    if available is None and str(root) == "/" and hasattr(os, "sysconf"):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            available = None
    room = cgroup_room_bytes(root)
    if room is not None:
        available = room if available is None else min(available, room)
    return available


def _meminfo_available(root: Path) -> int | None:
    try:
        with open(root / "proc" / "meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    """The integer in a cgroup file; None for 'max', a missing or unreadable file, or a limit meaning 'none'."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit() or int(text) >= UNLIMITED:
        return None
    return int(text)


def _inactive_file(stat_path: Path, key: str) -> int:
    """Reclaimable page cache counted in a cgroup's usage (the kernel drops it before it kills)."""
    try:
        for line in stat_path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except (OSError, UnicodeDecodeError):
        pass
    return 0


def own_cgroup_folders(root: str | os.PathLike = "/") -> list[Path]:
    """The process's own memory cgroup folder and its ancestors up to the hierarchy's root (innermost first), read
    from ``/proc/self/cgroup``: the v2 unified hierarchy (``0::/path``) or v1's memory controller
    (``N:memory:/path``); empty when there is no cgroup file system."""
    root = Path(root)
    try:
        lines = (root / "proc" / "self" / "cgroup").read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    mounts = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and (root / "sys/fs/cgroup/cgroup.controllers").exists():  # v2, the unified hierarchy
            mounts.append((root / "sys/fs/cgroup", path))
        elif "memory" in controllers.split(","):  # v1, the memory controller's own hierarchy
            mounts.append((root / "sys/fs/cgroup/memory", path))
    if not mounts:  # no readable /proc/self/cgroup: the hierarchy's root level only (the former behaviour)
        mounts = [(root / "sys/fs/cgroup", "/"), (root / "sys/fs/cgroup/memory", "/")]
    folders = []
    for base, path in mounts:
        if not base.is_dir():
            continue
        folder = base / path.strip("/")
        if ".." in Path(path).parts or not folder.is_dir():  # a cgroup namespace shows the process at its own root: its limits are there
            folder = base
        while True:
            folders.append(folder)
            if folder == base:
                break
            folder = folder.parent
    return folders


def cgroup_room_bytes(root: str | os.PathLike = "/") -> int | None:
    """The smallest room (limit - usage, page cache not counted) over every memory limit set on the process's own
    cgroup and its ancestors (see :func:`own_cgroup_folders`); None when no limit is set."""
    room = None
    for folder in own_cgroup_folders(root):
        v2 = (folder / "memory.max").exists()
        names = ("memory.max", "memory.current", "inactive_file") if v2 else (
            "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        limit = _read_int(folder / names[0])
        usage = _read_int(folder / names[1])
        if limit is None or usage is None:
            continue
        usage = max(usage - _inactive_file(folder / "memory.stat", names[2]), 0)
        here = max(limit - usage, 0)
        room = here if room is None else min(room, here)
    return room


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


# ---------------------------------------------------------------------------------------------------------------------
# the guard

ENV_SWITCH = "JARRN_MEMORY_GUARD"
"""Set to 'off' (or 0/false/no) to disable the guard for every call in the process; 'on' (1/true/yes) or unset
keeps it; anything else is a :class:`jarrn_deploy.errors.UsageError`."""
_OFF = ("off", "0", "false", "no")
_ON = ("", "on", "1", "true", "yes")
SMALL_CALL_BYTES = 256 * 2**20
"""Calls estimated below this run without asking the system (reading the free memory costs more than they risk)."""
OVERRIDE_HINT = f"override with {ENV_SWITCH}=off or DepthCompleter(..., memory_guard=False)"
"""How a user of :class:`runtime.DepthCompleter` turns the guard off (the default :attr:`MemoryGuard.override`)."""
ENV_OVERRIDE_HINT = f"override with {ENV_SWITCH}=off"
"""How a user of the bare PyTorch model (``net.complete``) turns the guard off."""


class MemoryGuardError(UnavailableError, MemoryError):
    """The estimated peak memory of a call does not fit in what this machine has free (exit status 5)."""


def guard_disabled() -> bool:
    """Whether ``JARRN_MEMORY_GUARD`` turns the guard off; :class:`UsageError` for a value that is neither on nor off."""
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    if value in _OFF:
        return True
    if value in _ON:
        return False
    raise UsageError(f"{ENV_SWITCH}: expected off (0, false, no) or on (1, true, yes), got "
                     f"{os.environ[ENV_SWITCH]!r}")


def torch_cuda_free_bytes(device: Any) -> int | None:
    """Free memory on a CUDA ``device`` for the next call (PyTorch's cached but unused blocks included); None when
    it cannot be asked."""
    try:
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        # memory PyTorch's caching allocator holds but does not use is free for the next call too
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    except Exception:  # noqa: BLE001 - no CUDA, or no way to ask: nothing to check
        return None


def _host_free() -> int | None:
    return available_host_bytes()  # looked up at call time, so a test can replace it


@dataclass
class MemoryGuard:
    """Refuses calls whose estimated peak memory exceeds what is free (or ``limit_bytes``)."""

    backend: str
    """What runs the call ("torch", "onnxruntime" ...), for the message."""
    widths: Sequence[int] | None = None
    """The model's U-Net widths (None: assume the full model, the safe side)."""
    where: str = "host memory"
    """What the budget is, for the message."""
    free_bytes: Callable[[], int | None] = field(default=_host_free)
    """How to ask for the free memory now (None: unknown, the call runs)."""
    limit_bytes: int | None = None
    """A fixed budget instead of asking the system."""
    headroom: float = HEADROOM
    """The share of the free memory a call may plan to use."""
    override: str = OVERRIDE_HINT
    """How to turn the guard off, for the message (the way differs between the runtime and the bare model)."""
    proven_bytes: int = 0
    """The largest estimate that already ran in this process: its memory is held (ONNX Runtime's arena, PyTorch's
    cache) and reused, so it no longer shows as free; sizes up to it are not refused again."""
    bytes_per_pixel_channel: float = field(kw_only=True)
    """The runtime's peak bytes per padded pixel per activation channel (its registry record; PyTorch:
    :data:`TORCH_BYTES_PER_PIXEL_CHANNEL`)."""

    @classmethod
    def for_torch(cls, widths: Sequence[int] | None, device: Any, override: str = OVERRIDE_HINT) -> "MemoryGuard":
        """The guard of a PyTorch network on ``device`` (a ``torch.device``): the GPU's free memory on CUDA, the
        host's otherwise."""
        return cls.for_device("torch", TORCH_BYTES_PER_PIXEL_CHANNEL, widths, device, override)

    @classmethod
    def for_device(cls, backend: str, bytes_per_pixel_channel: float, widths: Sequence[int] | None, device: Any,
                   override: str = OVERRIDE_HINT) -> "MemoryGuard":
        """The guard of a runtime whose peak memory is on ``device`` (a ``torch.device``-like with ``.type``; None
        = the host): the GPU's free memory on CUDA (asked through PyTorch), the host's otherwise."""
        if getattr(device, "type", "cpu") == "cuda":
            return cls(backend, widths, f"free memory on {device}", lambda: torch_cuda_free_bytes(device),
                       override=override, bytes_per_pixel_channel=bytes_per_pixel_channel)
        return cls(backend, widths, override=override, bytes_per_pixel_channel=bytes_per_pixel_channel)

    def estimate(self, shape: Sequence[int]) -> int:
        """Estimated peak bytes for graph inputs of ``shape`` ``[B,C,H,W]``."""
        batch, _, height, width = shape
        return estimate_peak_bytes(height, width, batch, widths=self.widths,
                                   bytes_per_pixel_channel=self.bytes_per_pixel_channel)

    def check(self, shape: Sequence[int]) -> None:
        """Raise :class:`MemoryGuardError` when a call with inputs of ``shape`` ``[B,C,H,W]`` cannot fit."""
        if guard_disabled():
            return
        needed = self.estimate(shape)
        if self.limit_bytes is None and (needed < SMALL_CALL_BYTES or needed <= self.proven_bytes):
            return
        budget = self.limit_bytes if self.limit_bytes is not None else self.free_bytes()
        if budget is None:
            return
        allowed = budget if self.limit_bytes is not None else budget * self.headroom
        if needed > allowed:
            batch, _, height, width = shape
            raise MemoryGuardError(
                f"input {height}x{width} (batch {batch}): {self.backend} needs about {gib(needed)}, "
                f"{gib(budget)} of {self.where} {'allowed' if self.limit_bytes is not None else 'available'}; "
                f"use a smaller size or batch, or {self.override}"
            )

    def ran(self, shape: Sequence[int]) -> None:
        """Record that a call with inputs of ``shape`` completed (see :attr:`proven_bytes`)."""
        self.proven_bytes = max(self.proven_bytes, self.estimate(shape))


def user_batch_shape(rgb: Any) -> tuple[int, int, int, int] | None:
    """``[B,3,H,W]`` of a user RGB array (HxWx3 or BxHxWx3) without converting it, so the guard can refuse a size
    before the conversion allocates anything; None when it is not such an array (validation reports that)."""
    shape = getattr(rgb, "shape", None)
    if not isinstance(shape, tuple) or len(shape) not in (3, 4) or shape[-1] != 3:
        return None
    batch = shape[0] if len(shape) == 4 else 1
    return (int(batch), 3, int(shape[-3]), int(shape[-2]))
