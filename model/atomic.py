"""File helpers shared by every step: atomic writes (temp file beside the target, then rename, so no reader sees a
truncated file), all-or-nothing folders of outputs, removal of temp files a killed run left behind, content hashes.

Temp names carry the writer's pid (``.<name>.pid<PID>.<random>.tmp``): a later run removes those whose process no
longer lives (:func:`remove_stale_temp_files`), so ``kill -9`` in the middle of a write leaves nothing for good.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

_FILE_MODE = 0o644  # mkstemp creates 0600; artifacts are meant to be shared
_PID_TAG = re.compile(r"\.pid(\d+)\.")
STAGING_DIR_PREFIX = ".jarrn-staging."
UNTAGGED_STALE_AFTER_S = 24 * 3600.0
"""Temp files from before pid tags (``.<name>.<random>.tmp``) are removed once they are this old."""


def temp_prefix(target: str | os.PathLike) -> str:
    """The hidden prefix of every temp file written for ``target``: ``.<name>.pid<PID>.``."""
    return f".{Path(target).name}.pid{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a reused pid counts as alive: nothing is removed)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_stale(path: Path, now: float) -> bool:
    match = _PID_TAG.search(path.name)
    if match:
        return int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1)))
    try:
        return now - path.lstat().st_mtime > UNTAGGED_STALE_AFTER_S
    except OSError:
        return False


def remove_stale_temp_files(target: str | os.PathLike, suffixes: tuple[str, ...] = (".tmp",)) -> list[Path]:
    """Remove the temp files (and staging folders) that runs killed while writing ``target`` left in its folder:
    names ``.<target name>.*<suffix>`` whose writer's pid no longer lives (untagged ones after a day). Returns them."""
    target = Path(target)
    folder = target.parent
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    prefix = f".{target.name}."
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not name.endswith(suffixes) or not _is_stale(entry, now):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success it replaces ``path``, on any error it is removed."""
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"directory does not exist: {target.parent}")
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target), suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_staging_dirs(folder: str | os.PathLike) -> list[Path]:
    """Remove the staging folders of :func:`staged_outputs` that killed runs left in ``folder``."""
    folder, now, removed = Path(folder), time.time(), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.name.startswith(STAGING_DIR_PREFIX) and entry.is_dir() and _is_stale(entry, now):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextmanager
def staged_outputs(folder: str | os.PathLike) -> Iterator[Path]:
    """All-or-nothing outputs: write every file into the yielded hidden folder (inside ``folder``, same filesystem);
    when the block succeeds they are moved into ``folder`` (each move a rename), when it fails none of them appears
    and the staging folder is removed. Stale staging folders of killed runs are removed first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_staging_dirs(folder)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=f"{STAGING_DIR_PREFIX}pid{os.getpid()}."))
    try:
        yield staging
        for item in sorted(staging.rglob("*")):
            if item.is_file():
                os.chmod(item, _FILE_MODE)
        for item in sorted(staging.iterdir()):
            destination = folder / item.name
            if item.is_dir() and destination.is_dir():
                shutil.rmtree(destination)
            os.replace(item, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_writable_folder(folder: str | os.PathLike, flag: str, *, create: bool = True) -> Path:
    """Fail now, not after the work, when ``folder`` cannot take our files: a file in the way, no permission, a
    read-only or full filesystem (a 4 KiB probe file is written and removed). ``create`` makes the folder;
    otherwise its nearest existing parent is probed. Raises :class:`jarrn_deploy.errors.OutputError` naming ``flag``."""
    from jarrn_deploy.errors import OutputError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag}: {folder} exists and is not a folder")
    probe_dir = folder
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{flag}: cannot create {folder} ({exc.strerror or exc})") from None
    else:
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise OutputError(f"{flag}: cannot create {folder}: {probe_dir} is not a folder")
    write_probe(probe_dir, flag)
    return folder


def write_probe(folder: str | os.PathLike, flag: str) -> None:
    """Create and remove a 4 KiB file in the existing ``folder``: catches what permission bits do not (a read-only
    mount, /proc, a full disk). Raises :class:`jarrn_deploy.errors.OutputError` naming ``flag``."""
    from jarrn_deploy.errors import OutputError

    remove_stale_temp_files(Path(folder) / "write-probe")  # probes of runs killed mid-probe
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".write-probe.pid{os.getpid()}.", suffix=".tmp") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputError(f"{flag}: cannot write in {folder} ({exc.strerror or exc})") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write ``data`` atomically and durably (fsync before the rename), creating missing parent folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_input_file(path: str | os.PathLike, flag: str, expected: str) -> None:
    """:class:`jarrn_deploy.errors.InputError` naming ``flag`` when ``path`` is missing or a folder (``expected``: what it
    should be)."""
    from jarrn_deploy.errors import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag}: {path} is a folder, expected {expected}")
    if not path.is_file():
        raise InputError(f"{flag}: no such file {path}")


def refuse_overwriting_inputs(outputs: Iterable[str | os.PathLike], inputs: Mapping[str, str | os.PathLike | None],
                              out_flag: str) -> None:
    """:class:`jarrn_deploy.errors.OutputError` (exit 4), before any work, when one of ``outputs`` is one of ``inputs``
    (option -> path; None skipped): no command writes over one of its own inputs."""
    from jarrn_deploy.errors import OutputError

    def same(a: Path, b: Path) -> bool:
        try:
            return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
        except OSError:
            return False

    for output in map(Path, outputs):
        for flag, path in inputs.items():
            if path is not None and same(Path(path), output):
                raise OutputError(f"{flag}: {path} would be replaced by the output {output.name} written to "
                                  f"{out_flag}; choose another {out_flag} (no command writes over its inputs)")
