"""The serve extra leaves the base install alone: nothing it pulls in caps numpy or protobuf (issue 22, item 8)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
GUARDED = ("numpy", "protobuf")


def _closure(requirements: list[Requirement]) -> dict[str, list[Requirement]]:
    """Every installed distribution the requirements pull in, with the requirements that name it."""
    seen: dict[str, list[Requirement]] = {}
    todo = [(r, r.extras) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        first = name not in seen
        seen.setdefault(name, []).append(requirement)
        if not first and not extras:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        for raw in dist.requires or []:
            child = Requirement(raw)
            wanted = child.marker is None or any(child.marker.evaluate({"extra": e}) for e in (*extras, ""))
            if wanted:
                todo.append((child, child.extras))
    return seen


def test_serve_extra_does_not_depend_on_nvidia_pytriton_or_cap_numpy_and_protobuf() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    serve = [Requirement(r) for r in extras["serve"]]
    closure = _closure(serve)
    assert "nvidia-pytriton" not in closure
    pytest.importorskip("tritonclient", reason='needs the serve extra: pip install -e ".[serve]"')
    assert "tritonclient" in closure
    for name in GUARDED:
        for requirement in closure.get(name, []):
            installed = distribution(name).version
            assert requirement.specifier.contains(installed, prereleases=True), (
                f"{requirement} (from the serve extra) excludes the installed {name} {installed}")
            assert requirement.specifier.contains("2.5" if name == "numpy" else "6.33", prereleases=True), requirement


def test_the_installed_environment_kept_numpy_2_so_the_server_stub_gets_its_own_numpy() -> None:
    """CI installs dev,quant,trt-rtx,serve together: numpy 2 must survive, and the Triton stub (built against numpy 1)
    then runs with the cached stub environment (the served answers are checked in test_serve.py)."""
    import numpy

    from jarrn_deploy.runtime.serving_server import numpy_needs_stub_env

    assert int(numpy.__version__.split(".")[0]) >= 2 and numpy_needs_stub_env()


def test_first_use_offline_fails_in_one_line_naming_the_commands_to_run(tmp_path: Path, monkeypatch) -> None:
    import subprocess

    from jarrn_deploy.errors import UnavailableError
    from jarrn_deploy.runtime import serving_server

    def offline(command, **kwargs):  # noqa: ANN001, ANN003, ANN202 - pip as it answers without a network
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for nvidia-pytriton")

    monkeypatch.setattr(serving_server.subprocess, "run", offline)
    steps: list[str] = []
    with pytest.raises(UnavailableError) as error:
        serving_server.server_bundle(log=steps.append, root=tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message and "No matching distribution" in message
    assert f"pip install --no-deps --target {tmp_path / 'cache' / 'bundle'} nvidia-pytriton==" in message
    assert steps[0].startswith("first use of jarrn serve: installing Triton")
    assert not (tmp_path / "cache" / "complete").exists()
