"""The device check (``python -m jarrn_deploy.benchmarks.device_check``) without a GPU: the plan and its budgets, what is skipped and
why, the step loop (budgets, failures), and the measurement, training and report code run on the CPU with small sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jarrn_deploy.benchmarks import device_check as dc
from jarrn_deploy.benchmarks import device_report, device_session

from tests.support import REPO

H200 = dc.Environment(device="cuda:0", gpu_name="NVIDIA H200", compute_capability="9.0",
                      ort_cuda_missing="this onnxruntime has no CUDAExecutionProvider: replace it by onnxruntime-gpu",
                      tensorrt_missing="not installed: tensorrt", tensorrt_rtx_missing=dc.rtx_unsupported("9.0", "H200"),
                      cpu_count=16)


def test_dry_run_prints_every_step_with_its_budget_and_exits_0() -> None:
    proc = subprocess.run([sys.executable, "-m", "jarrn_deploy.benchmarks.device_check", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for key in ("probe", "tests", "latency:bundled:torch:fp32", "latency:full:torch-compile:fp16", "train:step",
                "train:smoke", "latency:bundled:onnxruntime:fp32", "latency:full:tensorrt-rtx:fp16", "report"):
        assert key in out, key
    assert "total budget 345 s" in out and " 80 s " in out  # the training smoke's budget


def test_the_h200_plan_fits_in_six_minutes_and_says_why_rows_are_skipped() -> None:
    plan = dc.build_plan(H200)
    running = [s for s in plan if not s.skip]
    assert sum(s.budget_s for s in running) <= dc.TOTAL_BUDGET_S <= 360 - 15  # start-up and slack inside 6 minutes
    reasons = {s.key: s.skip for s in plan if s.skip}
    assert set(reasons) == {f"latency:{m}:{r}" for m in ("bundled", "full")
                            for r in ("onnxruntime:fp32", "onnxruntime:fp16", "tensorrt:fp16", "tensorrt-rtx:fp16")}
    assert "compute capability 9.0" in reasons["latency:full:tensorrt-rtx:fp16"]
    assert "onnxruntime-gpu" in reasons["latency:bundled:onnxruntime:fp32"]
    assert [s.key for s in plan][-1] == "report"


def test_skip_option_leaves_out_steps_by_prefix_but_never_the_report() -> None:
    plan = dc.build_plan(H200, skip=["tests", "latency:full", "report"])
    skipped = {s.key for s in plan if s.skip == "skipped: --skip"}
    assert "tests" in skipped and "latency:full:torch:fp32" in skipped and "report" not in skipped
    assert not any(s.key.startswith("latency:bundled:torch") for s in plan if s.skip)


def test_missing_optional_packages_become_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    gone = {"pytest", "onnxslim", "tensorrt", "tensorrt_rtx", "modelopt", "onnxconverter_common"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in gone else real(name, *a))
    env = dc.package_environment()
    assert env.pytest_missing.startswith("not installed: pytest")
    assert "onnxslim" in env.onnx_export_missing and "onnxslim" in env.fp16_export_missing
    assert env.tensorrt_missing.startswith("not installed: tensorrt")
    assert env.tensorrt_rtx_missing.startswith("not installed: tensorrt_rtx")
    plan = dc.build_plan(env)
    assert all(s.skip for s in plan if s.key in ("tests",) or ":onnxruntime:" in s.key or ":tensorrt" in s.key)


def test_tensorrt_rtx_is_refused_on_hopper_only() -> None:
    assert "compute capability 9.0" in dc.rtx_unsupported("9.0", "NVIDIA H200")
    assert dc.rtx_unsupported("8.9", "NVIDIA L4") is None


def test_without_a_gpu_the_check_refuses_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert dc.main([]) == 5
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the device check needs a CUDA GPU: --device cuda: this PyTorch build has no CUDA support (use "
        "--device cpu, or install a CUDA build of PyTorch); --dry-run prints the plan anywhere"]
    assert dc.main(["--device", "cpu"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert dc.main(["--device", "tpu"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"


# ---------------------------------------------------------------------------------------------------------------------
# the step loop


def _session(tmp_path: Path, total: float = dc.TOTAL_BUDGET_S) -> dc.Session:
    return dc.Session(H200, tmp_path / "report", tmp_path / "work", total, ["--out", str(tmp_path)])


def test_steps_get_their_budget_fail_alone_and_stop_when_the_total_is_spent(tmp_path: Path) -> None:
    session = _session(tmp_path, total=100)
    session.out.mkdir(parents=True)
    plan = [dc.Step("probe", "probe", 5), dc.Step("tests", "tests", 60), dc.Step("train:step", "step", 50),
            dc.Step("train:smoke", "smoke", 80, skip="unavailable: no reason"), dc.Step("report", "report", 15)]
    seen: list[tuple[str, float]] = []

    def runner(session: dc.Session, step: dc.Step, budget: float) -> dc.Outcome:
        seen.append((step.key, budget))
        if step.key == "tests":
            session.started -= 80  # as if the tests had taken 80 s: 5 s left before the report's 15
            raise RuntimeError("pytest crashed\nsecond line")
        return dc.Outcome(step.key, step.title, budget, summary="fine")

    outcomes = dc.execute(session, plan, runner)
    assert [k for k, _ in seen] == ["probe", "tests"]
    assert seen[0][1] == 5 and seen[1][1] == 60
    by_key = {o.key: o for o in outcomes}
    assert by_key["tests"].status == "failed" and by_key["tests"].summary == "RuntimeError: pytest crashed"
    assert by_key["train:step"].status == "skipped" and "of the 100 s total budget" in by_key["train:step"].summary
    assert by_key["train:smoke"].status == "unavailable"
    summary = json.loads((session.out / "device_check.json").read_text())  # rewritten after every step
    assert [s["key"] for s in summary["steps"]] == ["probe", "tests", "train:step", "train:smoke"]
    assert "| tests |" in (session.out / "device_check.md").read_text()


def test_junit_summary_counts_and_names_failures(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "@pytest.mark.gpu\ndef test_ok():\n    pass\n"
        "@pytest.mark.gpu\ndef test_bad():\n    assert 1 == 2, 'one is not two'\n"
        "@pytest.mark.gpu\n@pytest.mark.skip(reason='no GPU')\ndef test_skip():\n    pass\n"
        "def test_not_gpu():\n    pass\n")
    junit = tmp_path / "junit.xml"
    cmd = dc.pytest_command([tmp_path / "test_sample.py"], junit, 30)
    subprocess.run(cmd + ["-W", "ignore::pytest.PytestUnknownMarkWarning"], cwd=tmp_path, capture_output=True,
                   timeout=120)
    summary = dc.summarise_junit(junit)
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (1, 1, 1)
    assert "test_bad" in summary["failures"][0]["test"] and "one is not two" in summary["failures"][0]["message"][0]


def test_gpu_test_files_are_the_ones_with_gpu_marks() -> None:
    names = {p.name for p in dc.gpu_test_files()}
    assert "test_torch_backend_options.py" in names and "test_device_check.py" not in names


# ---------------------------------------------------------------------------------------------------------------------
# measurement, training and report code on the CPU


@pytest.fixture()
def small_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    from jarrn_deploy.benchmarks import measure

    monkeypatch.setattr(dc, "LATENCY_SIZES", ((64, 96),))
    monkeypatch.setattr(dc, "LATENCY_BATCHES", (1, 2))
    monkeypatch.setattr(measure, "TimingSettings", partial(measure.TimingSettings, warmup=1, min_iterations=2,
                                                           max_iterations=3, seconds=0.05))


def test_a_latency_row_is_measured_within_budget_and_reported(tmp_path: Path, small_sizes, monkeypatch) -> None:  # noqa: ANN001
    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(device_session, "ACCURACY_CASES", ("tum_desk@100",))
    session = _session(tmp_path)
    session.device = "cpu"
    session.workdir.mkdir(parents=True)
    step = next(s for s in dc.build_plan(H200) if s.key == "latency:bundled:torch:fp32")
    outcome = dc.run_latency_row(session, step, budget_s=60)
    assert outcome.status == "ok", outcome.summary
    result = session.results["bundled"]["torch:fp32"]
    assert set(result["configs"]) == {"64x96_b1", "64x96_b2"} and result["predictions"] == ["tum_desk@100"]
    assert result["configs"]["64x96_b1"]["latency"]["e2e"]["n"] >= 2
    # a GPU-only row on the CPU fails alone, with the option's own message
    fp16 = next(s for s in dc.build_plan(H200) if s.key == "latency:bundled:torch:fp16")
    failed = dc.run_latency_row(session, fp16, budget_s=30)
    assert failed.status == "failed" and "needs a CUDA device" in failed.summary
    session.reasons["bundled"]["latency:bundled:onnxruntime:fp32"] = "unavailable: no CUDA provider"
    written = device_report.write_benchmark_reports(session)
    names = {p.name for p in written}
    assert {"report.json", "report.md", "latency.png", "accuracy.png"} <= names
    report = json.loads((session.out / "bundled-model" / "report.json").read_text())
    labels = {r["key"]: r["label"] for r in report["rows"]}
    assert labels["torch:fp16"] == "PyTorch eager FP16 autocast + channels-last"
    assert report["rows"][0]["accuracy"]["tum_desk@100"]["vs_gt"]["rmse"] > 0
    session.outcomes.append(outcome)
    summary_files = device_report.write_summary(session, dc.build_plan(H200), chart=True)
    assert {p.name for p in summary_files} == {"device_check.json", "device_check.md", "device_check.png"}
    text = (session.out / "device_check.md").read_text()
    assert "## Latency, bundled model" in text and "bundled-model/report.md" in text


def test_a_row_skips_what_its_budget_cannot_hold() -> None:
    from jarrn_deploy.benchmarks.measure import TimingSettings, measure_row
    from jarrn_deploy.benchmarks.runner import Runner

    now = [0.0]

    class Backend:
        """The graph alone: 0.1 s a call."""

        def run(self, rgb, sparse):  # noqa: ANN001, ANN201
            now[0] += 0.1
            return sparse

        def close(self) -> None:
            pass

    class SlowFirstCall:
        """A completer whose every new shape costs 30 s on its first call (like a compilation); later calls 0.1 s."""

        backend = Backend()

        def __init__(self) -> None:
            self.shapes: set = set()

        def complete(self, rgb, sparse):  # noqa: ANN001, ANN201
            shape = rgb.shape
            now[0] += 0.1 if shape in self.shapes else 30.0
            self.shapes.add(shape)
            return sparse

        def close(self) -> None:
            pass

    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    cases = [c for c in evaluation_cases(load_real_frames()) if c.name == "tum_desk@100"]
    result = measure_row(lambda: Runner(SlowFirstCall()), row_key="torch-compile:fp16", configs=[(64, 64, 1), (96, 96, 1), (64, 64, 2)],
                         latency_cases=cases, timing=TimingSettings(warmup=1, min_iterations=2, max_iterations=2,
                                                                    seconds=0.2),
                         budget_s=50, first_call_estimate_s=25, log=lambda m: None, clock=lambda: now[0])
    assert list(result["configs"]) == ["64x64_b1"]
    assert len(result["skipped"]) == 2 and "expected" in result["skipped"][0] and result["status"] == "ok"


def test_training_checks_run_the_training_code_and_read_its_throughput() -> None:
    from jarrn_deploy.benchmarks.device_train import TrainingShape, step_throughput, training_smoke

    shape = TrainingShape(config="small", crop=(64, 64), batch=2, amp=True)
    step = step_throughput("cpu", shape, seconds=0.5, log=lambda m: None)
    assert step["steps"] >= 1 and step["samples_per_s"] > 0 and step["amp"] is False  # no AMP on the CPU
    smoke = training_smoke("cpu", shape, seconds=2, timeout_s=120, workers=0, widths=(8,) * 7, log_every=1,
                           log=lambda m: None)
    assert smoke["status"] == "ok", smoke
    assert smoke["steps"] >= 1 and smoke["samples_per_s"] > 0 and smoke["windows"][0]["step"] == 1


def test_a_training_run_that_does_not_stop_is_killed_at_its_timeout() -> None:
    from jarrn_deploy.benchmarks.device_train import run_streaming

    lines: list[str] = []
    code, out, timed_out, wall = run_streaming(
        [sys.executable, "-c", "import time\nprint('started', flush=True)\ntime.sleep(60)"], timeout_s=3,
        log=lines.append)
    assert timed_out and wall < 10 and out == ["started"] and lines == ["  started"]


def test_training_steps_report_the_rate_and_what_limits_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jarrn_deploy.benchmarks import device_train

    calls = {}

    def fake_step(device, shape, *, seconds, log):  # noqa: ANN001, ANN202
        calls["step"] = (device, shape, seconds)
        return {"samples_per_s": 1000.0, "ms_per_step": 16.0, "channels_last": True}

    def fake_smoke(device, shape, *, seconds, timeout_s, log):  # noqa: ANN001, ANN202
        calls["smoke"] = (device, seconds, timeout_s)
        return {"status": "ok", "steady_samples_per_s": 120.0, "samples_per_s": 110.0, "steps": 400, "workers": 14}

    monkeypatch.setattr(device_train, "step_throughput", fake_step)
    monkeypatch.setattr(device_train, "training_smoke", fake_smoke)
    session = _session(tmp_path)
    session.out.mkdir(parents=True)
    step = dc.run_train_step(session, 12)
    smoke = dc.run_train_smoke(session, 80)
    assert calls["step"][0] == "cuda:0" and calls["step"][1] == device_train.TrainingShape()
    assert calls["smoke"] == ("cuda:0", 60.0, 80)  # 60 s of training inside the 80 s budget
    assert step.summary.startswith("1000 samples/s") and "target 400: NOT met" in smoke.summary
    session.outcomes += [step, smoke]
    device_report.write_summary(session, dc.build_plan(H200), chart=True)
    text = (session.out / "device_check.md").read_text()
    assert "Training reaches 12% of the step-alone rate: the data pipeline" in text
    assert (session.out / "device_check.png").stat().st_size > 1000


def test_probe_reads_the_gpu_and_turns_hopper_into_a_tensorrt_rtx_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H200")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: types.SimpleNamespace() if name == "tensorrt_rtx" else real(name, *a))
    env = dc.probe_environment("cuda:0")
    assert (env.device, env.gpu_name, env.compute_capability) == ("cuda:0", "NVIDIA H200", "9.0")
    assert env.tensorrt_rtx_missing.startswith("TensorRT-RTX does not run on compute capability 9.0 (NVIDIA H200)")
    plan = {s.key: s for s in dc.build_plan(env)}
    assert plan["latency:bundled:tensorrt-rtx:fp16"].skip.startswith("unavailable: TensorRT-RTX does not run")
