"""The engine checks run before anything CUDA or TensorRT is imported, so each bad file gets its own message on a
machine without a GPU; ``build_engine --compress`` engines are read back transparently.

Real TensorRT-RTX engines of a two-node graph are built here on the CPU (a fraction of a second each). Loading runs in
a child process that reports, per case, the error's class and message and which CUDA / TensorRT modules were
imported by then.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import jarrn_deploy.export.build_engine as build_engine
from jarrn_deploy.export.engine.compression import ZSTD, compress, decompress, is_zstd
from jarrn_deploy.export.engine.manifest import EngineManifest, check_engine_file, manifest_path, rebuild_command
from jarrn_deploy.export.export_errors import EngineFileError
from tests.support import REPO

needs_rtx = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt_rtx not installed")
needs_zstd = pytest.mark.skipif(importlib.util.find_spec("zstandard") is None, reason="zstandard not installed")


def _graph(path: Path) -> Path:
    """depth = sparse_depth + mean(rgb over channels): both inputs used, builds in well under a second."""
    def info(name: str, channels: int):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", channels, "height", "width"])

    nodes = [helper.make_node("ReduceMean", ["rgb"], ["grey"], axes=[1], keepdims=1),
             helper.make_node("Add", ["sparse_depth", "grey"], ["depth"])]
    graph = helper.make_graph(nodes, "g", [info("rgb", 3), info("sparse_depth", 1)], [info("depth", 1)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _build(folder: Path, name: str, *extra: str) -> Path:
    engine = folder / f"{name}.engine"
    args = ["--onnx", str(_graph(folder / f"{name}.onnx")), "--out", str(engine), "--flavour", "tensorrt-rtx",
            "--min", "1x16x16", "--opt", "1x32x32", "--max", "1x64x64", *extra]
    assert build_engine.run(build_engine.parse_args(args)) == 0
    return engine


_LOADER = r"""
import json, sys
from jarrn_deploy.errors import InputError, UnavailableError
from jarrn_deploy.runtime import DepthCompleter
report = []
for path, kwargs in json.loads(sys.argv[1]):
    try:
        DepthCompleter.from_engine(path, **kwargs).close()
        error, kind, message = None, None, ""
    except Exception as exc:
        error, message = type(exc).__name__, str(exc)
        kind = "input" if isinstance(exc, InputError) else "unavailable" if isinstance(exc, UnavailableError) else "other"
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorrt", "tensorrt_rtx", "cuda"))
    report.append({"error": error, "kind": kind, "message": message, "loaded": loaded})
print(json.dumps(report))
"""


def _load_in_child(cases: list[tuple[Path, dict]]) -> list[dict]:
    payload = json.dumps([[str(path), kwargs] for path, kwargs in cases])
    result = subprocess.run([sys.executable, "-c", _LOADER, payload], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(__import__("jarrn_deploy.export.gpu_probe").export.gpu_probe.probe_gpu(0) is not None,
                    reason="a GPU is visible: this pins what a machine without one reports")
@needs_rtx
def test_each_bad_engine_gets_its_own_message_before_any_cuda_import(tmp_path: Path) -> None:
    sound = _build(tmp_path, "sound")
    truncated = _build(tmp_path, "truncated")
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    altered = _build(tmp_path, "altered")
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    altered.write_bytes(bytes(data))
    orphan = _build(tmp_path, "orphan")
    manifest_path(orphan).unlink()

    truncated_report, altered_report, orphan_report, flavour_report, sound_report = _load_in_child([
        (truncated, {}), (altered, {}), (orphan, {}), (sound, {"flavour": "tensorrt"}), (sound, {})])

    assert truncated_report["error"] == "EngineFileError" and truncated_report["kind"] == "input"
    assert "but its manifest records" in truncated_report["message"] and "truncated" in truncated_report["message"]
    assert altered_report["error"] == "EngineFileError" and altered_report["kind"] == "input"
    assert "does not match its manifest's sha256" in altered_report["message"]
    assert orphan_report["error"] == "EngineFileError" and orphan_report["kind"] == "input"
    assert "no manifest orphan.engine.json beside the engine" in orphan_report["message"]
    assert f"jarrn build-engine --onnx MODEL.onnx --out {orphan}" in orphan_report["message"]
    assert "pip install tensorrt" not in orphan_report["message"]
    assert flavour_report["error"] == "EngineMismatchError" and flavour_report["kind"] == "unavailable"
    assert "this is a TensorRT-RTX engine" in flavour_report["message"]
    for report in (truncated_report, altered_report, orphan_report, flavour_report):
        assert report["loaded"] == [], report  # nothing CUDA or TensorRT imported to reach these messages
    # the sound engine passes every check; only then does the missing GPU (or driver, or bindings) stop it
    assert sound_report["kind"] == "unavailable"
    assert sound_report["message"].startswith(f"{sound}: its manifest and file check out, but it cannot run here: ")
    messages = [r["message"] for r in (truncated_report, altered_report, orphan_report, flavour_report, sound_report)]
    assert len(set(messages)) == 5


@needs_rtx
@needs_zstd
def test_compressed_engine_round_trips_and_is_reencoded_without_rebuilding(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    plain = _build(tmp_path, "m")
    plain_manifest = EngineManifest.load(manifest_path(plain))
    plan = plain.read_bytes()
    assert plain_manifest.compression == "" and plain_manifest.file_bytes == 0
    capsys.readouterr()

    _build(tmp_path, "m", "--compress")  # same build, other encoding: re-encoded from the existing plan
    assert "storing it zstd-compressed (no rebuild)" in capsys.readouterr().out
    manifest = EngineManifest.load(manifest_path(plain))
    stored = plain.read_bytes()
    assert is_zstd(stored) and manifest.compression == ZSTD and manifest.cache_key == plain_manifest.cache_key
    assert manifest.file_bytes == len(stored) < len(plan) and manifest.file_sha256 == hashlib.sha256(stored).hexdigest()
    assert manifest.engine_bytes == len(plan) and manifest.engine_sha256 == hashlib.sha256(plan).hexdigest()
    assert check_engine_file(plain, manifest) == plan  # what TensorRT is handed: the plan itself
    assert rebuild_command(manifest, plain).endswith("--compress")

    _build(tmp_path, "m", "--compress")
    assert "up to date" in capsys.readouterr().out
    _build(tmp_path, "m")  # and back
    assert plain.read_bytes() == plan and EngineManifest.load(manifest_path(plain)).compression == ""


@needs_zstd
def test_damaged_compressed_engine_is_refused_with_its_own_message(tmp_path: Path) -> None:
    plan = random.Random(0).randbytes(16384)  # incompressible: the stored file stays above the 1 KiB floor
    stored = compress(plan)
    engine = tmp_path / "m.engine"
    manifest = EngineManifest(
        onnx_path="/m.onnx", onnx_sha256="0" * 64, precision="fp16", tensorrt_version="1.7.1.116", gpu_name="",
        compute_capability="", profile={"min": [1, 16, 16], "opt": [1, 32, 32], "max": [1, 64, 64]},
        build={"opt_level": 3, "workspace_mib": 4096}, cache_key="k", engine_file="m.engine",
        engine_sha256=hashlib.sha256(plan).hexdigest(), engine_bytes=len(plan), flavour="tensorrt-rtx",
        compute_capabilities=["8.6"], compression=ZSTD, file_bytes=len(stored),
        file_sha256=hashlib.sha256(stored).hexdigest())
    assert rebuild_command(manifest, engine).endswith("--compute-capability 8.6 --compress")
    engine.write_bytes(stored)
    assert check_engine_file(engine, manifest) == plan
    engine.write_bytes(stored + b"\0" * 2000)  # replaced by something longer
    with pytest.raises(EngineFileError, match=r"compressed engine is \d+ bytes but its manifest records \d+"):
        check_engine_file(engine, manifest)
    # a manifest that lost its size and hash fields: the decoder still catches a cut frame
    bare = EngineManifest(**{**manifest.__dict__, "file_bytes": 0, "file_sha256": ""})
    engine.write_bytes(stored[:-100])
    with pytest.raises(EngineFileError, match=r"zstd-compressed engine .*\(truncated or corrupt\)\. Rebuild it with: "
                                              r"jarrn build-engine .*--compress"):
        check_engine_file(engine, bare)
    # no manifest at all (require_manifest=False): recognised by the zstd magic number and decompressed
    engine.write_bytes(stored)
    assert check_engine_file(engine, None) == plan
    assert decompress(stored, len(plan)) == plan


@needs_rtx
@pytest.mark.parametrize(("gpus", "refused"), [
    ([("NVIDIA H100 80GB HBM3", "9.0")], r"H100 80GB HBM3 has compute capability 9\.0.*Hopper"),
    ([("Orin (nvgpu)", "8.7")], r"Orin \(nvgpu\) has compute capability 8\.7"),
    ([("NVIDIA H100 80GB HBM3", "9.0"), ("NVIDIA GeForce RTX 4090", "8.9")], None),  # one GPU fits: CUDA decides
])
def test_gpus_listed_by_nvidia_smi_are_checked_before_any_library_import(tmp_path: Path, monkeypatch, gpus, refused):
    import jarrn_deploy.runtime.backends.tensorrt_backend as backend
    from jarrn_deploy.export.export_errors import EngineMismatchError

    engine = _build(tmp_path, "m")
    monkeypatch.setattr(backend, "visible_gpus", lambda: gpus)

    def no_import(self, engine_path, device):
        raise RuntimeError("libraries reached")

    monkeypatch.setattr(backend.TensorRTBackend, "_load_libraries", no_import)
    if refused is None:
        with pytest.raises(RuntimeError, match="libraries reached"):
            backend.TensorRTBackend(engine)
        return
    with pytest.raises(EngineMismatchError, match=refused):
        backend.TensorRTBackend(engine)


def test_installed_version_is_compared_before_the_import_even_when_spelled_shorter(monkeypatch) -> None:
    import jarrn_deploy.runtime.backends.tensorrt_backend as backend
    from jarrn_deploy.export.engine.manifest import EngineManifest
    from jarrn_deploy.export.export_errors import EngineMismatchError

    manifest = EngineManifest(
        onnx_path="/m.onnx", onnx_sha256="0" * 64, precision="fp16", tensorrt_version="10.3.0.30", gpu_name="",
        compute_capability="", profile={"min": [1, 16, 16], "opt": [1, 32, 32], "max": [1, 64, 64]},
        build={"opt_level": 3, "workspace_mib": 4096}, cache_key="k")
    monkeypatch.setattr(backend, "visible_gpus", lambda: [])
    monkeypatch.setattr(backend, "installed_version", lambda flavour: "10.3.0")  # package metadata, shorter
    backend.check_visible_gpus(manifest, "tensorrt", "m.engine")
    monkeypatch.setattr(backend, "installed_version", lambda flavour: "10.8.0")
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0\.30, this machine has TensorRT 10\.8\.0"):
        backend.check_visible_gpus(manifest, "tensorrt", "m.engine")
