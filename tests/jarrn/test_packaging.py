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


def test_a_checkout_that_is_not_installed_imports_every_package_as_tritons_stub_does(tmp_path) -> None:
    """Without the editable install's import hook (``python -S``: no .pth files run), the checkout's root on the path
    is enough: ``jarrn_deploy`` finds model/, runtime/ ... beside itself; the serve model file imports as written."""
    import subprocess
    import sys
    import sysconfig

    from jarrn_deploy.runtime.serve import MODEL_FILE, MODEL_PY

    (tmp_path / MODEL_FILE).write_text(MODEL_PY)
    code = (f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(REPO)!r}]; "
            f"sys.path.append({sysconfig.get_paths()['purelib']!r}); "
            "import jarrn_triton_model, jarrn_deploy.benchmarks.rows, jarrn_deploy.export.engine.build; "
            "print(jarrn_triton_model.TritonPythonModel.__module__)")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "jarrn_deploy.runtime.serving_model"
