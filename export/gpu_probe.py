"""Name and compute capability of a CUDA GPU, without torch or numpy (so the build CLI and the runtime may share it).

Tries cuda-python's runtime API, then ``nvidia-smi``. Returns None when neither finds a GPU: the caller decides whether
that is an error (standard TensorRT builds on the GPU that will run the engine; TensorRT-RTX builds on a CPU).
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


def _nvidia_smi(device: int) -> tuple[str, str] | None:
    out = subprocess.run(
        ["nvidia-smi", f"--id={int(device)}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip().splitlines()
    if not out or "," not in out[0]:
        return None
    name, cc = (s.strip() for s in out[0].rsplit(",", 1))
    return name, cc


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
