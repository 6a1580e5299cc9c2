"""Install jarrn-deploy with the right PyTorch for this machine, then the project itself (editable).

    python scripts/install.py                       # the project (PyTorch, ONNX, ONNX Runtime ...)
    python scripts/install.py dev,quant,trt-rtx,serve   # plus optional extras (the test command uses these)

Why not plain ``pip install -e .``: on Linux, PyPI's ``torch`` is the CUDA build, about 3 GB of wheels, which a
machine without an NVIDIA GPU cannot use. So, before installing the project:

- PyTorch already installed (any build): kept as it is, and pinned while the project installs so no extra replaces it;
  the PyTorch index is never contacted.
- no PyTorch and an NVIDIA GPU (``nvidia-smi`` lists one): nothing special, pip takes the CUDA build from PyPI.
- no PyTorch and no NVIDIA GPU: the CPU build from https://download.pytorch.org/whl/cpu (about 190 MB).

Runs with any Python >= 3.10 and uses nothing but the standard library and pip.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
REPO_ROOT = Path(__file__).resolve().parents[1]

HELP_EPILOG = """\
examples:
  python scripts/install.py                              # the project and what it needs to run
  python scripts/install.py dev,quant,trt-rtx,serve      # plus tests, INT8/FP16 export, TensorRT-RTX, Triton
  python scripts/install.py --dry-run                    # print the pip commands without running them
"""


def installed_torch() -> str | None:
    """The installed PyTorch version (e.g. '2.13.0+cpu'), or None."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_gpu() -> str | None:
    """The first NVIDIA GPU's name when ``nvidia-smi`` lists one, else None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return names[0] if result.returncode == 0 and names else None


def plan(extras: str, torch_version: str | None, gpu: str | None, constraint_file: Path) -> list[tuple[str, list[str]]]:
    """``(what, pip command)`` steps for this machine."""
    pip = [sys.executable, "-m", "pip", "install"]
    target = f"{REPO_ROOT}[{extras}]" if extras else str(REPO_ROOT)
    steps: list[tuple[str, list[str]]] = []
    if torch_version is None and gpu is None:
        steps.append(("PyTorch, CPU build (no NVIDIA GPU found)", [*pip, "torch", "--index-url", CPU_TORCH_INDEX]))
    project = [*pip, "-e", target]
    if torch_version is not None or gpu is None:  # keep the PyTorch that is there (or was just installed)
        project += ["-c", str(constraint_file)]
    steps.append((f"jarrn-deploy{f' with extras {extras}' if extras else ''}", project))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/install.py",
        description="Install jarrn-deploy (editable) with the PyTorch build that fits this machine: the CPU build "
                    "when there is no NVIDIA GPU, the CUDA build when there is one, and an already installed "
                    "PyTorch left untouched.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("extras", nargs="?", default="",
                        help="optional extras, comma separated: dev (tests), quant (FP16/INT8 export), trt-rtx "
                             "(TensorRT-RTX), serve (Triton), gpu (TensorRT)")
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands without running them")
    args = parser.parse_args(argv)
    extras = ",".join(e.strip() for e in args.extras.split(",") if e.strip())

    torch_version = installed_torch()
    gpu = nvidia_gpu()
    if torch_version:
        print(f"install: PyTorch {torch_version} is installed: keeping it", flush=True)
    elif gpu:
        print(f"install: NVIDIA GPU found ({gpu}): PyTorch's CUDA build comes from PyPI", flush=True)
    else:
        print("install: no NVIDIA GPU found: installing PyTorch's CPU build (about 190 MB) instead of the CUDA one",
              flush=True)

    with tempfile.TemporaryDirectory(prefix="jarrn_install_") as tmp:
        constraint_file = Path(tmp) / "keep-torch.txt"
        for what, command in plan(extras, torch_version, gpu, constraint_file):
            version = torch_version or installed_torch()
            if "-c" in command:
                constraint_file.write_text(f"torch=={version}\n" if version else "")
            print(f"install: {what}:\n  {' '.join(command)}", flush=True)
            if args.dry_run:
                continue
            status = subprocess.run(command, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}).returncode
            if status != 0:
                hint = (f" (is {CPU_TORCH_INDEX} reachable? Without it: install a CPU build of torch yourself, then "
                        "run this script again)") if CPU_TORCH_INDEX in command else ""
                print(f"install: failed at step '{what}' (pip exit status {status}){hint}", file=sys.stderr)
                return status
    if not args.dry_run:
        print(f"install: done (PyTorch {installed_torch()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
