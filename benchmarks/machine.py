"""What the numbers were measured on: CPU, memory, OS, library versions, GPUs, and the tag that names the report
folder. Library versions come from package metadata, so describing the machine imports neither torch nor onnxruntime."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys


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


def backend_versions() -> dict[str, str]:
    """Each backend of the registry -> the installed versions of its distributions ("name version", joined), or
    "not installed"."""
    from jarrn_deploy.runtime.backends.registry import BACKENDS

    versions = {}
    for spec in BACKENDS.values():
        found = [f"{dist} {v}" for dist in spec.distributions if (v := _package_version(dist)) is not None]
        versions[spec.label] = ", ".join(found) or "not installed"
    return versions


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
    libraries["backends"] = backend_versions()
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
