"""ONNX export: the contract graph, its metadata, validation, the command and bad-input handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from jarrn_deploy.export.calibration import CalibrationSet, load_calibration
from jarrn_deploy.export.onnx_graph import ExportError, ExportOptions, export_onnx, file_sha256, read_metadata
from jarrn_deploy.export.precision import fp16_backend
from jarrn_deploy.export.to_onnx import main as to_onnx_main
from jarrn_deploy.export.validate import Bounds, ReferenceCache, random_cases, validate_onnx
from jarrn_deploy.model import CONTRACT, Jarrn, MetricJarrn, save_model
from jarrn_deploy.model.contract import CONTRACT_VERSION

from tests.export.onnx_support import TINY, dims_of, io_is_float32, onnx_feeds, run_onnx, torch_depth
from tests.support import REPO
from tests.support import tiny_network as build_tiny_network

ort = pytest.importorskip("onnxruntime")


# ---------------------------------------------------------------------------------------------------------------------
# FP32 graph


def test_graph_has_contract_names_and_dynamic_dims(fp32_export):
    model = onnx.load(str(fp32_export[0]))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == [CONTRACT.rgb_name, CONTRACT.sparse_name]
    assert [o.name for o in model.graph.output] == [CONTRACT.depth_name]
    assert dims_of(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert dims_of(model.graph.input[1]) == ["batch", 1, "height", "width"]
    assert dims_of(model.graph.output[0]) == ["batch", 1, "height", "width"]
    assert io_is_float32(model)
    assert model.opset_import[0].version == 17


def test_rectification_and_contract_ops_are_inside_the_graph(fp32_export):
    ops = {n.op_type for n in onnx.load(str(fp32_export[0])).graph.node}
    assert {"ReduceMax", "Pad", "Softmax", "Sigmoid", "Clip", "Slice", "Conv", "Resize"} <= ops


@pytest.mark.parametrize("batch,height,width", [(2, 75, 130), (1, 64, 64), (3, 100, 333)])
def test_onnxruntime_matches_pytorch(fp32_export, tiny_network, batch, height, width):
    feeds = onnx_feeds(batch, height, width)
    (depth,) = run_onnx(fp32_export[0], feeds)
    expected = torch_depth(tiny_network, feeds)
    assert depth.shape == (batch, 1, height, width) and depth.dtype == np.float32
    assert np.abs(depth - expected).max() <= 1e-3


def test_simplification_folds_nodes_and_stats_are_reported(fp32_export):
    path, stats = fp32_export
    assert stats.nodes["simplified"] < stats.nodes["exported"]
    assert stats.file_bytes == path.stat().st_size > 0
    assert {"tracing MetricJarrn to ONNX (opset 17)", "simplifying with onnxslim", "writing"} <= set(stats.seconds)
    assert not list(path.parent.glob(".*"))  # no temp file left


def test_metadata_records_provenance(fp32_export, tiny_checkpoint):
    meta = read_metadata(fp32_export[0])
    assert meta["checkpoint"] == str(tiny_checkpoint)
    assert meta["checkpoint_sha256"] == file_sha256(tiny_checkpoint)
    assert json.loads(meta["config"]) == TINY.to_dict()
    assert meta["contract_version"] == CONTRACT_VERSION
    assert meta["torch_version"] == torch.__version__
    assert meta["precision"] == "fp32"
    options = json.loads(meta["export_options"])
    assert options["opset"] == 17 and options["static_hw"] is None and options["aux_outputs"] is False
    assert json.loads(meta["node_counts"])["simplified"] > 0


def test_static_size_batch_aux_outputs_and_minmax_normalisation(tmp_path):
    # minmax exports ReduceMin + Where as well; the network stays in memory (no checkpoint file)
    network = build_tiny_network(TINY.widths, seed=2, depth_normalisation="minmax")
    path = export_onnx(network, tmp_path / "static.onnx",
                       ExportOptions(aux_outputs=True, static_hw=(96, 150), static_batch=2))
    model = onnx.load(str(path))
    meta = read_metadata(model)
    assert meta["checkpoint"] == "" and len(meta["weights_sha256"]) == 64
    assert "ReduceMin" in {n.op_type for n in model.graph.node}
    assert [o.name for o in model.graph.output] == [CONTRACT.depth_name, *CONTRACT.aux_names]
    assert dims_of(model.graph.input[0]) == [2, 3, 96, 150]
    feeds = onnx_feeds(2, 96, 150)
    outputs = run_onnx(path, feeds)
    with torch.inference_mode():
        expected = MetricJarrn(network, aux_outputs=True)(*(torch.from_numpy(v) for v in feeds.values()))
    for got, want in zip(outputs, expected):
        assert got.shape == tuple(want.shape) and np.abs(got - want.numpy()).max() <= 1e-3


@pytest.mark.parametrize("height,width", [(75, 130), (130, 260)])
def test_pushpull_fill_exports_and_matches_pytorch_at_any_size(tmp_path_factory, height, width):
    network = build_tiny_network(TINY.widths, seed=3, depth_normalisation="minmax", sparse_fill="pushpull")
    path = tmp_path_factory.getbasetemp() / "pushpull.onnx"
    if not path.exists():
        export_onnx(network, path, ExportOptions())
    feeds = onnx_feeds(2, height, width, seed=height)
    (depth,) = run_onnx(path, feeds)
    assert np.abs(depth - torch_depth(network, feeds)).max() <= 1e-3
    assert "AveragePool" in {n.op_type for n in onnx.load(str(path)).graph.node}


def test_polygraphy_runs_the_graph(fp32_export):
    polygraphy = Path(sys.executable).parent / "polygraphy"
    if not polygraphy.exists():
        pytest.skip("polygraphy command not installed next to this python")
    result = subprocess.run(
        [str(polygraphy), "run", str(fp32_export[0]), "--onnxrt",
         "--input-shapes", "rgb:[1,3,80,100]", "sparse_depth:[1,1,80,100]"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------------------
# FP16



def test_builtin_calibration_set_is_documented_and_well_formed():
    calibration = load_calibration(None)
    assert isinstance(calibration, CalibrationSet) and calibration.sample_count == 12
    assert "real frames" in calibration.description and "synthetic" in calibration.description
    for rgb, sparse in calibration.batches:
        assert rgb.dtype == np.float32 and rgb.shape[1] == 3 and 0.0 <= rgb.min() and rgb.max() <= 1.0
        assert sparse.shape == (rgb.shape[0], 1, *rgb.shape[2:]) and (sparse > 0).any()
    static = load_calibration(None, static_hw=(96, 128), static_batch=2)
    assert all(r.shape == (2, 3, 96, 128) for r, _ in static.batches)


# ---------------------------------------------------------------------------------------------------------------------
# validation


def test_validation_passes_for_fp32_and_reports(fp32_export, tiny_network, tmp_path):
    from jarrn_deploy.export.validate import markdown_table, write_reports

    report = validate_onnx(fp32_export[0], tiny_network, real_frames=False)
    assert report.passed and report.precision == "fp32"
    shapes = {c.shape for c in report.cases}
    assert len({s[0] for s in shapes}) >= 2 and any(s[1] % 64 or s[2] % 64 for s in shapes)
    md, js = write_reports([report], tmp_path / "x.onnx")
    assert "| fp32 |" in md.read_text() and json.loads(js.read_text())["passed"] is True
    assert "PASS" in markdown_table([report])


def test_validation_fails_when_a_bound_is_exceeded(fp32_export, tiny_network):
    report = validate_onnx(fp32_export[0], tiny_network, real_frames=False, bounds=Bounds(max_abs_m={"fp32": 1e-12}))
    assert not report.passed and "exceeds" in report.failures[0]


def test_validation_fails_a_graph_whose_precision_has_no_bound(fp32_export, tiny_network):
    report = validate_onnx(fp32_export[0], tiny_network, real_frames=False, cases=[],
                           bounds=Bounds(max_abs_m={}, rmse_rel={"int8": 0.05}))
    assert report.failures == ["precision fp32: no bound to check it against (bounds are set for int8)"]


def _perturbed(source: Path, target: Path, precision: str | None = None) -> Path:
    """A copy of the graph with the visual head's bias shifted: its coarse depth, and so its depth, is off."""
    model = onnx.load(str(source))
    head = next(n for n in model.graph.node if n.name == "/network/rgb_x_block/rgb_x_block.4/Conv")
    init = next(i for i in model.graph.initializer if i.name == head.input[2])
    init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) + 0.3, init.name))
    if precision:
        for prop in model.metadata_props:
            if prop.key == "jarrn.precision":
                prop.value = precision
    onnx.save(model, str(target))
    return target


def test_validation_fails_on_a_perturbed_graph(fp32_export, tiny_network, tmp_path):
    report = validate_onnx(_perturbed(fp32_export[0], tmp_path / "bad.onnx"), tiny_network, real_frames=False)
    assert not report.passed


def test_rmse_bound_against_ground_truth(fp32_export, tiny_network, tmp_path):
    """An 'fp16' graph whose RMSE vs GT is worse than PyTorch FP32's by more than 2% fails; the true graph passes."""
    case = random_cases([(1, 96, 128)], seed=3)[0]
    reference = ReferenceCache(tiny_network)
    gt = reference.outputs(case, False)[0][0, 0] + np.random.default_rng(0).normal(0, 0.05, (96, 128))
    case.gt = np.clip(gt, 0.1, None).astype(np.float32)
    good = validate_onnx(fp32_export[0], tiny_network, cases=[case], reference=reference)
    assert good.passed and good.cases[0].rmse_m is not None
    bad_path = _perturbed(fp32_export[0], tmp_path / "bad16.onnx", precision="fp16")
    bad = validate_onnx(bad_path, tiny_network, cases=[case], reference=reference)
    assert bad.precision == "fp16" and not bad.passed and "RMSE" in bad.failures[0]


def test_validate_cli_exit_status(fp32_export, tiny_checkpoint, tmp_path):
    bad = _perturbed(fp32_export[0], tmp_path / "bad.onnx")
    script = REPO / "export" / "validate.py"
    args = [sys.executable, str(script), "--no-real-frames", "--checkpoint", str(tiny_checkpoint)]
    failed = subprocess.run([*args, str(bad)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert failed.returncode == 6, failed.stderr  # the check failed (jarrn_deploy.errors.EXIT_CHECK_FAILED)
    assert "FAIL" in failed.stdout and (tmp_path / "bad.validation.md").exists()


# ---------------------------------------------------------------------------------------------------------------------
# command line and bad input


def test_cli_help_works_from_any_directory(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "export" / "to_onnx.py"), "--help"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--checkpoint", "--output", "--precision", "--aux-outputs", "--static", "--opset", "--calibration",
                 "--no-validate", "--prob-activation"):
        assert flag in result.stdout


def test_cli_exports_without_validation(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "sub" / "m.onnx"
    code = to_onnx_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--no-validate", "--quiet",
                         "--static", "64x96", "--aux-outputs"])
    assert code == 0 and out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]
    printed = capsys.readouterr().out
    assert "MB" in printed and "nodes" in printed and "export" in printed


@pytest.fixture()
def instant_export(monkeypatch):
    """export_onnx replaced by one that writes a one-node graph at once and, like torch's exporter, warns about
    constant folding."""
    import warnings

    import jarrn_deploy.export.onnx_graph
    from onnx import TensorProto, helper

    def fake_export(network, path, options, log=None, stats=None):
        warnings.warn("Constant folding - Only steps=1 can be constant folded for opset >= 10 onnx::Slice op.",
                      UserWarning)
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(graph), path)
        return path

    monkeypatch.setattr(jarrn_deploy.export.onnx_graph, "export_onnx", fake_export)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_export_writes_a_triton_repository_for_the_chosen_instance_kind(tiny_checkpoint, tmp_path, capsys, kind):
    out, repo = tmp_path / "m.onnx", tmp_path / "triton_repo"
    assert to_onnx_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--no-validate", "--quiet",
                         "--triton-repo", str(repo), "--instance-kind", kind]) == 0
    config = (repo / "jarrn" / "config.pbtxt").read_text()
    assert f"KIND_{kind.upper()}" in config and (repo / "jarrn" / "1" / "model.onnx").is_file()
    docker = next(line for line in capsys.readouterr().out.splitlines() if "docker run" in line)
    assert ("--gpus all" in docker) == (kind == "gpu")


def test_instance_kind_without_a_triton_repository_is_said_to_do_nothing(instant_export, tiny_checkpoint, tmp_path,
                                                                         capsys):
    assert to_onnx_main(["--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "m.onnx"), "--no-validate",
                         "--instance-kind", "cpu"]) == 0
    assert "warning: --instance-kind has no effect: no --triton-repo is written; ignored" in capsys.readouterr().err


def test_cli_says_first_what_it_will_do_how_long_and_how_to_skip(instant_export, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert to_onnx_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--no-validate"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert f"exporting {tiny_checkpoint} to {out} (fp32): 24 to 85 s on 2 CPU cores" in first

    from jarrn_deploy.export.to_onnx import build_parser, plan_line

    line = plan_line(build_parser().parse_args(["--validation", "full"]), out)
    assert "then a check against PyTorch (full: " in line and "--no-validate skips the check" in line
    assert ": 2 to 5 min on 2 CPU cores" in line and "--validation quick takes 40 s to 2 min" in line


def test_export_estimate_spans_the_measured_runs_and_the_readme_quotes_it(tmp_path):
    from jarrn_deploy.export.estimates import MEASURED_S, about, total
    from jarrn_deploy.export.to_onnx import build_parser, plan_line
    from tests.support import REPO

    default = about(total(MEASURED_S["fp32"], MEASURED_S["quick"]))
    assert default == "1 to 3.5 min"  # reports/first_use/README.md: 1 min 21 s and 3 min 29 s
    assert f": {default} on 2 CPU cores" in plan_line(build_parser().parse_args([]), tmp_path / "m.onnx")
    export_row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `jarrn export`"))
    assert f"| {default}, " in export_row


def test_known_exporter_warnings_hidden_unless_verbose(instant_export, tiny_checkpoint, tmp_path):
    import warnings

    shown = {}
    for flag in ([], ["--verbose"]):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert to_onnx_main(["--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "m.onnx"),
                                 "--no-validate", "--quiet", *flag]) == 0
        shown[bool(flag)] = [str(w.message) for w in seen if "Constant folding" in str(w.message)]
    assert shown[False] == [] and len(shown[True]) == 1


def test_quick_validation_is_one_frame_per_sensor_at_most_kitti_sized():
    from jarrn_deploy.export.to_onnx import VALIDATION_CHOICES
    from jarrn_deploy.export.validate import CASE_SETS, QUICK_MAX_PIXELS, real_cases

    assert VALIDATION_CHOICES == CASE_SETS
    quick, full = real_cases(case_set="quick"), real_cases(case_set="full")
    assert [c.name for c in quick] == ["kitti_02", "tum_desk@500", "kinect2_lounge@500"]
    assert all(c.rgb.shape[2] * c.rgb.shape[3] <= QUICK_MAX_PIXELS for c in quick)
    assert all((c.sparse > 0).sum() > 0 and (c.gt > 0).any() for c in quick)
    assert sum(c.rgb[0, 0].size for c in quick) < 0.3 * sum(c.rgb[0, 0].size for c in full)
    assert len(full) == 6  # the plan line's "6 real-frame cases"


def _expect_error(argv: list[str], capsys, needle: str, code: int) -> str:
    """Exit statuses of `jarrn --help`: 2 bad argument (argparse's or ours), 3 bad input, 4 unwritable output."""
    try:
        got = to_onnx_main(argv)
    except SystemExit as info:  # argparse
        got = info.code
    assert got == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    return err


def test_bad_checkpoint(tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "out" / "m.onnx"
    err = _expect_error(["--checkpoint", str(broken), "--output", str(out)], capsys, "error: checkpoint:", 3)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint(tmp_path, capsys):
    _expect_error(["--checkpoint", str(tmp_path / "nope.pt"), "--output", str(tmp_path / "m.onnx")], capsys,
                  "no such file", 3)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tiny_checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _expect_error(["--checkpoint", str(tiny_checkpoint), "--output", str(blocker / "m.onnx")], capsys,
                  "is not a directory", 4)
    _expect_error(["--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path)], capsys, "is a directory", 4)
    _expect_error(["--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "m.txt")], capsys, ".onnx", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_unknown_precision(capsys):
    _expect_error(["--precision", "int4"], capsys, "invalid choice", code=2)


@pytest.mark.parametrize("value,needle", [("32x640", "at least 64"), ("640", "HEIGHTxWIDTH"), ("axb", "HEIGHTxWIDTH")])
def test_bad_static_size(value, needle, capsys):
    _expect_error(["--static", value], capsys, needle, code=2)


def test_static_size_in_the_library():
    with pytest.raises(ExportError, match="at least 64"):
        ExportOptions(static_hw=(63, 128))
    with pytest.raises(ExportError, match="precision"):
        ExportOptions(precision="bf16")
    with pytest.raises(ExportError, match="int8_exclude"):
        ExportOptions(int8_exclude=("x",))
    with pytest.raises(ExportError, match="calibration"):
        ExportOptions(calibration="c.npz")


@pytest.mark.parametrize("arrays,needle", [
    ({"rgb": np.zeros((2, 64, 64, 3), np.float32), "sparse_depth": np.zeros((2, 1, 64, 64), np.float32)}, "[N,3,H,W]"),
    ({"rgb": np.zeros((2, 3, 64, 64), np.float32), "sparse_depth": np.zeros((2, 1, 32, 64), np.float32)}, "[N,1,H,W]"),
    ({"image": np.zeros((2, 3, 64, 64), np.float32)}, "lacks"),
    ({"rgb": np.full((1, 3, 64, 64), 2.0, np.float32), "sparse_depth": np.zeros((1, 1, 64, 64), np.float32)}, "[0,1]"),
])
def test_bad_calibration_data(tiny_checkpoint, tmp_path, capsys, arrays, needle):
    calib = tmp_path / "c.npz"
    np.savez(calib, **arrays)
    out = tmp_path / "m.onnx"
    _expect_error(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--precision", "int8",
                   "--calibration", str(calib)], capsys, needle, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_calibration_size_must_match_a_static_graph(tmp_path):
    calib = tmp_path / "c.npz"
    np.savez(calib, rgb=np.zeros((1, 3, 64, 64), np.float32), sparse_depth=np.zeros((1, 1, 64, 64), np.float32))
    with pytest.raises(ExportError, match="static 96x128"):
        load_calibration(calib, static_hw=(96, 128))
    with pytest.raises(ExportError, match="no such file"):
        load_calibration(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------------------------
# the whole command, as a user runs it (slow: validation on the bundled real frames)


@pytest.fixture(scope="module")
def tame_checkpoint(tmp_path_factory) -> Path:
    """A random tiny network with small rezero alphas (0.1), closer to a trained one than randomise_alphas' 0.1-0.6:
    with the larger gains of the latter, float32 rounding differences reach ~7e-3 m on KITTI's 80 m depths."""
    torch.manual_seed(0)
    network = Jarrn(TINY).eval()
    with torch.no_grad():
        for name, param in network.named_parameters():
            if name.endswith("alpha"):
                param.fill_(0.1)
    return save_model(network, tmp_path_factory.mktemp("tame") / "tame.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_cli_end_to_end_with_validation(tame_checkpoint, tmp_path, precision):
    if precision == "fp16" and fp16_backend() is None:
        pytest.skip("no FP16 library installed")
    out = tmp_path / f"m_{precision}.onnx"
    result = subprocess.run(
        [sys.executable, str(REPO / "export" / "to_onnx.py"), "--checkpoint", str(tame_checkpoint),
         "--precision", precision, "--output", str(out)],
        capture_output=True, text=True, timeout=1800, cwd=tmp_path,
    )
    # A random network is no measure of FP16/INT8 accuracy against ground truth; the graph must exist either way.
    produced = out if result.returncode == 0 else out.with_name(f"m_{precision}.rejected.onnx")
    assert produced.exists(), result.stderr
    report = json.loads(produced.with_suffix("").with_name(produced.stem + ".validation.json").read_text())
    assert {c["name"] for c in report["cases"]} >= {"kitti_02", "tum_desk@500", "kinect2_lounge@100"}
    if precision == "fp32":
        assert result.returncode == 0 and report["passed"], result.stdout
