"""Benchmark rows come from the registries: backends (runtime/backends/registry.py), precisions (export/precisions.py),
PyTorch options (TorchBackendOptions); engines are built by calling the engine builder, not a subprocess."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jarrn_deploy.benchmarks import run
from jarrn_deploy.benchmarks.rows import Row, applicable_rows, precisions_of, row_backends, row_reason
from jarrn_deploy.errors import UnavailableError, UsageError
from jarrn_deploy.export import precision_specs
from jarrn_deploy.export.precisions import PRECISIONS
from jarrn_deploy.runtime.backends import registry
from jarrn_deploy.runtime.backends.options import TorchBackendOptions

FAKE_REASON = "FakeVINO is not installed: `pip install fakevino`"


@pytest.fixture()
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> registry.BackendSpec:
    """A CPU backend running ONNX files, added to the registry as one record (like OpenVINO), not installed here."""
    spec = dataclasses.replace(registry.BACKENDS["openvino"], name="fakevino", label="FakeVINO",
                               missing=lambda: FAKE_REASON)
    monkeypatch.setitem(registry.BACKENDS, "fakevino", spec)
    return spec


def test_a_backend_added_to_the_registry_gets_rows_labels_and_its_missing_reason(fake_backend) -> None:  # noqa: ANN001
    assert "fakevino" in row_backends()
    rows = applicable_rows(["fakevino"], PRECISIONS)
    assert [r.key for r in rows] == [f"fakevino:{p}" for p in PRECISIONS]  # an ONNX backend runs every precision
    assert Row("fakevino", "int8").label == "FakeVINO INT8"
    assert row_reason(Row("fakevino", "fp32"), "cpu") == f"unavailable: {FAKE_REASON}"
    settings = run.resolve_args(run.build_parser().parse_args(["--backends", "fakevino", "--precisions", "fp32"]))
    planned, reasons = run.plan_rows(settings, "cpu")
    assert [r.key for r in planned] == ["torch:fp32", "fakevino:fp32"]  # the baseline always comes first
    assert reasons == {"fakevino:fp32": f"unavailable: {FAKE_REASON}"}


def test_openvino_has_fp32_and_int8_rows_on_the_cpu_only() -> None:
    rows = {r.key for r in applicable_rows(["openvino"], ("fp32", "int8"))}
    assert rows == {"openvino:fp32", "openvino:int8"}
    missing = registry.BACKENDS["openvino"].missing()
    assert row_reason(Row("openvino", "int8"), "cpu") == (None if missing is None else f"unavailable: {missing}")
    assert "runs on the CPU" in row_reason(Row("openvino", "fp32"), "cuda")
    assert Row("openvino", "fp32").options("cpu", threads=2) == registry.BACKENDS["openvino"].options_type(threads=2)


def test_pytorch_rows_take_their_options_from_torch_backend_options() -> None:
    assert precisions_of("torch") == ("fp32", "fp16")  # what TorchBackendOptions accepts: no INT8 row
    assert Row("torch-compile", "fp16").options("cuda:1") == TorchBackendOptions(
        precision="fp16", compile=True, channels_last=True, device="cuda:1")
    assert Row("torch", "fp32").options("cpu") == TorchBackendOptions(device="cpu")
    with pytest.raises(UsageError, match="needs a CUDA device") as raised:
        TorchBackendOptions(compile=True).check_device("cpu")
    assert row_reason(Row("torch-compile", "fp32"), "cpu") == f"not measured on CPU: {raised.value}"
    assert Row("torch", "fp16").label == "PyTorch eager FP16 autocast + channels-last"


def test_engine_rows_need_a_gpu_and_name_their_flavour() -> None:
    assert Row("tensorrt-rtx", "fp16").options("cuda").flavour == "tensorrt-rtx"
    reason = row_reason(Row("tensorrt-rtx", "fp16"), "cpu")
    assert reason.startswith("unavailable:") and ("NVIDIA GPU" in reason or "TensorRT" in reason)


def test_precision_tolerance_comes_from_the_precision_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from jarrn_deploy.benchmarks.bench_report import _precision_targets

    monkeypatch.setitem(precision_specs.PRECISION_SPECS, "int8",
                        dataclasses.replace(precision_specs.PRECISION_SPECS["int8"], rmse_rel=0.25))

    def entry(key: str, rmse: float) -> dict:
        backend, precision = key.split(":")
        return {"key": key, "precision": precision, "label": Row(backend, precision).label,
                "accuracy": {"kitti_02": {"vs_gt": {"rmse": rmse}}}}

    targets = _precision_targets([entry("torch:fp32", 1.0), entry("openvino:int8", 1.2), entry("openvino:fp32", 1.0)])
    assert [(t["row"], t["tolerance"], t["met"]) for t in targets] == [("openvino:int8", 0.25, True)]


def _fake_build(calls: list, fail: str | None = None):  # noqa: ANN202
    def build_engine(onnx, out=None, *, flavour=None, profile=None, force=False, **_):  # noqa: ANN001, ANN202
        calls.append((Path(onnx).name, Path(out).name, flavour, profile, force))
        if fail == flavour:
            raise UnavailableError(f"{flavour} is not installed: pip install {flavour}")
        Path(out).write_bytes(b"engine")
        return dataclasses.make_dataclass("Built", ["engine_path"])(Path(out))

    return build_engine


def test_run_builds_each_engine_row_by_calling_build_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from jarrn_deploy.export.engine import build
    from jarrn_deploy.export.engine.profile import Profile

    calls: list = []
    monkeypatch.setattr(build, "build_engine", _fake_build(calls, fail="tensorrt-rtx"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("an engine build ran as a subprocess"))
    graph = tmp_path / "jarrn_fp16.onnx"
    graph.write_bytes(b"onnx")
    rows = [Row("torch", "fp32"), Row("tensorrt", "fp16"), Row("tensorrt-rtx", "fp16"), Row("tensorrt", "int8")]
    reasons: dict[str, str] = {}
    profile = ("1x64x64", "1x320x320", "4x384x1280")
    engines = run.prepare_engines(rows, reasons, {"fp16": graph}, [], profile, rebuild=True)
    assert engines == {"tensorrt:fp16": str(tmp_path / "jarrn_fp16.tensorrt.engine")}
    wanted = Profile.parse(*profile)
    assert calls == [("jarrn_fp16.onnx", "jarrn_fp16.tensorrt.engine", "tensorrt", wanted, True),
                     ("jarrn_fp16.onnx", "jarrn_fp16.tensorrt-rtx.engine", "tensorrt-rtx", wanted, True)]
    assert reasons == {"tensorrt-rtx:fp16": "unavailable: the tensorrt-rtx engine build failed: tensorrt-rtx is not "
                                            "installed: pip install tensorrt-rtx"}


def test_the_device_check_and_run_label_rows_alike() -> None:
    from jarrn_deploy.benchmarks import device_check as dc

    steps = [s for s in dc.build_plan(dc.package_environment()) if s.row]
    assert steps and all(s.title.startswith(Row.from_key(s.row).label + ", ") for s in steps)
