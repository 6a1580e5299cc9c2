"""kill -9 in the middle of a real export and a real training run: the next run of the same command removes what the
killed one left (temp names carry the writer's pid), so the folder ends clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jarrn_deploy.model import Jarrn, JarrnConfig, save_model
from jarrn_deploy.model.atomic import pid_alive, remove_stale_temp_files, staged_outputs
from tests.reliability_support import REPO, leftovers, run_command

from tests.support import TINY_WIDTHS  # noqa: E402

TINY = JarrnConfig(TINY_WIDTHS)
TRAIN = ["-m", "jarrn_deploy.model.train", "--widths", "8,8,8,8,8,8,8", "--crop", "64x64", "--epoch-samples", "2",
         "--batch-size", "1", "--val-every", "-1", "--no-progress", "--render-scale", "0.5,0.5", "--log-every", "1",
         "--checkpoint-every", "1", "--threads", "1"]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _kill_when(process: subprocess.Popen, folder: Path, seen, timeout: float = 90.0) -> list[str]:
    """SIGKILL ``process`` as soon as ``seen(names)`` is true for the hidden files in ``folder``; returns them."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            names = [e.name for e in os.scandir(folder)] if folder.is_dir() else []
            if seen(names):
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                return names
            time.sleep(0.0005)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    pytest.fail(f"the process ended or timed out before writing (exit {process.returncode})")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not pid_alive(process.pid)
    return process.pid


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "last.pt"
    dead = tmp_path / f".last.pt.pid{_dead_pid()}.abc.tmp"
    alive = tmp_path / f".last.pt.pid{os.getppid()}.abc.tmp"
    mine = tmp_path / f".last.pt.pid{os.getpid()}.abc.tmp"
    other = tmp_path / f".other.pt.pid{_dead_pid()}.abc.tmp"
    for path in (dead, alive, mine, other):
        path.write_bytes(b"x")
    assert remove_stale_temp_files(target) == [dead]
    assert alive.exists() and mine.exists() and other.exists()


def test_staged_outputs_are_all_or_nothing(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(OSError):
        with staged_outputs(out) as stage:
            (stage / "a.png").write_bytes(b"a")
            raise OSError(28, "No space left on device")
    assert list(out.iterdir()) == []
    with staged_outputs(out) as stage:
        (stage / "a.png").write_bytes(b"a")
        (stage / "b.md").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.md"]


def test_killed_export_leaves_nothing_after_the_next_export(tmp_path):
    torch.manual_seed(0)
    checkpoint = save_model(Jarrn(TINY), tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    out.mkdir()
    args = ["export/to_onnx.py", "--checkpoint", str(checkpoint), "--output", str(out / "m.onnx"), "--no-validate",
            "--quiet"]
    names = _kill_when(_start(args, REPO), out, lambda names: any(n.endswith(".staging.onnx") for n in names))
    assert leftovers(out), names  # the killed export did leave its staging file behind
    result = run_command(args, REPO)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["m.onnx"]


def test_killed_training_leaves_nothing_after_resume(tmp_path):
    run = tmp_path / "run"
    process = _start([*TRAIN, "--epochs", "500", "--out", str(run)], tmp_path)
    names = _kill_when(process, run, lambda names: "last.pt" in names
                       and any(n.startswith(".last.pt.pid") and n.endswith(".tmp") for n in names), timeout=120)
    if not leftovers(run):  # killed just after the rename: leave what a kill one moment earlier leaves
        (run / f".last.pt.pid{process.pid}.killed.tmp").write_bytes(b"\0" * 1000)
    assert leftovers(run), names
    result = run_command([*TRAIN, "--epochs", "1", "--resume", "--out", str(run)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout
    assert leftovers(run) == []
