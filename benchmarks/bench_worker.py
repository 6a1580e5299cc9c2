"""One benchmark row (a backend at a precision) measured in its own process, started by ``benchmarks/run.py``.

A fresh process per row keeps the rows independent: each one's peak host memory is its own (RSS high-water mark,
reset per configuration through ``/proc/self/clear_refs``), thread pools and allocator caches of one library do not
slow the next, and a crash (out of memory, a native error) costs one row, not the run. The row is measured by
:func:`jarrn_deploy.benchmarks.measure.measure_row` (no budget) through the one runner,
:func:`jarrn_deploy.benchmarks.runner.open_runner`: the same code as the device check's rows.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from jarrn_deploy.benchmarks.host_memory import rss_mib
from jarrn_deploy.benchmarks.measure import TimingSettings, latency_inputs, log, measure_row
from jarrn_deploy.benchmarks.report_files import atomic_write_json
from jarrn_deploy.benchmarks.rows import Row
from jarrn_deploy.benchmarks.runner import Runner, open_runner
from jarrn_deploy.benchmarks.timing import CpuInterference, interference_summary, iteration_count
from jarrn_deploy.benchmarks.timing import latency_stats, quiet_stats, wait_for_quiet


def make_runner(spec: dict) -> Runner:
    """The runner of the spec's row (:func:`jarrn_deploy.benchmarks.runner.open_runner`)."""
    row = Row(spec["row"]["backend"], spec["row"]["precision"])
    return open_runner(row, model=spec.get("model"), artifact=spec.get("artifact"), device=spec["device"],
                       threads=spec["threads"])


def _torch_threads(threads: int):  # noqa: ANN202 - the torch module
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (cannot change after the first parallel work)
        pass
    return torch


def run_worker(spec: dict) -> dict:
    threads = int(spec["threads"])
    torch = _torch_threads(threads)
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    cases = evaluation_cases(load_real_frames())
    rss_after_imports = rss_mib()
    wanted = spec.get("accuracy_cases") or []
    timing = TimingSettings(warmup=spec["warmup"], min_iterations=spec["min_iterations"],
                            max_iterations=spec["max_iterations"], seconds=spec["seconds"], modes=tuple(spec["modes"]),
                            quiet_wait_s=spec.get("quiet_wait_s") or 0.0)
    row = Row(spec["row"]["backend"], spec["row"]["precision"])
    result = measure_row(
        lambda: make_runner(spec), row_key=row.key, configs=spec["configs"],
        latency_cases=sorted(cases, key=lambda c: not c.name.startswith("kitti")),  # real LiDAR crops first
        accuracy_cases=[c for c in cases if c.name in wanted], timing=timing,
        predictions_out=spec["predictions_out"] if wanted else None, log=log)
    result["rss_after_imports_mib"] = rss_after_imports
    result["threads"] = {"requested": threads, "torch_intra_op": torch.get_num_threads(),
                         "torch_inter_op": torch.get_num_interop_threads(),
                         "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    result["rss_end_mib"] = rss_mib()
    return result


def worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = run_paired(spec) if spec.get("kind") == "paired" else run_worker(spec)
        code = 0
    except Exception as exc:  # noqa: BLE001 - the orchestrator reports it as an unavailable / failed row
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = {"row": spec["row"], "status": "failed", "error": f"{type(exc).__name__}: {first}",
                  "traceback": traceback.format_exc()}
        log(f"{spec['row']['backend']}:{spec['row']['precision']}: FAILED: {type(exc).__name__}: {first}")
        code = 1
    atomic_write_json(spec["result_out"], result)
    return code


# ---------------------------------------------------------------------------------------------------------------------
# paired comparison for the speed target


PAIRED_PAUSE_S = 0.02


def run_paired(spec: dict) -> dict:
    """PyTorch eager FP32 and ONNX Runtime FP32 timed interleaved in one process at one size, batch 1, with the
    exported-graph rows of ``spec["others"]`` (row key -> file, e.g. OpenVINO) end to end in the same rounds.

    Every round calls each variant once in a shuffled order (with a short pause so that one runtime's spinning
    threads are quiet before the next starts), so a change of machine load hits all variants alike: the ratio is
    trustworthy even on a shared machine, unlike two rows measured minutes apart.
    """
    import random

    threads = int(spec["threads"])
    _torch_threads(threads)
    from jarrn_deploy.model.contract import prepare_inputs
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    height, width = spec["size"]
    cases = sorted(evaluation_cases(load_real_frames()), key=lambda c: not c.name.startswith("kitti"))
    rgb, sparse = latency_inputs(cases, height, width, 1)
    rgb, sparse = rgb[0], sparse[0]
    rgb_nchw, sparse_nchw, _ = prepare_inputs(rgb, sparse)
    torch_runner = open_runner(Row("torch", "fp32"), model=spec["model"], artifact=None, device="cpu", threads=threads)
    ort_runner = open_runner(Row("onnxruntime", "fp32"), model=None, artifact=spec["onnx"], device="cpu",
                             threads=threads)
    torch_inputs = torch_runner.prepare_graph(rgb_nchw, sparse_nchw)
    ort_inputs = ort_runner.prepare_graph(rgb_nchw, sparse_nchw)
    variants = {
        "torch_forward": lambda: torch_runner.graph(torch_inputs),
        "torch_e2e": lambda: torch_runner.e2e(rgb, sparse),
        "ort_e2e": lambda: ort_runner.e2e(rgb, sparse),
        "ort_graph": lambda: ort_runner.graph(ort_inputs),
    }
    for key, artifact in (spec.get("others") or {}).items():  # more exported-graph rows, end to end, in the same rounds
        other = open_runner(Row.from_key(key), model=None, artifact=artifact, device="cpu", threads=threads)
        variants[key] = lambda other=other: other.e2e(rgb, sparse)
    for fn in variants.values():
        for _ in range(max(1, spec["warmup"])):
            fn()
    if spec.get("quiet_wait_s"):
        wait_for_quiet(spec["quiet_wait_s"])
    start = time.perf_counter()
    for fn in variants.values():
        fn()
    round_s = time.perf_counter() - start
    rounds = iteration_count(round_s, seconds=spec["seconds"], min_iterations=spec["min_iterations"],
                             max_iterations=spec["max_iterations"])
    samples: dict[str, list[float]] = {k: [] for k in variants}
    shares: dict[str, list[float | None]] = {k: [] for k in variants}
    cpu = CpuInterference()
    names = list(variants)
    rng = random.Random(0)
    log(f"paired comparison at {height}x{width} batch 1: {rounds} interleaved rounds")
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            time.sleep(PAIRED_PAUSE_S)
            before = cpu.snapshot()
            begin = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - begin)
            shares[name].append(cpu.share(before, cpu.snapshot()))
    stats = {k: latency_stats(v, 1) for k, v in samples.items()}
    quiet = {k: quiet_stats(samples[k], shares[k]) for k in samples}
    result = {
        "status": "ok",
        "size": [height, width],
        "rounds": rounds,
        "pause_s": PAIRED_PAUSE_S,
        "latency": stats,
        "latency_quiet": quiet,
        "interference": {k: interference_summary(v) for k, v in shares.items()},
        "ort_session_options": ort_runner.info["session_options"],
    }
    # Quiet calls only when every variant has enough of them: then other processes did not distort the ratio.
    use = quiet if all(quiet.values()) else stats
    result["basis"] = "quiet calls (other processes < 10 % CPU)" if use is quiet else "all calls"
    result["speedup_ort_e2e_vs_torch_forward"] = use["torch_forward"]["p50_ms"] / use["ort_e2e"]["p50_ms"]
    result["speedup_graph_vs_graph"] = use["torch_forward"]["p50_ms"] / use["ort_graph"]["p50_ms"]
    result["speedup_e2e_vs_e2e"] = use["torch_e2e"]["p50_ms"] / use["ort_e2e"]["p50_ms"]
    result["others"] = {key: {"e2e_p50_ms": use[key]["p50_ms"],
                              "speedup_e2e_vs_torch_forward": use["torch_forward"]["p50_ms"] / use[key]["p50_ms"],
                              "speedup_e2e_vs_e2e": use["torch_e2e"]["p50_ms"] / use[key]["p50_ms"],
                              "speedup_e2e_vs_ort_e2e": use["ort_e2e"]["p50_ms"] / use[key]["p50_ms"]}
                        for key in spec.get("others") or {}}
    return result
