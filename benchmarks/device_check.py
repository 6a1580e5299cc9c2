"""A few minutes of checks and benchmarks on a CUDA machine, ending in a report to commit: ``reports/<gpu-tag>/``.

    python -m jarrn_deploy.benchmarks.device_check --dry-run     # the plan, with each step's time budget (no GPU needed)
    python -m jarrn_deploy.benchmarks.device_check               # on the GPU machine: about 6 minutes at most
    jarrn device-check                              # the same

Steps, each with a progress line and a time budget (the plan printed by ``--dry-run``; the whole run stays within
``--total-budget`` seconds, default 345, and skips what no longer fits, saying so):

1. probe: GPU, compute capability, driver and library versions;
2. tests: the ``gpu``-marked tests (``pytest -m gpu``);
3. latency of the runtime's PyTorch backend (``TorchBackendOptions``): eager FP32, FP16 autocast + channels-last,
   torch.compile (mode='reduce-overhead': CUDA graphs) FP16, for the bundled model (with accuracy against ground truth
   on two real frames) and the full-size config (random weights), at 320x320 and 375x1242, batch 1 and 8: CUDA events
   and the host clock, warm-up, p50/p90/p99;
4. training throughput: the training step alone on a batch already on the GPU, then ``jarrn_deploy.model.train`` itself for 60 s on
   synthetic scenes (full config, 320x320, batch 16, AMP): together they say whether data or the GPU sets the pace;
5. ONNX Runtime (CUDA execution provider), TensorRT and TensorRT-RTX rows when installed and supported (skipped with
   the reason otherwise: TensorRT-RTX does not run on compute capability 9.0, Hopper);
6. the report: ``device_check.md`` / ``.json`` / ``.png`` and, through ``benchmarks/bench_report.py``, a benchmark report
   per model in ``bundled-model/`` and ``full-size/`` (each file written atomically; ``device_check.*`` is rewritten
   after every step, so a run cut short still leaves what it measured).

Every optional dependency (onnxruntime-gpu, tensorrt, tensorrt_rtx, an FP16 export library, pytest) that is missing
turns its step into a skip with the reason; benchmarks/README.md lists the wheels to carry to an air-gapped GPU machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

from jarrn_deploy.benchmarks.device_session import (  # noqa: E402
    ACCURACY_CASES,
    LATENCY_BATCHES,
    LATENCY_SIZES,
    MODELS,
    Environment,
    Outcome,
    Session,
    Step,
)
from jarrn_deploy.benchmarks.rows import Row  # noqa: E402
from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import UnavailableError, UsageError  # noqa: E402
from jarrn_deploy.progress import progress_logger  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TOTAL_BUDGET_S = 345.0
"""Default for the whole run: under 6 minutes with the interpreter's start and the report included."""
REPORT_RESERVE_S = 15.0
"""Kept back from every other step for writing the reports at the end."""
COMPILE_FIRST_CALL_S = 25.0
"""Expected first call at a new shape under torch.compile (compilation + CUDA-graph capture), until one is measured."""
log = progress_logger("device-check", elapsed=True)


# ---------------------------------------------------------------------------------------------------------------------
# environment and plan


def _missing_module(module: str, hint: str) -> str | None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"not installed: {module} ({hint})"


def package_environment(device: str | None = None, gpu_name: str | None = None,
                        compute_capability: str | None = None) -> Environment:
    """What can be known from the installed packages (and, when given, the GPU); imports no heavy library except
    onnxruntime (for its providers) when a GPU is given."""
    onnx_missing = (_missing_module("onnx", "carry the onnx wheel") or
                    _missing_module("onnxslim", "carry the onnxslim wheel, pure Python"))
    fp16_missing = onnx_missing
    if fp16_missing is None and _missing_module("modelopt", "") and _missing_module("onnxconverter_common", ""):
        fp16_missing = ("no FP16 export library: carry onnxconverter-common (pure Python) or nvidia-modelopt "
                        "(see export/precision/)")
    from jarrn_deploy.runtime.backends.registry import backend_spec

    ort_missing = backend_spec("onnxruntime").missing()
    if ort_missing is None:
        try:
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                ort_missing = ("this onnxruntime has no CUDAExecutionProvider: replace it by onnxruntime-gpu "
                               "(`pip uninstall -y onnxruntime && pip install onnxruntime-gpu`)")
        except Exception as exc:  # noqa: BLE001 - a broken install is a missing one
            ort_missing = f"onnxruntime does not load ({type(exc).__name__}: {exc})"
    trt_missing = _missing_module("tensorrt", "NVIDIA's TensorRT container or `pip install tensorrt cuda-python`")
    rtx_missing = _missing_module("tensorrt_rtx", "`pip install tensorrt-rtx`")
    if rtx_missing is None and compute_capability is not None:
        rtx_missing = rtx_unsupported(compute_capability, gpu_name or "this GPU")
    return Environment(
        device=device, gpu_name=gpu_name, compute_capability=compute_capability,
        pytest_missing=_missing_module("pytest", "carry the pytest wheel"),
        onnx_export_missing=onnx_missing, fp16_export_missing=fp16_missing, ort_cuda_missing=ort_missing,
        tensorrt_missing=trt_missing, tensorrt_rtx_missing=rtx_missing, cpu_count=os.cpu_count() or 1,
    )


def rtx_unsupported(compute_capability: str, gpu_name: str) -> str | None:
    """Why TensorRT-RTX cannot run on a GPU of this compute capability, or None when it can."""
    try:
        from jarrn_deploy.export.engine.flavours import NOT_RTX_GPUS, RTX_COMPUTE_CAPABILITIES
    except ImportError:  # the flavour table is pure Python; without it, only Hopper is known to be refused
        NOT_RTX_GPUS, RTX_COMPUTE_CAPABILITIES = {"9.0": "Hopper: use standard TensorRT"}, {}  # noqa: N806
    if compute_capability in NOT_RTX_GPUS or (RTX_COMPUTE_CAPABILITIES and
                                              compute_capability not in RTX_COMPUTE_CAPABILITIES):
        instead = NOT_RTX_GPUS.get(compute_capability, "not a TensorRT-RTX target")
        return (f"TensorRT-RTX does not run on compute capability {compute_capability} ({gpu_name}); "
                f"{instead}")
    return None


def probe_environment(device: str) -> Environment:
    """The GPU behind ``device`` ('cuda:N') plus :func:`package_environment`."""
    import torch

    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return package_environment(device, torch.cuda.get_device_name(index), f"{major}.{minor}")


DEFAULT_BUDGETS: dict[str, float] = {
    "probe": 5,
    "tests": 75,
    "latency:bundled:torch:fp32": 12,
    "latency:bundled:torch:fp16": 12,
    "latency:full:torch:fp32": 15,
    "latency:full:torch:fp16": 12,
    "train:step": 12,
    "train:smoke": 80,
    "latency:bundled:torch-compile:fp16": 45,
    "latency:full:torch-compile:fp16": 60,
    "onnxruntime:fp32": 40,
    "onnxruntime:fp16": 60,
    "tensorrt:fp16": 90,
    "tensorrt-rtx:fp16": 90,
    "report": REPORT_RESERVE_S,
}
"""Seconds per step, in the order they run. The torch.compile rows (tens of seconds per input shape) come after the
training checks and take what is left; the optional rows (ONNX Runtime, TensorRT) come last and run only in what is
left after them (with the default total budget: only when a compile row finishes early)."""


def build_plan(env: Environment, skip: Sequence[str] = ()) -> list[Step]:
    """Every step in order, with its budget and, for the ones that cannot run here, the reason."""
    steps = [Step("probe", "GPU, driver and library versions", DEFAULT_BUDGETS["probe"]),
             Step("tests", "pytest -m gpu (the gpu-marked tests)", DEFAULT_BUDGETS["tests"], env.pytest_missing)]
    sizes = ", ".join(f"{h}x{w}" for h, w in LATENCY_SIZES)
    batches = "/".join(map(str, LATENCY_BATCHES))

    def latency_step(model: str, row: str, skip: str | None = None) -> Step:
        what = "bundled model" if model == "bundled" else "full-size config (random weights)"
        accuracy = f" + accuracy on {', '.join(ACCURACY_CASES)}" if model == "bundled" else ""
        key = f"latency:{model}:{row}"
        return Step(key, f"{Row.from_key(row).label}, {what}: {sizes}, batch {batches}{accuracy}",
                    DEFAULT_BUDGETS.get(key, DEFAULT_BUDGETS.get(row, 30)), skip=skip, model=model, row=row)

    steps += [latency_step(model, row) for model in MODELS for row in ("torch:fp32", "torch:fp16")]
    steps.append(Step("train:step", "training step alone on a GPU-resident batch (full, 320x320, batch 16, AMP)",
                      DEFAULT_BUDGETS["train:step"]))
    from jarrn_deploy.benchmarks.device_train import SMOKE_DESCRIPTION

    steps.append(Step("train:smoke", SMOKE_DESCRIPTION, DEFAULT_BUDGETS["train:smoke"]))
    steps += [latency_step(model, "torch-compile:fp16") for model in MODELS]
    optional = {
        "onnxruntime:fp32": env.ort_cuda_missing or env.onnx_export_missing,
        "onnxruntime:fp16": env.ort_cuda_missing or env.fp16_export_missing,
        "tensorrt:fp16": env.tensorrt_missing or env.fp16_export_missing,
        "tensorrt-rtx:fp16": env.tensorrt_rtx_missing or env.fp16_export_missing,
    }
    rtx_note = "" if env.compute_capability else " (not on compute capability 9.0: decided on the GPU machine)"
    for model in MODELS:
        for row, missing in optional.items():
            step = latency_step(model, row, skip=f"unavailable: {missing}" if missing else None)
            steps.append(replace(step, title=step.title + rtx_note) if row.startswith("tensorrt-rtx") else step)
    steps.append(Step("report", "write reports/<gpu-tag>/ (md, json, PNG)", DEFAULT_BUDGETS["report"]))
    wanted = [s.strip() for s in skip if s.strip()]
    return [replace(s, skip=s.skip or "skipped: --skip") if any(s.key.startswith(w) for w in wanted)
            and s.key != "report" else s for s in steps]


def format_plan(steps: Sequence[Step], total_budget_s: float, env: Environment) -> str:
    gpu = (f"{env.gpu_name} (compute capability {env.compute_capability}), {env.device}" if env.gpu_name
           else "not probed (dry run): the optional rows are decided on the GPU machine")
    lines = [f"device check plan: total budget {total_budget_s:.0f} s; GPU: {gpu}", ""]
    width = max(len(s.key) for s in steps)
    for index, step in enumerate(steps, 1):
        status = f"skip ({step.skip})" if step.skip else f"{step.budget_s:4.0f} s"
        lines.append(f"  {index:2d}. {step.key:<{width}}  {status:>6}  {step.title}" if not step.skip else
                     f"  {index:2d}. {step.key:<{width}}     -    {step.title}\n{'':{width + 13}}{status}")
    planned = sum(s.budget_s for s in steps if not s.skip)
    lines += ["", f"  sum of the budgets of the steps that run: {planned:.0f} s; the run stops at {total_budget_s:.0f} s "
              f"(steps that no longer fit are skipped, the report always gets its {REPORT_RESERVE_S:.0f} s)"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# steps


def gpu_test_files(tests_dir: Path = REPO_ROOT / "tests") -> list[Path]:
    """Test files that contain ``gpu``-marked tests (collecting only those keeps other files' imports out of it)."""
    import re

    marked = re.compile(r"^\s*(@pytest\.mark\.gpu\b|pytestmark\b.*\bmark\.gpu\b)", re.MULTILINE)
    return sorted(p for p in tests_dir.rglob("test_*.py") if marked.search(p.read_text(encoding="utf-8")))


def pytest_command(files: Sequence[Path], junit: Path, timeout_s: float) -> list[str]:
    # addopts cleared: the project's '-q' would hide the per-test progress lines
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "gpu", "-v", "-rs", "-p", "no:cacheprovider",
           f"--junitxml={junit}", *map(str, files)]
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd.insert(-len(files), f"--timeout={max(int(timeout_s), 1)}")
    return cmd


def summarise_junit(path: Path) -> dict:
    """Counts and the failures of a pytest ``--junitxml`` file."""
    root = ElementTree.parse(path).getroot()
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failures, skips = [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            counts["failed" if bad.tag == "failure" else "errors"] += 1
            failures.append({"test": name, "message": (bad.get("message") or "").strip().splitlines()[:1]})
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
            skips.append({"test": name, "reason": (case.find("skipped").get("message") or "").strip()})
        else:
            counts["passed"] += 1
    return {**counts, "failures": failures, "skips": skips}


def run_gpu_tests(device: str, budget_s: float) -> Outcome:
    from jarrn_deploy.benchmarks.device_train import run_streaming
    from jarrn_deploy.devices import cuda_visible_devices

    outcome = Outcome("tests", "", budget_s)
    files = gpu_test_files()
    if not files:
        outcome.status, outcome.summary = "skipped", "no test file has a gpu-marked test"
        return outcome
    with tempfile.TemporaryDirectory(prefix="jarrn_gpu_tests_") as tmp:
        junit = Path(tmp) / "junit.xml"
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   CUDA_VISIBLE_DEVICES=cuda_visible_devices(int(device.partition(":")[2] or 0)))
        cmd = pytest_command(files, junit, budget_s)
        code, lines, timed_out, _ = run_streaming(cmd, timeout_s=budget_s, env=env, log=log, prefix="  pytest: ")
        outcome.details = {"command": " ".join(cmd[1:]), "files": [str(f.relative_to(REPO_ROOT)) for f in files],
                           "exit_code": code}
        if junit.is_file():
            outcome.details.update(summarise_junit(junit))
    if timed_out:
        outcome.status = "failed"
        outcome.summary = f"timed out after {budget_s:.0f} s; last output: {(lines or [''])[-1].strip()[:150]}"
        return outcome
    counts = outcome.details
    if "passed" not in counts:
        outcome.status = "failed"
        outcome.summary = f"pytest exited {code} without a result: {(lines or [''])[-1].strip()[:150]}"
        return outcome
    outcome.status = "ok" if code == 0 and not counts["failed"] and not counts["errors"] else "failed"
    outcome.summary = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
                       + (f", {counts['errors']} errors" if counts["errors"] else ""))
    return outcome


def run_probe(session: Session, budget_s: float) -> Outcome:
    import torch

    from jarrn_deploy.benchmarks.machine import describe_machine

    machine = session.machine or describe_machine("cuda")
    index = torch.device(session.device).index or 0
    props = torch.cuda.get_device_properties(index)
    machine["cuda_device_name"] = props.name
    machine["cuda_device"] = {"index": index, "name": props.name, "compute_capability": session.env.compute_capability,
                              "memory_gib": round(props.total_memory / 2**30, 1),
                              "multiprocessors": props.multi_processor_count}
    machine["libraries"]["cudnn"] = torch.backends.cudnn.version()
    machine["libraries"]["triton"] = _version("triton")
    machine["libraries"]["tensorrt_rtx"] = _version("tensorrt-rtx") or _version("tensorrt_rtx")
    session.machine = machine
    libs = machine["libraries"]
    return Outcome("probe", "", budget_s, summary=(
        f"{props.name}, compute capability {session.env.compute_capability}, {machine['cuda_device']['memory_gib']} GiB, "
        f"{props.multi_processor_count} SMs; torch {libs.get('torch')} (CUDA {libs.get('torch_cuda')}), "
        f"onnxruntime {libs.get('onnxruntime') or libs.get('onnxruntime_gpu') or '-'}, "
        f"tensorrt {libs.get('tensorrt') or '-'}; {machine['cpu_logical_cores']} CPUs"), details={})


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def latency_configs(sizes: Sequence[tuple[int, int]], batches: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(H, W, B)`` in the order rows measure them: every size at the smallest batch first, so a row cut short by its
    budget still has the single-image latencies users ask for first."""
    return [(h, w, b) for b in sorted(batches) for (h, w) in sizes]


def run_latency_row(session: Session, step: Step, budget_s: float) -> Outcome:
    from jarrn_deploy.benchmarks.artifacts import ensure_engine
    from jarrn_deploy.benchmarks.measure import TimingSettings, measure_row
    from jarrn_deploy.benchmarks.machine import physical_cores
    from jarrn_deploy.benchmarks.runner import open_runner

    model, row = step.model, step.row
    assert model is not None and row is not None
    started = time.perf_counter()
    outcome = Outcome(step.key, "", budget_s)
    model_path = session.model_path(model)
    the_row = Row.from_key(row)
    artifact = None
    if the_row.uses_onnx:
        onnx_path, reason = _export(session, model, model_path, the_row.precision,
                                    budget_s - (time.perf_counter() - started))
        if onnx_path is None:
            return _skipped_row(session, outcome, model, row, reason)
        artifact = onnx_path
        if the_row.spec.model_kind == "engine":
            sizes = [(h, w) for h, w in LATENCY_SIZES] + [c.rgb.shape[:2] for c in session.accuracy_cases(model)]
            profile = ("1x64x64", f"1x{LATENCY_SIZES[0][0]}x{LATENCY_SIZES[0][1]}",
                       f"{max(LATENCY_BATCHES)}x{max(h for h, _ in sizes)}x{max(w for _, w in sizes)}")
            if budget_s - (time.perf_counter() - started) < 20:
                return _skipped_row(session, outcome, model, row, "skipped: too little of the row's budget left to "
                                                                  "build the engine")
            artifact, reason = ensure_engine(onnx_path, the_row.variant.flavour, profile, rebuild=False, log=log)
            if artifact is None:
                return _skipped_row(session, outcome, model, row, reason)
            session.engines[model][row] = str(artifact)
    compiled = bool(getattr(the_row.options("cuda"), "compile", False))

    def make_runner():  # noqa: ANN202
        return open_runner(the_row, model=str(model_path), artifact=str(artifact) if artifact else None,
                           device=session.device, threads=physical_cores())

    predictions = session.workdir / f"{model}_{row.replace(':', '_')}.predictions.npz"
    result = measure_row(
        make_runner, row_key=row, configs=latency_configs(LATENCY_SIZES, LATENCY_BATCHES),
        latency_cases=session.latency_cases(), accuracy_cases=session.accuracy_cases(model), timing=TimingSettings(),
        budget_s=budget_s - (time.perf_counter() - started),
        first_call_estimate_s=COMPILE_FIRST_CALL_S if compiled else 2.0,
        predictions_out=predictions if session.accuracy_cases(model) else None, log=log)
    session.results[model][row] = result
    session.rows[model].append(row)
    outcome.status = result["status"]
    outcome.details = {"configs_measured": sorted(result.get("configs", {})), "skipped": result.get("skipped", []),
                       "errors": result.get("errors", [])}
    if result["status"] != "ok":
        outcome.summary = result.get("error", "failed")
        return outcome
    parts = []
    for key, cfg in result["configs"].items():
        graph = (cfg.get("latency") or {}).get("graph")
        if graph:
            parts.append(f"{key} {graph['p50_ms']:.2f} ms")
    outcome.summary = "graph p50: " + ", ".join(parts) + (f"; {len(result['skipped'])} cut by the budget"
                                                          if result["skipped"] else "")
    return outcome


def _skipped_row(session: Session, outcome: Outcome, model: str, row: str, reason: str | None) -> Outcome:
    reason = reason or "unavailable"
    session.reasons[model][row] = reason
    session.rows[model].append(row)
    outcome.status = "skipped" if reason.startswith("skipped") else "unavailable"
    outcome.summary = reason
    return outcome


def _export(session: Session, model: str, model_path: Path, precision: str,
            budget_s: float) -> tuple[Path | None, str | None]:
    """The exported graph (cached under artifacts/benchmarks/), or None and the reason."""
    from jarrn_deploy.benchmarks.artifacts import ensure_onnx
    from jarrn_deploy.benchmarks.run import DEFAULT_CACHE
    from jarrn_deploy.model.atomic import file_sha256

    if budget_s < 20:
        return None, f"skipped: {budget_s:.0f} s left, too little to export the {precision.upper()} graph"
    path, reason, info = ensure_onnx(model_path, precision, DEFAULT_CACHE, rebuild=False, allow_export=True,
                                     model_sha=file_sha256(model_path), log=log)
    session.exports[model][precision] = {"path": str(path) if path else None, "reason": reason, **info}
    return path, reason


def run_train_step(session: Session, budget_s: float) -> Outcome:
    from jarrn_deploy.benchmarks.device_train import TrainingShape, step_throughput

    result = step_throughput(session.device, TrainingShape(), seconds=max(3.0, min(10.0, budget_s - 8)), log=log)
    session.training["step"] = result
    return Outcome("train:step", "", budget_s, summary=(
        f"{result['samples_per_s']:.0f} samples/s ({result['ms_per_step']:.1f} ms per step of 16 at 320x320)"),
        details=result)


def run_train_smoke(session: Session, budget_s: float) -> Outcome:
    from jarrn_deploy.benchmarks.device_train import THROUGHPUT_TARGET, TrainingShape, training_smoke

    seconds = max(10.0, min(60.0, budget_s - 20))
    result = training_smoke(session.device, TrainingShape(), seconds=seconds, timeout_s=budget_s, log=log)
    session.training["smoke"] = result
    outcome = Outcome("train:smoke", "", budget_s, status=result["status"], details=result)
    if result["status"] != "ok":
        outcome.summary = result.get("error", "failed")
        return outcome
    rate = result["steady_samples_per_s"]
    outcome.summary = (f"{rate:.0f} samples/s steady ({result['samples_per_s']:.0f} overall over {result['steps']} "
                       f"steps, {result.get('data_path', str(result['workers']) + ' data workers')}); target {THROUGHPUT_TARGET:.0f}: "
                       f"{'met' if rate >= THROUGHPUT_TARGET else 'NOT met'}")
    return outcome


# ---------------------------------------------------------------------------------------------------------------------
# main


def run_step(session: Session, step: Step, budget_s: float) -> Outcome:
    if step.key == "probe":
        return run_probe(session, budget_s)
    if step.key == "tests":
        return run_gpu_tests(session.device, budget_s)
    if step.key.startswith("latency:"):
        return run_latency_row(session, step, budget_s)
    if step.key == "train:step":
        return run_train_step(session, budget_s)
    if step.key == "train:smoke":
        return run_train_smoke(session, budget_s)
    raise ValueError(f"unknown step {step.key!r}")


def execute(session: Session, plan: Sequence[Step], step_runner: Callable[[Session, Step, float], Outcome] = run_step,
            ) -> list[Outcome]:
    """Run the plan in order within the total budget; every step ends as an :class:`Outcome`, none raises."""
    runnable = [s for s in plan if s.key != "report"]

    def record(prefix: str, step: Step, outcome: Outcome) -> None:
        if outcome.status != "ok" and step.model and step.row and step.row not in session.rows[step.model]:
            session.reasons[step.model][step.row] = outcome.summary  # listed in the benchmark report with the reason
            session.rows[step.model].append(step.row)
        outcome.title, outcome.budget_s = step.title, step.budget_s
        said = outcome.summary if outcome.summary.startswith(outcome.status) else f"{outcome.status}: {outcome.summary}"
        log(f"{prefix}: {said}" + (f" ({outcome.seconds:.0f} s)" if outcome.seconds else ""))
        session.outcomes.append(outcome)
        try:
            from jarrn_deploy.benchmarks.device_report import write_summary

            write_summary(session, plan)
        except Exception as exc:  # noqa: BLE001 - the partial report is a convenience
            log(f"could not write the partial report: {type(exc).__name__}: {exc}")

    for index, step in enumerate(runnable, 1):
        prefix = f"[{index}/{len(runnable)}] {step.key}"
        if step.skip:
            status = "skipped" if step.skip.startswith("skipped") else "unavailable"
            record(prefix, step, Outcome(step.key, step.title, step.budget_s, status=status, summary=step.skip))
            continue
        left = session.left_s() - REPORT_RESERVE_S
        budget = min(step.budget_s, left)
        if budget < min(10.0, step.budget_s):
            record(prefix, step, Outcome(step.key, step.title, step.budget_s, status="skipped",
                                         summary=f"skipped: {max(left, 0):.0f} s left of the "
                                                 f"{session.total_budget_s:.0f} s total budget"))
            continue
        log(f"{prefix} (budget {budget:.0f} s): {step.title} ...")
        started = time.perf_counter()
        try:
            outcome = step_runner(session, step, budget)
        except Exception as exc:  # noqa: BLE001 - one broken step must not cost the rest of the run
            text = str(exc).strip()
            outcome = Outcome(step.key, step.title, step.budget_s, status="failed",
                              summary=f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}",
                              details={"traceback": traceback.format_exc()})
        outcome.seconds = round(time.perf_counter() - started, 1)
        record(prefix, step, outcome)
    return session.outcomes


DEVICE_CHECK_HELP_DESCRIPTION = """\
A few minutes of checks and benchmarks on a machine with an NVIDIA GPU, ending in a report to commit in
reports/<gpu>/: the GPU tests, PyTorch speed (fp32, fp16, compiled), ONNX Runtime and TensorRT when
installed, and training throughput. Every step prints a progress line and has a time budget."""

DEVICE_CHECK_HELP_EPILOG = """\
steps (skipped with the reason when a package or the time is missing):
  1. probe: GPU, compute capability, driver and library versions
  2. tests: the GPU tests of the test suite (pytest -m gpu)
  3. latency of PyTorch eager fp32, fp16 and torch.compile for the bundled and the full-size model
  4. training throughput: one training step, then 60 s of real training on synthetic scenes
  5. ONNX Runtime (CUDA), TensorRT and TensorRT-RTX when installed and supported
  6. the report: device_check.md, .json, .png and benchmark reports, rewritten after every step

examples:
  python -m jarrn_deploy.benchmarks.device_check --dry-run     # the plan, with each step's time budget (no GPU needed)
  python -m jarrn_deploy.benchmarks.device_check               # on the GPU machine: about 6 minutes at most
  jarrn device-check --skip train                 # leave out the training steps
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jarrn device-check", description=DEVICE_CHECK_HELP_DESCRIPTION,
        epilog=DEVICE_CHECK_HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (every step with its time budget) and exit; needs no GPU")
    parser.add_argument("--device", default="cuda", help="the CUDA device to check: 'cuda' (= cuda:0) or 'cuda:N'")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default reports/<gpu-tag>/)")
    parser.add_argument("--total-budget", type=float, default=TOTAL_BUDGET_S,
                        help="seconds for the whole run (default %(default)g); steps that no longer fit are skipped")
    parser.add_argument("--skip", default="",
                        help="comma-separated step keys or prefixes to leave out, e.g. 'tests,train' or "
                             "'latency:full'")
    return parser


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not args.total_budget >= 60:
        raise UsageError(f"--total-budget: expected at least 60 seconds, got {args.total_budget:g}")
    skip = args.skip.split(",")
    if args.dry_run:
        env = package_environment()
        print(format_plan(build_plan(env, skip), args.total_budget, env))
        return 0
    from jarrn_deploy.devices import parse_device, resolve_device

    requested = parse_device(args.device)
    if requested == "cpu":
        raise UsageError("--device: the device check needs a CUDA device ('cuda' or 'cuda:N'); "
                         "--dry-run prints the plan anywhere")
    try:
        device = resolve_device("cuda" if requested == "auto" else requested)
    except UnavailableError as exc:
        raise UnavailableError(f"the device check needs a CUDA GPU: {exc}; --dry-run prints the plan anywhere") from None
    log(f"probing {device} ...")
    env = probe_environment(device)
    plan = build_plan(env, skip)
    print(format_plan(plan, args.total_budget, env), file=sys.stderr, flush=True)
    from jarrn_deploy.benchmarks.machine import describe_machine

    machine = describe_machine("cuda")
    out = args.out or REPO_ROOT / "reports" / machine["machine_tag"]
    with tempfile.TemporaryDirectory(prefix="jarrn_device_check_") as tmp:
        session = Session(env, out, Path(tmp), args.total_budget, argv)
        session.machine = machine
        session.out.mkdir(parents=True, exist_ok=True)
        execute(session, plan)
        from jarrn_deploy.benchmarks.device_report import write_benchmark_reports, write_summary

        log("writing the reports ...")
        started = time.perf_counter()
        report_step = next(s for s in plan if s.key == "report")
        outcome = Outcome("report", report_step.title, report_step.budget_s)
        try:
            written = write_benchmark_reports(session)
            outcome.summary = f"{len(written)} benchmark report files"
        except Exception as exc:  # noqa: BLE001 - the summary below must still be written
            outcome.status = "failed"
            outcome.summary = f"{type(exc).__name__}: {exc}"
            outcome.details = {"traceback": traceback.format_exc()}
            written = []
        outcome.seconds = round(time.perf_counter() - started, 1)
        session.outcomes.append(outcome)
        written += write_summary(session, plan, chart=True)
    for path in written:
        log(f"wrote {path}")
    failed = [o.key for o in session.outcomes if o.status == "failed"]
    log(f"done in {time.perf_counter() - session.started:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "; no step failed"))
    return 6 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
