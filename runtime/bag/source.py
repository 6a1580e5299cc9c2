"""Opening a recording with rosbags' ``AnyReader`` (rosbag2 folder or file, MCAP or sqlite3, or a ROS 1 ``.bag``)."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator
from typing import Any

from jarrn_deploy.errors import InputError, UnavailableError

BAG_INSTALL_HINT = 'reading and writing ROS bags needs rosbags: pip install -e ".[bag]" (or pip install rosbags)'
ROS2_TYPESTORE = "ROS2_HUMBLE"
"""The rosbags type store for messages whose definitions a bag does not carry, and for every message written."""


def import_rosbags() -> None:
    """Raise :class:`UnavailableError` with the install command when rosbags is missing."""
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise UnavailableError(BAG_INSTALL_HINT) from None


def typestore() -> Any:
    """The ROS 2 type store used for reading bags without definitions and for writing OUT."""
    import_rosbags()
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(getattr(Stores, ROS2_TYPESTORE))


def bag_paths(path: Path) -> list[Path]:
    """What ``AnyReader`` opens for IN: a rosbag2 folder, a single ``.mcap``/``.db3`` file (its folder when it has a
    ``metadata.yaml``), or a ROS 1 ``.bag``."""
    if not path.exists():
        raise InputError(f"IN: no such file or folder {path}")
    if path.is_file() and path.suffix in (".mcap", ".db3") and (path.parent / "metadata.yaml").is_file():
        return [path.parent]
    return [path]


def open_bag(path: Path) -> Any:
    """An opened ``AnyReader`` over IN; an empty, truncated or unreadable bag is one :class:`InputError` line."""
    import_rosbags()
    from rosbags.highlevel import AnyReader

    paths = bag_paths(path)  # a missing IN: its own one line, not wrapped in the catch-all below
    try:
        reader = AnyReader(paths, default_typestore=typestore())
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises its own error types per format (AnyReaderError ...)
        raise InputError(f"IN: {path} could not be read as a ROS bag ({first_line(exc)})") from None
    if not reader.connections or reader.message_count == 0:
        reader.close()
        raise InputError(f"IN: {path} holds no messages")
    return reader


def messages(reader: Any, connections: list[Any], path: Path) -> Iterator[tuple[Any, int, Any]]:
    """``reader.messages`` with a failure while reading (a truncated or damaged bag) as one :class:`InputError`."""
    iterator = reader.messages(connections=connections)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - rosbags' per-format reader errors, struct and zstd errors
            raise read_failure(path, exc) from None
        yield item


def read_failure(path: Path, exc: BaseException) -> InputError:
    """The error for a bag that opened but broke while its messages were read (truncated chunk, bad record)."""
    return InputError(f"IN: {path} is damaged or truncated ({first_line(exc)})")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
