"""One benchmark row (a backend at a precision) measured in its own process, started by ``benchmarks/run.py``.

A fresh process per row keeps the rows independent: each one's peak host memory is its own (RSS high-water mark,
reset per configuration through ``/proc/self/clear_refs``), thread pools and allocator caches of one library do not
slow the next, and a crash (out of memory, a native error) costs one row, not the run.

Two latencies per configuration, measured alternately in the same loop so that a change in machine load affects both
alike:

* ``e2e``: what users run, ``DepthCompleter.complete(rgb uint8 HxWx3, sparse float32 HxW)`` -> float32 HxW numpy
  (validation, layout conversion, the graph, the copy back). Batches (B > 1) go in as ``BxHxWx3`` / ``BxHxW``.
* ``graph``: the network alone on pre-converted graph inputs (float32 NCHW): ``MetricJarrn`` on tensors already on
  the device (PyTorch; CUDA events on a GPU), ``InferenceSession.run`` on NCHW numpy (ONNX Runtime; on a GPU this
  includes the host<->device copies), ``TensorRTBackend.run`` (TensorRT; includes the copies).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from jarrn_deploy.progress import progress_logger
from jarrn_deploy.benchmarks.host_memory import peak_rss_mib, reset_peak_rss, rss_mib
from jarrn_deploy.benchmarks.report_files import atomic_write_json
from jarrn_deploy.benchmarks.timing import (
    CpuInterference,
    interference_summary,
    iteration_count,
    latency_stats,
    quiet_stats,
    wait_for_quiet,
)
from jarrn_deploy.model.crop import crop_or_pad


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
# runners: e2e(rgb_user, sparse_user) -> numpy; graph(rgb_nchw, sparse_nchw) -> None (blocking)


class Runner:
    """The callables the timing loop needs, plus what the row reports about its setup."""

    def __init__(self) -> None:
        self.info: dict = {}
        self.device_kind = "cpu"
        self.torch = None

    def e2e(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepare_graph(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray):  # noqa: ANN201
        """Pre-converted graph inputs (on the device for PyTorch), prepared outside the timed region."""
        return rgb_nchw, sparse_nchw

    def graph(self, prepared) -> float | None:  # noqa: ANN001
        """Run the graph once, blocking; return its GPU time in seconds when measured with CUDA events, else None."""
        raise NotImplementedError

    def device_memory(self) -> dict:
        return {}

    def reset_device_peak(self) -> None:
        pass


class TorchRunner(Runner):
    """PyTorch eager (``torch``), optionally FP16 autocast (GPU) and/or torch.compile reduce-overhead (GPU)."""

    def __init__(self, model_path: str | None, device: str, precision: str, compiled: bool) -> None:
        super().__init__()
        import torch

        from jarrn_deploy.runtime import DepthCompleter

        self.torch = torch
        self.device = torch.device(device)
        self.device_kind = self.device.type
        self.completer = DepthCompleter.from_checkpoint(model_path, device=device)
        self.module = self.completer.backend.module
        self.autocast = precision == "fp16"
        self.compiled = compiled
        if self.autocast and self.device.type != "cuda":
            raise RuntimeError("FP16 autocast rows are measured on CUDA only (CPU autocast is bfloat16)")
        self.forward = self.module
        if compiled:
            import torch._dynamo

            # One CUDA graph per input shape; the latency sizes plus the real frames exceed the default limit of 8.
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(torch._dynamo.config, name):
                    setattr(torch._dynamo.config, name, 64)
            self.forward = torch.compile(self.module, mode="reduce-overhead", dynamic=False)
        self.info = {
            "api": ("torch.compile(MetricJarrn, mode='reduce-overhead') (e2e: model.contract.prepare_inputs + "
                    "depth_to_user around it)") if compiled else "runtime.DepthCompleter.from_checkpoint",
            "autocast": "torch.autocast('cuda', dtype=torch.float16)" if self.autocast else None,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "inference_mode": True,
            "memory_format": "contiguous (NCHW), as users run it",
        }
        if self.device.type == "cuda":
            self.info["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
            self.info["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
            self.info["matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
            self.info["cuda_device_name"] = torch.cuda.get_device_name(self.device)

    def _context(self):  # noqa: ANN202
        import contextlib

        torch = self.torch
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.autocast:
            stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
        return stack

    def e2e(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        if not self.autocast and not self.compiled:
            return self.completer.complete(rgb, sparse)  # exactly what users run
        from jarrn_deploy.model.contract import depth_to_user, prepare_inputs

        torch = self.torch
        rgb_nchw, sparse_nchw, was_batched = prepare_inputs(rgb, sparse)
        with self._context():
            if self.compiled:
                torch.compiler.cudagraph_mark_step_begin()
            depth = self.forward(torch.from_numpy(rgb_nchw).to(self.device), torch.from_numpy(sparse_nchw).to(self.device))
            out = depth.float().cpu().numpy()
        return depth_to_user(out, was_batched)

    def prepare_graph(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray):  # noqa: ANN201
        torch = self.torch
        return torch.from_numpy(rgb_nchw).to(self.device), torch.from_numpy(sparse_nchw).to(self.device)

    def graph(self, prepared) -> float | None:  # noqa: ANN001
        torch = self.torch
        rgb, sparse = prepared
        with self._context():
            if self.device.type != "cuda":
                self.forward(rgb, sparse)
                return None
            if self.compiled:
                torch.compiler.cudagraph_mark_step_begin()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.forward(rgb, sparse)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

    def reset_device_peak(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def device_memory(self) -> dict:
        if self.device.type != "cuda":
            return {}
        torch = self.torch
        return {
            "peak_device_mib": torch.cuda.max_memory_allocated(self.device) / 2**20,
            "peak_device_reserved_mib": torch.cuda.max_memory_reserved(self.device) / 2**20,
            "device_memory_method": "torch.cuda.max_memory_allocated (reserved: max_memory_reserved)",
        }


class _DeviceUsage:
    """Device-wide memory in use (cudaMemGetInfo through PyTorch) for backends that do not report their own."""

    def __init__(self) -> None:
        self.torch = None
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
                self.baseline = self.used()
        except Exception:  # noqa: BLE001
            self.torch = None
        self.peak = 0.0

    def used(self) -> float:
        free, total = self.torch.cuda.mem_get_info()
        return (total - free) / 2**20

    def sample(self) -> None:
        if self.torch is not None:
            self.peak = max(self.peak, self.used() - self.baseline)

    def reset(self) -> None:
        self.peak = 0.0


class OrtRunner(Runner):
    """ONNX Runtime through ``runtime.DepthCompleter.from_onnx`` (CPU or CUDA execution provider)."""

    def __init__(self, onnx_path: str, device: str, threads: int) -> None:
        super().__init__()
        from jarrn_deploy.runtime import DepthCompleter

        self.device_kind = device
        self.usage = _DeviceUsage() if device == "cuda" else None
        providers = "cuda" if device == "cuda" else "cpu"
        self.completer = DepthCompleter.from_onnx(onnx_path, providers=providers, intra_op_threads=threads)
        self.info = {
            "api": f"runtime.DepthCompleter.from_onnx(providers={providers!r}, intra_op_threads={threads})",
            **self.completer.backend.session_settings,
            "onnx": onnx_path,
        }

    def e2e(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        out = self.completer.complete(rgb, sparse)
        if self.usage is not None:
            self.usage.sample()
        return out

    def graph(self, prepared) -> float | None:  # noqa: ANN001
        self.completer.backend.run(*prepared)  # the session alone: no pre/post-processing of the completer
        return None

    def reset_device_peak(self) -> None:
        if self.usage is not None:
            self.usage.reset()

    def device_memory(self) -> dict:
        if self.usage is None or self.usage.torch is None:
            return {}
        return {"peak_device_mib": self.usage.peak,
                "device_memory_method": "device-wide memory in use (cudaMemGetInfo) above the level before the "
                                        "session was created, sampled after each call (approximate)"}


class TensorRTRunner(Runner):
    """A TensorRT engine through ``runtime.DepthCompleter.from_engine``."""

    def __init__(self, engine_path: str) -> None:
        super().__init__()
        from jarrn_deploy.runtime import DepthCompleter

        self.device_kind = "cuda"
        self.usage = _DeviceUsage()
        self.completer = DepthCompleter.from_engine(engine_path)
        backend = self.completer.backend
        size = backend.engine_device_memory_bytes
        self.engine_device_mib = size / 2**20 if size is not None else None
        self.info = {"api": "runtime.DepthCompleter.from_engine", "engine": engine_path,
                     "engine_device_memory_mib": self.engine_device_mib,
                     "profile_range": {k: [list(v[0]), list(v[1])] for k, v in backend.profile_range.items()}}

    def e2e(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        out = self.completer.complete(rgb, sparse)
        self.usage.sample()
        return out

    def graph(self, prepared) -> float | None:  # noqa: ANN001
        self.completer.backend.run(*prepared)
        return None

    def reset_device_peak(self) -> None:
        self.usage.reset()

    def device_memory(self) -> dict:
        out = {"engine_device_memory_mib": self.engine_device_mib}
        if self.usage.torch is not None:
            out["peak_device_mib"] = self.usage.peak
            out["device_memory_method"] = ("device-wide memory in use (cudaMemGetInfo) above the level before the "
                                           "engine was loaded (approximate); engine_device_memory_mib: "
                                           "ICudaEngine.device_memory_size")
        return out


def make_runner(spec: dict) -> Runner:
    backend, precision = spec["row"]["backend"], spec["row"]["precision"]
    if backend in ("torch", "torch-compile"):
        return TorchRunner(spec.get("model"), spec["device"], precision, compiled=backend == "torch-compile")
    if backend == "onnxruntime":
        return OrtRunner(spec["onnx"], spec["device"], spec["threads"])
    if backend == "tensorrt":
        return TensorRTRunner(spec["engine"])
    raise ValueError(f"unknown backend {backend!r}")


# ---------------------------------------------------------------------------------------------------------------------
# measurement


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


def run_worker(spec: dict) -> dict:
    import torch

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (cannot change after the first parallel work)
        pass
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    row = spec["row"]
    result: dict = {"row": row, "status": "ok", "configs": {}, "errors": []}
    cases = evaluation_cases(load_real_frames())
    result["rss_after_imports_mib"] = rss_mib()
    start = time.perf_counter()
    runner = make_runner(spec)
    result["load_seconds"] = time.perf_counter() - start
    result["rss_after_load_mib"] = rss_mib()
    result["setup"] = runner.info
    result["threads"] = {"requested": threads, "torch_intra_op": torch.get_num_threads(),
                         "torch_inter_op": torch.get_num_interop_threads(),
                         "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    # KITTI crops first (real LiDAR), then the indoor frames.
    latency_cases = sorted(cases, key=lambda c: not c.name.startswith("kitti"))
    for height, width, batch in spec["configs"]:
        key = f"{height}x{width}_b{batch}"
        log(f"{row['backend']}:{row['precision']} {key}: warm-up {spec['warmup']}, then timing")
        try:
            res = measure_config(runner, spec, latency_cases, (height, width), batch)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory at a large batch: keep the other configs
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            log(f"{row['backend']}:{row['precision']} {key}: FAILED ({message})")
            result["configs"][key] = {"height": height, "width": width, "batch": batch, "error": message}
            result["errors"].append(f"{key}: {message}")
            if runner.torch is not None and runner.device_kind == "cuda":
                runner.torch.cuda.empty_cache()
            continue
        result["configs"][key] = res
        lat = res["latency"]
        parts = [f"{m} p50 {lat[m]['p50_ms']:.1f} ms" for m in ("e2e", "graph") if m in lat]
        log(f"{row['backend']}:{row['precision']} {key}: {', '.join(parts)} (n={next(iter(lat.values()))['n']}, "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB)")

    wanted = spec.get("accuracy_cases") or []
    if wanted:
        predictions = {}
        seconds = {}
        for case in cases:
            if case.name not in wanted:
                continue
            log(f"{row['backend']}:{row['precision']} accuracy: {case.name} ({case.rgb.shape[0]}x{case.rgb.shape[1]})")
            try:
                start = time.perf_counter()
                predictions[case.name] = np.asarray(runner.e2e(case.rgb, case.sparse), dtype=np.float32)
                seconds[case.name] = time.perf_counter() - start
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                result["errors"].append(f"accuracy {case.name}: {message}")
                log(f"{row['backend']}:{row['precision']} accuracy {case.name}: FAILED ({message})")
        np.savez(spec["predictions_out"], **predictions)
        result["accuracy_seconds"] = seconds
        result["predictions"] = sorted(predictions)
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
    """PyTorch eager FP32 and ONNX Runtime FP32 timed interleaved in one process at one size, batch 1.

    Every round calls each variant once in a shuffled order (with a short pause so that one runtime's spinning
    threads are quiet before the next starts), so a change of machine load hits all variants alike: the ratio is
    trustworthy even on a shared machine, unlike two rows measured minutes apart.
    """
    import random

    import torch

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    from jarrn_deploy.model.contract import prepare_inputs
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    height, width = spec["size"]
    cases = sorted(evaluation_cases(load_real_frames()), key=lambda c: not c.name.startswith("kitti"))
    rgb, sparse = latency_inputs(cases, height, width, 1)
    rgb, sparse = rgb[0], sparse[0]
    rgb_nchw, sparse_nchw, _ = prepare_inputs(rgb, sparse)
    torch_runner = TorchRunner(spec["model"], "cpu", "fp32", compiled=False)
    ort_runner = OrtRunner(spec["onnx"], "cpu", threads)
    torch_inputs = torch_runner.prepare_graph(rgb_nchw, sparse_nchw)
    ort_inputs = ort_runner.prepare_graph(rgb_nchw, sparse_nchw)
    variants = {
        "torch_forward": lambda: torch_runner.graph(torch_inputs),
        "torch_e2e": lambda: torch_runner.e2e(rgb, sparse),
        "ort_e2e": lambda: ort_runner.e2e(rgb, sparse),
        "ort_graph": lambda: ort_runner.graph(ort_inputs),
    }
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
    return result
