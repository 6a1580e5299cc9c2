"""Engine bookkeeping without TensorRT: profiles, manifest, cache key, compatibility checks, trtexec lines, the
build_engine CLI's behaviour when TensorRT is missing."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jarrn_deploy.export.engine.flavours import (
    TENSORRT_INSTALL_HINT,
    TENSORRT_RTX_INSTALL_HINT,
    network_creation_flags,
    parse_version,
)
from jarrn_deploy.export.engine.graph import onnx_sha256, precision_from_onnx
from jarrn_deploy.export.engine.manifest import (
    DeviceInfo,
    EngineManifest,
    cache_key,
    check_compatible,
    check_engine_file,
    manifest_path,
    rebuild_command,
    timing_cache_path,
)
from jarrn_deploy.export.export_errors import EngineFileError, EngineMismatchError
from jarrn_deploy.export.engine.profile import BuildOptions, Profile, ProfileError, check_shape_in_range, parse_shape
from jarrn_deploy.export.engine.recipes import trtexec_command, trtexec_commands_text
from jarrn_deploy.runtime.backends.tensorrt_backend import preflight_engine

from tests.support import REPO
DEVICE = DeviceInfo("NVIDIA GeForce RTX 4090", "8.9", "10.8.0.43")
PROFILE = Profile.parse("1x64x64", "1x320x320", "4x384x1280")
OPTIONS = BuildOptions(3, 4096)


# ---------------------------------------------------------------------------------------------------------------------
# small ONNX graphs (no torch needed)


def _graph_onnx(path: Path, *, precision_meta: str | None = None, kind: str = "fp32") -> Path:
    """rgb, sparse_depth -> depth = sparse_depth (+ a cast/QDQ chain to mimic precision variants)."""
    rgb = helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    sparse = helper.make_tensor_value_info("sparse_depth", TensorProto.FLOAT, ["batch", 1, "height", "width"])
    depth = helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", 1, "height", "width"])
    nodes, inits = [], []
    if kind == "fp16":
        nodes += [helper.make_node("Cast", ["sparse_depth"], ["h"], to=TensorProto.FLOAT16),
                  helper.make_node("Cast", ["h"], ["depth"], to=TensorProto.FLOAT)]
    elif kind == "int8":
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "zp")]
        nodes += [helper.make_node("QuantizeLinear", ["sparse_depth", "scale", "zp"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["depth"])]
    else:
        nodes.append(helper.make_node("Identity", ["sparse_depth"], ["depth"]))
    graph = helper.make_graph(nodes, "g", [rgb, sparse], [depth], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if precision_meta:
        helper.set_model_props(model, {"jarrn.precision": precision_meta})
    onnx.save(model, str(path))
    return path


def _manifest(**overrides) -> EngineManifest:
    base = dict(
        onnx_path="/models/jarrn_fp16.onnx",
        onnx_sha256="a" * 64,
        precision="fp16",
        tensorrt_version=DEVICE.tensorrt_version,
        gpu_name=DEVICE.gpu_name,
        compute_capability=DEVICE.compute_capability,
        profile=PROFILE.to_dict(),
        build={"opt_level": 3, "workspace_mib": 4096},
        cache_key="k" * 64,
        engine_file="jarrn_fp16.engine",
        engine_sha256="",
        engine_bytes=0,
        contract_version="1",
        created_utc="2026-01-01T00:00:00Z",
    )
    base.update(overrides)
    return EngineManifest(**base)


def _write_engine(tmp_path: Path, payload: bytes = b"\x00plan" * 1000, **manifest_overrides) -> tuple[Path, EngineManifest]:
    import hashlib

    engine = tmp_path / "jarrn_fp16.engine"
    engine.write_bytes(payload)
    manifest = _manifest(engine_sha256=hashlib.sha256(payload).hexdigest(), engine_bytes=len(payload),
                         **manifest_overrides)
    manifest.save(manifest_path(engine))
    return engine, manifest


# ---------------------------------------------------------------------------------------------------------------------
# profile


def test_parse_shape_accepts_bxhxw() -> None:
    assert parse_shape("4x384x1280").as_tuple() == (4, 384, 1280)
    assert parse_shape(" 1X64x64 ").as_tuple() == (1, 64, 64)
    assert parse_shape("2,32,48").tensor_shape("rgb") == (2, 3, 32, 48)
    assert parse_shape("2,32,48").tensor_shape("sparse_depth") == (2, 1, 32, 48)


@pytest.mark.parametrize("text", ["", "1x64", "1x64x64x3", "ax64x64", "1x64.5x64", "0x64x64", "1x-64x64", "1x64x0"])
def test_parse_shape_rejects(text: str) -> None:
    with pytest.raises(ProfileError, match="--min"):
        parse_shape(text, "--min")


@pytest.mark.parametrize(
    ("low", "opt", "high", "message"),
    [
        ("2x64x64", "1x320x320", "4x384x1280", "min batch 2 is larger than opt batch 1"),
        ("1x64x64", "1x512x320", "4x384x1280", "opt height 512 is larger than max height 384"),
        ("1x64x400", "1x320x320", "4x384x1280", "min width 400 is larger than opt width 320"),
    ],
)
def test_profile_requires_min_le_opt_le_max(low: str, opt: str, high: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        Profile.parse(low, opt, high)


def test_profile_shapes_and_round_trip() -> None:
    assert PROFILE.tensor_shapes("rgb") == ((1, 3, 64, 64), (1, 3, 320, 320), (4, 3, 384, 1280))
    assert PROFILE.tensor_shapes("sparse_depth")[2] == (4, 1, 384, 1280)
    assert Profile.from_dict(json.loads(json.dumps(PROFILE.to_dict()))) == PROFILE
    assert Profile.parse("1x1x1", "1x1x1", "1x1x1").contains(1, 1, 1)
    assert PROFILE.contains(4, 375, 1242) and not PROFILE.contains(5, 375, 1242) and not PROFILE.contains(1, 32, 64)


def test_shape_outside_profile_names_input_and_range() -> None:
    check_shape_in_range("rgb", (1, 3, 64, 64), (1, 3, 64, 64), (4, 3, 384, 1280))
    with pytest.raises(ProfileError) as err:
        check_shape_in_range("sparse_depth", (1, 1, 480, 640), (1, 1, 64, 64), (4, 1, 384, 1280))
    message = str(err.value)
    assert "sparse_depth" in message and "1x1x480x640" in message
    assert "min 1x1x64x64" in message and "max 4x1x384x1280" in message and "jarrn build-engine" in message


def test_build_options_validation() -> None:
    with pytest.raises(ValueError, match="--opt-level"):
        BuildOptions(6, 1024)
    with pytest.raises(ValueError, match="--workspace"):
        BuildOptions(3, 0)
    assert BuildOptions(5, None).cli_args() == ["--opt-level", "5"]


# ---------------------------------------------------------------------------------------------------------------------
# versions


def test_version_dependent_network_flags() -> None:
    assert parse_version("10.3.0.30") == (10, 3, 0, 30)
    assert parse_version("11.0.0rc1") == (11, 0, 0)
    assert network_creation_flags("10.3.0.30") == ["STRONGLY_TYPED"]  # Jetson, JetPack 6
    assert network_creation_flags("10.16.1.11") == ["STRONGLY_TYPED"]
    assert network_creation_flags("11.4.0.106") == []  # strongly typed is the only mode
    with pytest.raises(ValueError, match="TensorRT 10 or newer"):
        network_creation_flags("8.6.1")


# ---------------------------------------------------------------------------------------------------------------------
# manifest and cache key


def test_manifest_json_round_trip(tmp_path: Path) -> None:
    manifest = _manifest()
    path = manifest.save(tmp_path / "m.engine.json")
    loaded = EngineManifest.load(path)
    assert loaded == manifest
    assert loaded.profile_obj == PROFILE and loaded.device == DEVICE and loaded.build_options == OPTIONS
    assert json.loads(path.read_text())["format"] == "jarrn-tensorrt-engine"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write left no temp file


def test_manifest_ignores_unknown_keys_and_rejects_bad_files(tmp_path: Path) -> None:
    data = json.loads(_manifest().to_json())
    data["added_in_a_later_minor_version"] = 1
    assert EngineManifest.from_json(json.dumps(data)) == _manifest()
    with pytest.raises(EngineFileError, match="not valid JSON"):
        EngineManifest.from_json("{truncated")
    with pytest.raises(EngineFileError, match="not a JARRN engine manifest"):
        EngineManifest.from_json(json.dumps({"format": "other"}))
    with pytest.raises(EngineFileError, match="newer than this code"):
        EngineManifest.from_json(json.dumps({**data, "manifest_version": 99}))
    del data["onnx_sha256"]
    with pytest.raises(EngineFileError, match="lacks"):
        EngineManifest.from_json(json.dumps(data))
    with pytest.raises(EngineFileError, match="no engine manifest"):
        EngineManifest.load(tmp_path / "missing.json")


def test_cache_key_changes_with_build_identity_only() -> None:
    base = dict(onnx_sha256="a" * 64, precision="fp16", profile=PROFILE, device=DEVICE, options=OPTIONS)
    key = cache_key(**base)
    assert key == cache_key(**dict(base))  # deterministic
    assert key == cache_key(**{**base, "profile": Profile.parse("1x64x64", "1x320x320", "4x384x1280")})
    assert key == cache_key(**{**base, "device": DeviceInfo(*dataclasses.astuple(DEVICE))})
    variants = {
        "onnx": {"onnx_sha256": "b" * 64},
        "precision": {"precision": "int8"},
        "profile": {"profile": Profile.parse("1x64x64", "1x320x320", "8x384x1280")},
        "tensorrt": {"device": dataclasses.replace(DEVICE, tensorrt_version="10.9.0.34")},
        "tensorrt major": {"device": dataclasses.replace(DEVICE, tensorrt_version="11.4.0.106")},
        "gpu": {"device": dataclasses.replace(DEVICE, gpu_name="NVIDIA RTX 6000 Ada Generation")},
        "compute capability": {"device": dataclasses.replace(DEVICE, compute_capability="8.6")},
        "opt level": {"options": BuildOptions(5, 4096)},
        "workspace": {"options": BuildOptions(3, 1024)},
    }
    keys = {name: cache_key(**{**base, **change}) for name, change in variants.items()}
    assert all(k != key for k in keys.values()), keys
    assert len(set(keys.values())) == len(keys)


def test_timing_cache_per_gpu_and_tensorrt(tmp_path: Path) -> None:
    a = timing_cache_path(tmp_path, DEVICE)
    assert a.parent == tmp_path and a.name == "timing_nvidia-geforce-rtx-4090_sm89_trt10.8.0.43.cache"
    assert timing_cache_path(tmp_path, dataclasses.replace(DEVICE, tensorrt_version="10.3.0.30")) != a
    assert timing_cache_path(tmp_path, dataclasses.replace(DEVICE, gpu_name="Orin (nvgpu)", compute_capability="8.7")) != a


# ---------------------------------------------------------------------------------------------------------------------
# ONNX identity and precision


def test_onnx_precision_from_metadata_and_graph(tmp_path: Path) -> None:
    assert precision_from_onnx(_graph_onnx(tmp_path / "a.onnx")) == "fp32"
    assert precision_from_onnx(_graph_onnx(tmp_path / "b.onnx", kind="fp16")) == "fp16"
    assert precision_from_onnx(_graph_onnx(tmp_path / "c.onnx", kind="int8")) == "int8"
    # the exporter's record wins over the graph scan (export/onnx_graph.py writes jarrn.precision)
    assert precision_from_onnx(_graph_onnx(tmp_path / "d.onnx", precision_meta="FP16")) == "fp16"


def test_a_precision_the_exporter_never_produces_is_refused_naming_the_ones_it_does(tmp_path: Path) -> None:
    with pytest.raises(EngineFileError, match=r"m.engine.json: engine manifest: precision 'fp8' is not one the "
                                              r"exporter produces \(fp32, fp16, int8\)"):
        EngineManifest.from_json(_manifest(precision="fp8").to_json(), "m.engine.json")
    with pytest.raises(EngineFileError, match=r"b.onnx \(metadata 'jarrn.precision'\): precision 'bf16' is not one"):
        precision_from_onnx(_graph_onnx(tmp_path / "b.onnx", precision_meta="bf16"))


def test_build_engine_refuses_a_graph_of_a_precision_it_never_produces_in_one_line(tmp_path: Path) -> None:
    result = _build_engine("--onnx", str(_graph_onnx(tmp_path / "m.onnx", precision_meta="fp4")))
    assert result.returncode == 3, result.stderr
    assert "precision 'fp4' is not one the exporter produces (fp32, fp16, int8)" in _one_error_line(result)
    assert not (tmp_path / "m.engine").exists()


def test_onnx_sha256_follows_content(tmp_path: Path) -> None:
    a = _graph_onnx(tmp_path / "a.onnx")
    b = _graph_onnx(tmp_path / "b.onnx")
    c = _graph_onnx(tmp_path / "c.onnx", kind="fp16")
    assert onnx_sha256(a) == onnx_sha256(b) != onnx_sha256(c)


# ---------------------------------------------------------------------------------------------------------------------
# compatibility and file checks (what the runtime does before deserialising)


def test_same_machine_is_compatible() -> None:
    check_compatible(_manifest(), DEVICE, "m.engine")


@pytest.mark.parametrize(
    ("here", "says"),
    [
        (dataclasses.replace(DEVICE, tensorrt_version="10.9.0.34"), "TensorRT 10.8.0.43, this machine has TensorRT 10.9.0.34"),
        (dataclasses.replace(DEVICE, gpu_name="NVIDIA A100-SXM4-80GB", compute_capability="8.0"), "NVIDIA A100-SXM4-80GB"),
        (dataclasses.replace(DEVICE, gpu_name="NVIDIA GeForce RTX 4080"), "NVIDIA GeForce RTX 4080 (compute capability 8.9)"),
    ],
)
def test_other_gpu_or_tensorrt_asks_for_rebuild_with_exact_command(here: DeviceInfo, says: str) -> None:
    with pytest.raises(EngineMismatchError) as err:
        check_compatible(_manifest(), here, "/srv/jarrn_fp16.engine")
    message = str(err.value)
    assert says in message and "not portable" in message
    command = rebuild_command(_manifest(), "/srv/jarrn_fp16.engine")
    assert message.endswith(command)
    assert command == ("jarrn build-engine --onnx /models/jarrn_fp16.onnx --out /srv/jarrn_fp16.engine "
                       "--flavour tensorrt --min 1x64x64 --opt 1x320x320 --max 4x384x1280 --opt-level 3 --workspace 4096")


def test_rebuild_command_parses_back_to_the_same_build() -> None:
    from jarrn_deploy.export.build_engine import parse_args

    args = parse_args(shlex.split(rebuild_command(_manifest(), "out.engine"))[2:])
    assert Profile.parse(args.min, args.opt, args.max) == PROFILE
    assert BuildOptions(args.opt_level, args.workspace) == OPTIONS
    assert str(args.onnx) == "/models/jarrn_fp16.onnx" and str(args.out) == "out.engine"


def test_engine_file_checks(tmp_path: Path) -> None:
    engine, manifest = _write_engine(tmp_path)
    assert check_engine_file(engine, manifest) == engine.read_bytes()
    with pytest.raises(EngineFileError, match="no such engine file.*Rebuild it with: jarrn build-engine"):
        check_engine_file(tmp_path / "other.engine", manifest)
    with pytest.raises(EngineFileError, match="ONNX model, not a TensorRT engine.*from_onnx"):
        check_engine_file(_graph_onnx(tmp_path / "model.onnx"), None)
    engine.write_bytes(engine.read_bytes()[:3000])  # truncated copy
    with pytest.raises(EngineFileError, match="3000 bytes but its manifest records 5000.*truncated"):
        check_engine_file(engine, manifest)
    engine.write_bytes(b"\x01plan" * 1000)  # same size, other content
    with pytest.raises(EngineFileError, match="sha256"):
        check_engine_file(engine, manifest)
    check_engine_file(engine, manifest, verify_hash=False)
    engine.write_bytes(b"")
    with pytest.raises(EngineFileError, match="too small to be a TensorRT engine"):
        check_engine_file(engine, None)


def test_preflight_checks_manifest_before_reading_the_engine(tmp_path: Path) -> None:
    engine, manifest = _write_engine(tmp_path)
    got_manifest, data = preflight_engine(engine, DEVICE)
    assert got_manifest == manifest and data == engine.read_bytes()
    engine.write_bytes(b"garbage")  # corrupt AND foreign: the mismatch is reported first, with the rebuild command
    with pytest.raises(EngineMismatchError, match="rebuild it from the ONNX here with: jarrn build-engine"):
        preflight_engine(engine, dataclasses.replace(DEVICE, tensorrt_version="11.4.0.106"))
    with pytest.raises(EngineFileError, match="too small"):
        preflight_engine(engine, DEVICE)


def test_preflight_without_manifest(tmp_path: Path) -> None:
    engine = tmp_path / "trtexec.plan"
    engine.write_bytes(b"p" * 4096)
    with pytest.raises(EngineFileError, match="no manifest trtexec.plan.json.*require_manifest=False"):
        preflight_engine(engine, DEVICE)
    assert preflight_engine(engine, DEVICE, require_manifest=False) == (None, b"p" * 4096)
    with pytest.raises(EngineFileError, match="no such engine file"):
        preflight_engine(tmp_path / "missing.engine", DEVICE)
    (tmp_path / "bad.engine").write_bytes(b"p" * 4096)
    (tmp_path / "bad.engine.json").write_text("{not json")
    with pytest.raises(EngineFileError, match="not valid JSON"):
        preflight_engine(tmp_path / "bad.engine", DEVICE)


# ---------------------------------------------------------------------------------------------------------------------
# trtexec


def test_trtexec_flags_per_target() -> None:
    trt10 = trtexec_command("desktop-trt10", "m.onnx", "m.engine", PROFILE, OPTIONS, "tc.cache")
    trt11 = trtexec_command("desktop-trt11", "m.onnx", "m.engine", PROFILE, OPTIONS, "tc.cache")
    jetson = trtexec_command("jetson-trt10", "m.onnx", "m.engine", PROFILE, OPTIONS, "tc.cache")
    assert trt10[0] == "trtexec" and jetson[0] == "/usr/src/tensorrt/bin/trtexec"
    assert "--stronglyTyped" in trt10 and "--stronglyTyped" in jetson and "--stronglyTyped" not in trt11
    for argv in (trt10, trt11, jetson):
        assert "--minShapes=rgb:1x3x64x64,sparse_depth:1x1x64x64" in argv
        assert "--optShapes=rgb:1x3x320x320,sparse_depth:1x1x320x320" in argv
        assert "--maxShapes=rgb:4x3x384x1280,sparse_depth:4x1x384x1280" in argv
        assert "--builderOptimizationLevel=3" in argv and "--memPoolSize=workspace:4096M" in argv
        assert "--timingCacheFile=tc.cache" in argv and "--saveEngine=m.engine" in argv
        assert not {"--fp16", "--int8", "--best", "--workspace=4096"} & set(argv)
    with pytest.raises(ValueError, match="trtexec target"):
        trtexec_command("windows", "m.onnx", "m.engine", PROFILE, OPTIONS)


def test_trtexec_text_has_three_targets_and_benchmarks() -> None:
    text = trtexec_commands_text("m.onnx", "m.engine", PROFILE, OPTIONS, "/cache")
    assert text.count("--saveEngine=m.engine") == 3 and text.count("--loadEngine=m.engine") == 3
    assert "TensorRT 11" in text and "Jetson" in text and "/cache/timing_jetson-trt10.cache" in text


# ---------------------------------------------------------------------------------------------------------------------
# build_engine.py as a user runs it (subprocess; TensorRT hidden so the test means the same on every machine)

_HIDE_LIBRARIES = (
    "import runpy, sys; [sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',') if m]; "
    "sys.argv = ['export/build_engine.py'] + sys.argv[2:]; runpy.run_path('export/build_engine.py', run_name='__main__')"
)


def _build_engine(*args: str, hide: str = "tensorrt,tensorrt_rtx") -> subprocess.CompletedProcess:
    """Run build_engine.py as a user would, with the named modules hidden (so the test means the same everywhere)."""
    cmd = [sys.executable, "-c", _HIDE_LIBRARIES, hide, *args] if hide else [sys.executable, "export/build_engine.py", *args]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0][len("error: "):]


def test_build_engine_without_any_tensorrt_says_how_to_get_it(tmp_path: Path) -> None:
    onnx_path = _graph_onnx(tmp_path / "m.onnx")
    result = _build_engine("--onnx", str(onnx_path))
    assert result.returncode == 5, result.stderr
    message = _one_error_line(result)
    assert message == TENSORRT_INSTALL_HINT
    assert "nvcr.io/nvidia/tensorrt" in message and "JetPack" in message and "pip install tensorrt" in message
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize(("flavour", "hide", "hint"), [("tensorrt", "tensorrt", TENSORRT_INSTALL_HINT),
                                                       ("tensorrt-rtx", "tensorrt_rtx", TENSORRT_RTX_INSTALL_HINT)])
def test_build_engine_missing_flavour_names_its_install(tmp_path: Path, flavour: str, hide: str, hint: str) -> None:
    result = _build_engine("--onnx", str(_graph_onnx(tmp_path / "m.onnx")), "--flavour", flavour, hide=hide)
    assert result.returncode == 5 and _one_error_line(result) == hint
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("tensorrt") is not None, reason="tensorrt installed")
def test_build_engine_script_runs_by_its_path(tmp_path: Path) -> None:
    result = _build_engine("--onnx", str(_graph_onnx(tmp_path / "m.onnx")), "--flavour", "tensorrt", hide="")
    assert result.returncode == 5 and _one_error_line(result) == TENSORRT_INSTALL_HINT


def test_build_engine_print_trtexec_needs_no_tensorrt() -> None:
    result = _build_engine("--onnx", "artifacts/jarrn_fp16.onnx", "--max", "2x480x640", "--print-trtexec")
    assert result.returncode == 0, result.stderr
    assert "--maxShapes=rgb:2x3x480x640,sparse_depth:2x1x480x640" in result.stdout
    assert "--saveEngine=artifacts/jarrn_fp16.engine" in result.stdout and "trtexec" in result.stdout


def test_build_engine_print_recipe_for_tensorrt_rtx() -> None:
    result = _build_engine("--onnx", "m.onnx", "--flavour", "tensorrt-rtx", "--compute-capability", "8.6,89",
                           "--print-trtexec")
    assert result.returncode == 0, result.stderr
    assert "\ntensorrt_rtx \\\n    --onnx=m.onnx" in result.stdout and "trtexec" not in result.stdout
    text = result.stdout
    assert "--computeCapabilities=86,89" in text and "--saveEngine=m.engine" in text and "--skipInference" in text
    assert "--maxShapes=rgb:4x3x384x1280,sparse_depth:4x1x384x1280" in text and "--timingCacheFile" not in text
    assert "--runtimeCacheFile=" in text and "--loadEngine=m.engine" in text
    portable = _build_engine("--onnx", "m.onnx", "--flavour", "tensorrt-rtx", "--print-trtexec")
    assert "--computeCapabilities" not in portable.stdout and "8.0 8.6 8.9 12.0 12.1" in portable.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--onnx", "missing.onnx"], 3, "--onnx: no such file missing.onnx"),
        (["--onnx", "m.onnx", "--min", "1x0x64"], 2, "--min: batch, height and width must be positive"),
        (["--onnx", "m.onnx", "--opt", "8x320x320"], 2, "opt batch 8 is larger than max batch 4"),
        (["--onnx", "m.onnx", "--opt-level", "9"], 2, "--opt-level"),
        (["--onnx", "m.onnx", "--compute-capability", "9.0"], 2,
         "--compute-capability: '9.0' is not a TensorRT-RTX target; expected 'portable' or a comma-separated list of "
         "7.5, 8.0, 8.6, 8.9, 12.0, 12.1; 9.0 is Hopper (H100/H200/GH200): use standard TensorRT"),
        (["--onnx", "m.onnx", "--compute-capability", "8.6,sm_87"], 2, "'sm_87' is not a TensorRT-RTX target"),
        (["--onnx", "m.onnx", "--compute-capability", "banana"], 2, "'banana' is not a TensorRT-RTX target"),
        (["--onnx", "m.onnx", "--flavour", "tensorrt", "--compute-capability", "8.6"], 2,
         "--compute-capability: only for --flavour tensorrt-rtx"),
        (["--onnx", "m.onnx", "--flavour", "tensorrt", "--runtime-cache", "x.cache"], 2,
         "--runtime-cache: only for --flavour tensorrt-rtx"),
    ],
)
def test_build_engine_bad_arguments_one_line(args: list[str], code: int, says: str) -> None:
    result = _build_engine(*args)
    assert result.returncode == code, result.stderr
    assert says in _one_error_line(result), result.stderr


def test_build_engine_unreadable_onnx_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not really protobuf" * 10)
    result = _build_engine("--onnx", str(bad), "--flavour", "tensorrt-rtx", hide="")
    assert result.returncode == 3 and f"--onnx: {bad} could not be read as ONNX" in _one_error_line(result)
    assert not (tmp_path / "bad.engine").exists()


# ---------------------------------------------------------------------------------------------------------------------
# TensorRT-RTX: compute-capability targets, flavour-aware checks


def test_compute_capability_spellings_and_portable_default() -> None:
    from jarrn_deploy.export.engine.flavours import RTX_PORTABLE_TARGETS, parse_compute_capabilities

    assert parse_compute_capabilities(None) == parse_compute_capabilities("portable") == RTX_PORTABLE_TARGETS
    assert parse_compute_capabilities("sm_120, 86,SM89,8.6") == ("8.6", "8.9", "12.0")
    assert parse_compute_capabilities("7.5") == ("7.5",)


@pytest.mark.parametrize(("targets", "cc", "runs"), [
    (("8.0", "8.6", "8.9", "12.0", "12.1"), "8.0", True),
    (("8.0", "8.6", "8.9", "12.0", "12.1"), "12.3", True),  # portable engines also load on newer Blackwell RTX
    (("8.0", "8.6", "8.9", "12.0", "12.1"), "9.0", False),
    (("8.0", "8.6", "8.9", "12.0", "12.1"), "8.7", False),
    (("8.0", "8.6", "8.9", "12.0", "12.1"), "10.0", False),
    (("8.6",), "8.9", False),
    (("8.6",), "12.3", False),
])
def test_rtx_engine_targets(targets: tuple[str, ...], cc: str, runs: bool) -> None:
    from jarrn_deploy.export.engine.flavours import rtx_runs_on

    assert rtx_runs_on(targets, cc) is runs


def test_rtx_manifest_checks_targets_not_gpu_model() -> None:
    rtx = _manifest(flavour="tensorrt-rtx", tensorrt_version="1.7.1.116", gpu_name="", compute_capability="",
                    compute_capabilities=["8.6", "8.9"])
    check_compatible(rtx, DeviceInfo("NVIDIA GeForce RTX 3060", "8.6", "1.7.1.116", "tensorrt-rtx"), "m.engine")
    with pytest.raises(EngineMismatchError, match=r"NVIDIA H200 has compute capability 9\.0, which this TensorRT-RTX "
                                                  r"engine does not target \(targets 8\.6, 8\.9\); Hopper"):
        check_compatible(rtx, DeviceInfo("NVIDIA H200", "9.0", "1.7.1.116", "tensorrt-rtx"), "m.engine")
    with pytest.raises(EngineMismatchError, match=r"built with TensorRT-RTX 1\.7\.1\.116, this machine has "
                                                  r"TensorRT-RTX 1\.8\.0"):
        check_compatible(rtx, DeviceInfo("NVIDIA GeForce RTX 3060", "8.6", "1.8.0", "tensorrt-rtx"), "m.engine")
    with pytest.raises(EngineMismatchError, match=r"this is a TensorRT-RTX engine, it cannot be loaded with TensorRT"):
        check_compatible(rtx, DEVICE, "m.engine")
    assert rebuild_command(rtx, "m.engine").endswith("--flavour tensorrt-rtx --min 1x64x64 --opt 1x320x320 --max "
                                                     "4x384x1280 --opt-level 3 --workspace 4096 --compute-capability 8.6,8.9")


def test_tensorrt_rtx_recipe() -> None:
    from jarrn_deploy.export.engine.recipes import tensorrt_rtx_command

    argv = tensorrt_rtx_command("m.onnx", "m.engine", PROFILE, ("8.6",))
    assert argv[0] == "tensorrt_rtx" and "--computeCapabilities=86" in argv and "--skipInference" in argv
    assert not {"--fp16", "--int8", "--stronglyTyped"} & set(argv)
    assert not any(a.startswith("--timingCacheFile") for a in argv)


def test_manifest_version_1_files_still_load_as_tensorrt(tmp_path: Path) -> None:
    data = json.loads(_manifest().to_json())
    data["manifest_version"] = 1
    for key in ("flavour", "compute_capabilities"):
        data.pop(key)
    manifest = EngineManifest.from_json(json.dumps(data))
    assert manifest.flavour == "tensorrt" and manifest.targets == ("8.9",)
