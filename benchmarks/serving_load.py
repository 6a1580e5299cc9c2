"""Load test of ``jarrn serve``: the real Triton server on loopback, concurrent HTTP and gRPC clients, real frames.

    python -m jarrn_deploy.benchmarks.serving_load                          # reports/serving/serving_load.{md,json} + latency.png
    python -m jarrn_deploy.benchmarks.serving_load --requests 80 --out /tmp/serving   # the CI-sized run (tests/benchmarks/test_serving_load.py)

What it does: crops the bundled real frames (data/real: KITTI with its LiDAR, TUM and Kinect with points sampled from
their ground truth) to a few sizes; computes :meth:`DepthCompleter.complete` on each crop in this process (same backend
and model as the server); starts the server; warms it up with every crop once; then N HTTP and M gRPC client threads
send the crops in a mixed order, bounded in count and time. Every answer is compared with the reference; every request
is accounted for (answered, refused, or lost = no answer). Reported: p50/p90/p99 latency overall, per protocol and
per size; throughput; the batch sizes Triton's dynamic batcher formed (Triton's statistics API, warm-up excluded; and
the Prometheus ratio of inferences to executions); Triton's queue and compute time per request; the resident memory of
the server processes over the run. A second phase sends whole 375x1242 frames (KITTI, and Kinect crops of that size):
throughput, p50/p99, queue and compute time per request.

Checks (exit status 6 when one fails): no failed or lost request, every answer within ``--tolerance`` metres of the
reference, and the servers' memory flat: the baseline RSS (10th percentile) of the last third of the run at most
``--rss-growth-mib`` above that of the first third (a batch in flight lifts RSS for a moment; a leak lifts the floor).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import platform
import re
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import numpy as np  # noqa: E402

from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import CheckFailedError, UsageError  # noqa: E402
from jarrn_deploy.export.triton_config import MODEL_NAME  # noqa: E402
from jarrn_deploy.runtime.backends.registry import BACKEND_NAMES  # noqa: E402

DEFAULT_SIZES = ((64, 96), (96, 128), (128, 160), (192, 256))
FULL_FRAME = (375, 1242)
"""A whole KITTI frame (and crops of that size from the larger Kinect frames): the size of the full-frame phase."""
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "reports" / "serving"
SCHEMA = "jarrn-serving-load/1"


@dataclass(frozen=True)
class LoadConfig:
    """One load-test run."""

    requests: int = 600
    """Requests sent in the measured phase (all clients together); the run also stops at ``max_seconds``."""
    max_seconds: float = 120.0
    """Wall-clock bound of the measured phase."""
    http_clients: int = 4
    """Concurrent HTTP client threads (one ``tritonclient.http`` client each)."""
    grpc_clients: int = 4
    """Concurrent gRPC client threads (one ``tritonclient.grpc`` client each)."""
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    """Crop sizes (H, W) taken from every real frame."""
    max_batch_size: int = 8
    """The server's largest dynamic batch."""
    max_queue_delay_us: int = 5000
    """The server's dynamic-batching queue delay."""
    instances: int = 1
    """Server model instances (``jarrn serve --instances``)."""
    spare_instances: int | None = None
    """``jarrn serve --spare-instances`` (None: its default)."""
    threads: int = 1
    """Intra-op threads per server instance (and for the reference completer)."""
    model: str = ""
    """Model file for server and reference (empty: the bundled default model)."""
    backend: str = ""
    """Backend for server and reference (empty: chosen from ``model`` as ``jarrn infer`` does)."""
    tolerance_m: float = 1e-4
    """Largest accepted difference between a served depth and the reference, metres."""
    rss_growth_mib: float = 64.0
    """Largest accepted growth of the servers' baseline RSS from the first to the last third of the run."""
    burn_in: int = -1
    """Concurrent requests sent after the warm-up and before the measured phase, one image size at a time from the
    largest, so the largest batch of every size has been allocated once (-1: 2 x clients per size)."""
    full_frame_requests: int = 24
    """Requests of the full-frame phase (375x1242, after the mixed phase, same clients; 0: skip it)."""
    seed: int = 0
    """Seed of the crop positions and of the request order."""

    def __post_init__(self) -> None:
        if self.requests < 1 or self.max_seconds <= 0:
            raise UsageError(f"--requests and --seconds: expected positive values, got {self.requests}, {self.max_seconds}")
        if self.http_clients < 0 or self.grpc_clients < 0 or self.http_clients + self.grpc_clients < 1:
            raise UsageError(f"--http-clients/--grpc-clients: expected at least one client, got "
                             f"{self.http_clients} + {self.grpc_clients}")
        if self.full_frame_requests < 0:
            raise UsageError(f"--full-frames: expected 0 or more requests, got {self.full_frame_requests}")
        if not self.sizes or any(h < 1 or w < 1 for h, w in self.sizes):
            raise UsageError(f"--sizes: expected positive HxW sizes, got {self.sizes}")


@dataclass
class Probe:
    """One real-frame crop and its reference depth."""

    name: str
    rgb: np.ndarray  # [1,3,H,W] float32 0..1
    sparse: np.ndarray  # [1,1,H,W] float32 metres
    reference: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [H,W] metres

    @property
    def size(self) -> str:
        return f"{self.rgb.shape[2]}x{self.rgb.shape[3]}"


def make_probes(sizes: Sequence[tuple[int, int]], seed: int) -> list[Probe]:
    """One crop per real evaluation case and size (frames smaller than a size are left out for it); KITTI crops come
    from the lower image, where the LiDAR points are."""
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    rng = np.random.default_rng(seed)
    probes = []
    for case in evaluation_cases(load_real_frames(), seed=seed):
        full_h, full_w = case.sparse.shape
        for height, width in sizes:
            if height > full_h or width > full_w:
                continue
            rows = np.nonzero((case.sparse > 0).any(axis=1))[0]
            low = int(rows.min()) if rows.size and rows.min() <= full_h - height else 0
            for _ in range(50):  # a crop with at least one sparse point (the server refuses maps without any)
                top = int(rng.integers(low, full_h - height + 1))
                left = int(rng.integers(0, full_w - width + 1))
                sparse = case.sparse[top:top + height, left:left + width]
                if (sparse > 0).any():
                    break
            else:
                continue
            rgb = case.rgb[top:top + height, left:left + width]
            probes.append(Probe(f"{case.name}/{height}x{width}",
                                np.ascontiguousarray((rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]),
                                np.ascontiguousarray(sparse.astype(np.float32)[None, None])))
    missing = [f"{h}x{w}" for h, w in sizes if not any(p.size == f"{h}x{w}" for p in probes)]
    if missing:
        raise UsageError(f"--sizes: {', '.join(missing)} is larger than every bundled real frame")
    return probes


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p90, p99, max and mean of latencies in milliseconds."""
    if not values:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    array = np.asarray(values, dtype=np.float64) * 1e3
    return {"count": int(array.size), "p50_ms": float(np.percentile(array, 50)), "p90_ms": float(np.percentile(array, 90)),
            "p99_ms": float(np.percentile(array, 99)), "max_ms": float(array.max()), "mean_ms": float(array.mean())}


def prometheus_counters(text: str, model: str) -> dict[str, float]:
    """``nv_inference_*`` counters of ``model`` from Triton's Prometheus text."""
    counters = {}
    for line in text.splitlines():
        match = re.match(r'^(nv_inference_\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$', line)
        if match and f'model="{model}"' in match.group(2):
            counters[match.group(1)] = counters.get(match.group(1), 0.0) + float(match.group(3))
    return counters


def time_per_request(before: dict, after: dict) -> dict[str, float | None]:
    """Mean milliseconds per request in Triton's queue and in the model (input, compute, output) between two reads
    of the statistics extension."""
    def totals(statistics: dict) -> dict[str, tuple[int, int]]:
        stats = next((m.get("inference_stats", {}) for m in statistics.get("model_stats", [])), {})
        return {k: (int(v.get("count", 0)), int(v.get("ns", 0))) for k, v in stats.items()}

    b, a = totals(before), totals(after)
    out: dict[str, float | None] = {}
    for key in ("queue", "compute_input", "compute_infer", "compute_output"):
        count = a.get(key, (0, 0))[0] - b.get(key, (0, 0))[0]
        ns = a.get(key, (0, 0))[1] - b.get(key, (0, 0))[1]
        out[f"{key}_ms"] = ns / count / 1e6 if count > 0 else None
    return out


def batch_histogram(statistics: dict) -> dict[int, int]:
    """Batch size -> executions, from Triton's statistics extension (``get_inference_statistics``)."""
    histogram: dict[int, int] = {}
    for model in statistics.get("model_stats", []):
        for entry in model.get("batch_stats", []):
            count = int(entry.get("compute_infer", {}).get("count", 0))
            if count:
                histogram[int(entry["batch_size"])] = histogram.get(int(entry["batch_size"]), 0) + count
    return histogram


# ---------------------------------------------------------------------------------------------------------------------
# the run


class _Recorder:
    """Thread-safe record of every request of the measured phase."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[dict[str, Any]] = []
        self.next_index = 0

    def take(self, limit: int) -> int | None:
        with self.lock:
            if self.next_index >= limit:
                return None
            self.next_index += 1
            return self.next_index - 1

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.rows.append(row)


def _client_worker(protocol: str, url: str, probes: list[Probe], order: np.ndarray, recorder: _Recorder,
                   config: LoadConfig, deadline: float, names: tuple[str, str, str]) -> None:
    from tritonclient.utils import InferenceServerException

    if protocol == "http":
        import tritonclient.http as module

        client = module.InferenceServerClient(url, connection_timeout=60.0, network_timeout=60.0)
    else:
        import tritonclient.grpc as module

        client = module.InferenceServerClient(url)
    rgb_name, sparse_name, depth_name = names
    try:
        while time.perf_counter() < deadline:
            index = recorder.take(config.requests)
            if index is None:
                break
            probe = probes[int(order[index % len(order)])]
            inputs = [module.InferInput(rgb_name, list(probe.rgb.shape), "FP32"),
                      module.InferInput(sparse_name, list(probe.sparse.shape), "FP32")]
            inputs[0].set_data_from_numpy(probe.rgb)
            inputs[1].set_data_from_numpy(probe.sparse)
            row: dict[str, Any] = {"protocol": protocol, "size": probe.size, "probe": probe.name}
            start = time.perf_counter()
            try:
                kwargs = {"client_timeout": 60.0} if protocol == "grpc" else {}
                depth = client.infer(MODEL_NAME, inputs, **kwargs).as_numpy(depth_name)
                row["latency_s"] = time.perf_counter() - start
                if depth is None or depth.shape != (1, 1, *probe.reference.shape):
                    row.update(outcome="failed", error=f"depth missing or of shape {None if depth is None else depth.shape}")
                else:
                    row.update(outcome="ok", max_abs_err_m=float(np.abs(depth[0, 0] - probe.reference).max()))
            except InferenceServerException as exc:
                row["latency_s"] = time.perf_counter() - start
                timed_out = "Deadline" in str(exc.status()) or "timed out" in str(exc.message()).lower()
                row.update(outcome="lost" if timed_out else "failed", error=f"{exc.status()}: {exc.message()}"[:300])
            except Exception as exc:  # noqa: BLE001 - a dropped connection or timeout is a lost request
                row.update(latency_s=time.perf_counter() - start, outcome="lost", error=f"{type(exc).__name__}: {exc}"[:300])
            row["end_s"] = time.perf_counter()
            recorder.add(row)
    finally:
        client.close()


RSS_PERIOD_S = 0.05
"""How often the server's memory is sampled (a 48-request run with small runs in parallel lasts about a second)."""


def _rss_sampler(stop: threading.Event, samples: list[tuple[float, int]], period_s: float = RSS_PERIOD_S) -> None:
    from jarrn_deploy.runtime.serve import rss_bytes, server_process_ids

    while not stop.is_set():
        samples.append((time.perf_counter(), rss_bytes(server_process_ids())))
        stop.wait(period_s)


def _fetch(url: str, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _run_clients(server, probes: list[Probe], config: LoadConfig, names: tuple[str, str, str], order: np.ndarray,
                 log) -> tuple[list[dict[str, Any]], int, list[tuple[float, int]], float, float]:  # noqa: ANN001
    """The concurrent phase, probes in ``order``: ``(rows, requests sent, RSS samples, start time, seconds)``."""
    recorder = _Recorder()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(stop, samples), daemon=True)
    sampler.start()
    started = time.perf_counter()
    deadline = started + config.max_seconds
    workers = [threading.Thread(target=_client_worker, daemon=True,
                                args=(protocol, server.http_url if protocol == "http" else server.grpc_url, probes,
                                      order, recorder, config, deadline, names))
               for protocol in ["http"] * config.http_clients + ["grpc"] * config.grpc_clients]
    if log:
        log(f"load: {config.requests} requests from {config.http_clients} HTTP + {config.grpc_clients} gRPC clients, "
            f"at most {config.max_seconds:.0f} s ...")
    for worker in workers:
        worker.start()
    last_log = started
    while any(w.is_alive() for w in workers):
        time.sleep(0.2)
        now = time.perf_counter()
        if log and now - last_log >= 5.0:
            last_log = now
            with recorder.lock:
                done = list(recorder.rows)
            bad = sum(r["outcome"] != "ok" for r in done)
            p50 = percentiles([r["latency_s"] for r in done])["p50_ms"]
            rss = samples[-1][1] / 2**20 if samples else 0.0
            log(f"  {len(done)}/{config.requests} requests, {bad} failed or lost, p50 "
                f"{p50 or 0:.0f} ms, {len(done) / (now - started):.1f} req/s, server RSS {rss:.0f} MiB")
        if now > deadline + 90:  # a hung client: its request is lost, the report says so
            break
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    with recorder.lock:
        return list(recorder.rows), recorder.next_index, samples, started, elapsed


def run_load_test(config: LoadConfig, log=print) -> dict[str, Any]:  # noqa: ANN001, C901 - one linear procedure
    """Run the whole test and return the report dictionary (nothing written)."""
    from jarrn_deploy.model.contract import CONTRACT
    from jarrn_deploy.runtime.serve import RunningServer, ServeOptions, resolve_completer, rss_bytes, server_process_ids
    from jarrn_deploy.runtime.serving_model import CompleterSettings, build_completer

    names = (CONTRACT.rgb_name, CONTRACT.sparse_name, CONTRACT.depth_name)
    load_before = os.getloadavg()[0]
    settings = resolve_completer(CompleterSettings(backend=config.backend, model=config.model, threads=config.threads))
    log(f"frames: cropping the bundled real frames to {', '.join(f'{h}x{w}' for h, w in config.sizes)} ...")
    probes = make_probes(config.sizes, config.seed)
    full_probes = make_probes([FULL_FRAME], config.seed) if config.full_frame_requests else []
    started = time.perf_counter()
    reference = build_completer(settings)
    for probe in probes + full_probes:
        probe.reference = reference.complete(probe.rgb[0].transpose(1, 2, 0), probe.sparse[0, 0])
    reference.close()
    log(f"reference: {len(probes) + len(full_probes)} crops completed in this process with {settings.backend} "
        f"in {time.perf_counter() - started:.1f} s")

    options = ServeOptions(completer=settings, http_port=0, grpc_port=0, metrics_port=0,
                           max_batch_size=config.max_batch_size, max_queue_delay_us=config.max_queue_delay_us,
                           instances=config.instances, spare_instances=config.spare_instances,
                           queue_timeout_s=60.0,  # every client waits, none gives up
                           max_queue_size=max(64, 4 * (config.http_clients + config.grpc_clients)))
    with RunningServer(options, log=log) as server:
        stats_url = f"http://{server.http_url}/v2/models/jarrn/stats"
        recorder = _Recorder()
        warm = LoadConfig(**{**asdict(config), "requests": len(probes), "http_clients": 1, "grpc_clients": 0})
        started = time.perf_counter()
        _client_worker("http", server.http_url, probes, np.arange(len(probes)), recorder, warm,
                       time.perf_counter() + 300, names)
        warm_failures = [r for r in recorder.rows if r["outcome"] != "ok"]
        log(f"warm-up: {len(probes)} requests in {time.perf_counter() - started:.1f} s, {len(warm_failures)} failed")
        clients = config.http_clients + config.grpc_clients
        burn_in = config.burn_in if config.burn_in >= 0 else 2 * clients * len(config.sizes)
        if burn_in:
            started = time.perf_counter()
            by_size = sorted({p.size for p in probes}, key=lambda size: -np.prod([int(v) for v in size.split("x")]))
            blocks = [np.resize([i for i, p in enumerate(probes) if p.size == size], 2 * clients) for size in by_size]
            order = np.resize(np.concatenate(blocks), burn_in)
            rows = _run_clients(server, probes, LoadConfig(**{**asdict(config), "requests": burn_in}), names,
                                order, log=None)[0]
            warm_failures += [r for r in rows if r["outcome"] != "ok"]
            log(f"burn-in: {burn_in} concurrent requests in {time.perf_counter() - started:.1f} s, "
                f"{sum(r['outcome'] != 'ok' for r in rows)} failed; server RSS "
                f"{rss_bytes(server_process_ids()) / 2**20:.0f} MiB")
        recorder = _Recorder()  # one client, one request at a time: the latency without queueing
        _client_worker("http", server.http_url, probes, np.arange(len(probes)), recorder, warm,
                       time.perf_counter() + 300, names)
        unloaded = list(recorder.rows)
        warm_failures += [r for r in unloaded if r["outcome"] != "ok"]
        log(f"one client: p50 {percentiles([r['latency_s'] for r in unloaded])['p50_ms']:.0f} ms over the "
            f"{len(unloaded)} crops")
        stats_before = json.loads(_fetch(stats_url))
        metrics_before = prometheus_counters(_fetch(server.metrics_url), MODEL_NAME)

        order = np.random.default_rng(config.seed + 1).integers(0, len(probes), size=config.requests)
        rows, sent, samples, started, elapsed = _run_clients(server, probes, config, names, order, log=log)
        stats_after = json.loads(_fetch(stats_url))
        metrics_after = prometheus_counters(_fetch(server.metrics_url), MODEL_NAME)
        full = _full_frame_phase(server, full_probes, config, names, stats_url, log) if full_probes else None
        server_description = server.describe()

    histogram_before, histogram_after = batch_histogram(stats_before), batch_histogram(stats_after)
    histogram = {size: count - histogram_before.get(size, 0) for size, count in sorted(histogram_after.items())
                 if count - histogram_before.get(size, 0) > 0}
    delta = {k: metrics_after.get(k, 0.0) - metrics_before.get(k, 0.0) for k in metrics_after}
    ok = [r for r in rows if r["outcome"] == "ok"]
    failed = [r for r in rows if r["outcome"] == "failed"]
    lost = [r for r in rows if r["outcome"] == "lost"] + [{}] * (sent - len(rows))
    max_err = max((r["max_abs_err_m"] for r in ok), default=None)
    wrong = [r for r in ok if r["max_abs_err_m"] > config.tolerance_m]
    rss = _rss_summary(samples, started, config.rss_growth_mib)
    executions = sum(histogram.values())
    report = {
        "schema": SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {**asdict(config), "sizes": [f"{h}x{w}" for h, w in config.sizes]},
        "server": server_description,
        "backend": settings.backend,
        "machine": _machine(),
        "probes": len(probes),
        "burn_in": burn_in,
        "load_average": [load_before, os.getloadavg()[0]],
        "requests": {"sent": sent, "ok": len(ok), "failed": len(failed), "lost": len(lost),
                     "wrong_answers": len(wrong), "warm_up_failed": len(warm_failures)},
        "elapsed_s": elapsed,
        "throughput_rps": len(ok) / elapsed if elapsed > 0 else 0.0,
        "latency": {"all": percentiles([r["latency_s"] for r in ok]),
                    **{p: percentiles([r["latency_s"] for r in ok if r["protocol"] == p]) for p in ("http", "grpc")}},
        "latency_by_size": {f"{h}x{w}": percentiles([r["latency_s"] for r in ok if r["size"] == f"{h}x{w}"])
                            for h, w in config.sizes},
        "latency_one_client_by_size": {f"{h}x{w}": percentiles([r["latency_s"] for r in unloaded
                                                                 if r["outcome"] == "ok" and r["size"] == f"{h}x{w}"])
                                       for h, w in config.sizes},
        "triton_time_per_request": time_per_request(stats_before, stats_after),
        "full_frames": full,
        "accuracy": {"max_abs_err_m": max_err, "tolerance_m": config.tolerance_m},
        "batches": {"histogram": {str(k): v for k, v in histogram.items()}, "executions": executions,
                    "inferences": sum(k * v for k, v in histogram.items()),
                    "mean_batch": (sum(k * v for k, v in histogram.items()) / executions) if executions else None,
                    "prometheus_inference_count": delta.get("nv_inference_count"),
                    "prometheus_exec_count": delta.get("nv_inference_exec_count"),
                    "prometheus_request_failure": delta.get("nv_inference_request_failure")},
        "rss": rss,
        "errors": sorted({r.get("error", "no answer") for r in failed + lost if r is not None})[:10],
        "latencies_ms": {p: [round(r["latency_s"] * 1e3, 3) for r in ok if r["protocol"] == p] for p in ("http", "grpc")},
    }
    full_ok = full is None or (full["requests"]["ok"] == full["requests"]["sent"] == config.full_frame_requests
                               and full["max_abs_err_m"] is not None and full["max_abs_err_m"] <= config.tolerance_m)
    report["checks"] = {
        "no_failed_or_lost_requests": not failed and not lost and not warm_failures,
        "answers_match_reference": not wrong and max_err is not None,
        "full_frames_all_served_correctly": full_ok,
        "server_memory_flat": bool(rss["flat"]),
        "all_requests_sent": sent == config.requests,
    }
    report["passed"] = all(report["checks"].values())
    return report


def _full_frame_phase(server, probes: list[Probe], config: LoadConfig, names: tuple[str, str, str], stats_url: str,
                      log) -> dict[str, Any]:  # noqa: ANN001
    """Whole 375x1242 frames from every client: throughput, latency, Triton's queue and compute time per request."""
    recorder = _Recorder()  # one request per probe first: the first run of a size allocates, it is not measured
    warm = LoadConfig(**{**asdict(config), "requests": len(probes), "http_clients": 1, "grpc_clients": 0})
    _client_worker("http", server.http_url, probes, np.arange(len(probes)), recorder, warm, time.perf_counter() + 300,
                   names)
    stats_before = json.loads(_fetch(stats_url))
    phase = LoadConfig(**{**asdict(config), "requests": config.full_frame_requests})
    order = np.random.default_rng(config.seed + 2).integers(0, len(probes), size=config.full_frame_requests)
    log(f"full frames ({FULL_FRAME[0]}x{FULL_FRAME[1]}):")
    rows, sent, _, _, elapsed = _run_clients(server, probes, phase, names, order, log=log)
    stats_after = json.loads(_fetch(stats_url))
    ok = [r for r in rows if r["outcome"] == "ok"]
    histogram_before, histogram_after = batch_histogram(stats_before), batch_histogram(stats_after)
    return {
        "size": f"{FULL_FRAME[0]}x{FULL_FRAME[1]}", "probes": [p.name for p in probes], "elapsed_s": elapsed,
        "requests": {"sent": sent, "ok": len(ok), "failed_or_lost": sent - len(ok),
                     "warm_up_failed": sum(r["outcome"] != "ok" for r in recorder.rows)},
        "throughput_rps": len(ok) / elapsed if elapsed > 0 else 0.0,
        "latency": percentiles([r["latency_s"] for r in ok]),
        "triton_time_per_request": time_per_request(stats_before, stats_after),
        "batches": {str(k): v - histogram_before.get(k, 0) for k, v in sorted(histogram_after.items())
                    if v - histogram_before.get(k, 0) > 0},
        "max_abs_err_m": max((r["max_abs_err_m"] for r in ok), default=None),
        "errors": sorted({r.get("error", "no answer") for r in rows if r["outcome"] != "ok"})[:5],
    }


def _rss_summary(samples: list[tuple[float, int]], started: float, limit_mib: float) -> dict[str, Any]:
    if len(samples) < 5:
        return {"flat": False, "reason": "fewer than 5 samples", "samples": []}
    values = np.asarray([s[1] for s in samples], dtype=np.float64) / 2**20
    third = max(1, len(values) // 3)
    # The baseline (10th percentile) of each third: a batch in flight lifts RSS for a moment, a leak lifts the floor.
    first, last = float(np.percentile(values[:third], 10)), float(np.percentile(values[-third:], 10))
    return {"first_third_mib": first, "last_third_mib": last, "growth_mib": last - first, "max_mib": float(values.max()),
            "limit_mib": limit_mib, "flat": (last - first) <= limit_mib,
            "samples": [[round(t - started, 2), round(v, 1)] for (t, _), v in zip(samples, values)]}


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from jarrn_deploy.runtime.serving_server import PYTRITON_VERSION

    versions = {"tritonserver from nvidia-pytriton": PYTRITON_VERSION}
    for package in ("tritonclient", "torch", "onnxruntime", "numpy"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - not installed
            continue
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions}


# ---------------------------------------------------------------------------------------------------------------------
# the report files


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    c, r, b = report["config"], report["requests"], report["batches"]
    lines = [
        "# Serving load test (Triton, `jarrn serve`)",
        "",
        f"{'PASSED' if report['passed'] else 'FAILED'}: " + ", ".join(
            f"{name.replace('_', ' ')} {'yes' if ok else 'NO'}" for name, ok in report["checks"].items()),
        "",
        f"- Server: {report['server']}.",
        f"- Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, Python {report['machine']['python']}"
        f" ({', '.join(f'{k} {v}' for k, v in report['machine']['versions'].items())}).",
        f"- Load: {c['http_clients']} HTTP + {c['grpc_clients']} gRPC client threads on loopback, {r['sent']} requests "
        f"over {report['elapsed_s']:.1f} s ({c['requests']} planned, at most {c['max_seconds']:.0f} s), "
        f"{report['probes']} crops of the bundled real frames at {', '.join(c['sizes'])} in random order, after a "
        f"warm-up of one request per crop and a burn-in of {report['burn_in']} concurrent requests, one size at a "
        "time (not measured).",
        f"- Load average (1 min) of the machine: {report['load_average'][0]:.1f} before, {report['load_average'][1]:.1f} "
        f"after; latency and throughput include whatever else ran on these {report['machine']['cores']} cores.",
        f"- Created {report['created_utc']} by `python -m jarrn_deploy.benchmarks.serving_load`.",
        "",
        "## Results",
        "",
        "| requests | ok | failed | lost | wrong (> tolerance) | throughput | max abs error vs `complete()` |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['sent']} | {r['ok']} | {r['failed']} | {r['lost']} | {r['wrong_answers']} | "
        f"{report['throughput_rps']:.1f} req/s | {_fmt(report['accuracy']['max_abs_err_m'] and report['accuracy']['max_abs_err_m'] * 1e3, 4)} mm "
        f"(tolerance {report['accuracy']['tolerance_m'] * 1e3:g} mm) |",
        "",
        "Latency under load (closed loop: each client sends its next request when the last one is answered, so the "
        "latency includes the time queued behind the other clients' requests):",
        "",
        "| latency (ms) | count | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, stats in [*report["latency"].items(), *((f"size {k}", v) for k, v in report["latency_by_size"].items())]:
        lines.append(f"| {label} | {stats['count']} | {_fmt(stats['p50_ms'])} | {_fmt(stats['p90_ms'])} | "
                     f"{_fmt(stats['p99_ms'])} | {_fmt(stats['max_ms'])} |")
    lines += ["", "One HTTP client sending each crop once, one request at a time (no queueing, batch 1), before the load:",
              "", "| size | " + " | ".join(report["latency_one_client_by_size"]) + " |",
              "|---|" + "---:|" * len(report["latency_one_client_by_size"]),
              "| p50 (ms) | " + " | ".join(_fmt(v["p50_ms"]) for v in report["latency_one_client_by_size"].values()) + " |"]
    t = report["triton_time_per_request"]
    lines += ["", "Triton's own accounting per request over the mixed phase (statistics extension): "
              f"queue {_fmt(t['queue_ms'])} ms, model input {_fmt(t['compute_input_ms'])} ms, compute "
              f"{_fmt(t['compute_infer_ms'])} ms, output {_fmt(t['compute_output_ms'])} ms."]
    full = report.get("full_frames")
    if full:
        ft, fl = full["triton_time_per_request"], full["latency"]
        lines += [
            "", f"## Full frames ({full['size']})", "",
            f"{full['requests']['sent']} requests of whole {full['size']} frames ({', '.join(full['probes'])}: the "
            "KITTI "
            "frames and same-size crops of the Kinect frames) from the same clients after the mixed phase, each probe "
            "sent once before (not measured):", "",
            "| requests | ok | throughput | p50 | p90 | p99 | max | Triton queue | Triton compute "
            "| batches (size: count) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| {full['requests']['sent']} | {full['requests']['ok']} | {full['throughput_rps']:.2f} req/s | "
            f"{_fmt(fl['p50_ms'])} ms | {_fmt(fl['p90_ms'])} ms | {_fmt(fl['p99_ms'])} ms | {_fmt(fl['max_ms'])} ms | "
            f"{_fmt(ft['queue_ms'])} ms | {_fmt(ft['compute_infer_ms'])} ms | "
            f"{', '.join(f'{k}: {v}' for k, v in full['batches'].items()) or 'none'} |",
            "", "Triton queue and compute are means per request from Triton's statistics extension (a batch's compute "
            "time counts once for each request in it); the latency is the client's, so it adds the transfer of "
            f"{4 * 4 * 375 * 1242 / 2**20:.1f} MiB of inputs and {4 * 375 * 1242 / 2**20:.1f} MiB of output.",
        ]
        if full["errors"]:
            lines += ["", *(f"- `{e}`" for e in full["errors"])]
    histogram = ", ".join(f"{size}: {count}" for size, count in b["histogram"].items()) or "none"
    rss = report["rss"]
    lines += [
        "",
        "## Batches Triton formed",
        "",
        f"Batch size: executions = {histogram} (Triton's statistics API, measured phase only); "
        f"{b['inferences']} inferences in {b['executions']} executions, mean batch {_fmt(b['mean_batch'], 2)}. "
        f"Prometheus over the same phase: nv_inference_count {_fmt(b['prometheus_inference_count'], 0)}, "
        f"nv_inference_exec_count {_fmt(b['prometheus_exec_count'], 0)}, "
        f"nv_inference_request_failure {_fmt(b['prometheus_request_failure'], 0)}. "
        "Triton batches only requests of equal H and W, so mixed sizes batch less than a single size would.",
        "",
        "## Server memory",
        "",
        f"Resident memory of the Triton server and its Python-backend stub(s), sampled every {RSS_PERIOD_S:g} s: "
        f"baseline (10th percentile) {_fmt(rss.get('first_third_mib'))} MiB over the first third of the run, "
        f"{_fmt(rss.get('last_third_mib'))} MiB over the last third (growth {_fmt(rss.get('growth_mib'))} MiB, limit "
        f"{_fmt(rss.get('limit_mib'), 0)} MiB), peak {_fmt(rss.get('max_mib'))} MiB while batches were in flight.",
        "",
        "![latency and memory](latency.png)",
        "",
    ]
    if report["errors"]:
        lines += ["## Errors", "", *(f"- `{e}`" for e in report["errors"]), ""]
    return "\n".join(lines)


def render_chart(report: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)
    for protocol, values in report["latencies_ms"].items():
        if values:
            ordered = np.sort(values)
            left.plot(ordered, np.arange(1, ordered.size + 1) / ordered.size, label=f"{protocol} ({ordered.size})")
    left.set(xlabel="latency (ms)", ylabel="fraction of requests", title="Latency, cumulative")
    left.grid(alpha=0.3)
    left.legend()
    sizes = list(report["latency_by_size"])
    p50 = [report["latency_by_size"][s]["p50_ms"] or 0 for s in sizes]
    p99 = [report["latency_by_size"][s]["p99_ms"] or 0 for s in sizes]
    x = np.arange(len(sizes))
    middle.bar(x - 0.2, p50, 0.4, label="p50")
    middle.bar(x + 0.2, p99, 0.4, label="p99")
    middle.set_xticks(x, sizes)
    middle.set(xlabel="request size (HxW)", ylabel="latency (ms)", title="Latency by size")
    middle.legend()
    middle.grid(alpha=0.3, axis="y")
    samples = report["rss"].get("samples") or []
    if samples:
        t, v = zip(*samples)
        right.plot(t, v, color="tab:red")
    right.set(xlabel="time since load start (s)", ylabel="RSS (MiB)", title="Server memory (Triton + stubs)")
    right.grid(alpha=0.3)
    fig.suptitle(f"jarrn serve load test: {report['requests']['ok']}/{report['requests']['sent']} ok, "
                 f"{report['throughput_rps']:.1f} req/s, mean batch {_fmt(report['batches']['mean_batch'], 2)}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """``serving_load.json``, ``serving_load.md`` and ``latency.png`` in ``out``, each written atomically."""
    from jarrn_deploy.model.atomic import atomic_write_bytes, atomic_write_text

    paths = [atomic_write_text(out / "serving_load.json", json.dumps(report, indent=1) + "\n"),
             atomic_write_text(out / "serving_load.md", render_markdown(report)),
             atomic_write_bytes(out / "latency.png", render_chart(report))]
    return paths


# ---------------------------------------------------------------------------------------------------------------------
# command line


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    sizes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", part)
        if not match:
            raise argparse.ArgumentTypeError(f"expected HxW sizes separated by commas, e.g. 64x96,192x256; got {text!r}")
        sizes.append((int(match.group(1)), int(match.group(2))))
    return tuple(sizes)


def build_parser() -> argparse.ArgumentParser:
    d = LoadConfig()
    p = argparse.ArgumentParser(prog="python -m jarrn_deploy.benchmarks.serving_load", description=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=d.requests, help="requests in the measured phase (default %(default)s)")
    p.add_argument("--seconds", type=float, default=d.max_seconds, help="time bound of that phase (default %(default)s)")
    p.add_argument("--http-clients", type=int, default=d.http_clients, help="HTTP client threads (default %(default)s)")
    p.add_argument("--grpc-clients", type=int, default=d.grpc_clients, help="gRPC client threads (default %(default)s)")
    p.add_argument("--sizes", type=_sizes, default=d.sizes, help="crop sizes HxW,HxW,... (default 64x96,96x128,128x160,192x256)")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="server max batch (default %(default)s)")
    p.add_argument("--max-queue-delay-us", type=int, default=d.max_queue_delay_us,
                   help="server queue delay, microseconds (default %(default)s)")
    p.add_argument("--instances", type=int, default=d.instances, help="server model instances (default %(default)s)")
    p.add_argument("--spare-instances", type=int, default=None,
                   help="spare model processes (default: jarrn serve's, 1 without a GPU)")
    p.add_argument("--threads", type=int, default=d.threads, help="intra-op threads per instance (default %(default)s)")
    p.add_argument("--model", default="", help="model file (default: the bundled model)")
    p.add_argument("--backend", default="", choices=("", *BACKEND_NAMES),
                   help="backend (default: from --model, as jarrn infer)")
    p.add_argument("--tolerance", type=float, default=d.tolerance_m, help="metres (default %(default)s)")
    p.add_argument("--rss-growth-mib", type=float, default=d.rss_growth_mib, help="MiB (default %(default)s)")
    p.add_argument("--burn-in", type=int, default=d.burn_in,
                   help="unmeasured concurrent requests before the measured phase (default: twice the crop count)")
    p.add_argument("--full-frames", type=int, default=d.full_frame_requests,
                   help=f"requests of whole {FULL_FRAME[0]}x{FULL_FRAME[1]} frames after the mixed phase "
                        "(default %(default)s; 0: none)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default reports/serving)")
    return p


@command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = LoadConfig(requests=args.requests, max_seconds=args.seconds, http_clients=args.http_clients,
                        grpc_clients=args.grpc_clients, sizes=args.sizes, max_batch_size=args.max_batch_size,
                        max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
                        spare_instances=args.spare_instances, threads=args.threads,
                        model=args.model, backend=args.backend, tolerance_m=args.tolerance,
                        rss_growth_mib=args.rss_growth_mib, burn_in=args.burn_in,
                        full_frame_requests=args.full_frames, seed=args.seed)
    report = run_load_test(config, log=lambda message: print(message, flush=True))
    paths = write_report(report, args.out)
    lat = report["latency"]["all"]
    print(f"{report['requests']['ok']}/{report['requests']['sent']} ok, {report['requests']['failed']} failed, "
          f"{report['requests']['lost']} lost; p50 {_fmt(lat['p50_ms'])} ms, p99 {_fmt(lat['p99_ms'])} ms, "
          f"{report['throughput_rps']:.1f} req/s; batches {report['batches']['histogram']}; max error "
          f"{_fmt(report['accuracy']['max_abs_err_m'] and report['accuracy']['max_abs_err_m'] * 1e3, 4)} mm; RSS growth "
          f"{_fmt(report['rss'].get('growth_mib'))} MiB")
    full = report.get("full_frames")
    if full:
        print(f"full frames {full['size']}: {full['requests']['ok']}/{full['requests']['sent']} ok, "
              f"{full['throughput_rps']:.2f} req/s, p50 {_fmt(full['latency']['p50_ms'])} ms, p99 "
              f"{_fmt(full['latency']['p99_ms'])} ms, Triton queue {_fmt(full['triton_time_per_request']['queue_ms'])} "
              f"ms and compute {_fmt(full['triton_time_per_request']['compute_infer_ms'])} ms per request")
    print("wrote " + ", ".join(str(p) for p in paths))
    if not report["passed"]:
        failed = [name for name, ok in report["checks"].items() if not ok]
        raise CheckFailedError(f"serving load test failed: {', '.join(failed)} (see {paths[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
