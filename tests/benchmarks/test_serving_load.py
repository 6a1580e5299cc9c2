"""The serving load test: the real server on loopback, HTTP and gRPC clients, real frames at mixed sizes (CI-sized)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason='needs the serve extra: pip install -e ".[serve]"')

from jarrn_deploy.benchmarks.serving_load import (  # noqa: E402
    LoadConfig,
    batch_histogram,
    main,
    prometheus_counters,
    run_load_test,
    time_per_request,
    write_report,
)


def test_prometheus_counters_and_statistics_give_the_batches_triton_formed() -> None:
    text = "\n".join([
        "# HELP nv_inference_count Number of inferences performed",
        'nv_inference_count{model="jarrn",version="1"} 23',
        'nv_inference_exec_count{model="jarrn",version="1"} 17',
        'nv_inference_count{model="other",version="1"} 5',
    ])
    assert prometheus_counters(text, "jarrn") == {"nv_inference_count": 23.0, "nv_inference_exec_count": 17.0}
    statistics = {"model_stats": [{"name": "jarrn", "batch_stats": [
        {"batch_size": 1, "compute_infer": {"count": 12, "ns": 1}},
        {"batch_size": 3, "compute_infer": {"count": 2, "ns": 1}},
        {"batch_size": 4, "compute_infer": {"count": 0, "ns": 0}},
    ]}]}
    assert batch_histogram(statistics) == {1: 12, 3: 2}


def test_time_per_request_is_the_mean_over_the_requests_between_two_reads() -> None:
    def stats(queue: tuple[int, int], infer: tuple[int, int]) -> dict:
        return {"model_stats": [{"name": "jarrn", "inference_stats": {
            "queue": {"count": queue[0], "ns": queue[1]}, "compute_infer": {"count": infer[0], "ns": infer[1]}}}]}

    split = time_per_request(stats((10, 5_000_000), (10, 90_000_000)), stats((14, 13_000_000), (14, 130_000_000)))
    assert split["queue_ms"] == 2.0 and split["compute_infer_ms"] == 10.0 and split["compute_input_ms"] is None


def test_bad_load_settings_exit_in_one_line(capsys) -> None:
    assert main(["--http-clients", "0", "--grpc-clients", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --http-clients/--grpc-clients")


def test_load_test_serves_every_request_correctly_with_flat_memory(tmp_path: Path) -> None:
    config = LoadConfig(requests=48, max_seconds=45, http_clients=2, grpc_clients=2, sizes=((64, 96), (96, 128)),
                        full_frame_requests=4)
    report = run_load_test(config, log=lambda message: None)
    paths = write_report(report, tmp_path)
    assert [p.name for p in paths] == ["serving_load.json", "serving_load.md", "latency.png"]
    assert report["requests"] == {"sent": 48, "ok": 48, "failed": 0, "lost": 0, "wrong_answers": 0, "warm_up_failed": 0}
    assert report["accuracy"]["max_abs_err_m"] <= 1e-4
    assert report["latency"]["http"]["count"] + report["latency"]["grpc"]["count"] == 48
    assert report["latency"]["http"]["count"] > 0 and report["latency"]["grpc"]["count"] > 0
    batches = report["batches"]
    assert batches["inferences"] == 48 == batches["prometheus_inference_count"]
    assert batches["executions"] == batches["prometheus_exec_count"]
    assert report["checks"]["server_memory_flat"], report["rss"]
    full = report["full_frames"]
    assert full["size"] == "375x1242" and full["requests"]["ok"] == full["requests"]["sent"] == 4
    assert full["latency"]["p99_ms"] > 0 and full["triton_time_per_request"]["compute_infer_ms"] > 0
    assert full["triton_time_per_request"]["queue_ms"] is not None
    assert report["passed"]
    saved = json.loads(paths[0].read_text())
    assert saved["requests"]["ok"] == 48 and "PASSED" in paths[1].read_text()
    assert "## Full frames (375x1242)" in paths[1].read_text()
    assert paths[2].read_bytes().startswith(b"\x89PNG")
