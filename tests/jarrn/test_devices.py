"""``--device`` values: parsed without torch, resolved against what PyTorch sees (GPUs faked with monkeypatch), and
the commands that take one (training, evaluation, the runtime's PyTorch backend, the benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jarrn_deploy.devices import cuda_visible_devices, parse_device, resolve_device
from jarrn_deploy.errors import EXIT_UNAVAILABLE, EXIT_USAGE, UnavailableError, UsageError

from tests.support import REPO, TINY_WIDTHS


def fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int, cuda_build: bool = True) -> None:
    """Make PyTorch report ``count`` CUDA GPUs (0: none) and a CUDA or a CPU-only build."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.version, "cuda", "13.0" if cuda_build else None)


@pytest.mark.parametrize(("text", "expected"), [("auto", "auto"), ("cpu", "cpu"), ("CPU", "cpu"), ("cuda", "cuda"),
                                                ("cuda:0", "cuda:0"), (" cuda:3 ", "cuda:3")])
def test_parse_accepts_the_four_forms(text: str, expected: str) -> None:
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["mps", "bogus", "cuda:x", "cuda:", "cuda:-1", "cpu:0", "gpu", "", "cuda:0:1"])
def test_parse_rejects_other_strings_in_one_line_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_device(text, name="--device")
    message = str(info.value)
    assert message.startswith("--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") and repr(text) in message
    assert "\n" not in message


def test_parse_does_not_import_torch() -> None:
    code = ("import sys; from jarrn_deploy.devices import parse_device; parse_device('cuda:1'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_auto_picks_the_first_gpu_or_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 2)
    assert resolve_device("auto") == "cuda:0"
    fake_gpus(monkeypatch, 0)
    assert resolve_device("auto") == "cpu"


def test_bare_cuda_gets_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 1)
    assert resolve_device("cuda") == "cuda:0"
    assert torch.device(resolve_device("cuda")).index == 0  # what torch.cuda.set_device needs


def test_cuda_without_gpu_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0, cuda_build=False)
    with pytest.raises(UnavailableError, match=r"^--device cuda: this PyTorch build has no CUDA support \(use --device cpu"):
        resolve_device("cuda")
    fake_gpus(monkeypatch, 0, cuda_build=True)
    with pytest.raises(UnavailableError, match=r"^--device cuda:0: PyTorch sees no CUDA GPU"):
        resolve_device("cuda:0")


def test_gpu_index_beyond_the_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 1)
    with pytest.raises(UnavailableError, match=r"^--device cuda:7: only 1 CUDA device\(s\) here \(cuda:0..cuda:0\)$"):
        resolve_device("cuda:7")


def test_local_rank_gives_each_process_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 4)
    assert resolve_device("cuda", local_rank=2) == "cuda:2"
    assert resolve_device("cuda:0", local_rank=3) == "cuda:3"
    assert resolve_device("auto", local_rank=1) == "cuda:1"
    assert resolve_device("cpu", local_rank=1) == "cpu"
    with pytest.raises(UnavailableError, match="only 4 CUDA"):
        resolve_device("cuda", local_rank=4)


def test_cuda_visible_devices_maps_the_index_through_an_existing_mask() -> None:
    assert cuda_visible_devices(1, visible=None) in ("1", cuda_visible_devices(1))  # depends on the environment
    assert cuda_visible_devices(1, visible="") == "1"
    assert cuda_visible_devices(1, visible="4,6") == "6"
    with pytest.raises(UnavailableError, match="shows only 2 GPU"):
        cuda_visible_devices(2, visible="4,6")


# ---------------------------------------------------------------------------------------------------------------------
# the commands


@pytest.mark.parametrize("module", ["jarrn_deploy.model.train", "jarrn_deploy.model.evaluate"])
def test_training_and_evaluation_refuse_a_bad_device_in_one_line(module: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    main = importlib.import_module(module).main
    extra = ["--out", str(tmp_path / "out")] + (["--epoch-samples", "4"] if module == "jarrn_deploy.model.train" else [])
    assert main(["--device", "mps", *extra]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == "error: --device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'mps'"
    fake_gpus(monkeypatch, 1)
    assert main(["--device", "cuda:7", *extra]) == EXIT_UNAVAILABLE
    assert capsys.readouterr().err.strip() == "error: --device cuda:7: only 1 CUDA device(s) here (cuda:0..cuda:0)"
    fake_gpus(monkeypatch, 0, cuda_build=False)
    assert main(["--device", "cuda", *extra]) == EXIT_UNAVAILABLE
    assert "no CUDA support" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_training_runs_on_an_explicit_cpu_device_with_channels_last(tmp_path: Path) -> None:
    from jarrn_deploy.model import train

    out = tmp_path / "run"
    rc = train.main(["--out", str(out), "--device", "cpu", "--channels-last", "--widths", "8,8,8,8,8,8,8",
                     "--crop", "64x64", "--batch-size", "2", "--epoch-samples", "4", "--epochs", "1", "--threads", "1",
                     "--no-progress", "--log-every", "1", "--val-every", "-1"])
    assert rc == 0
    import json

    history = json.loads((out / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2]
    assert all(row["loss"] > 0 for row in history["train"])


def test_channels_last_training_step_matches_the_default_layout() -> None:
    from jarrn_deploy.model.network import Jarrn, JarrnConfig
    from jarrn_deploy.model.training.step import train_step

    torch.manual_seed(0)
    batch = {"rgb": torch.rand(2, 3, 64, 64), "sparse": torch.rand(2, 1, 64, 64) * (torch.rand(2, 1, 64, 64) > 0.9),
             "gt": torch.rand(2, 1, 64, 64), "gt_valid": torch.ones(2, 1, 64, 64)}
    batch["mask"] = (batch["sparse"] > 0).float()
    losses = []
    for channels_last in (False, True):
        torch.manual_seed(1)
        network = Jarrn(JarrnConfig(TINY_WIDTHS))
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        terms = [train_step(network, batch, optimizer, scaler, device=torch.device("cpu"), amp=False)
                 for _ in range(2)]
        losses.append([float(t.total) for t in terms])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_runtime_backend_resolves_the_device_and_refuses_a_missing_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    with pytest.raises(UsageError, match=r"^device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'mps'$"):
        DepthCompleter.from_checkpoint(device="mps")
    fake_gpus(monkeypatch, 0, cuda_build=False)
    with pytest.raises(UnavailableError, match="^device cuda: this PyTorch build has no CUDA support"):
        DepthCompleter.from_checkpoint(device="cuda")
    completer = DepthCompleter.from_checkpoint(device="auto")
    assert str(completer.backend.device) == "cpu"


def test_benchmark_refuses_a_bad_or_missing_device(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from jarrn_deploy.benchmarks import run

    with pytest.raises(SystemExit) as info:
        run.main(["--device", "cuda:x"])
    assert info.value.code == 2
    assert "--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'" in capsys.readouterr().err
    fake_gpus(monkeypatch, 1)
    # a device that is not there is exit 5 (the table's "missing dependency or device"), not a usage error
    assert run.main(["--device", "cuda:7", "--quick"]) == EXIT_UNAVAILABLE
    assert "error: --device cuda:7: only 1 CUDA device(s) here" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_gives_each_process_its_device_and_trains(tmp_path: Path) -> None:
    """The DDP path: two processes under torchrun (gloo on the CPU; on a GPU machine each takes cuda:<LOCAL_RANK>)."""
    import json
    import os

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541", "-m",
           "jarrn_deploy.model.train", "--widths", "8,8,8,8,8,8,8", "--crop", "64x64", "--batch-size", "2", "--epoch-samples", "8",
           "--epochs", "1", "--val-every", "-1", "--no-progress", "--threads", "1", "--log-every", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "batch 2 x 2" in proc.stdout
    history = json.loads((out / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_training_runs_on_the_gpu_with_a_bare_cuda_device(device: str, tmp_path: Path) -> None:
    """The README's GPU recipe: a bare 'cuda' once failed in torch.cuda.set_device."""
    from jarrn_deploy.model import train

    out = tmp_path / "run"
    rc = train.main(["--out", str(out), "--device", device, "--widths", "8,8,8,8,8,8,8", "--crop", "64x64",
                     "--batch-size", "2", "--epoch-samples", "4", "--epochs", "1", "--no-progress", "--log-every", "1",
                     "--val-every", "-1", "--workers", "0"])
    assert rc == 0
    import json

    history = json.loads((out / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2]
    assert all(np.isfinite(row["loss"]) for row in history["train"])


@pytest.mark.gpu
@needs_cuda
def test_evaluation_runs_on_the_gpu(tmp_path: Path) -> None:
    from jarrn_deploy.model import evaluate

    assert evaluate.main(["--device", "cuda:0", "--no-panels", "--out", str(tmp_path / "eval")]) == 0
    import json

    payload = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert payload["device"] == "cuda:0" and len(payload["cases"]) == 6
