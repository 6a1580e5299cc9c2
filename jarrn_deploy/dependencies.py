"""The install command for a Python package a command imports but this machine lacks, read from the project's own
requirements (pyproject.toml, as installed), so the hint names the same version bounds and extras the project does.

``install_command("matplotlib")`` -> ``pip install "matplotlib>=3.7"``; ``install_command("tensorrt_rtx")`` ->
``pip install "jarrn-deploy[trt-rtx]"`` (with ``-e ".[trt-rtx]"`` from a checkout). Standard library only.
"""

from __future__ import annotations

import importlib.metadata
import re

DISTRIBUTION = "jarrn-deploy"
IMPORT_TO_DISTRIBUTION = {"PIL": "pillow", "modelopt": "nvidia-modelopt", "onnx_graphsurgeon": "onnx-graphsurgeon",
                          "cuda": "cuda-python", "zstd": "zstandard", "yaml": "pyyaml"}
"""Import names whose distribution is named otherwise (beyond ``_`` vs ``-``)."""
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([^;]*)(?:;\s*extra\s*==\s*\"([^\"]+)\")?")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_of(module: str) -> str:
    """The PyPI name that provides the top-level import ``module`` (``tensorrt_rtx`` -> ``tensorrt-rtx``)."""
    top = module.split(".")[0]
    return IMPORT_TO_DISTRIBUTION.get(top, _normalise(top))


def install_command(module: str) -> str:
    """How to install what provides ``module``: the project's extra that lists it, its own requirement line, or else
    the bare package."""
    wanted = distribution_of(module)
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match is None or _normalise(match.group(1)) != wanted:
            continue
        name, package_extras, bounds, extra = match.groups()
        if extra:
            return f'pip install "{DISTRIBUTION}[{extra}]" (from a checkout: pip install -e ".[{extra}]")'
        return f'pip install "{name}{package_extras or ""}{bounds.strip()}"'
    return f"pip install {wanted}"


def missing_module_message(module: str) -> str:
    """The one line for a command that cannot import ``module``."""
    return f"this command needs the Python package {module.split('.')[0]!r}, not installed here: {install_command(module)}"
