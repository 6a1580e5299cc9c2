"""Shared pieces of ``benchmarks/run.py``: benchmark rows, size/argument parsing, latency statistics, memory probes,
the machine description and atomic file writes.

Nothing here imports torch or onnxruntime at module level, so ``python benchmarks/run.py --help`` stays fast and the
orchestrating process stays small; the heavy libraries are imported in the per-backend worker processes.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------------------------------
# rows: one backend at one precision

BACKENDS = ("torch", "torch-compile", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
BASELINE_KEY = "torch:fp32"
KITTI_HW = (375, 1242)
DEFAULT_SIZES = ((320, 320), KITTI_HW)
DEFAULT_BATCHES = (1, 4)

_LABELS = {
    ("torch", "fp32"): "PyTorch eager FP32",
    ("torch", "fp16"): "PyTorch eager FP16 autocast",
    ("torch-compile", "fp32"): "torch.compile reduce-overhead FP32",
    ("torch-compile", "fp16"): "torch.compile reduce-overhead FP16 autocast",
    ("onnxruntime", "fp32"): "ONNX Runtime FP32",
    ("onnxruntime", "fp16"): "ONNX Runtime FP16",
    ("onnxruntime", "int8"): "ONNX Runtime INT8 (Q/DQ)",
    ("tensorrt", "fp32"): "TensorRT FP32",
    ("tensorrt", "fp16"): "TensorRT FP16",
    ("tensorrt", "int8"): "TensorRT INT8 (Q/DQ)",
}


@dataclass(frozen=True)
class Row:
    """One benchmark row: a backend at a precision."""

    backend: str
    precision: str

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.precision}"

    @property
    def label(self) -> str:
        return _LABELS.get((self.backend, self.precision), f"{self.backend} {self.precision.upper()}")

    @property
    def uses_onnx(self) -> bool:
        return self.backend in ("onnxruntime", "tensorrt")


def applicable_rows(backends: Iterable[str], precisions: Iterable[str]) -> list[Row]:
    """Rows that exist at all (PyTorch has no INT8 path here); availability on this machine is decided later."""
    precisions = list(precisions)
    rows = []
    for backend in backends:
        for precision in precisions:
            if backend in ("torch", "torch-compile") and precision == "int8":
                continue
            rows.append(Row(backend, precision))
    return rows


class ArgumentError(ValueError):
    """A bad command-line value; the message names the option and what is accepted."""


def parse_size(text: str) -> tuple[int, int]:
    """``"320x320"`` / ``"375x1242"`` (height x width) or ``"320"`` (square) -> ``(H, W)``; each side >= 1."""
    value = str(text).strip().lower()
    match = re.fullmatch(r"(\d+)(?:\s*[x*,]\s*(\d+))?", value)
    if not match:
        raise ArgumentError(f"--sizes: bad size {text!r}; expected HEIGHTxWIDTH such as 320x320 or 375x1242")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) else height
    if height < 1 or width < 1:
        raise ArgumentError(f"--sizes: bad size {text!r}; height and width must be positive")
    if height > 8192 or width > 8192:
        raise ArgumentError(f"--sizes: size {text!r} is implausibly large (max 8192 per side)")
    return height, width


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    items = [t for t in str(text).split(",") if t.strip()]
    # "375x1242" may also be written "375,1242"? No: commas separate sizes; keep it unambiguous.
    if not items:
        raise ArgumentError("--sizes: expected at least one size such as 320x320")
    return tuple(dict.fromkeys(parse_size(t) for t in items))


def parse_int_list(text: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        if not re.fullmatch(r"\d+", item) or int(item) < minimum:
            raise ArgumentError(f"{option}: bad value {item!r}; expected integers >= {minimum}, comma-separated")
        values.append(int(item))
    if not values:
        raise ArgumentError(f"{option}: expected at least one integer")
    return tuple(dict.fromkeys(values))


def parse_choice_list(text: str, option: str, choices: Sequence[str]) -> tuple[str, ...]:
    items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ArgumentError(f"{option}: expected one or more of {', '.join(choices)}")
    if items == ["all"]:
        return tuple(choices)
    unknown = [t for t in items if t not in choices]
    if unknown:
        raise ArgumentError(
            f"{option}: unknown value{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(choices)} (comma-separated) or 'all'"
        )
    return tuple(dict.fromkeys(items))


def size_label(hw: Sequence[int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def config_key(hw: Sequence[int], batch: int) -> str:
    return f"{size_label(hw)}_b{batch}"


def padded_hw(hw: Sequence[int], multiple: int = 64) -> tuple[int, int]:
    return tuple(-(-int(v) // multiple) * multiple for v in hw)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------------------
# latency statistics

PERCENTILES = (50, 90, 99)


def latency_stats(samples_s: Sequence[float], batch: int = 1) -> dict:
    """Summary of per-call latencies given in seconds: milliseconds and images per second.

    Percentiles use linear interpolation between order statistics (numpy's default), so with fewer than 100 samples
    p99 lies between the two largest values. ``throughput_ips`` is images per second over the whole timed run
    (``batch * n / sum``), i.e. based on the mean, not the median.
    """
    values = np.asarray(list(samples_s), dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("latency_stats: expected at least one latency sample")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("latency_stats: latencies must be finite and non-negative")
    if batch < 1:
        raise ValueError(f"latency_stats: batch must be >= 1, got {batch}")
    ms = values * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(ms, PERCENTILES))
    mean = float(ms.mean())
    return {
        "n": int(ms.size),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": mean,
        "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "throughput_ips": float(batch * 1e3 / mean) if mean > 0 else float("inf"),
    }


def iteration_count(first_s: float, *, seconds: float, min_iterations: int, max_iterations: int) -> int:
    """How many timed iterations fit into ``seconds`` given one call's duration, within [min, max]."""
    if first_s <= 0:
        return max_iterations
    return int(min(max_iterations, max(min_iterations, round(seconds / first_s))))


# ---------------------------------------------------------------------------------------------------------------------
# host memory (Linux /proc, with getrusage as the fallback)


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mib() -> float | None:
    """Current resident set size of this process in MiB."""
    kib = _proc_status_kib("VmRSS")
    return kib / 1024 if kib is not None else None


def peak_rss_mib() -> float | None:
    """High-water mark of this process's RSS in MiB (since start, or since :func:`reset_peak_rss`)."""
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except Exception:  # noqa: BLE001 - not available on this platform
        return None


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------------
# CPU interference: how much of the machine other processes used while a call ran

QUIET_SHARE = 0.10
"""A timed call counts as *quiet* when other processes used less than this share of the machine's CPU time."""


class CpuInterference:
    """Share of the machine's CPU time that *other* processes used during a time window (Linux ``/proc``).

    ``(busy jiffies of all CPUs - this process's utime+stime) / (window x CPUs)``; 0 = nobody else ran, 1 = every
    CPU was busy with other work. Resolution is one clock tick (10 ms) per CPU, so it is meaningful for calls of
    100 ms and more. On systems without ``/proc/stat`` every share is None.
    """

    def __init__(self) -> None:
        self.tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.cpus = os.cpu_count() or 1
        self.available = self._read() is not None

    @staticmethod
    def _read() -> tuple[float, int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
            with open("/proc/self/stat", encoding="ascii") as handle:
                own = handle.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        if len(fields) > 8:
            busy -= sum(fields[8:10])  # guest time is already counted in user / nice
        return time.perf_counter(), busy, int(own[11]) + int(own[12])

    def snapshot(self) -> tuple[float, int, int] | None:
        return self._read() if self.available else None

    def share(self, start: tuple | None, end: tuple | None) -> float | None:
        if start is None or end is None or end[0] <= start[0]:
            return None
        others = (end[1] - start[1]) - (end[2] - start[2])
        return max(0.0, others / (self.tick * (end[0] - start[0]) * self.cpus))


def wait_for_quiet(max_wait_s: float, *, window_s: float = 1.0, threshold: float = QUIET_SHARE) -> dict:
    """Sleep in ``window_s`` steps until other processes use less than ``threshold`` of the CPU over a window, or
    ``max_wait_s`` has passed. Returns ``{"waited_s", "quiet", "share"}`` (share of the last window)."""
    cpu = CpuInterference()
    start = time.perf_counter()
    share = None
    while cpu.available:
        before = cpu.snapshot()
        time.sleep(window_s)
        share = cpu.share(before, cpu.snapshot())
        if share is not None and share < threshold:
            return {"waited_s": round(time.perf_counter() - start, 1), "quiet": True, "share": share}
        if time.perf_counter() - start >= max_wait_s:
            break
    return {"waited_s": round(time.perf_counter() - start, 1), "quiet": bool(not cpu.available), "share": share}


def quiet_stats(samples_s: Sequence[float], shares: Sequence[float | None], batch: int = 1,
                threshold: float = QUIET_SHARE, minimum: int = 3) -> dict | None:
    """:func:`latency_stats` of the calls during which other processes used < ``threshold`` of the CPU; None when
    fewer than ``minimum`` such calls exist (or no share could be measured)."""
    quiet = [s for s, share in zip(samples_s, shares) if share is not None and share < threshold]
    return latency_stats(quiet, batch) if len(quiet) >= minimum else None


def interference_summary(shares: Sequence[float | None]) -> dict | None:
    values = [s for s in shares if s is not None]
    if not values:
        return None
    return {"median": float(np.median(values)), "max": float(np.max(values)),
            "quiet_calls": int(sum(v < QUIET_SHARE for v in values)), "calls": len(values)}


# ---------------------------------------------------------------------------------------------------------------------
# machine description


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\b\d+-core\b", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags") or line.startswith("Features"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def physical_cores() -> int:
    """Physical cores (hyper-threads not counted), from /proc/cpuinfo; falls back to the logical CPU count."""
    pairs = set()
    physical_id = core_id = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("physical id"):
                    physical_id = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    core_id = line.split(":", 1)[1].strip()
                elif not line.strip():
                    if core_id is not None:
                        pairs.add((physical_id, core_id))
                    physical_id = core_id = None
        if core_id is not None:
            pairs.add((physical_id, core_id))
    except OSError:
        pass
    logical = usable_cpus()
    return max(1, min(len(pairs), logical)) if pairs else logical


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        return None
    return None


def _os_description() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def nvidia_smi_gpus() -> list[dict]:
    """GPUs as reported by nvidia-smi (name, driver, memory, compute capability); [] without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    fields = "name,driver_version,memory.total,compute_cap"
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        # older drivers do not know compute_cap
        try:
            out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return []
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpu = {"name": parts[0], "driver": parts[1], "memory_mib": parts[2]}
            if len(parts) >= 4:
                gpu["compute_capability"] = parts[3]
            gpus.append(gpu)
    return gpus


CPU_FEATURES_OF_INTEREST = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                            "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "bf16")


def describe_machine(device: str = "cpu") -> dict:
    """What the numbers were measured on; ``machine_tag`` names the report folder.

    Keys: machine_tag, device, cpu_model, cpu_physical_cores, cpu_logical_cores, cpu_features, memory_gib, os, kernel,
    python, libraries (torch, torch_cuda, onnxruntime, onnxruntime_providers, onnx, tensorrt, numpy, ...), gpus.
    Library versions come from package metadata (no heavy import) except the ORT providers and torch's CUDA version.
    """
    flags = _cpu_flags()
    cpu_model = _cpu_model()
    cores = physical_cores()
    gpus = nvidia_smi_gpus()
    libraries = {name: _package_version(dist) for name, dist in (
        ("torch", "torch"), ("onnxruntime", "onnxruntime"), ("onnxruntime_gpu", "onnxruntime-gpu"), ("onnx", "onnx"),
        ("onnxslim", "onnxslim"), ("nvidia_modelopt", "nvidia-modelopt"), ("tensorrt", "tensorrt"),
        ("numpy", "numpy"), ("polygraphy", "polygraphy"), ("matplotlib", "matplotlib"))}
    if libraries["tensorrt"] is None:
        try:  # JetPack / NGC containers install tensorrt without pip metadata
            import importlib.util

            if importlib.util.find_spec("tensorrt") is not None:
                import tensorrt  # noqa: F401

                libraries["tensorrt"] = getattr(tensorrt, "__version__", "?")
        except Exception:  # noqa: BLE001 - a broken install counts as absent
            pass
    libraries["onnxruntime_providers"] = _ort_providers()
    libraries["torch_cuda"] = _torch_cuda_version()
    info = {
        "device": device,
        "cpu_model": cpu_model,
        "cpu_physical_cores": cores,
        "cpu_logical_cores": os.cpu_count() or 1,
        "cpu_usable_cpus": usable_cpus(),
        "cpu_features": [f for f in CPU_FEATURES_OF_INTEREST if f in flags],
        "memory_gib": _memory_gib(),
        "os": _os_description(),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "python": platform.python_version(),
        "libraries": libraries,
        "gpus": gpus,
    }
    info["machine_tag"] = machine_tag(info)
    return info


def _ort_providers() -> list[str] | None:
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:  # noqa: BLE001
        return None


def _torch_cuda_version() -> str | None:
    try:
        import torch

        return torch.version.cuda
    except Exception:  # noqa: BLE001
        return None


def machine_tag(info: dict) -> str:
    """``cpu-<cpu-model-slug>-<n>c`` for CPU runs, ``gpu-<gpu-model-slug>`` for GPU runs."""
    if info.get("device") == "cuda":
        gpus = info.get("gpus") or []
        name = gpus[0]["name"] if gpus else info.get("cuda_device_name") or "cuda"
        return "gpu-" + _slug(re.sub(r"^nvidia\s+", "", name, flags=re.I))
    return f"cpu-{_slug(info.get('cpu_model', 'unknown'))}-{info.get('cpu_physical_cores', 1)}c"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------------------------------------------------
# atomic files


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write through a temp file in the same folder and ``os.replace`` (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value):  # noqa: ANN001, ANN202
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data) -> str:  # noqa: ANN001
    return json.dumps(_finite(data), indent=2, default=_json_default, sort_keys=False) + "\n"


def _finite(value):  # noqa: ANN001, ANN202
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, data) -> Path:  # noqa: ANN001
    return atomic_write_text(path, to_json(data))
