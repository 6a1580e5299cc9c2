"""Latency rows of the device check (``benchmarks/device_check.py``), each inside a time budget.

A row is one backend at one precision; it is measured configuration by configuration with
:func:`jarrn_deploy.benchmarks.bench_worker.measure_config` (the same warm-up, timing loop, statistics and result layout as
``benchmarks/run.py``, so :mod:`jarrn_deploy.benchmarks.bench_report` turns it into the same report). What this module adds:

- the runtime's own PyTorch backend with its options (:class:`jarrn_deploy.runtime.backends.torch_backend.TorchBackendOptions`):
  FP32 eager, FP16 autocast + channels-last, and torch.compile with CUDA graphs, exactly what users get;
- a budget per row: before a configuration starts, the row checks that its expected cost (the first call at a new shape,
  which compiles under torch.compile, plus the timing) still fits, and otherwise skips it with the reason.

Rows run in the device check's own process: starting a fresh process per row would cost several seconds of CUDA set-up
each, a large part of a few minutes' budget. ONNX Runtime and TensorRT rows reuse ``benchmarks/bench_worker.py``'s
runners.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jarrn_deploy.benchmarks.bench_worker import Runner, TorchRunner, measure_config

REPO_ROOT = Path(__file__).resolve().parents[1]
Log = Callable[[str], None]


@dataclass(frozen=True)
class TimingSettings:
    """How each configuration of a row is timed (see :func:`jarrn_deploy.benchmarks.bench_worker.measure_config`)."""

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

    def spec(self, row_key: str) -> dict:
        """The ``spec`` dictionary :func:`measure_config` reads."""
        backend, _, precision = row_key.partition(":")
        return {"row": {"backend": backend, "precision": precision}, "warmup": self.warmup,
                "min_iterations": self.min_iterations, "max_iterations": self.max_iterations,
                "seconds": self.seconds, "modes": list(self.modes), "quiet_wait_s": 0.0}


def latency_configs(sizes: Sequence[tuple[int, int]], batches: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(H, W, B)`` in the order rows measure them: every size at the smallest batch first, so a row cut short by its
    budget still has the single-image latencies users ask for first."""
    return [(h, w, b) for b in sorted(batches) for (h, w) in sizes]


# ---------------------------------------------------------------------------------------------------------------------
# runners


class BackendTorchRunner(TorchRunner):
    """The runtime's PyTorch backend with :class:`TorchBackendOptions`: ``e2e`` is ``DepthCompleter.complete``, ``graph``
    is :meth:`TorchBackend.forward_on_device` on inputs already on the GPU (timed with CUDA events there)."""

    def __init__(self, model_path: str | None, device: str, options) -> None:  # noqa: ANN001 - TorchBackendOptions
        Runner.__init__(self)
        import torch

        from jarrn_deploy.runtime import DepthCompleter

        self.torch = torch
        self.completer = DepthCompleter.from_checkpoint(model_path, device=device, options=options)
        self.backend = self.completer.backend
        self.device = self.backend.device
        self.device_kind = self.device.type
        self.info = {
            "api": f"runtime.DepthCompleter.from_checkpoint(device={str(self.device)!r}, "
                   f"options=TorchBackendOptions(precision={options.precision!r}, compile={options.compile}, "
                   f"channels_last={options.channels_last}))",
            "options": options.label,
            "inference_mode": True,
        }
        if self.device.type == "cuda":
            self.info["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
            self.info["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
            self.info["matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
            self.info["cuda_device_name"] = torch.cuda.get_device_name(self.device)

    def e2e(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        return self.completer.complete(rgb, sparse)

    def graph(self, prepared) -> float | None:  # noqa: ANN001
        torch = self.torch
        rgb, sparse = prepared
        if self.device.type != "cuda":
            self.backend.forward_on_device(rgb, sparse)
            return None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.backend.forward_on_device(rgb, sparse)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def close(self) -> None:
        self.completer.close()


def close_runner(runner: Runner | None) -> None:
    """Release a runner's session / module and the GPU memory it cached."""
    if runner is None:
        return
    completer = getattr(runner, "completer", None)
    try:
        if completer is not None:
            completer.close()
    except Exception:  # noqa: BLE001 - closing must not fail the check
        pass
    torch = getattr(runner, "torch", None)
    del runner
    gc.collect()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------------
# one row within its budget


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
    budget_s: float,
    first_call_estimate_s: float = 0.0,
    predictions_out: str | Path | None = None,
    log: Log = print,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Measure one row, configuration by configuration, inside ``budget_s`` seconds.

    Returns the row result in ``benchmarks/run.py``'s worker layout (``status``, ``configs``, ``errors``, ``setup``,
    ``load_seconds``, and ``predictions_file`` when ``accuracy_cases`` were run) plus ``skipped`` (what the budget cut,
    with the reason) and ``seconds``. A configuration starts only if its expected cost fits in what is left: the first
    call at a new input shape (``first_call_estimate_s`` until one is seen, then the slowest seen; under torch.compile
    this is the compilation) plus the timing. An error in one configuration (e.g. out of memory) costs that
    configuration, not the row.
    """
    started = clock()
    result: dict = {"row": dict(zip(("backend", "precision"), row_key.split(":"))), "status": "ok", "configs": {},
                    "errors": [], "skipped": [], "budget_s": budget_s}

    def left() -> float:
        return budget_s - (clock() - started)

    try:
        runner = make_runner()
    except Exception as exc:  # noqa: BLE001 - a backend that cannot start is a failed row, not a failed check
        result.update(status="failed", error=_first_line(exc), seconds=round(clock() - started, 1))
        log(f"{row_key}: could not start ({result['error']})")
        return result
    result["load_seconds"] = clock() - started
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
                _empty_cache(runner)
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
            predictions = {}
            seen_shapes = {(h, w, b) for h, w, b in configs if f"{h}x{w}_b{b}" in result["configs"]}
            for case in accuracy_cases:
                shape = (case.rgb.shape[0], case.rgb.shape[1], 1)
                expected = (0.0 if shape in seen_shapes else new_shape_s) + 1.0
                if expected > left():
                    result["skipped"].append(f"accuracy {case.name}: skipped: about {expected:.0f} s expected, "
                                             f"{max(left(), 0):.0f} s left")
                    continue
                try:
                    predictions[case.name] = np.asarray(runner.e2e(case.rgb, case.sparse), dtype=np.float32)
                    seen_shapes.add(shape)
                except Exception as exc:  # noqa: BLE001
                    result["errors"].append(f"accuracy {case.name}: {_first_line(exc)}")
            np.savez(predictions_out, **predictions)
            result["predictions_file"] = str(predictions_out)
            result["predictions"] = sorted(predictions)
    finally:
        close_runner(runner)
    if not result["configs"] and result["skipped"]:
        result.update(status="failed", error="no configuration fitted in the row's time budget")
    result["seconds"] = round(clock() - started, 1)
    return result


def _empty_cache(runner: Runner) -> None:
    torch = getattr(runner, "torch", None)
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------------
# models, exports and engines


def save_random_model(config, path: str | Path, seed: int = 0) -> Path:  # noqa: ANN001 - a JarrnConfig
    """Random weights of ``config`` saved in the project format: latency does not depend on the weights' values."""
    import torch

    from jarrn_deploy.model.checkpoint import save_model
    from jarrn_deploy.model.network import Jarrn

    torch.manual_seed(seed)
    return save_model(Jarrn(config), path, extra_metadata={"note": "random weights for latency measurements"})


def build_engine(onnx_path: Path, flavour: str, profile: tuple[str, str, str], *, timeout_s: float,
                 log: Log = print) -> tuple[Path | None, str | None]:
    """``python -m jarrn_deploy.export.build_engine`` for ``flavour`` ('tensorrt' or 'tensorrt-rtx') within ``timeout_s``; the engine path,
    or None and the reason."""
    engine = onnx_path.with_name(f"{onnx_path.stem}.{flavour}.engine")
    cmd = [sys.executable, "-m", "jarrn_deploy.export.build_engine", "--onnx", str(onnx_path), "--out",
           str(engine), "--flavour", flavour, "--min", profile[0], "--opt", profile[1], "--max", profile[2]]
    log(f"building / reusing the {flavour} engine (at most {timeout_s:.0f} s)")
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, timeout=max(timeout_s, 1.0), capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return None, f"skipped: the {flavour} engine build did not finish within {timeout_s:.0f} s"
    if proc.returncode != 0 or not engine.is_file():
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"unavailable: python -m jarrn_deploy.export.build_engine --flavour {flavour} exited {proc.returncode}: {last}"
    return engine, None
