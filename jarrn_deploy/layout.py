"""Where the packages of the ``jarrn_deploy`` namespace live on disk, for code that reads the project's own sources.

In the repository the folders ``model/``, ``export/``, ``runtime/`` and ``benchmarks/`` sit beside ``jarrn_deploy/``
and install as ``jarrn_deploy.model`` ... (pyproject.toml's ``package-dir``); a wheel puts them inside
``jarrn_deploy/``. Both layouts are found through the import system, so nothing here assumes either. Standard library
only.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

NAMESPACE = "jarrn_deploy"
"""The one top-level import name of the project."""
PACKAGES = ("jarrn_deploy", "jarrn_deploy.model", "jarrn_deploy.export", "jarrn_deploy.runtime",
            "jarrn_deploy.benchmarks")
"""The namespace's top packages, lowest layer first."""


@cache
def package_folder(package: str) -> Path:
    """The folder that holds ``package`` (one of :data:`PACKAGES` or a sub-package of one)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not an installed package of the project")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` (``jarrn_deploy.export.validate`` -> ``.../export/validate.py``), or None."""
    top = next((p for p in sorted(PACKAGES, key=len, reverse=True) if name == p or name.startswith(p + ".")), None)
    if top is None:
        return None
    base = package_folder(top).joinpath(*name[len(top):].split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def source_modules() -> dict[str, Path]:
    """Every module of the project by name (``jarrn_deploy.runtime.bag.cli`` ...), with its source file."""
    modules: dict[str, Path] = {}
    for top in PACKAGES:
        folder = package_folder(top)
        for path in folder.rglob("*.py"):
            if top == NAMESPACE and path.relative_to(folder).parts[0] != path.name:
                continue  # only jarrn_deploy's own modules: in a wheel the other packages sit inside its folder
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join((top, *parts))] = path
    return modules
