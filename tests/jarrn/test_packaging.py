"""pyproject.toml installs every package of the jarrn_deploy namespace (tests/test_readme.py: a user's own
``model.py`` cannot shadow them)."""

from __future__ import annotations

import tomllib

from jarrn_deploy.layout import PACKAGES, package_folder
from tests.support import REPO


def _packages_on_disk() -> set[str]:
    names = set()
    for top in PACKAGES:
        folder = package_folder(top)
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            if top == "jarrn_deploy" and parts:
                continue  # in a wheel the other packages sit inside jarrn_deploy/: they are counted under their own
            names.add(".".join((top, *parts)))
    return names


def test_pyproject_lists_every_package_folder_and_maps_each_top_folder() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _packages_on_disk()
    assert {f"jarrn_deploy.{folder}" for folder in ("model", "export", "runtime", "benchmarks")} == set(
        setuptools["package-dir"])
