"""zstd-compressed engine files (``build_engine --compress``), for distributing engines; read back transparently.

TensorRT-RTX engines built on a CPU carry the CUDA source of every generated kernel for the just-in-time compiler, and
text compresses well (export/README.md, "Engine size"). The compressed file is one zstd frame holding the serialized
plan; the manifest records the codec and the size and sha256 of both the file on disk and the plan inside it, so
:func:`jarrn_deploy.export.engine.manifest.check_engine_file` checks the file, decompresses it and checks the plan before TensorRT
sees a byte. Engines without a manifest are recognised by the zstd frame's magic number.

Needs the ``zstandard`` package (``pip install zstandard``; part of the ``trt-rtx`` extra), imported only when a
compressed engine is written or read.
"""

from __future__ import annotations

from types import ModuleType

from jarrn_deploy.errors import UnavailableError

ZSTD = "zstd"
CODECS: tuple[str, ...] = ("", ZSTD)
"""Engine file encodings: "" (the plan as TensorRT wrote it) or "zstd"."""

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
"""First four bytes of every zstd frame (RFC 8878, section 3.1.1)."""

ZSTD_LEVEL = 19
"""Compression level: engines are compressed once and read many times, so a slow, small encoding pays off."""

ZSTD_INSTALL_HINT = "reading or writing a zstd-compressed engine needs the zstandard package: `pip install zstandard`"


class CompressionError(ValueError):
    """A compressed engine that does not decode (truncated or not zstd)."""


def zstandard_module() -> ModuleType:
    """The ``zstandard`` module, or :class:`UnavailableError` naming the install command."""
    try:
        import zstandard
    except ImportError:
        raise UnavailableError(ZSTD_INSTALL_HINT) from None
    return zstandard


def is_zstd(data: bytes) -> bool:
    """Whether ``data`` starts like a zstd frame."""
    return data[:4] == ZSTD_MAGIC


def compress(plan: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """One zstd frame holding ``plan`` (its size recorded in the frame header)."""
    return zstandard_module().ZstdCompressor(level=level, write_content_size=True, threads=-1).compress(plan)


def decompress(data: bytes, expected_size: int | None = None) -> bytes:
    """The plan inside a zstd frame; :class:`CompressionError` when it does not decode or has the wrong size."""
    zstandard = zstandard_module()
    try:
        plan = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected_size or 0)
    except zstandard.ZstdError as exc:
        raise CompressionError(f"does not decode as zstd ({exc})") from None
    if expected_size and len(plan) != expected_size:
        raise CompressionError(f"decodes to {len(plan)} bytes, expected {expected_size}")
    return plan
