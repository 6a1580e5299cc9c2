"""scripts/install.py: which PyTorch it installs, from where, and what it says when a step fails. No network: the
reachability probe and pip are replaced, and every test sees a fake ``urlopen`` that answers (so a probe that is not
replaced shows as the CPU index being reachable, whatever this machine's network allows)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import REPO

REAL_URLOPEN = urllib.request.urlopen


@pytest.fixture(scope="module")
def installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jarrn_install", REPO / "scripts" / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


class _Answer:
    """What the fake ``urlopen`` returns: a page that reads."""

    def __enter__(self) -> "_Answer":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, size: int = -1) -> bytes:
        return b"<"


@pytest.fixture(autouse=True)
def network_answers(installer: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL the installer opens, each answered by a fake page instead of the network."""
    opened: list[str] = []

    def fake_urlopen(url: str, **kwargs) -> _Answer:
        opened.append(url)
        return _Answer()

    monkeypatch.setattr(installer.urllib.request, "urlopen", fake_urlopen)
    return opened


def unreachable(index: str) -> str:
    return "[Errno -2] Name or service not known"


def never_asked(index: str) -> str:
    raise AssertionError(f"probed {index}")


def test_cpu_build_from_the_cpu_index_without_torch_and_without_gpu(installer: ModuleType, tmp_path: Path) -> None:
    choice = installer.choose_torch("auto", None, None, installer.CPU_TORCH_INDEX, probe=lambda index: None)
    steps = installer.plan("dev", choice, tmp_path / "pin.txt")
    assert steps[0][1][-3:] == [f"torch=={installer.TESTED_TORCH}", "--index-url", installer.CPU_TORCH_INDEX]
    assert steps[1][1][-3].endswith("[dev]") and steps[1][1][-2:] == ["-c", str(tmp_path / "pin.txt")]


def test_unreachable_cpu_index_falls_back_to_pypi_with_one_notice(installer: ModuleType, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installer, "pypi_torch_is_cuda", lambda: True)
    choice = installer.choose_torch("auto", None, None, installer.CPU_TORCH_INDEX, probe=unreachable)
    steps = installer.plan("", choice, tmp_path / "pin.txt")
    assert steps[0][1][-1] == f"torch=={installer.TESTED_TORCH}"
    assert not any(installer.CPU_TORCH_INDEX in part for part in steps[0][1])
    assert "\n" not in choice.notice
    for said in (installer.CPU_TORCH_INDEX, "cannot be reached", "Name or service not known", "PyPI", "about 3 GB",
                 "--cpu-index"):
        assert said in choice.notice


def test_fallback_notice_names_no_size_where_pypi_torch_is_the_cpu_build(installer: ModuleType,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installer, "pypi_torch_is_cuda", lambda: False)
    choice = installer.choose_torch("auto", None, None, installer.CPU_TORCH_INDEX, probe=unreachable)
    assert choice.index is None and "GB" not in choice.notice


def test_installed_torch_is_kept_and_no_index_is_probed(installer: ModuleType, tmp_path: Path) -> None:
    for source in installer.TORCH_SOURCES:
        choice = installer.choose_torch(source, "2.13.0+cpu", None, installer.CPU_TORCH_INDEX, probe=never_asked)
        steps = installer.plan("dev,quant", choice, tmp_path / "pin.txt")
        assert choice.keep and len(steps) == 1 and steps[0][1][-2:] == ["-c", str(tmp_path / "pin.txt")]


def test_gpu_takes_pypi_torch_and_explicit_sources_skip_the_probe(installer: ModuleType) -> None:
    gpu = installer.choose_torch("auto", None, "NVIDIA H200", installer.CPU_TORCH_INDEX, probe=never_asked)
    assert gpu.index is None and "NVIDIA H200" in gpu.notice
    mirror = "https://mirror.example.com/whl/cpu"
    forced = installer.choose_torch("cpu-index", None, "NVIDIA H200", mirror, probe=never_asked)
    assert forced.index == mirror
    assert installer.choose_torch("pypi", None, None, mirror, probe=never_asked).index is None


def test_torch_installed_is_the_release_ci_tests(installer: ModuleType) -> None:
    assert f"torch=={installer.TESTED_TORCH}" in (REPO / ".ci" / "run").read_text()


def test_probe_gives_up_within_its_timeout(installer: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading
    import time

    monkeypatch.setattr(installer.urllib.request, "urlopen", REAL_URLOPEN)  # on a local socket

    accepted: list = []
    with socket.socket() as server:  # accepts the connection, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
        start = time.perf_counter()
        problem = installer.index_unreachable(f"http://127.0.0.1:{server.getsockname()[1]}/whl/cpu", timeout_s=0.5)
    assert problem == "no answer within 0.5 s" and time.perf_counter() - start < 3


@pytest.mark.parametrize(("fail_at", "step", "command"), [
    (1, "step 1/2, PyTorch from PyPI", "--torch-from cpu-index"),
    (2, "step 2/2, jarrn-deploy with extras dev", "python scripts/install.py dev"),
])
def test_a_failed_step_is_named_with_a_command_to_go_on(installer: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture, fail_at: int, step: str,
                                                        command: str) -> None:
    monkeypatch.setattr(installer, "installed_torch", lambda: None)
    monkeypatch.setattr(installer, "nvidia_gpu", lambda: None)
    monkeypatch.setattr(installer, "index_unreachable", unreachable)  # while the (fake) network answers
    calls: list[list[str]] = []

    def fake_pip(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        calls.append(command)
        return subprocess.CompletedProcess(command, 1 if len(calls) == fail_at else 0)

    monkeypatch.setattr(installer.subprocess, "run", fake_pip)
    assert installer.main(["dev"]) == 1
    out, err = capsys.readouterr()
    assert len(calls) == fail_at and out.startswith("install: no NVIDIA GPU found and ")
    assert err.count("\n") == 1 and f"failed at {step} (pip exit status 1)" in err and command in err


def test_main_asks_the_probe_it_finds_at_run_time(installer: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture, network_answers: list[str]) -> None:
    monkeypatch.setattr(installer, "installed_torch", lambda: None)
    monkeypatch.setattr(installer, "nvidia_gpu", lambda: None)
    assert installer.main(["--dry-run"]) == 0  # the real probe, on the fake network that answers
    assert network_answers == [installer.CPU_TORCH_INDEX + "/torch/"]
    assert f"--index-url {installer.CPU_TORCH_INDEX}" in capsys.readouterr().out
    monkeypatch.setattr(installer, "index_unreachable", unreachable)
    assert installer.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cannot be reached" in out and "--index-url" not in out and len(network_answers) == 1
