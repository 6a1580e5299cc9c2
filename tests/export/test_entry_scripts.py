"""The scripts with a path form (``python export/to_onnx.py``, ``python benchmarks/run.py`` ...) run without patching
``sys.path``: the packages come from the installed project, and without it the script says so in one line (exit 5)."""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jarrn_deploy.entry_guard import NOT_INSTALLED, module_name, project_installed, require_installed
from jarrn_deploy.errors import EXIT_UNAVAILABLE
from tests.support import REPO

PROJECT_PACKAGES = ("export", "benchmarks", "runtime", "model", "jarrn_deploy")
SCRIPT_FOLDERS = ("export", "benchmarks")
"""The folders whose scripts have a path form: running one puts its folder first on ``sys.path``."""


def _path_scripts() -> list[Path]:
    """Every module in the script folders with a ``__main__`` block, i.e. every script a user may run by its path."""
    return sorted(p for folder in SCRIPT_FOLDERS for p in (REPO / folder).glob("*.py")
                  if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8"))


def test_the_documented_path_forms_are_among_the_scripts() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in _path_scripts()}
    assert {"export/to_onnx.py", "export/build_engine.py", "export/validate.py", "benchmarks/run.py"} <= names


def test_no_project_module_edits_sys_path() -> None:
    edits = re.compile(r"\bsys\.path\s*(\.\s*(insert|append|extend)\b|\[[^]]*\]\s*=|[+]?=)")
    offenders = [f"{path.relative_to(REPO)}:{number}"
                 for package in (*PROJECT_PACKAGES, "scripts") for path in (REPO / package).rglob("*.py")
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if edits.search(line)]
    assert offenders == []


@pytest.mark.parametrize("script", _path_scripts(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_script_run_without_the_project_installed_says_how_to_install_it(script: Path, tmp_path: Path) -> None:
    # -S: no site-packages (so no installed project, and no numpy either: the guard must come before such imports);
    # -E: no PYTHONPATH. The script's own folder is still first on sys.path, as when a user runs it.
    result = subprocess.run([sys.executable, "-S", "-E", str(script), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {NOT_INSTALLED.format(module=module_name(script))}"]
    assert result.stdout == ""


@pytest.mark.parametrize("script", ["export/to_onnx.py", "export/build_engine.py", "benchmarks/run.py"])
def test_a_script_runs_by_its_path_from_another_folder(script: str, tmp_path: Path) -> None:
    # As a user runs it: the project installed (pip install -e . / scripts/install.py), nothing on PYTHONPATH.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "Traceback" not in result.stderr


def test_no_module_in_a_script_folder_shadows_another_module() -> None:
    """A script run by its path puts its folder first on ``sys.path``: a file there named like a standard-library,
    installed or project module (``timing``, ``profile``, ``onnx``, ``model`` ...) would be imported instead of it."""
    local = {path.stem if path.suffix == ".py" else path.name: f"{folder}/{path.name}"
             for folder in SCRIPT_FOLDERS for path in (REPO / folder).iterdir()
             if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()}
    elsewhere = set(sys.stdlib_module_names) | {m.name for m in pkgutil.iter_modules()} | set(PROJECT_PACKAGES)
    assert sorted(local[name] for name in local.keys() & elsewhere) == []


def test_the_guard_lets_an_installed_project_through_and_names_the_module_form() -> None:
    assert project_installed()
    require_installed(REPO / "export" / "to_onnx.py")  # returns: the packages import here
    assert module_name(REPO / "benchmarks" / "run.py") == "jarrn_deploy.benchmarks.run"
    assert "python scripts/install.py" in NOT_INSTALLED and "pip install -e ." in NOT_INSTALLED

