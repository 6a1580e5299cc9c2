"""benchmarks/run.py: latency statistics, argument checking, the machine description and a tiny end-to-end report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jarrn_deploy.benchmarks.arguments import ArgumentError, parse_choice_list, parse_size, parse_sizes
from jarrn_deploy.benchmarks.machine import describe_machine, machine_tag
from jarrn_deploy.benchmarks.rows import Row, applicable_rows
from jarrn_deploy.benchmarks.timing import CpuInterference, iteration_count, latency_stats, quiet_stats

from tests.support import REPO, TINY_WIDTHS
RUN = [sys.executable, str(REPO / "benchmarks" / "run.py")]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------------------------
# statistics


def test_latency_stats_on_a_known_list() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1, 2, ..., 100 ms
    stats = latency_stats(samples, batch=2)
    assert stats["n"] == 100
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5)
    assert stats["min_ms"] == pytest.approx(1.0)
    assert stats["max_ms"] == pytest.approx(100.0)
    assert stats["throughput_ips"] == pytest.approx(2 * 1000 / 50.5)


def test_latency_stats_small_and_unsorted_samples() -> None:
    stats = latency_stats([0.030, 0.010, 0.020], batch=1)
    assert stats["p50_ms"] == pytest.approx(20.0)
    assert stats["p90_ms"] == pytest.approx(28.0)  # linear interpolation between the order statistics
    assert stats["p99_ms"] == pytest.approx(29.8)
    assert stats["std_ms"] == pytest.approx(10.0)
    single = latency_stats([0.005])
    assert single["p50_ms"] == single["p99_ms"] == pytest.approx(5.0) and single["std_ms"] == 0.0


@pytest.mark.parametrize("bad", [[], [float("nan")], [-0.1], [float("inf")]])
def test_latency_stats_rejects_bad_samples(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="latency"):
        latency_stats(bad)


def test_quiet_stats_keep_only_calls_without_interference() -> None:
    samples = [0.010, 0.011, 0.050, 0.012, 0.090]
    shares = [0.0, 0.05, 0.8, 0.02, None]
    quiet = quiet_stats(samples, shares)
    assert quiet is not None and quiet["n"] == 3 and quiet["p50_ms"] == pytest.approx(11.0)
    assert quiet_stats(samples, [0.5] * 5) is None  # fewer than 3 quiet calls
    cpu = CpuInterference()
    if cpu.available:  # Linux: a window of pure sleeping is attributed entirely to others (or idle)
        start = cpu.snapshot()
        end = cpu.snapshot()
        share = cpu.share(start, end)
        assert share is None or share >= 0.0


def test_paired_runs_are_combined_by_their_median_ratio() -> None:
    from jarrn_deploy.benchmarks.run import combine_paired

    def fake(ratio: float) -> dict:
        lat = {"torch_forward": {"p50_ms": 100.0 * ratio}, "ort_e2e": {"p50_ms": 100.0}}
        return {"status": "ok", "speedup_ort_e2e_vs_torch_forward": ratio, "speedup_graph_vs_graph": ratio,
                "speedup_e2e_vs_e2e": ratio, "basis": "all calls", "rounds": 5, "latency": lat, "latency_quiet": {}}

    combined = combine_paired([fake(2.5), fake(1.5), {"status": "failed"}, fake(2.0)])
    assert combined["speedup_ort_e2e_vs_torch_forward"] == 2.0 and combined["processes"] == 3
    assert sorted(p["speedup_ort_e2e_vs_torch_forward"] for p in combined["per_process"]) == [1.5, 2.0, 2.5]
    assert combined["per_process"][0]["torch_forward_p50_ms"] == pytest.approx(250.0)


def test_iteration_count_fits_the_time_budget() -> None:
    assert iteration_count(0.5, seconds=10, min_iterations=3, max_iterations=100) == 20
    assert iteration_count(20.0, seconds=10, min_iterations=3, max_iterations=100) == 3
    assert iteration_count(0.001, seconds=10, min_iterations=3, max_iterations=100) == 100


# ---------------------------------------------------------------------------------------------------------------------
# arguments


def test_parse_size() -> None:
    assert parse_size("320x320") == (320, 320)
    assert parse_size("375X1242") == (375, 1242)
    assert parse_size("256") == (256, 256)
    assert parse_sizes("320x320,375x1242,320x320") == ((320, 320), (375, 1242))
    for bad in ("32xq", "x320", "320x", "-5x5", "0x64", "abc", "320x320x3"):
        with pytest.raises(ArgumentError, match="--sizes: "):
            parse_size(bad)


def test_parse_choice_list() -> None:
    assert parse_choice_list("all", "--backends", ("torch", "onnxruntime")) == ("torch", "onnxruntime")
    assert parse_choice_list("ONNXRuntime, torch", "--backends", ("torch", "onnxruntime")) == ("onnxruntime", "torch")
    with pytest.raises(ArgumentError, match="unknown value 'tensorflow'"):
        parse_choice_list("torch,tensorflow", "--backends", ("torch", "onnxruntime"))


def test_rows_skip_combinations_that_do_not_exist() -> None:
    rows = applicable_rows(("torch", "onnxruntime"), ("fp32", "int8"))
    assert rows == [Row("torch", "fp32"), Row("onnxruntime", "fp32"), Row("onnxruntime", "int8")]
    assert Row("torch", "fp32").label == "PyTorch eager FP32"


def test_help_works() -> None:
    proc = subprocess.run([*RUN, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--quick", "--model", "--out", "--threads", "--device", "--backends", "--sizes"):
        assert option in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backends", "torch,tensorflow"], "--backends: unknown value 'tensorflow'"),
        (["--precisions", "fp8"], "--precisions: unknown value 'fp8'"),
        (["--sizes", "320by320"], "--sizes: bad size '320by320'"),
        (["--batches", "1,zero"], "--batches: bad value 'zero'"),
        (["--threads", "0"], "--threads: expected a positive integer"),
        (["--quiet-wait", "-1"], "--quiet-wait: expected seconds >= 0"),
        (["--device", "tpu"], "--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    ],
)
def test_bad_arguments_give_a_clear_error(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.benchmarks import run

    with pytest.raises(SystemExit) as exc:
        run.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.startswith("usage: jarrn bench")


@pytest.mark.parametrize("args, message", [
    (["--model", "/nonexistent/model.safetensors"], "error: --model: no such file"),
    (["--onnx", "/nonexistent/jarrn_fp32.onnx"], "error: --onnx: no such file"),
])
def test_missing_input_files_are_input_errors(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.benchmarks import run

    assert run.main(args) == 3  # jarrn_deploy.errors.EXIT_INPUT: an input file, not a usage error
    assert message in capsys.readouterr().err


def test_settings_are_typed_and_recorded_as_json_lists() -> None:
    from jarrn_deploy.benchmarks import run
    from jarrn_deploy.benchmarks.settings import BenchmarkSettings

    settings = run.resolve_args(run.build_parser().parse_args(["--quick", "--sizes", "64x96", "--threads", "1"]))
    assert isinstance(settings, BenchmarkSettings)
    assert settings.sizes == ((64, 96),) and settings.threads == 1 and settings.quick
    with pytest.raises(AttributeError):
        settings.threads = 2  # type: ignore[misc]
    recorded = settings.as_dict()
    assert recorded["sizes"] == [(64, 96)] and recorded["engines"] == [] and recorded["device"] == "cpu"
    json.dumps(recorded)


def test_bad_argument_from_the_command_line() -> None:
    proc = subprocess.run([*RUN, "--sizes", "32xq"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--sizes: bad size '32xq'; expected HEIGHTxWIDTH" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------------------------
# machine description


def test_machine_description_has_the_required_keys() -> None:
    info = describe_machine("cpu")
    for key in ("machine_tag", "device", "cpu_model", "cpu_physical_cores", "cpu_logical_cores", "cpu_features",
                "memory_gib", "os", "kernel", "python", "libraries", "gpus"):
        assert key in info, key
    for lib in ("torch", "onnxruntime", "onnx", "tensorrt", "numpy", "onnxruntime_providers"):
        assert lib in info["libraries"], lib
    assert info["libraries"]["torch"] and info["libraries"]["onnxruntime"]
    assert info["cpu_physical_cores"] >= 1
    assert info["machine_tag"].startswith("cpu-") and info["machine_tag"].endswith(f"-{info['cpu_physical_cores']}c")
    json.dumps(info)  # serialisable as is


def test_machine_tag_formats() -> None:
    assert machine_tag({"device": "cpu", "cpu_model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                        "cpu_physical_cores": 32}) == "cpu-intel-xeon-gold-6338-32c"
    assert machine_tag({"device": "cuda", "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}) == "gpu-h100-80gb-hbm3"
    assert machine_tag({"device": "cuda", "gpus": [{"name": "Orin (nvgpu)"}]}) == "gpu-orin-nvgpu"


# ---------------------------------------------------------------------------------------------------------------------
# a tiny run end to end


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from jarrn_deploy.benchmarks import run
    from jarrn_deploy.export.onnx_graph import ExportOptions, export_onnx
    from jarrn_deploy.model import Jarrn, JarrnConfig, save_model

    tmp = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    network = Jarrn(JarrnConfig(TINY_WIDTHS))
    with torch.no_grad():
        for name, param in network.named_parameters():
            if name.endswith("alpha"):
                param.fill_(0.3)
    model = save_model(network, tmp / "tiny.safetensors")
    # The benchmark would export the graph itself (with onnxslim); handing it one exported without the simplifier
    # keeps this test fast and also covers --onnx.
    graph = export_onnx(network, tmp / "tiny_fp32.onnx", ExportOptions(simplify=False))
    out = tmp / "report"
    code = run.main([
        "--model", str(model), "--onnx", str(graph), "--out", str(out), "--cache", str(tmp / "cache"),
        "--sizes", "64x64", "--batches", "1",
        "--warmup", "1", "--iterations", "2", "--min-iterations", "2", "--threads", "1", "--quiet-wait", "0",
        "--backends", "torch,onnxruntime,openvino", "--precisions", "fp32", "--cases", "tum_desk@100",
    ])
    assert code == 0
    return out


def test_tiny_run_writes_the_report_files(tiny_report: Path) -> None:
    for name in ("report.md", "report.json", "latency.png", "accuracy.png", "panel_tum_desk_100.png"):
        path = tiny_report / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_MAGIC
    assert not list(tiny_report.glob("*.tmp")) and not list(tiny_report.glob(".*.tmp"))
    assert not (tiny_report.parent / "cache").exists()  # the graph given with --onnx was used, nothing exported


def test_tiny_run_report_content(tiny_report: Path) -> None:
    report = json.loads((tiny_report / "report.json").read_text())
    rows = {r["key"]: r for r in report["rows"]}
    assert rows["torch:fp32"]["status"] == "ok" and rows["onnxruntime:fp32"]["status"] == "ok"
    for key in ("torch:fp32", "onnxruntime:fp32"):
        cfg = rows[key]["configs"]["64x64_b1"]
        for mode in ("e2e", "graph"):
            stats = cfg["latency"][mode]
            assert stats["n"] == 2 and 0 < stats["p50_ms"] <= stats["p99_ms"]
        assert cfg["peak_rss_mib"] > 0
        assert rows[key]["threads"]["torch_intra_op"] == 1
    assert rows["torch:fp32"]["configs"]["64x64_b1"]["speedup"]["e2e"] == pytest.approx(1.0)
    assert rows["onnxruntime:fp32"]["setup"]["session_options"]["intra_op_num_threads"] == 1
    ort_acc = rows["onnxruntime:fp32"]["accuracy"]["tum_desk@100"]
    assert ort_acc["vs_reference"]["max_abs_m"] < 1e-2
    # a registry backend gets its rows with nothing benchmark-specific: OpenVINO runs the same graph, threads included
    from jarrn_deploy.runtime.backends.registry import BACKENDS

    missing = BACKENDS["openvino"].missing()
    if missing:  # the optional extra is not installed: listed with the registry's reason
        assert rows["openvino:fp32"]["reason"] == f"unavailable: {missing}"
    else:
        assert rows["openvino:fp32"]["status"] == "ok", rows["openvino:fp32"].get("reason")
        assert rows["openvino:fp32"]["accuracy"]["tum_desk@100"]["vs_reference"]["max_abs_m"] < 1e-2
        assert "OpenVinoOptions(threads=1" in rows["openvino:fp32"]["setup"]["api"]
    assert np.isfinite(ort_acc["vs_gt"]["rmse"]) and 0 <= ort_acc["vs_gt"]["delta1"] <= 1
    assert set(report["baselines"]) == {"nearest", "linear"}
    assert report["baselines"]["linear"]["tum_desk@100"]["rmse"] > 0
    assert report["targets"]["speed"]["speedup"] is None  # no 320x320 configuration in this run
    # rows this machine cannot run are listed with a reason, not dropped
    assert rows["onnxruntime:fp32"]["label"] == "ONNX Runtime FP32"
    assert report["machine"]["cpu_model"] and report["settings"]["threads"] == 1
    md = (tiny_report / "report.md").read_text()
    for text in ("PyTorch eager FP32", "ONNX Runtime FP32", "OpenVINO FP32", "64x64, batch 1", "nearest interpolation",
                 "tum_desk@100", "latency.png", "panel_tum_desk_100.png"):
        assert text in md, text
