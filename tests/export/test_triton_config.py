"""One Triton config builder: ``jarrn serve``'s Python-backend repository and ``export/triton_repo.py``'s repositories
serve the same model name with the same tensors; the model name and the engine suffixes are defined once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason='needs the serve extra: pip install -e ".[serve]"')

import onnx  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from jarrn_deploy.errors import UsageError  # noqa: E402
from jarrn_deploy.export.triton_config import MODEL_NAME, model_config  # noqa: E402
from jarrn_deploy.export.triton_repo import RepositoryOptions, write_repository  # noqa: E402
from jarrn_deploy.model.contract import CONTRACT  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("model", "export", "runtime", "benchmarks", "jarrn_deploy", "examples")


def _onnx(path: Path) -> Path:
    def info(name: str, channels: int):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", channels, "H", "W"])

    node = helper.make_node("Identity", [CONTRACT.sparse_name], [CONTRACT.depth_name])
    graph = helper.make_graph([node], "g", [info(CONTRACT.rgb_name, 3), info(CONTRACT.sparse_name, 1)],
                              [info(CONTRACT.depth_name, 1)])
    onnx.save(helper.make_model(graph), str(path))
    return path


def _parse(model_dir: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _interface(config: model_config_pb2.ModelConfig) -> tuple:
    return (config.name, [(t.name, t.data_type, list(t.dims)) for t in config.input],
            [(t.name, t.data_type, list(t.dims)) for t in config.output])


def test_serve_and_triton_repo_write_the_same_model_interface(tmp_path: Path) -> None:
    from jarrn_deploy.runtime.serve import ServeOptions, write_python_model_repository

    repo_dir = write_repository(_onnx(tmp_path / "m.onnx"), tmp_path / "repo",
                                RepositoryOptions(max_queue_delay_us=700, instances=2, instance_kind="cpu"),
                                log=lambda message: None)
    served = ServeOptions(max_queue_delay_us=700, instances=2, spare_instances=0)
    served_dir = write_python_model_repository(tmp_path / "serve", served)
    repo, served = _parse(repo_dir), _parse(served_dir)
    assert repo_dir.name == served_dir.name == MODEL_NAME
    assert _interface(repo) == _interface(served) == (MODEL_NAME, [
        (CONTRACT.rgb_name, model_config_pb2.TYPE_FP32, [3, -1, -1]),
        (CONTRACT.sparse_name, model_config_pb2.TYPE_FP32, [1, -1, -1])],
        [(CONTRACT.depth_name, model_config_pb2.TYPE_FP32, [1, -1, -1])])
    assert (repo.platform, served.backend) == ("onnxruntime_onnx", "python")
    for config in (repo, served):
        assert config.dynamic_batching.max_queue_delay_microseconds == 700
        assert (config.instance_group[0].count, config.instance_group[0].kind) == (
            2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    assert served.dynamic_batching.default_queue_policy.max_queue_size > 0  # serve bounds its queue; the repo does not
    assert not repo.dynamic_batching.HasField("default_queue_policy")


def test_builder_refuses_an_unknown_instance_kind() -> None:
    with pytest.raises(UsageError, match="--instance-kind: expected one of"):
        model_config(max_batch_size=1, max_queue_delay_us=0, instances=1, instance_kind="tpu", backend="python")


def _module_level_assignments(name: str) -> list[str]:
    found = []
    for folder in PACKAGE_FOLDERS:
        for source in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign) else [])
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found.append(str(source.relative_to(REPO)))
    return found


@pytest.mark.parametrize(("name", "owner"), [("MODEL_NAME", "export/triton_config.py"),
                                             ("ENGINE_SUFFIXES", "export/engine/flavours.py")])
def test_served_model_name_and_engine_suffixes_are_defined_once(name: str, owner: str) -> None:
    assert _module_level_assignments(name) == [owner]
