"""README.md: what it shows a user runs as shown."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support import REPO


def python_snippet(section: str) -> str:
    """The first ```python block after the README heading ``section``."""
    readme = (REPO / "README.md").read_text()
    after = readme.split(f"\n## {section}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", after.split("\n## ", 1)[0], flags=re.DOTALL)
    assert match, f"no python block in README section {section!r}"
    return match.group(1)


def test_python_snippet_completes_the_bundled_frame_as_pasted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # "run from the repository root"
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(python_snippet("Using the model from Python"), "README.md", "exec"), namespace)  # noqa: S102
    depth, rgb = namespace["depth"], namespace["rgb"]
    assert depth.dtype == np.float32 and depth.shape == rgb.shape[:2]
    assert np.isfinite(depth).all() and 1.0 < float(np.median(depth)) < 80.0  # a street scene, in metres
    assert printed.getvalue().startswith(f"{depth.shape} ") and printed.getvalue().rstrip().endswith(" m")


def test_python_snippet_runs_from_a_folder_holding_a_users_model_runtime_and_export_py(tmp_path: Path) -> None:
    for name in ("model.py", "runtime.py", "export.py"):
        (tmp_path / name).write_text("raise SystemExit('the user module was imported instead of the project')\n")
    snippet = python_snippet("Using the model from Python").replace('"data/real/', f'"{REPO}/data/real/')
    (tmp_path / "snippet.py").write_text(snippet)
    result = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.rstrip().endswith(" m")
