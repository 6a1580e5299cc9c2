"""A script run by its path (``python export/to_onnx.py``) takes the packages from the installed project, or says so.

Run by its path, a script has only its own folder on ``sys.path``; ``jarrn_deploy`` and its packages (``jarrn_deploy.model``, ``jarrn_deploy.export`` ...) come from the
installed project (``python scripts/install.py`` or ``pip install -e .``), and no script edits ``sys.path``. When the
project is not installed, the script stops with one ``error:`` line and the exit status of a missing dependency instead
of a ``ModuleNotFoundError`` traceback. Every script with a path form runs this file first, before any import outside
the standard library (it cannot be imported then: the package is what is missing, hence ``runpy.run_path``)::

    if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
        import runpy

        runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

Standard library only.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

NOT_INSTALLED = (
    "the jarrn project is not installed: run `python scripts/install.py` (or `pip install -e .`) from the repository "
    "root, or run `python -m {module}` from there"
)
"""The one line a script run by its path prints (after ``error: ``) when the project's packages cannot be imported."""


def project_installed() -> bool:
    """Whether the project's packages import from here (``jarrn_deploy`` holds them all: one install brings them all)."""
    return importlib.util.find_spec("jarrn_deploy") is not None


def module_name(script: str | Path) -> str:
    """``export/to_onnx.py`` -> ``jarrn_deploy.export.to_onnx`` (the ``python -m`` form of a script in a package folder)."""
    path = Path(script).resolve()
    return f"jarrn_deploy.{path.parent.name}.{path.stem}"


def require_installed(script: str | Path | None = None) -> None:
    """Return when the project is importable; otherwise print one ``error:`` line and exit with
    ``jarrn_deploy.errors.EXIT_UNAVAILABLE`` (read from errors.py by path: the package itself is what is missing)."""
    if project_installed():
        return
    exit_unavailable = runpy.run_path(str(Path(__file__).with_name("errors.py")))["EXIT_UNAVAILABLE"]
    script = script or getattr(sys.modules["__main__"], "__file__", None) or "<folder>/<script>.py"
    print(f"error: {NOT_INSTALLED.format(module=module_name(script))}", file=sys.stderr)
    raise SystemExit(exit_unavailable)


if __name__ == "<run_path>":  # runpy.run_path(...) from the top of a script run by its path
    require_installed()
