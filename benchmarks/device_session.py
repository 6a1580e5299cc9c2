"""What the device check's steps share with its report (:mod:`jarrn_deploy.benchmarks.device_report`): the plan's types, one
run's state (:class:`Session`) and the facts both print (models, sizes); row keys and labels are
:mod:`jarrn_deploy.benchmarks.rows`'. One owner, so neither imports the
other."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from jarrn_deploy.benchmarks.rows import KITTI_HW

SCHEMA = "jarrn-device-check/1"
LATENCY_SIZES: tuple[tuple[int, int], ...] = ((320, 320), KITTI_HW)
LATENCY_BATCHES: tuple[int, ...] = (1, 8)
ACCURACY_CASES: tuple[str, ...] = ("kitti_02", "tum_desk@500")
"""Real frames every bundled-model row is checked on (two sizes: torch.compile compiles once per size)."""
MODELS = {"bundled": "bundled-model", "full": "full-size"}
"""Model key -> report subfolder."""
@dataclass(frozen=True)
class Environment:
    """What the plan depends on. Each ``*_missing`` is None when the thing is usable, else why not."""

    device: str | None = None
    """The CUDA device to use ('cuda:N'), None in a dry run."""
    gpu_name: str | None = None
    """e.g. 'NVIDIA H200'."""
    compute_capability: str | None = None
    """e.g. '9.0'."""
    pytest_missing: str | None = None
    """Why the gpu-marked tests cannot run."""
    onnx_export_missing: str | None = None
    """Why no ONNX graph can be exported here."""
    fp16_export_missing: str | None = None
    """Why no FP16 ONNX graph can be exported here."""
    ort_cuda_missing: str | None = None
    """Why ONNX Runtime's CUDA execution provider cannot run."""
    tensorrt_missing: str | None = None
    """Why standard TensorRT cannot run."""
    tensorrt_rtx_missing: str | None = None
    """Why TensorRT-RTX cannot run (not installed, or a GPU it does not support)."""
    cpu_count: int = 1
    """Logical CPUs (data loader workers of the training smoke)."""


@dataclass(frozen=True)
class Step:
    """One step of the plan."""

    key: str
    """Unique name, e.g. 'latency:full:torch-compile:fp16'; ``--skip`` matches its prefix."""
    title: str
    """What the progress line says."""
    budget_s: float
    """Most seconds it may take."""
    skip: str | None = None
    """Why it will not run (known before the run)."""
    model: str | None = None
    """'bundled' or 'full' for latency rows."""
    row: str | None = None
    """Benchmark row key for latency rows, e.g. 'torch:fp16'."""


@dataclass
class Outcome:
    """What one step did."""

    key: str
    title: str
    budget_s: float
    status: str = "ok"
    """'ok', 'failed', 'skipped' or 'unavailable'."""
    seconds: float = 0.0
    summary: str = ""
    """One line for the progress log and the report."""
    details: dict = field(default_factory=dict)


class Session:
    """State shared by the steps of one run: device, cases, model files, row results and the report folder."""

    def __init__(self, env: Environment, out: Path, workdir: Path, total_budget_s: float, argv: Sequence[str]) -> None:
        self.env, self.out, self.workdir = env, out, workdir
        self.device = env.device or "cuda:0"
        self.total_budget_s = total_budget_s
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.command = shlex.join(["python", "-m", "jarrn_deploy.benchmarks.device_check", *argv])
        self.outcomes: list[Outcome] = []
        self.results: dict[str, dict[str, dict]] = {m: {} for m in MODELS}
        self.reasons: dict[str, dict[str, str]] = {m: {} for m in MODELS}
        self.rows: dict[str, list[str]] = {m: [] for m in MODELS}
        self.exports: dict[str, dict] = {m: {} for m in MODELS}
        self.engines: dict[str, dict] = {m: {} for m in MODELS}
        self.machine: dict = {}
        self.training: dict = {}
        self._cases = None
        self._model_paths: dict[str, Path] = {}

    # -- shared inputs -------------------------------------------------------------------------------------------------
    def cases(self) -> list:
        if self._cases is None:
            from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

            self._cases = list(evaluation_cases(load_real_frames()))
        return self._cases

    def latency_cases(self) -> list:
        return sorted(self.cases(), key=lambda c: not c.name.startswith("kitti"))  # real LiDAR crops first

    def accuracy_cases(self, model: str) -> list:
        return [c for c in self.cases() if c.name in ACCURACY_CASES] if model == "bundled" else []

    def model_path(self, model: str) -> Path:
        if model not in self._model_paths:
            if model == "bundled":
                from jarrn_deploy.model.checkpoint import DEFAULT_CHECKPOINT

                self._model_paths[model] = Path(DEFAULT_CHECKPOINT).resolve()
            else:
                from jarrn_deploy.model.network import JarrnConfig

                self._model_paths[model] = save_random_model(JarrnConfig.full(), self.workdir / "full_random.safetensors")
        return self._model_paths[model]

    def left_s(self) -> float:
        return self.total_budget_s - (time.perf_counter() - self.started)


def save_random_model(config, path: str | Path, seed: int = 0) -> Path:  # noqa: ANN001 - a JarrnConfig
    """Random weights of ``config`` saved in the project format: latency does not depend on the weights' values."""
    import torch

    from jarrn_deploy.model.checkpoint import save_model
    from jarrn_deploy.model.network import Jarrn

    torch.manual_seed(seed)
    return save_model(Jarrn(config), path, extra_metadata={"note": "random weights for latency measurements"})
