"""The printed trtexec / tensorrt_rtx recipes use only flags their tools document (jarrn_deploy.export.engine.recipes's one table),
carry every build option or say why not, and point at the same runtime cache file as the runtime."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import jarrn_deploy.export.build_engine as build_engine
from jarrn_deploy.export.engine.profile import BuildOptions, Profile
from jarrn_deploy.export.engine.recipes import (
    DOCUMENTED_OPTIONS,
    TENSORRT_RTX_CLI,
    TRTEXEC_CLI,
    tensorrt_rtx_commands_text,
    trtexec_commands_text,
)

PROFILE = Profile.parse("1x64x64", "1x320x320", "4x384x1280")


def _commands(text: str) -> list[list[str]]:
    """The command lines of a recipe block (comments dropped, backslash continuations joined), split as a shell does."""
    joined = text.replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _tool(argv: list[str]) -> str:
    return Path(argv[0]).name


def _flags(argv: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--")}


OPTION_GRID = [BuildOptions(), BuildOptions(0, None), BuildOptions(5, 1024)]
TARGET_GRID = [("8.0", "8.6", "8.9", "12.0", "12.1"), ("8.6",), ("7.5", "8.9")]


@pytest.mark.parametrize("options", OPTION_GRID, ids=str)
def test_every_printed_flag_is_one_the_tool_documents(options: BuildOptions) -> None:
    blocks = [trtexec_commands_text("m.onnx", "m.engine", PROFILE, options, "/cache")]
    blocks += [tensorrt_rtx_commands_text("m.onnx", "m.engine", PROFILE, options, targets, cache)
               for targets in TARGET_GRID for cache in (None, "jit.cache")]
    seen: dict[str, set[str]] = {TRTEXEC_CLI: set(), TENSORRT_RTX_CLI: set()}
    for block in blocks:
        for argv in _commands(block):
            tool = _tool(argv)
            assert tool in DOCUMENTED_OPTIONS, argv
            undocumented = _flags(argv) - DOCUMENTED_OPTIONS[tool]
            assert not undocumented, f"{tool} does not document {sorted(undocumented)}"
            seen[tool] |= _flags(argv)
    assert {"--saveEngine", "--loadEngine", "--minShapes", "--skipInference"} <= seen[TRTEXEC_CLI] & seen[TENSORRT_RTX_CLI]


def test_tensorrt_rtx_recipe_has_no_trtexec_only_flags_and_counts_transfers_as_its_tool_does() -> None:
    assert not {"--noDataTransfers", "--memPoolSize", "--builderOptimizationLevel"} & DOCUMENTED_OPTIONS[TENSORRT_RTX_CLI]
    text = tensorrt_rtx_commands_text("m.onnx", "m.engine", PROFILE, BuildOptions())
    assert "--noDataTransfers" not in text and "--memPoolSize" not in text
    assert "add --includeDataTransfers to count them" in text  # transfers are excluded by default


@pytest.mark.parametrize(("opt_level", "said"), [(3, False), (0, True), (5, True)])
def test_tensorrt_rtx_recipe_says_when_it_cannot_carry_the_opt_level(opt_level: int, said: bool) -> None:
    text = tensorrt_rtx_commands_text("m.onnx", "m.engine", PROFILE, BuildOptions(opt_level, None))
    assert (f"# --opt-level {opt_level}: tensorrt_rtx documents no builder optimization level flag" in text) is said
    assert "--workspace" not in text  # no workspace limit asked for: nothing to say
    trtexec = trtexec_commands_text("m.onnx", "m.engine", PROFILE, BuildOptions(opt_level, None))
    assert trtexec.count(f"--builderOptimizationLevel={opt_level}") == 3  # trtexec carries every level


def test_relative_runtime_cache_is_printed_where_the_runtime_looks_for_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from jarrn_deploy.runtime.backends.tensorrt_backend import runtime_cache_path

    monkeypatch.chdir(tmp_path)
    engine = Path("engines") / "m.engine"
    args = ["--onnx", "m.onnx", "--out", str(engine), "--flavour", "tensorrt-rtx", "--runtime-cache", "jit.cache",
            "--print-trtexec"]
    assert build_engine.run(build_engine.parse_args(args)) == 0
    bench = [argv for argv in _commands(capsys.readouterr().out) if any(a.startswith("--loadEngine") for a in argv)]
    printed = [a.split("=", 1)[1] for a in bench[0] if a.startswith("--runtimeCacheFile=")]
    assert printed == [str(Path("engines") / "jit.cache")]
    # the runtime resolves the recorded "jit.cache" (or runtime_cache="jit.cache") to the same file
    assert runtime_cache_path(engine, None, "jit.cache") == tmp_path / printed[0]


def test_build_engine_usage_names_the_command_users_type(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_engine.parse_args(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: jarrn build-engine ") and "--compress" in out
