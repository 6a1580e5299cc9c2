"""The Triton server process behind ``jarrn serve``: where its binary comes from, how it is started, and what a crashed
run leaves behind.

Binary: NVIDIA's ``tritonserver`` and its Python-backend stub ship inside the ``nvidia-pytriton`` wheel. That wheel
pins ``numpy<2`` (and protobuf) for the whole environment, so the project does not depend on it: the first
``jarrn serve`` installs the wheel with ``pip install --no-deps --target`` into a cache folder (:func:`server_bundle`).

Stub environment: the stub embeds this interpreter's libpython and was built against numpy 1 (with numpy 2 it reads
every input tensor as zeros, measured: no error, wrong answers). Where this environment has numpy 2, the cache also
gets a ``--system-site-packages`` venv holding only ``numpy<2``; the stub picks the environment of the first
``python3`` on ``PATH``, so that venv's ``bin`` goes first on the server's ``PATH`` and every other package (the
project, onnxruntime, torch) still comes from this environment.

Crash safety: the server is started with ``PR_SET_PDEATHSIG`` = SIGKILL (it dies with ``jarrn serve``, even after
kill -9), the stub watches its parents (:func:`watch_parents`), and the names of the server's temporary folder and
shared-memory segments carry the owner's pid, so :func:`remove_stale_leftovers` can delete those of dead owners.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from jarrn_deploy.cache import cache_home
from jarrn_deploy.errors import UnavailableError
from jarrn_deploy.model.atomic import pid_alive
from jarrn_deploy.progress import Log

PYTRITON_VERSION = "0.7.0"
"""The ``nvidia-pytriton`` wheel whose ``tritonserver`` (Triton 2.51) and Python-backend stub ``jarrn serve`` runs."""
STUB_NUMPY = "numpy<2"
"""What the stub's pybind11 build needs (see the module docstring)."""
TEMP_PREFIX = "jarrn-serve-"
"""Temporary folders are ``<tmp>/jarrn-serve-<pid>-<random>``, shared-memory segments
``/dev/shm/jarrn-serve-<pid>-*``."""
LEGACY_SHM_PREFIX = "pytrtion"
"""Segments that earlier versions (PyTriton's launcher) left: ``/dev/shm/pytrtion<pid>-*``."""
PARENT_PID_ENV = "JARRN_SERVE_PID"
"""Environment variable telling the stub which ``jarrn serve`` process it belongs to."""
PR_SET_PDEATHSIG = 1



def cache_dir() -> Path:
    """Where the server bundle and the stub's environment are installed."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return cache_home() / "triton" / f"pytriton-{PYTRITON_VERSION}-py{version}"


def install_commands(root: Path) -> list[str]:
    """The commands :func:`server_bundle` runs, for the message when they fail (e.g. offline)."""
    return [f"{sys.executable} -m pip install --no-deps --target {root / 'bundle'} nvidia-pytriton=={PYTRITON_VERSION}",
            f"{sys.executable} -m venv --system-site-packages {root / 'stub-env'} && "
            f"{root / 'stub-env' / 'bin' / 'python'} -m pip install '{STUB_NUMPY}'"]


@dataclass(frozen=True)
class ServerBundle:
    """The files needed to run Triton with the Python backend."""

    binary: Path
    """``tritonserver``."""
    libs: Path
    """Shared libraries the binary links (``nvidia_pytriton.libs``)."""
    backends: Path
    """Backend folder holding ``python/libtriton_python.so``, ``triton_python_backend_utils.py`` and the stub."""
    stub_bin: Path | None
    """``bin`` of the stub's environment (first on ``PATH``), None when this environment's numpy suits the stub."""


def numpy_needs_stub_env() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("numpy").split(".")[0]) >= 2
    except PackageNotFoundError:
        return False


def _run_step(command: list[str], what: str, root: Path, log: Log) -> None:
    log(f"  {what} ...")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UnavailableError(f"could not {what} ({detail}); needs PyPI once; run by hand: "
                               + " ; ".join(install_commands(root)))


def _prepare_backends(site: Path, target: Path) -> Path:
    """``backends/python`` with the stub of this Python version next to ``libtriton_python.so`` (Triton looks there)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = site / "pytriton" / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise UnavailableError(f"nvidia-pytriton {PYTRITON_VERSION} has no Python-backend stub for Python {version}")
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    source = site / "pytriton" / "tritonserver" / "backends" / "python"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(source / name, python_dir / name)
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    return target


def server_bundle(log: Log = print, root: Path | None = None) -> ServerBundle:
    """The server bundle, installed into :func:`cache_dir` on first use (one line per step; 145 MB installed, plus
    80 MB for the stub's numpy where needed)."""
    root = root or cache_dir()
    site, backends, stub_env = root / "bundle", root / "backends", root / "stub-env"
    needs_env = numpy_needs_stub_env()
    if not _installed(root, stub_env, needs_env):
        root.mkdir(parents=True, exist_ok=True)
        with _install_lock(root):
            _install_bundle(root, site, backends, stub_env, needs_env, log)
    return ServerBundle(binary=site / "pytriton" / "tritonserver" / "bin" / "tritonserver",
                        libs=site / "nvidia_pytriton.libs", backends=backends,
                        stub_bin=stub_env / "bin" if needs_env else None)


@contextmanager
def _install_lock(root: Path) -> Iterator[None]:
    """One installer at a time (two servers starting together, e.g. parallel test workers, share the cache)."""
    import fcntl

    with open(root / ".install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _installed(root: Path, stub_env: Path, needs_env: bool) -> bool:
    return (root / "complete").is_file() and (not needs_env or (stub_env / "complete").is_file())


def _install_bundle(root: Path, site: Path, backends: Path, stub_env: Path, needs_env: bool, log: Log) -> None:
    if _installed(root, stub_env, needs_env):
        return  # another process finished the install while this one waited for the lock
    done = root / "complete"
    log(f"first use of jarrn serve: installing Triton (nvidia-pytriton {PYTRITON_VERSION}, without its "
        f"dependencies) into {root} ...")
    if not done.is_file():
        for stale in (site, backends):
            shutil.rmtree(stale, ignore_errors=True)
        _run_step([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                   f"nvidia-pytriton=={PYTRITON_VERSION}"],
                  f"download nvidia-pytriton {PYTRITON_VERSION}", root, log)
        _prepare_backends(site, backends)
        done.write_text(PYTRITON_VERSION + "\n")
    if needs_env and not (stub_env / "complete").is_file():
        shutil.rmtree(stub_env, ignore_errors=True)
        _run_step([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(stub_env)],
                  "create the stub's environment", root, log)
        _run_step([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                   str(_venv_site_packages(stub_env)), STUB_NUMPY],
                  f"install {STUB_NUMPY} for the stub (it was built against numpy 1)", root, log)
        (stub_env / "complete").write_text(STUB_NUMPY + "\n")
    log("  done")


def _venv_site_packages(env: Path) -> Path:
    return env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


# ---------------------------------------------------------------------------------------------------------------------
# leftovers of dead owners


def _owner_pid(name: str, prefix: str) -> int | None:
    digits = name[len(prefix):].split("-", 1)[0]
    return int(digits) if name.startswith(prefix) and digits.isdigit() else None


def remove_stale_leftovers(shm_dir: Path = Path("/dev/shm"), temp_dir: Path | None = None) -> list[Path]:
    """Delete shared-memory segments and temporary folders of ``jarrn serve`` runs whose process is gone (only this
    user's); returns what was removed."""
    temp_dir = temp_dir or Path(tempfile.gettempdir())
    removed = []
    for folder, prefixes in ((shm_dir, (TEMP_PREFIX, LEGACY_SHM_PREFIX)), (temp_dir, (TEMP_PREFIX,))):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            pid = next((p for p in (_owner_pid(entry.name, prefix) for prefix in prefixes) if p is not None), None)
            try:
                if pid is None or pid_alive(pid) or entry.lstat().st_uid != os.getuid():
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError:
                continue
            removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------------------------------------------
# the process


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent (``jarrn serve``'s main thread) dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def exit_reason(returncode: int) -> str:
    """What a tritonserver exit status means, in words."""
    if returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        cause = (" (the kernel's out-of-memory killer, or someone ran kill -9; see `dmesg`)"
                 if number == signal.SIGKILL else "")
        return f"tritonserver was killed by {name}{cause}"
    return f"tritonserver exited with status {returncode}"


class ServerProcess:
    """A running ``tritonserver`` that dies with this process."""

    def __init__(self, bundle: ServerBundle, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        environment = dict(env)
        libs = [str(bundle.libs), *(p for p in environment.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p)]
        environment["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        if bundle.stub_bin is not None:
            environment["PATH"] = os.pathsep.join([str(bundle.stub_bin), environment.get("PATH", os.defpath)])
        environment[PARENT_PID_ENV] = str(os.getpid())
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen([str(bundle.binary), *args], env=environment, stdin=subprocess.DEVNULL,
                                            stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, drain_s: float) -> int | None:
        """SIGTERM (Triton stops taking requests and finishes those in flight for up to its exit timeout), SIGKILL
        after ``drain_s`` + 5 s; returns the exit status."""
        if self.is_alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=drain_s + 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def watch_parents(period_s: float = 0.5) -> None:
    """In the stub: exit as soon as Triton or ``jarrn serve`` is gone, even while a batch runs (a daemon thread)."""
    serve_pid = int(os.environ.get(PARENT_PID_ENV, "0") or 0)
    triton_pid = os.getppid()

    def _watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != triton_pid or (serve_pid and not pid_alive(serve_pid)):
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=_watch, name="jarrn-parent-watch", daemon=True).start()
