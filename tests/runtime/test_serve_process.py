"""``jarrn serve`` as a process: what SIGTERM and kill -9 leave behind, and what the next start cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jarrn_deploy.runtime.serve import server_process_ids
from jarrn_deploy.runtime.serving_server import TEMP_PREFIX, exit_reason, remove_stale_leftovers

pytest.importorskip("tritonclient.http", reason='needs the serve extra: pip install -e ".[serve]"')

REPO = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "jarrn_deploy.runtime.serve", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
         "--threads", "1", "--max-pixels", "16384"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_start_removes_segments_and_folders_of_dead_owners_only(tmp_path: Path) -> None:
    shm, temp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir(), temp.mkdir()
    dead, alive = _dead_pid(), os.getpid()
    stale = [shm / f"{TEMP_PREFIX}{dead}-ab-seg", shm / f"pytrtion{dead}-cd_jarrn", temp / f"{TEMP_PREFIX}{dead}-xy"]
    kept = [shm / f"{TEMP_PREFIX}{alive}-ab-seg", temp / f"{TEMP_PREFIX}{alive}-zz", shm / "other-segment",
            temp / f"pytrtion{dead}-not-ours"]
    for path in stale + kept:
        (path.mkdir() if path.parent == temp else path.write_bytes(b"x"))
    (temp / f"{TEMP_PREFIX}{dead}-xy" / "triton.log").write_text("log")
    assert sorted(remove_stale_leftovers(shm, temp)) == sorted(stale)
    assert all(not p.exists() for p in stale) and all(p.exists() for p in kept)


def test_a_killed_tritonserver_is_reported_with_its_real_cause() -> None:
    assert exit_reason(-signal.SIGKILL).startswith("tritonserver was killed by SIGKILL")
    assert "out-of-memory" in exit_reason(-signal.SIGKILL)
    assert exit_reason(1) == "tritonserver exited with status 1"


def _start(extra: list[str] = (), cwd: Path = REPO) -> tuple[subprocess.Popen, list[str]]:
    process = subprocess.Popen([*SERVE, *extra], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("serving 'jarrn'"):
            return process, lines
    process.kill()
    pytest.fail("jarrn serve did not start: " + " | ".join(lines[-5:]))


def test_sigterm_drains_and_exits_0_with_a_clean_message(tmp_path: Path) -> None:
    process, _ = _start(["--drain-timeout", "2"], cwd=tmp_path)  # started elsewhere than the project folder
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    assert "SIGTERM: refusing new requests" in rest and rest.rstrip().endswith("stopped cleanly")
    assert "failure" not in rest


def _leftovers(pid: int) -> list[Path]:
    return [p for folder in (Path("/dev/shm"), Path(tempfile.gettempdir())) for p in folder.iterdir()
            if p.name.startswith(f"{TEMP_PREFIX}{pid}-")]


def test_kill_9_of_jarrn_serve_leaves_no_process_and_the_next_start_removes_its_files() -> None:
    process, _ = _start()
    children = server_process_ids(process.pid)
    assert len(children) >= 2  # tritonserver and the Python-backend stub
    files = _leftovers(process.pid)
    assert any(p.parent == Path("/dev/shm") for p in files) and any(p.is_dir() for p in files)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.2)
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
    remove_stale_leftovers()  # what the next start does first (another session's start may have done it already)
    assert _leftovers(process.pid) == []


def test_kill_9_of_tritonserver_stops_jarrn_serve_with_the_real_cause() -> None:
    process, _ = _start()
    triton = next(pid for pid in server_process_ids(process.pid)
                  if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"tritonserver"))
    os.kill(triton, signal.SIGKILL)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 5
    error = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "tritonserver was killed by SIGKILL" in error[0], rest
    assert "CudaDriverHelper" not in error[0]
