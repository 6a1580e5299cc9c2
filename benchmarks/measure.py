"""The one measurement loop of the benchmarks: a row's configurations timed by :func:`measure_config`, inside an
optional time budget by :func:`measure_row`, for ``benchmarks/run.py``'s worker processes and the device check alike.

Two latencies per configuration, measured alternately in the same loop so that a change in machine load affects both
alike:

* ``e2e``: what users run, ``DepthCompleter.complete(rgb uint8 HxWx3, sparse float32 HxW)`` -> float32 HxW numpy
  (validation, layout conversion, the graph, the copy back). Batches (B > 1) go in as ``BxHxWx3`` / ``BxHxW``.
* ``graph``: the network alone on pre-converted graph inputs (float32 NCHW): ``TorchBackend.forward_on_device`` on
  tensors already on the device (PyTorch; CUDA events on a GPU), ``backend.run`` on NCHW numpy for every other
  backend (on a GPU this includes the host<->device copies).

Both come from the one runner, :mod:`jarrn_deploy.benchmarks.runner`. A row's budget: before a configuration starts,
the row checks that its expected cost (the first call at a new shape, which compiles under torch.compile, plus the
timing) still fits, and otherwise skips it with the reason.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jarrn_deploy.benchmarks.host_memory import peak_rss_mib, reset_peak_rss, rss_mib
from jarrn_deploy.benchmarks.runner import Runner
from jarrn_deploy.benchmarks.timing import (
    CpuInterference,
    interference_summary,
    iteration_count,
    latency_stats,
    quiet_stats,
    wait_for_quiet,
)
from jarrn_deploy.model.crop import crop_or_pad
from jarrn_deploy.progress import Log
from jarrn_deploy.progress import progress_logger

log = progress_logger("bench")


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def _fit(array: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Centre-crop ``array`` (HxW or HxWxC) to ``height x width``, padding (edge / zeros) where it is smaller."""
    top = None
    if array.shape[0] > height and array.ndim == 2 and mode == "constant":
        top = array.shape[0] - height  # sparse LiDAR lives in the lower part of KITTI frames: keep the bottom
    return np.ascontiguousarray(crop_or_pad(array, (height, width), mode=mode, top=top))


def latency_inputs(cases, height: int, width: int, batch: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Realistic inputs of the requested size: crops of the bundled real frames (KITTI LiDAR first), cycled over the
    batch. Content does not change the work the network does, but real images keep denormal and cache effects real."""
    rgbs, sparses = [], []
    for i in range(batch):
        case = cases[i % len(cases)]
        rgb = _fit(case.rgb, height, width, "edge")
        sparse = _fit(case.sparse, height, width, "constant")
        if not (sparse > 0).any():  # a crop without any point would switch the model to relative mode
            sparse = sparse.copy()
            sparse[height // 2, width // 2] = 10.0
        rgbs.append(rgb)
        sparses.append(sparse.astype(np.float32))
    return np.stack(rgbs), np.stack(sparses)


# ---------------------------------------------------------------------------------------------------------------------
# one configuration


def _progress(total: int, desc: str):  # noqa: ANN202
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="it", leave=False, disable=None, file=sys.stderr)
    except ImportError:  # pragma: no cover
        return None


def measure_config(runner: Runner, spec: dict, cases, hw: tuple[int, int], batch: int) -> dict:  # noqa: ANN001
    from jarrn_deploy.model.contract import prepare_inputs

    key = f"{hw[0]}x{hw[1]}_b{batch}"
    rgb, sparse = latency_inputs(cases, hw[0], hw[1], batch)
    if batch == 1:
        rgb, sparse = rgb[0], sparse[0]  # a single image, as most users call it
    rgb_nchw, sparse_nchw, _ = prepare_inputs(rgb, sparse)
    prepared = runner.prepare_graph(rgb_nchw, sparse_nchw)
    modes = spec["modes"]
    reset_peak_rss()
    runner.reset_device_peak()
    rss_before = rss_mib()

    # Warm-up: the first call (lazy initialisation, compilation, CUDA graph capture) is reported on its own.
    start = time.perf_counter()
    runner.e2e(rgb, sparse)
    first_call = time.perf_counter() - start
    last = first_call
    for _ in range(max(0, spec["warmup"] - 1)):
        start = time.perf_counter()
        runner.e2e(rgb, sparse)
        if "graph" in modes:
            runner.graph(prepared)
        last = time.perf_counter() - start
    per_iteration = last if spec["warmup"] > 1 else first_call * (2 if "graph" in modes else 1)
    # Other work on a shared machine distorts latencies: give a transient job (a test run, a compile) a chance to end.
    gate = wait_for_quiet(spec.get("quiet_wait_s", 0)) if spec.get("quiet_wait_s") else None
    if gate and not gate["quiet"]:
        log(f"{spec['row']['backend']}:{spec['row']['precision']} {key}: other processes still use "
            f"{(gate['share'] or 0) * 100:.0f}% of the CPU after waiting {gate['waited_s']} s; timing anyway")
    n = iteration_count(per_iteration, seconds=spec["seconds"], min_iterations=spec["min_iterations"],
                        max_iterations=spec["max_iterations"])
    samples: dict[str, list[float]] = {m: [] for m in modes}
    shares: dict[str, list[float | None]] = {m: [] for m in modes}
    gpu_samples: list[float] = []
    cpu = CpuInterference()
    bar = _progress(n, f"{spec['row']['backend']}:{spec['row']['precision']} {key}")
    for _ in range(n):
        if "e2e" in modes:
            before = cpu.snapshot()
            start = time.perf_counter()
            runner.e2e(rgb, sparse)
            samples["e2e"].append(time.perf_counter() - start)
            shares["e2e"].append(cpu.share(before, cpu.snapshot()))
        if "graph" in modes:
            before = cpu.snapshot()
            start = time.perf_counter()
            gpu = runner.graph(prepared)
            samples["graph"].append(time.perf_counter() - start)
            shares["graph"].append(cpu.share(before, cpu.snapshot()))
            if gpu is not None:
                gpu_samples.append(gpu)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    result = {
        "height": hw[0],
        "width": hw[1],
        "batch": batch,
        "first_call_ms": first_call * 1e3,
        "quiet_gate": gate,
        "warmup": spec["warmup"],
        "latency": {m: latency_stats(v, batch) for m, v in samples.items() if v},
        # Share of the machine's CPU that other processes used during each timed call, and the statistics of the
        # calls during which they used less than 10 % (None when fewer than 3 such calls).
        "interference": {m: interference_summary(v) for m, v in shares.items() if v},
        "latency_quiet": {m: quiet_stats(samples[m], shares[m], batch) for m in samples if samples[m]},
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        **runner.device_memory(),
    }
    if gpu_samples:
        # CUDA-event time of the graph on the GPU: more precise than the host clock for the graph-only latency.
        result["latency"]["graph"] = latency_stats(gpu_samples, batch)
        result["latency"]["graph_host_clock"] = latency_stats(samples["graph"], batch)
    return result


# ---------------------------------------------------------------------------------------------------------------------
# one row within its budget


@dataclass(frozen=True)
class TimingSettings:
    """How each configuration of a row is timed (see :func:`measure_config`)."""

    warmup: int = 3
    """Warm-up calls; the first (lazy set-up, compilation, CUDA-graph capture) is reported on its own."""
    min_iterations: int = 10
    """At least this many timed calls per configuration."""
    max_iterations: int = 200
    """At most this many timed calls per configuration."""
    seconds: float = 1.5
    """Time the timed calls of one configuration aim for (the count follows from one call's duration)."""
    modes: tuple[str, ...] = ("e2e", "graph")
    """e2e: ``DepthCompleter.complete`` on user arrays; graph: the network alone on inputs already on the device."""
    quiet_wait_s: float = 0.0
    """Before timing a configuration, wait up to this long for other processes to use < 10 % of the CPU (0: never)."""

    def spec(self, row_key: str) -> dict:
        """The ``spec`` dictionary :func:`measure_config` reads."""
        backend, _, precision = row_key.partition(":")
        return {"row": {"backend": backend, "precision": precision}, "warmup": self.warmup,
                "min_iterations": self.min_iterations, "max_iterations": self.max_iterations,
                "seconds": self.seconds, "modes": list(self.modes), "quiet_wait_s": self.quiet_wait_s}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def measure_row(
    make_runner: Callable[[], Runner],
    *,
    row_key: str,
    configs: Sequence[tuple[int, int, int]],
    latency_cases: Sequence,
    accuracy_cases: Sequence = (),
    timing: TimingSettings = TimingSettings(),
    budget_s: float | None = None,
    first_call_estimate_s: float = 0.0,
    predictions_out: str | Path | None = None,
    log: Log = print,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Measure one row, configuration by configuration, inside ``budget_s`` seconds (None: no budget), then its
    accuracy cases; ``benchmarks/run.py``'s worker process and the device check both measure their rows with it.

    Returns the row result (``status``, ``configs``, ``errors``, ``setup``, ``load_seconds``, ``rss_after_load_mib``,
    and ``predictions_file``, ``predictions`` and ``accuracy_seconds`` when ``accuracy_cases`` were run) plus
    ``skipped`` (what the budget cut, with the reason) and ``seconds``. A configuration starts only if its expected cost fits in what is left: the first
    call at a new input shape (``first_call_estimate_s`` until one is seen, then the slowest seen; under torch.compile
    this is the compilation) plus the timing. An error in one configuration (e.g. out of memory) costs that
    configuration, not the row.
    """
    started = clock()
    result: dict = {"row": dict(zip(("backend", "precision"), row_key.split(":"))), "status": "ok", "configs": {},
                    "errors": [], "skipped": [], "budget_s": budget_s}

    def left() -> float:
        return float("inf") if budget_s is None else budget_s - (clock() - started)

    try:
        runner = make_runner()
    except Exception as exc:  # noqa: BLE001 - a backend that cannot start is a failed row, not a failed check
        result.update(status="failed", error=_first_line(exc), seconds=round(clock() - started, 1))
        log(f"{row_key}: could not start ({result['error']})")
        return result
    result["load_seconds"] = clock() - started
    result["rss_after_load_mib"] = rss_mib()
    result["setup"] = runner.info
    new_shape_s = first_call_estimate_s  # cost of the first call at a new shape (compilation), refined as we go
    rest_s = timing.seconds + 0.5  # warm-up and timed calls of one configuration, refined as we go
    first_calls: list[float] = []
    spec = timing.spec(row_key)
    try:
        for height, width, batch in configs:
            key = f"{height}x{width}_b{batch}"
            expected = new_shape_s + rest_s
            if expected > left():
                reason = (f"{key}: skipped: about {expected:.0f} s expected (first call at a new shape "
                          f"{new_shape_s:.0f} s + timing), {max(left(), 0):.0f} s left of the row's {budget_s:.0f} s")
                result["skipped"].append(reason)
                log(f"{row_key} {reason}")
                continue
            config_started = clock()
            try:
                res = measure_config(runner, spec, list(latency_cases), (height, width), batch)
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory at batch 8: keep the other configurations
                message = _first_line(exc)
                result["configs"][key] = {"height": height, "width": width, "batch": batch, "error": message}
                result["errors"].append(f"{key}: {message}")
                log(f"{row_key} {key}: FAILED ({message})")
                runner.empty_cache()
                continue
            result["configs"][key] = res
            first_call = res["first_call_ms"] / 1e3
            first_calls.append(first_call)
            new_shape_s = max(first_calls)  # measured now: the slowest first call seen replaces the estimate
            rest_s = max(rest_s, clock() - config_started - first_call)
            lat = res["latency"]
            parts = [f"{m} p50 {lat[m]['p50_ms']:.2f} ms" for m in ("e2e", "graph") if m in lat]
            log(f"{row_key} {key}: {', '.join(parts)}, first call {res['first_call_ms'] / 1e3:.1f} s "
                f"(n={next(iter(lat.values()))['n']})")
        if accuracy_cases and predictions_out is not None:
            predictions, seconds = {}, {}
            seen_shapes = {(h, w, b) for h, w, b in configs if f"{h}x{w}_b{b}" in result["configs"]}
            for case in accuracy_cases:
                shape = (case.rgb.shape[0], case.rgb.shape[1], 1)
                expected = (0.0 if shape in seen_shapes else new_shape_s) + 1.0
                if expected > left():
                    result["skipped"].append(f"accuracy {case.name}: skipped: about {expected:.0f} s expected, "
                                             f"{max(left(), 0):.0f} s left")
                    continue
                try:
                    case_started = clock()
                    predictions[case.name] = np.asarray(runner.e2e(case.rgb, case.sparse), dtype=np.float32)
                    seconds[case.name] = clock() - case_started
                    seen_shapes.add(shape)
                except Exception as exc:  # noqa: BLE001
                    result["errors"].append(f"accuracy {case.name}: {_first_line(exc)}")
            np.savez(predictions_out, **predictions)
            result["predictions_file"] = str(predictions_out)
            result["predictions"] = sorted(predictions)
            result["accuracy_seconds"] = seconds
    finally:
        runner.close()
    if not result["configs"] and result["skipped"]:
        result.update(status="failed", error="no configuration fitted in the row's time budget")
    result["seconds"] = round(clock() - started, 1)
    return result
