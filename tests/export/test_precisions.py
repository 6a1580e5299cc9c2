"""The precision registry: complete and consistent records, and the one reader of a file's precision (ONNX metadata,
ONNX graph, engine manifest) on tiny hand-made graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jarrn_deploy.errors import InputError, UsageError
from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path
from jarrn_deploy.export.precisions import (
    PRECISION_SPECS,
    PRECISIONS,
    UNKNOWN,
    artifact_precision,
    load_function,
    precision_spec,
)

# ---------------------------------------------------------------------------------------------------------------------
# the records


def test_every_precision_has_one_record_under_its_own_name_in_choice_order() -> None:
    assert PRECISIONS[:3] == ("fp32", "fp16", "int8")  # today's order; a new precision comes after
    assert list(PRECISION_SPECS) == list(PRECISIONS)
    assert all(spec.name == name for name, spec in PRECISION_SPECS.items())
    assert len({spec.label for spec in PRECISION_SPECS.values()}) == len(PRECISIONS)


def test_every_precision_has_a_tolerance_and_the_measured_values_are_kept() -> None:
    for spec in PRECISION_SPECS.values():
        assert spec.max_abs_m is not None or spec.rmse_rel is not None, spec.name
    assert precision_spec("fp32").max_abs_m == 1e-3
    assert (precision_spec("fp16").rmse_rel, precision_spec("int8").rmse_rel) == (0.02, 0.05)
    assert precision_spec("fp16").tolerance_text() == "RMSE <= +2% per frame"
    assert precision_spec("fp32").tolerance_text() == "max abs <= 0.001 m"


def test_every_converter_and_library_check_imports_and_only_fp32_has_none() -> None:
    for spec in PRECISION_SPECS.values():
        assert (spec.converter is None) == (spec.library is None) == (spec.conversion is None) == (spec.name == "fp32")
        if spec.converter is not None:
            assert callable(load_function(spec.converter)) and callable(load_function(spec.library))
    assert precision_spec("int8").needs_calibration and not precision_spec("fp16").needs_calibration


def test_compute_capability_floors_grow_with_the_reduction() -> None:
    floors = [PRECISION_SPECS[n].min_compute_capability for n in PRECISIONS]
    assert floors[0] is None and floors[1:] == sorted(floors[1:])


def test_an_unknown_precision_is_refused_naming_the_flag_and_the_choices() -> None:
    with pytest.raises(UsageError, match=rf"^--precisions: expected one of {', '.join(PRECISIONS)}, got 'fp7'$"):
        precision_spec("fp7", "--precisions")


def test_the_export_estimates_come_from_the_records() -> None:
    from jarrn_deploy.export.estimates import MEASURED_S

    assert all(MEASURED_S[name] == spec.export_s for name, spec in PRECISION_SPECS.items())


def test_the_library_check_refuses_a_precision_outside_the_registry() -> None:
    from jarrn_deploy.export.export_errors import ExportError
    from jarrn_deploy.export.precision import require_backend

    assert require_backend("fp32") == "none"
    assert require_backend("int8") in ("modelopt", "onnxruntime")
    with pytest.raises(ExportError, match=f"precision: expected one of {', '.join(PRECISIONS)}, got 'fp7'"):
        require_backend("fp7")


# ---------------------------------------------------------------------------------------------------------------------
# reading a file's precision


def _qdq(zero_point: np.ndarray | None, **quantize_attrs) -> tuple[list, list]:
    """sparse_depth -> QuantizeLinear -> DequantizeLinear -> depth, with the given zero point."""
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "scale")]
    inputs = ["sparse_depth", "scale"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(zero_point, "zp"))
        inputs.append("zp")
    return inits, [helper.make_node("QuantizeLinear", inputs, ["q"], **quantize_attrs),
                   helper.make_node("DequantizeLinear", ["q", *inputs[1:]], ["depth"])]


def _onnx(path: Path, kind: str = "fp32", metadata: str | None = None, opset: int = 17) -> Path:
    sparse = helper.make_tensor_value_info("sparse_depth", TensorProto.FLOAT, ["batch", 1, "height", "width"])
    depth = helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", 1, "height", "width"])
    inits: list = []
    if kind == "fp16":
        nodes = [helper.make_node("Cast", ["sparse_depth"], ["h"], to=TensorProto.FLOAT16),
                 helper.make_node("Cast", ["h"], ["depth"], to=TensorProto.FLOAT)]
    elif kind == "int8":
        inits, nodes = _qdq(np.array(0, np.int8))
    elif kind == "uint8-default":  # no zero point: ONNX quantizes to uint8
        inits, nodes = _qdq(None)
    elif kind == "int16":
        inits, nodes = _qdq(np.array(0, np.int16))
    elif kind == "fp8":
        inits, nodes = _qdq(None, output_dtype=TensorProto.FLOAT8E4M3FN)
    else:
        nodes = [helper.make_node("Identity", ["sparse_depth"], ["depth"])]
    graph = helper.make_graph(nodes, "g", [sparse], [depth], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if metadata is not None:
        helper.set_model_props(model, {"jarrn.precision": metadata})
    onnx.save(model, str(path))
    return path


def test_an_onnx_file_s_metadata_record_wins_over_its_graph(tmp_path: Path) -> None:
    assert artifact_precision(_onnx(tmp_path / "m.onnx", "fp32", metadata="int8")) == "int8"
    assert artifact_precision(_onnx(tmp_path / "n.onnx", "fp32", metadata=" FP16 ")) == "fp16"


@pytest.mark.parametrize(("kind", "expected"), [("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8"),
                                                ("uint8-default", "int8")])
def test_an_onnx_file_without_a_record_is_read_from_its_graph(tmp_path: Path, kind: str, expected: str) -> None:
    assert artifact_precision(_onnx(tmp_path / f"{kind}.onnx", kind)) == expected


@pytest.mark.parametrize(("kind", "opset"), [("int16", 21), ("fp8", 21)])
def test_a_quantize_linear_to_another_type_is_not_read_as_int8(tmp_path: Path, kind: str, opset: int) -> None:
    path = _onnx(tmp_path / f"{kind}.onnx", kind, opset=opset)
    onnx.checker.check_model(str(path))  # a valid graph, just not an INT8 one
    assert artifact_precision(path) == UNKNOWN


def test_a_record_naming_no_precision_is_refused_naming_the_file_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"b.onnx \(metadata 'jarrn.precision'\): precision 'bf16' is not one the "
                                         rf"exporter produces \({', '.join(PRECISIONS)}\)"):
        artifact_precision(_onnx(tmp_path / "b.onnx", metadata="bf16"))


def test_an_engine_s_precision_is_its_manifest_s_and_unknown_without_one(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    assert artifact_precision(engine) == UNKNOWN
    EngineManifest(
        onnx_path="m.onnx", onnx_sha256="a" * 64, precision="int8", tensorrt_version="10.8.0.43",
        gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9",
        profile={"min": [1, 64, 64], "opt": [1, 320, 320], "max": [1, 384, 1280]},
        build={"opt_level": 3, "workspace_mib": 4096}, cache_key="k" * 64, engine_file="m.engine",
        engine_sha256="", engine_bytes=4, contract_version="1", created_utc="2026-01-01T00:00:00Z",
    ).save(manifest_path(engine))
    assert artifact_precision(engine) == "int8"


def test_a_missing_or_unreadable_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothere.onnx: no such file"):
        artifact_precision(tmp_path / "nothere.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff not protobuf")
    with pytest.raises(InputError, match=r"bad.onnx: not a readable ONNX file"):
        artifact_precision(bad)
