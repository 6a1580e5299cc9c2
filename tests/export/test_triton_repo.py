"""``export/triton_repo.py``: Triton model repositories for plans and ONNX, checked against Triton's own config schema."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason='needs the serve extra: pip install -e ".[serve]"')

import onnx  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from jarrn_deploy.export.engine.compression import ZSTD, compress, is_zstd
from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path
from jarrn_deploy.export.engine.profile import Profile
from jarrn_deploy.export.triton_repo import RepositoryOptions, main, write_repository  # noqa: E402
from jarrn_deploy.model.contract import CONTRACT  # noqa: E402

PROFILE = Profile.parse("1x64x64", "2x320x320", "4x384x1280")


def _onnx(path: Path, batch: int | str = "B", height: int | str = "H", width: int | str = "W") -> Path:
    """A tiny graph with the contract's I/O (depth = sparse_depth), enough for the repository writer."""
    inputs = [helper.make_tensor_value_info(CONTRACT.rgb_name, TensorProto.FLOAT, [batch, 3, height, width]),
              helper.make_tensor_value_info(CONTRACT.sparse_name, TensorProto.FLOAT, [batch, 1, height, width])]
    output = helper.make_tensor_value_info(CONTRACT.depth_name, TensorProto.FLOAT, [batch, 1, height, width])
    node = helper.make_node("Identity", [CONTRACT.sparse_name], [CONTRACT.depth_name])
    onnx.save(helper.make_model(helper.make_graph([node], "jarrn", inputs, [output])), str(path))
    return path


PLAN = b"\x00plan" * 1000


def _engine(tmp_path: Path, profile: Profile = PROFILE, flavour: str = "tensorrt", compressed: bool = False) -> Path:
    """An engine file with its manifest, as ``jarrn build-engine`` (``--compress``) writes them."""
    engine = tmp_path / "jarrn_fp16.engine"
    stored = compress(PLAN) if compressed else PLAN
    engine.write_bytes(stored)
    fields = dict(onnx_path="/models/jarrn_fp16.onnx", onnx_sha256="a" * 64, precision="fp16",
                  tensorrt_version="10.15.1", gpu_name="NVIDIA L4", compute_capability="8.9",
                  profile=profile.to_dict(), build={"opt_level": 3}, cache_key="k" * 64, engine_file=engine.name,
                  engine_bytes=len(PLAN), engine_sha256=hashlib.sha256(PLAN).hexdigest())
    if compressed:
        fields.update(compression=ZSTD, file_bytes=len(stored), file_sha256=hashlib.sha256(stored).hexdigest())
    if "flavour" in EngineManifest.__dataclass_fields__:
        fields["flavour"] = flavour
    EngineManifest(**fields).save(manifest_path(engine))
    return engine


def _parse(model_dir: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _assert_contract_io(config: model_config_pb2.ModelConfig, hw: list[int] = [-1, -1]) -> None:  # noqa: B006
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        (CONTRACT.rgb_name, model_config_pb2.TYPE_FP32, [3, *hw]),
        (CONTRACT.sparse_name, model_config_pb2.TYPE_FP32, [1, *hw]),
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        (CONTRACT.depth_name, model_config_pb2.TYPE_FP32, [1, *hw])]


def test_plan_repository_takes_batch_and_profile_from_the_engine_manifest(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    model_dir = write_repository(engine, tmp_path / "repo", RepositoryOptions(instances=2), log=lambda m: None)
    config = _parse(model_dir)
    assert (config.name, config.platform, config.max_batch_size) == ("jarrn", "tensorrt_plan", 4)
    _assert_contract_io(config)
    assert list(config.dynamic_batching.preferred_batch_size) == [2]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    group = config.instance_group[0]
    assert (group.count, group.kind, list(group.profile)) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU, ["0"])
    assert (model_dir / "1" / "model.plan").read_bytes() == engine.read_bytes()


def test_plan_repository_refuses_a_batch_above_the_profile_and_a_profile_not_starting_at_one(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with pytest.raises(ValueError, match="exceeds the engine profile's max batch 4"):
        write_repository(engine, tmp_path / "repo", RepositoryOptions(max_batch_size=8), log=lambda m: None)
    engine = _engine(tmp_path, Profile.parse("2x64x64", "2x320x320", "4x384x1280"))
    with pytest.raises(ValueError, match="starts at batch 2"):
        write_repository(engine, tmp_path / "repo", log=lambda m: None)
    assert not (tmp_path / "repo" / "jarrn" / "config.pbtxt").exists()


def test_compressed_engine_is_written_as_the_decompressed_plan(tmp_path: Path) -> None:
    pytest.importorskip("zstandard", reason="needs the trt-rtx extra's zstandard")
    engine = _engine(tmp_path, compressed=True)
    said: list[str] = []
    model_dir = write_repository(engine, tmp_path / "repo", log=said.append)
    written = (model_dir / "1" / "model.plan").read_bytes()
    assert is_zstd(engine.read_bytes()) and not is_zstd(written) and written == PLAN
    assert any("zstd-compressed: model.plan holds the decompressed plan" in line for line in said)


def test_damaged_engine_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.write_bytes(PLAN[:-10])
    with pytest.raises(ValueError, match=r"--model: .*truncated or replaced"):
        write_repository(engine, tmp_path / "repo", log=lambda m: None)
    assert not (tmp_path / "repo").exists()


def test_plan_without_manifest_is_refused_with_how_to_get_one(tmp_path: Path) -> None:
    engine = tmp_path / "trtexec.plan"
    engine.write_bytes(b"\x00" * 4096)
    with pytest.raises(ValueError, match="manifest"):
        write_repository(engine, tmp_path / "repo", log=lambda m: None)


@pytest.mark.skipif("flavour" not in EngineManifest.__dataclass_fields__, reason="manifest without engine flavours")
def test_tensorrt_rtx_engine_is_refused_for_tritons_tensorrt_backend(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tensorrt-rtx engine"):
        write_repository(_engine(tmp_path, flavour="tensorrt-rtx"), tmp_path / "repo", log=lambda m: None)


def test_onnx_repository_for_onnxruntime_with_dynamic_batching(tmp_path: Path) -> None:
    model = _onnx(tmp_path / "jarrn_fp32.onnx")
    options = RepositoryOptions(max_queue_delay_us=500, instance_kind="cpu")
    model_dir = write_repository(model, tmp_path / "repo", options, log=lambda m: None)
    config = _parse(model_dir)
    assert (config.platform, config.max_batch_size) == ("onnxruntime_onnx", 8)
    _assert_contract_io(config)
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    assert (model_dir / "1" / "model.onnx").read_bytes() == model.read_bytes()


def test_onnx_tensorrt_accelerator_block_carries_the_profile_for_both_inputs(tmp_path: Path) -> None:
    options = RepositoryOptions(max_batch_size=4, onnx_tensorrt=True, profile_text=("1x64x64", "2x320x320", "4x384x1280"))
    config = _parse(write_repository(_onnx(tmp_path / "m.onnx"), tmp_path / "repo", options, log=lambda m: None))
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
    assert accelerator.parameters["trt_profile_min_shapes"] == (
        f"{CONTRACT.rgb_name}:1x3x64x64,{CONTRACT.sparse_name}:1x1x64x64")
    assert accelerator.parameters["trt_profile_max_shapes"] == (
        f"{CONTRACT.rgb_name}:4x3x384x1280,{CONTRACT.sparse_name}:4x1x384x1280")
    with pytest.raises(ValueError, match="must cover batches 1..8"):
        write_repository(_onnx(tmp_path / "m.onnx"), tmp_path / "repo2",
                         RepositoryOptions(max_batch_size=8, onnx_tensorrt=True), log=lambda m: None)


def test_static_onnx_keeps_its_size_and_a_fixed_batch_is_refused(tmp_path: Path) -> None:
    config = _parse(write_repository(_onnx(tmp_path / "s.onnx", height=384, width=1280), tmp_path / "repo",
                                     log=lambda m: None))
    _assert_contract_io(config, [384, 1280])
    with pytest.raises(ValueError, match="fixes the batch to 2"):
        write_repository(_onnx(tmp_path / "b.onnx", batch=2), tmp_path / "repo", log=lambda m: None)


def test_rewriting_with_another_kind_leaves_one_model_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_repository(_engine(tmp_path), repo, log=lambda m: None)
    write_repository(_onnx(tmp_path / "m.onnx"), repo, log=lambda m: None)
    assert sorted(p.name for p in (repo / "jarrn" / "1").iterdir()) == ["model.onnx"]


def test_command_prints_the_docker_recipe_and_fails_in_one_line_on_bad_input(tmp_path: Path, capsys) -> None:
    model = _onnx(tmp_path / "m.onnx")
    assert main(["--model", str(model), "--out", str(tmp_path / "triton_repo"), "--instance-kind", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "docker run --gpus all --rm -p8000:8000 -p8001:8001 -p8002:8002 -v" in out
    assert "nvcr.io/nvidia/tritonserver:" in out and "tritonserver --model-repository=/models" in out
    assert main(["--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "r")]) == 3
    (tmp_path / "file").write_text("x")
    assert main(["--model", str(model), "--out", str(tmp_path / "file")]) == 4
    assert main(["--model", str(model), "--out", str(tmp_path / "r"), "--instances", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


@pytest.mark.parametrize(("gpus", "kind"), [([], "cpu"), ([("NVIDIA L4", "8.9")], "gpu")])
def test_instance_kind_defaults_to_the_machine_and_the_docker_command_fits_it(tmp_path: Path, capsys, monkeypatch,
                                                                              gpus, kind) -> None:
    import jarrn_deploy.export.gpu_probe

    monkeypatch.setattr(jarrn_deploy.export.gpu_probe, "visible_gpus", lambda: gpus)
    assert main(["--model", str(_onnx(tmp_path / "m.onnx")), "--out", str(tmp_path / "repo")]) == 0
    config = _parse(tmp_path / "repo" / "jarrn")
    group = model_config_pb2.ModelInstanceGroup
    expected = group.KIND_CPU if kind == "cpu" else group.KIND_GPU
    assert config.instance_group[0].kind == expected
    (docker,) = [line for line in capsys.readouterr().out.splitlines() if "docker run" in line]
    assert ("--gpus all" in docker) == (kind == "gpu") and "tritonserver --model-repository=/models" in docker


def test_a_plan_always_gets_gpu_instances_even_on_a_machine_without_one(tmp_path: Path, monkeypatch) -> None:
    import jarrn_deploy.export.gpu_probe

    monkeypatch.setattr(jarrn_deploy.export.gpu_probe, "visible_gpus", lambda: [])
    config = _parse(write_repository(_engine(tmp_path), tmp_path / "repo", log=lambda m: None))
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
