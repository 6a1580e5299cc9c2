"""Name and compute capability of CUDA GPUs, without torch or numpy (so the build CLI and the runtime may share it).

:func:`probe_gpu` tries cuda-python's runtime API, then ``nvidia-smi``; it returns None when neither finds a GPU: the
caller decides whether that is an error (standard TensorRT builds on the GPU that will run the engine; TensorRT-RTX
builds on a CPU). :func:`visible_gpus` asks ``nvidia-smi`` only, in a child process, so it loads no CUDA library into
this one: the runtime's engine checks use it before anything CUDA is imported.
"""

from __future__ import annotations

import subprocess


def _cuda_python(device: int) -> tuple[str, str] | None:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python before 12.6
        except ImportError:
            return None
    err, props = cudart.cudaGetDeviceProperties(int(device))
    if err != cudart.cudaError_t.cudaSuccess:
        return None
    raw = props.name
    name = (raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)).split("\x00")[0].strip()
    return name, f"{int(props.major)}.{int(props.minor)}"


def _nvidia_smi_rows(*selection: str) -> list[tuple[str, str]]:
    out = subprocess.run(
        ["nvidia-smi", *selection, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip().splitlines()
    rows = [tuple(s.strip() for s in line.rsplit(",", 1)) for line in out if "," in line]
    return [(name, cc) for name, cc in rows if name and cc]


def _nvidia_smi(device: int) -> tuple[str, str] | None:
    rows = _nvidia_smi_rows(f"--id={int(device)}")
    return rows[0] if rows else None


def visible_gpus() -> list[tuple[str, str]]:
    """``(GPU name, compute capability)`` of every GPU ``nvidia-smi`` lists ([] without it or a driver). Its order and
    count may differ from CUDA's device indices (``CUDA_VISIBLE_DEVICES``, ``CUDA_DEVICE_ORDER``)."""
    try:
        return _nvidia_smi_rows()
    except Exception:  # noqa: BLE001 - no nvidia-smi, no driver, or it hung
        return []


def probe_gpu(device: int = 0) -> tuple[str, str] | None:
    """``(GPU name, compute capability "M.m")`` of CUDA device ``device``, or None when no GPU can be seen."""
    for probe in (_cuda_python, _nvidia_smi):
        try:
            found = probe(device)
        except Exception:  # noqa: BLE001 - no bindings, no driver, no nvidia-smi: try the next probe
            found = None
        if found is not None:
            return found
    return None
