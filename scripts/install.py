"""Install jarrn-deploy with the right PyTorch for this machine, then the project itself (editable).

    python scripts/install.py                       # the project (PyTorch, ONNX, ONNX Runtime ...)
    python scripts/install.py dev,quant,trt-rtx,serve,bag,openvino   # plus optional extras (the test command uses these)

Why not plain ``pip install -e .``: on x86_64 Linux, PyPI's ``torch`` is the CUDA build, about 3 GB of wheels, which a
machine without an NVIDIA GPU cannot use. So, before installing the project (``--torch-from auto``, the default):

- PyTorch already installed (any build): kept as it is, and pinned while the project installs so no extra replaces it;
  no PyTorch index is contacted.
- no PyTorch and an NVIDIA GPU (``nvidia-smi`` lists one): pip takes the CUDA build from PyPI.
- no PyTorch and no NVIDIA GPU: the CPU build from https://download.pytorch.org/whl/cpu (about 190 MB), or from the
  mirror ``--cpu-index`` names. When that index does not answer within a few seconds (networks that proxy only PyPI),
  PyPI's build instead, with one notice line saying so and what it costs.

Runs with any Python >= 3.10 and uses nothing but the standard library and pip.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_TORCH_SIZE = "about 190 MB"
CUDA_TORCH_SIZE = "about 3 GB"
"""Download sizes of PyTorch's CPU build and of PyPI's x86_64 Linux build with its nvidia-* wheels."""
TESTED_TORCH = "2.13.0"
"""The PyTorch release installed when none is (the one CI tests, .ci/run); install another first to keep that."""
PROBE_TIMEOUT_S = 5.0
TORCH_SOURCES = ("auto", "cpu-index", "pypi")
REPO_ROOT = Path(__file__).resolve().parents[1]

HELP_EPILOG = """\
where PyTorch comes from when none is installed (an installed one is always kept), --torch-from:
  auto       keep an installed PyTorch; else PyPI's build with an NVIDIA GPU, the CPU index without one
             (PyPI's build when the CPU index does not answer within a few seconds)
  cpu-index  the CPU build from --cpu-index, even with a GPU, without the reachability check
  pypi       PyPI's build (on x86_64 Linux the CUDA build, about 3 GB of wheels)

examples:
  python scripts/install.py                              # the project and what it needs to run
  python scripts/install.py dev,quant,trt-rtx,serve,bag,openvino  # plus tests, INT8/FP16 export, TensorRT-RTX, Triton
  python scripts/install.py --cpu-index https://mirror.example.com/pytorch/whl/cpu   # a mirror of the CPU index
  python scripts/install.py --torch-from pypi            # PyPI's torch, also on a machine without a GPU
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


def index_unreachable(index: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the package index at ``index`` cannot be used (e.g. 'no answer within 5 s'), or None when its torch page
    answers. One request with a short timeout, instead of pip's retries (about 18 s before it gives up); honours the
    proxy variables and pip's ``PIP_CERT`` / ``SSL_CERT_FILE`` like pip does."""
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    context = ssl.create_default_context(cafile=cafile if cafile and Path(cafile).is_file() else None)
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=timeout_s, context=context) as response:
            response.read(1)
        return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return "no answer within {:g} s".format(timeout_s) if isinstance(reason, TimeoutError) else str(reason)


def pypi_torch_is_cuda() -> bool:
    """PyPI's torch wheels for Linux x86_64 are the CUDA build (with about 3 GB of nvidia-* wheels)."""
    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")


@dataclass(frozen=True)
class TorchChoice:
    """Where PyTorch comes from, and the one line that tells the user."""

    index: str | None
    """The index to install torch from; None: keep the installed one (``keep``) or PyPI's (not ``keep``)."""
    keep: bool
    """An installed PyTorch is kept (and pinned while the project installs)."""
    notice: str
    """One line for the user: what was chosen and why."""


def choose_torch(source: str, torch_version: str | None, gpu: str | None, cpu_index: str,
                 probe: Callable[[str], str | None] | None = None) -> TorchChoice:
    """The PyTorch source for this machine (``source``: one of :data:`TORCH_SOURCES`; an installed PyTorch is always
    kept). ``probe(index)`` (default: :func:`index_unreachable`, looked up when called) is asked only in ``auto``
    mode, when the CPU index would be used."""
    if torch_version is not None:
        return TorchChoice(None, True, f"PyTorch {torch_version} is installed: keeping it (uninstall it to switch "
                                       "builds)")
    if source == "pypi" or (source == "auto" and gpu is not None):
        why = f"NVIDIA GPU found ({gpu})" if source == "auto" else "--torch-from pypi"
        size = f" (the CUDA build, {CUDA_TORCH_SIZE})" if pypi_torch_is_cuda() else ""
        return TorchChoice(None, False, f"{why}: PyTorch comes from PyPI{size}")
    if source == "cpu-index":
        return TorchChoice(cpu_index, False, f"--torch-from cpu-index: PyTorch's CPU build from {cpu_index}")
    problem = (probe or index_unreachable)(cpu_index)
    if problem is None:
        return TorchChoice(cpu_index, False, f"no NVIDIA GPU found: PyTorch's CPU build from {cpu_index} "
                                             f"({CPU_TORCH_SIZE})")
    cost = (f" on this platform that is the CUDA build, {CUDA_TORCH_SIZE}, which a machine without an NVIDIA GPU does "
            "not use;" if pypi_torch_is_cuda() else "")
    return TorchChoice(None, False, f"no NVIDIA GPU found and {cpu_index} cannot be reached ({problem}): PyTorch "
                                    f"comes from PyPI (and pip's other configured sources) instead;{cost} for the CPU "
                                    "build from a mirror: --cpu-index URL")


def plan(extras: str, choice: TorchChoice, constraint_file: Path) -> list[tuple[str, list[str]]]:
    """``(what, pip command)`` steps for this machine: PyTorch (unless kept), then the project with PyTorch pinned."""
    pip = [sys.executable, "-m", "pip", "install"]
    target = f"{REPO_ROOT}[{extras}]" if extras else str(REPO_ROOT)
    steps: list[tuple[str, list[str]]] = []
    if not choice.keep:
        steps.append((f"PyTorch from {choice.index or 'PyPI'}",
                      [*pip, f"torch=={TESTED_TORCH}", *(["--index-url", choice.index] if choice.index else [])]))
    steps.append((f"jarrn-deploy{f' with extras {extras}' if extras else ''}",
                  [*pip, "-e", target, "-c", str(constraint_file)]))
    return steps


def retry_hint(torch_step: bool, choice: TorchChoice, extras: str) -> str:
    """A command that gets past a failed step (the PyTorch one when ``torch_step``, else the project's)."""
    python = "python" if shutil.which("python") == sys.executable else shlex.quote(sys.executable)
    again = f"{python} scripts/install.py" + (f" {extras}" if extras else "")
    if torch_step and choice.index:
        return f"PyPI's build instead: {again} --torch-from pypi; a mirror of the CPU index: {again} --cpu-index URL"
    if torch_step:
        return (f"if PyPI's torch cannot be had here, the CPU build: {again} --torch-from cpu-index "
                "(add --cpu-index URL for a mirror)")
    target = shlex.quote(f".[{extras}]" if extras else ".")
    return (f"PyTorch {installed_torch()} is installed and will be kept: after fixing pip's error above, run {again} "
            f"again (or: cd {shlex.quote(str(REPO_ROOT))} && {python} -m pip install -e {target})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/install.py",
        description="Install jarrn-deploy (editable) with the PyTorch build that fits this machine: the CPU build "
                    "when there is no NVIDIA GPU, PyPI's (CUDA) build when there is one, and an already installed "
                    "PyTorch left untouched.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("extras", nargs="?", default="",
                        help="optional extras, comma separated: dev (tests), quant (FP16/INT8 export), trt-rtx "
                             "(TensorRT-RTX), serve (Triton), bag (ROS bags), openvino (OpenVINO CPU backend), gpu (TensorRT)")
    parser.add_argument("--torch-from", choices=TORCH_SOURCES, default="auto",
                        help="where PyTorch comes from (default auto; see below)")
    parser.add_argument("--cpu-index", default=CPU_TORCH_INDEX, metavar="URL",
                        help="the index of PyTorch's CPU build, e.g. a company mirror (default %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands without running them")
    args = parser.parse_args(argv)
    extras = ",".join(e.strip() for e in args.extras.split(",") if e.strip())

    choice = choose_torch(args.torch_from, installed_torch(), nvidia_gpu(), args.cpu_index)
    print(f"install: {choice.notice}", flush=True)

    with tempfile.TemporaryDirectory(prefix="jarrn_install_") as tmp:
        constraint_file = Path(tmp) / "keep-torch.txt"
        steps = plan(extras, choice, constraint_file)
        for number, (what, command) in enumerate(steps, start=1):
            version = installed_torch()
            if "-c" in command:
                constraint_file.write_text(f"torch=={version}\n" if version else "")
            print(f"install: step {number}/{len(steps)}, {what}:\n  {shlex.join(command)}", flush=True)
            if args.dry_run:
                continue
            status = subprocess.run(command, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}).returncode
            if status != 0:
                hint = retry_hint(number < len(steps), choice, extras)
                print(f"install: failed at step {number}/{len(steps)}, {what} (pip exit status {status}). {hint}",
                      file=sys.stderr)
                return status
    if not args.dry_run:
        print(f"install: done (PyTorch {installed_torch()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
