"""``build_engine()`` as a library function: a real TensorRT-RTX build (on the CPU) of a tiny graph, its manifest,
reuse, the project's errors instead of prints and exits, and the ``jarrn build-engine`` command over the same build."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from jarrn_deploy.errors import InputError, UsageError
from jarrn_deploy.export.engine.build import BuiltEngine, build_engine
from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path
from jarrn_deploy.export.engine.profile import BuildOptions, Profile
from jarrn_deploy.model.contract import CONTRACT
from tests.export.test_engine_build_rtx import needs_rtx

PROFILE = Profile.parse("1x8x8", "1x16x16", "2x32x32")


def _tiny_onnx(path: Path) -> Path:
    """The contract's I/O with two real ops (depth = mean(rgb) + sparse_depth): builds in a fraction of a second."""
    def info(name: str, channels: int):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", channels, "height", "width"])

    nodes = [helper.make_node("ReduceMean", [CONTRACT.rgb_name], ["grey"], axes=[1], keepdims=1),
             helper.make_node("Add", ["grey", CONTRACT.sparse_name], [CONTRACT.depth_name])]
    graph = helper.make_graph(nodes, "tiny", [info(CONTRACT.rgb_name, 3), info(CONTRACT.sparse_name, 1)],
                              [info(CONTRACT.depth_name, 1)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@needs_rtx
def test_function_builds_a_real_engine_and_returns_the_manifest_it_wrote(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    import tensorrt_rtx

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    messages: list[str] = []
    built = build_engine(onnx_path, flavour="tensorrt-rtx", profile=PROFILE, options=BuildOptions(opt_level=1),
                         log=messages.append)
    assert isinstance(built, BuiltEngine) and not built.reused
    assert built.engine_path == tmp_path / "tiny.engine"  # default: the ONNX path with .engine
    assert built.manifest == EngineManifest.load(manifest_path(built.engine_path))
    assert built.manifest.engine_bytes == built.engine_path.stat().st_size > 1024
    assert (built.manifest.flavour, built.manifest.tensorrt_version) == ("tensorrt-rtx", tensorrt_rtx.__version__)
    assert built.manifest.precision == "fp32" and built.manifest.profile == PROFILE.to_dict()
    assert built.manifest.build["opt_level"] == 1
    assert built.manifest.build["command"].startswith(f"jarrn build-engine --onnx {onnx_path} --out")  # re-runnable
    assert messages[0].startswith("building ") and messages[-1].startswith("wrote ")
    assert capsys.readouterr().out == ""  # progress went to log only


@needs_rtx
def test_second_call_reuses_the_engine_and_force_rebuilds(tmp_path: Path) -> None:
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    engine = tmp_path / "out" / "t.plan"
    engine.parent.mkdir()
    first = build_engine(onnx_path, engine, flavour="tensorrt-rtx", profile=PROFILE)
    stamp = engine.stat().st_mtime_ns
    again = build_engine(str(onnx_path), str(engine), flavour="tensorrt-rtx", profile=PROFILE)
    assert again.reused and again.manifest == first.manifest and engine.stat().st_mtime_ns == stamp
    other_targets = build_engine(onnx_path, engine, profile=PROFILE, targets=["8.6"])  # targets imply tensorrt-rtx
    assert not other_targets.reused and other_targets.manifest.compute_capabilities == ["8.6"]
    forced = build_engine(onnx_path, engine, profile=PROFILE, targets="8.6", force=True)
    assert not forced.reused and forced.manifest.cache_key == other_targets.manifest.cache_key


@needs_rtx
def test_command_line_wraps_the_same_build(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.export import build_engine as command

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    built = build_engine(onnx_path, flavour="tensorrt-rtx", profile=PROFILE)
    capsys.readouterr()
    args = ["--onnx", str(onnx_path), "--flavour", "tensorrt-rtx", *PROFILE.cli_args()]
    assert command.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"[build_engine] {built.engine_path} is up to date") and out.count("\n") == 1


def test_missing_onnx_raises_input_error_without_printing_or_exiting(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(InputError, match=r"^--onnx: no such file .*missing\.onnx$"):
        build_engine(tmp_path / "missing.onnx", flavour="tensorrt-rtx", log=print)
    assert capsys.readouterr() == ("", "") and list(tmp_path.iterdir()) == []


def test_bad_settings_raise_usage_errors_before_any_build(tmp_path: Path) -> None:
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(UsageError, match="--compute-capability: only for --flavour tensorrt-rtx"):
        build_engine(onnx_path, flavour="tensorrt", targets="8.6")
    with pytest.raises(UsageError, match="'9.0' is not a TensorRT-RTX target"):
        build_engine(onnx_path, targets=["9.0"])
    with pytest.raises(UsageError, match="would overwrite an ONNX file"):
        build_engine(onnx_path, tmp_path / "other.onnx", flavour="tensorrt-rtx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
