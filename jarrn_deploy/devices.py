"""One rule for every ``--device`` / ``device=`` value: 'auto', 'cpu', 'cuda' or 'cuda:N', checked before any work.

Pure Python at import time; torch is imported only when the value names CUDA (or 'auto'), to ask whether it is there.
"""

from __future__ import annotations

import re

from jarrn_deploy.errors import UnavailableError, UsageError

DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
DEVICE_HELP = ("'auto' (the first CUDA GPU when PyTorch sees one, else the CPU; default), 'cpu', 'cuda' (= cuda:0) "
               "or 'cuda:N'")
"""Help text for every ``--device`` option."""
_DEVICE_PATTERN = re.compile(r"(auto|cpu|cuda)(?::(\d+))?")


def parse_device(value: object, *, name: str = "--device") -> str:
    """The canonical spelling of ``value`` ('auto', 'cpu', 'cuda', 'cuda:N'); :class:`UsageError` otherwise.

    Does not check that the device exists (see :func:`resolve_device`)."""
    text = str(getattr(value, "type", value) if not isinstance(value, str) else value).strip().lower()
    index = getattr(value, "index", None) if not isinstance(value, str) else None
    match = _DEVICE_PATTERN.fullmatch(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise UsageError(f"{name}: expected {DEVICE_CHOICES}, got {value!r}")
    if index is not None and match.group(1) == "cuda":
        return f"cuda:{int(index)}"
    return text


def resolve_device(value: object = "auto", *, name: str = "--device", local_rank: int | None = None) -> str:
    """The device to use: 'cpu' or 'cuda:N'. 'auto' picks CUDA when PyTorch sees a GPU. A CUDA device that this
    PyTorch build or machine does not have raises :class:`UnavailableError` with the fix, before any work.

    ``local_rank`` (one process per GPU, e.g. under torchrun): a CUDA device, 'auto' on a GPU machine included,
    becomes ``cuda:<local_rank>`` whatever index was given, so every process takes its own GPU."""
    device = parse_device(value, name=name)
    if local_rank is not None and device != "cpu":
        device = "auto" if device == "auto" else f"cuda:{int(local_rank)}"
    if device == "cpu":
        return device
    try:
        import torch
    except ImportError:
        if device == "auto":
            return "cpu"
        raise UnavailableError(f"{name} {device}: PyTorch is not installed (`pip install -e .`)") from None
    available = torch.cuda.is_available()
    if device == "auto":
        if not available:
            return "cpu"
        device = f"cuda:{int(local_rank or 0)}"
    if not available:
        build = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "PyTorch sees no CUDA GPU"
        raise UnavailableError(f"{name} {device}: {build} (use {name} cpu, or install a CUDA build of PyTorch)")
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise UnavailableError(f"{name} {device}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
    return f"cuda:{index}"


def cuda_visible_devices(index: int, visible: str | None = None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value under which a child process sees GPU ``cuda:<index>`` of this process as
    its only GPU, ``cuda:0``. ``visible``: this process's own value (default: read from the environment)."""
    import os

    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    if not entries:
        return str(int(index))
    if not 0 <= index < len(entries):
        raise UnavailableError(f"cuda:{index}: CUDA_VISIBLE_DEVICES={visible!r} shows only {len(entries)} GPU(s)")
    return entries[index]
