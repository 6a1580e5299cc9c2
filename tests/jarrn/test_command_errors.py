"""Every command ends a user error with one line naming the argument and the documented exit status, never a
traceback; outputs are checked before the work. Commands run in-process (their ``main(argv)``), which is what both
``jarrn <verb>`` and the ``python ...`` forms call; one subprocess row per form checks the real entry points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jarrn_deploy.errors import EXIT_CHECK_FAILED, EXIT_INPUT, EXIT_OUTPUT, EXIT_UNAVAILABLE, EXIT_USAGE
from jarrn_deploy.model import Jarrn, JarrnConfig, save_model
from jarrn_deploy.model.checkpoint import save_training_checkpoint
from tests.reliability_support import REPO, run_command
from tests.support import TINY_WIDTHS

TINY = JarrnConfig(TINY_WIDTHS)
TRAIN_OK = ["--widths", "8,8,8,8,8,8,8", "--crop", "64x64", "--epoch-samples", "2", "--batch-size", "1",
            "--epochs", "1", "--val-every", "-1", "--no-progress", "--render-scale", "0.5,0.5"]


def invoke(main, argv: list[str], capsys) -> tuple[int, str]:  # noqa: ANN001
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage line + error line, status 2
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, expected: int, needle: str) -> None:
    assert code == expected, err
    assert "Traceback" not in err and "report it" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    assert lines and needle in lines[-1], err
    assert lines[-1].startswith(("error:", "infer:")) or ": error:" in lines[-1], err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    good = save_model(Jarrn(TINY), root / "tiny.safetensors")
    a_file = root / "a_file"
    a_file.write_text("x")
    malformed = root / "malformed.pt"
    save_training_checkpoint(malformed, {"network_state_dict": Jarrn(TINY).state_dict(), "jarrn_config": [1, 2]})
    truncated_run = root / "truncated_run"
    truncated_run.mkdir()
    (truncated_run / "last.pt").write_bytes(malformed.read_bytes()[:500])
    foreign_run = root / "foreign_run"
    foreign_run.mkdir()
    save_training_checkpoint(foreign_run / "last.pt", {"network_state_dict": Jarrn(TINY).state_dict()})
    folders = {}
    for kind in ("mismatched", "eight_bit", "corrupt"):
        folder = root / kind
        (folder / "rgb").mkdir(parents=True)
        (folder / "depth").mkdir()
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "rgb" / "a.png")
        depth = np.full((64, 64), 2000, np.uint16)
        if kind == "mismatched":
            Image.fromarray(depth[:32]).save(folder / "depth" / "a.png")
        elif kind == "eight_bit":
            Image.fromarray(np.full((64, 64), 20, np.uint8)).save(folder / "depth" / "a.png")
        else:
            Image.fromarray(depth).save(folder / "depth" / "a.png")
            (folder / "rgb" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        folders[kind] = folder
    run_with_best = root / "run_with_best"
    save_model(Jarrn(TINY), run_with_best / "best.safetensors")
    huge = Jarrn(TINY)
    with torch.no_grad():
        for parameter in huge.parameters():
            parameter.fill_(1e30)  # finite weights that overflow: the output is inf/NaN
    huge = save_model(huge, root / "huge.safetensors")
    return {"good": good, "a_file": a_file, "malformed": malformed, "truncated_run": truncated_run,
            "run_with_best": run_with_best, "huge": huge,
            "foreign_run": foreign_run, "root": root, **folders}


def _train_rows():
    cuda = not torch.cuda.is_available()
    rows = [
        (["--batch-size", "0"], EXIT_USAGE, "--batch-size: expected a positive integer"),
        (["--checkpoint-every", "0"], EXIT_USAGE, "--checkpoint-every"),
        (["--log-every", "0"], EXIT_USAGE, "--log-every"),
        (["--lr", "-1"], EXIT_USAGE, "--lr: expected a positive number"),
        (["--lr", "nan"], EXIT_USAGE, "--lr"),
        (["--workers", "-1"], EXIT_USAGE, "--workers"),
        (["--device", "bogus"], EXIT_USAGE, "--device: expected"),
        (["--render-scale", "2,1"], EXIT_USAGE, "--render-scale"),
        (["--widths", "1,2,3"], EXIT_USAGE, "--widths"),
        (["--epochs", "0"], EXIT_USAGE, "--epochs"),
        (["--epochs", "-1"], EXIT_USAGE, "--epochs"),
        (["--real-sparse-prob", "1.5"], EXIT_USAGE, "--real-sparse-prob"),
        (["--out", "{a_file}"], EXIT_OUTPUT, "--out: "),
        (["--out", "{a_file}/sub"], EXIT_OUTPUT, "--out: "),
        (["--init", "{root}/missing.pt"], EXIT_INPUT, "--init: no such file"),
        (["--init", "{malformed}"], EXIT_INPUT, "--init: "),
        (["--resume", "--out", "{truncated_run}"], EXIT_INPUT, "could not be read as a training checkpoint"),
        (["--resume", "--out", "{foreign_run}"], EXIT_INPUT, "not a model.train checkpoint"),
        (["--export", "{a_file}/m.safetensors"], EXIT_OUTPUT, "--export: "),
        (["--export", "{root}/m.txt"], EXIT_USAGE, "--export: expected a file name ending in .safetensors"),
        (["--init", "{run_with_best}/best.safetensors", "--out", "{run_with_best}"], EXIT_OUTPUT,
         "best.safetensors would be replaced by the output"),
        (["--init", "{good}", "--export", "{good}"], EXIT_OUTPUT, "would be replaced by the output"),
        (["--init", "{root}"], EXIT_INPUT, "--init: "),
        (["--data", "folder", "--data-root", "{a_file}"], EXIT_INPUT, "--data-root: "),
        (["--data", "folder", "--data-root", "{mismatched}"], EXIT_INPUT, "RGB is 64x64 but depth is 32x64"),
        (["--data", "folder", "--data-root", "{eight_bit}"], EXIT_INPUT, "depth"),
        (["--data", "folder", "--data-root", "{corrupt}"], EXIT_INPUT, "cannot read RGB image"),
    ]
    if cuda:
        rows.append((["--device", "cuda"], EXIT_UNAVAILABLE, "--device cuda"))
    return rows


@pytest.mark.parametrize("extra,expected,needle", _train_rows(), ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_train_bad_arguments(files, tmp_path, capsys, extra, expected, needle):
    from jarrn_deploy.model.train import main

    extra = [e.format(**files) for e in extra]
    out = [] if "--out" in extra else ["--out", str(tmp_path / "run")]
    code, err = invoke(main, TRAIN_OK + out + extra, capsys)
    assert_one_line_error(code, err, expected, needle)
    if "--out" not in extra:
        assert not (tmp_path / "run" / "last.pt").exists()  # refused before any training step


@pytest.mark.parametrize("extra,expected,needle", [
    (["--model", "{root}/missing.safetensors"], EXIT_INPUT, "--model: "),
    (["--model", "{malformed}"], EXIT_INPUT, "--model: "),
    (["--out", "{a_file}"], EXIT_OUTPUT, "--out: "),
    (["--out", "{a_file}/sub"], EXIT_OUTPUT, "--out: "),
    (["--threads", "-1"], EXIT_USAGE, "--threads"),
    (["--device", "bogus"], EXIT_USAGE, "--device"),
    (["--model", "{root}"], EXIT_INPUT, "--model: "),
    (["--model", "{huge}", "--no-panels"], EXIT_CHECK_FAILED, "huge.safetensors produces non-finite depth"),
])
def test_evaluate_bad_arguments(files, tmp_path, capsys, extra, expected, needle):
    from jarrn_deploy.model.evaluate import main

    extra = [e.format(**files) for e in extra]
    out = [] if "--out" in extra else ["--out", str(tmp_path / "eval")]
    model = [] if "--model" in extra else ["--model", str(files["good"])]
    code, err = invoke(main, model + out + extra, capsys)
    assert_one_line_error(code, err, expected, needle)


@pytest.mark.parametrize("extra,expected,needle", [
    (["--checkpoint", "{malformed}"], EXIT_INPUT, "checkpoint: "),
    (["--checkpoint", "{root}/missing.pt"], EXIT_INPUT, "no such file"),
    (["--output", "/proc/x.onnx"], EXIT_OUTPUT, "output: cannot write"),
    (["--output", "{a_file}/x.onnx"], EXIT_OUTPUT, "output: "),
    (["--static", "100000x100000"], EXIT_USAGE, "too large"),
    (["--opset", "5"], EXIT_USAGE, "opset: expected an integer in 13..20"),
    (["--batch", "0"], EXIT_USAGE, "--batch"),
])
def test_to_onnx_bad_arguments(files, tmp_path, capsys, extra, expected, needle):
    from jarrn_deploy.export.to_onnx import main

    extra = [e.format(**files) for e in extra]
    output = [] if "--output" in extra else ["--output", str(tmp_path / "m.onnx")]
    checkpoint = [] if "--checkpoint" in extra else ["--checkpoint", str(files["good"])]
    code, err = invoke(main, checkpoint + output + extra + ["--no-validate", "--quiet"], capsys)
    assert_one_line_error(code, err, expected, needle)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("extra,expected,needle", [
    (["--out", "{a_file}"], EXIT_OUTPUT, "--out: "),
    (["--model", "{malformed}"], EXIT_INPUT, "--model: "),
    (["--model", "{root}/missing.pt"], EXIT_INPUT, "--model: no such file"),
    (["--threads", "0"], EXIT_USAGE, "--threads"),
    (["--sizes", "0x0"], EXIT_USAGE, "--sizes"),
    (["--device", "bogus"], EXIT_USAGE, "--device"),
    (["--model", "{root}"], EXIT_INPUT, "--model: "),
    (["--engine", "{root}/missing.engine"], EXIT_INPUT, "--engine: no such file"),
    (["--onnx", "{a_file}"], EXIT_INPUT, "--onnx: "),
    (["--iterations", "5", "--min-iterations", "9"], EXIT_USAGE, "--min-iterations: 9 is above --iterations (5)"),
    *([] if torch.cuda.is_available() else [(["--device", "cuda"], EXIT_UNAVAILABLE, "cuda")]),
])
def test_benchmark_bad_arguments(files, tmp_path, capsys, extra, expected, needle):
    from jarrn_deploy.benchmarks.run import main

    extra = [e.format(**files) for e in extra]
    out = [] if "--out" in extra else ["--out", str(tmp_path / "bench")]
    code, err = invoke(main, ["--quick", "--cache", str(tmp_path / "cache")] + out + extra, capsys)
    assert_one_line_error(code, err, expected, needle)


@pytest.mark.parametrize("extra,needle", [
    (["--rgb", "{root}/missing.png"], "--rgb"),
    (["--model", "{malformed}", "--backend", "torch"], "malformed.pt"),
    (["--out", "{a_file}"], "--out"),
])
def test_infer_bad_arguments(files, tmp_path, capsys, extra, needle):
    from jarrn_deploy.runtime.infer import main

    rgb = files["mismatched"] / "rgb" / "a.png"
    np.save(tmp_path / "sparse.npy", np.zeros((64, 64), np.float32))
    base = {"--rgb": str(rgb), "--sparse": str(tmp_path / "sparse.npy"), "--out": str(tmp_path / "o"),
            "--model": str(files["good"])}
    extra = [e.format(**files) for e in extra]
    for flag, value in zip(extra[::2], extra[1::2]):
        base[flag] = value
    code, err = invoke(main, [item for pair in base.items() for item in pair], capsys)
    assert code not in (0, 1), err
    assert "Traceback" not in err and needle in err and len(err.strip().splitlines()) == 1, err


def test_python_forms_and_jarrn_verb_exit_with_one_line(files, tmp_path):
    """The real entry points, as a user types them (one subprocess each)."""
    results = {
        "to_onnx": run_command(["export/to_onnx.py", "--checkpoint", str(files["malformed"]), "--output",
                                str(tmp_path / "m.onnx")], REPO),
        "jarrn train": run_command(["-m", "jarrn_deploy.cli", "train", "--batch-size", "0"], tmp_path),
    }
    expected = {"to_onnx": EXIT_INPUT, "jarrn train": EXIT_USAGE}
    for name, result in results.items():
        assert result.returncode == expected[name], (name, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1].startswith("error:"), name


def test_unexpected_exception_prints_traceback_and_report_hint(capsys):
    from jarrn_deploy.cli import REPORT_HINT, command

    @command
    def broken(argv):  # noqa: ANN001, ANN202
        raise ZeroDivisionError("a bug")

    assert broken([]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and REPORT_HINT in err


def test_evaluate_unwritable_out_fails_before_the_work(files, tmp_path, capsys, monkeypatch):
    import jarrn_deploy.model.evaluate as evaluate

    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluation ran before --out was checked"))
    code, err = invoke(evaluate.main, ["--model", str(files["good"]), "--out", str(files["a_file"])], capsys)
    assert code == EXIT_OUTPUT and "--out" in err


def test_evaluate_writes_nothing_when_the_disk_fills(files, tmp_path, capsys, monkeypatch):
    import jarrn_deploy.model.evaluate as evaluate

    real_write = evaluate.atomic_write_bytes
    calls = {"n": 0}

    def fill_disk_on_second_png(path, data):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(evaluate, "atomic_write_bytes", fill_disk_on_second_png)
    monkeypatch.setattr(evaluate, "evaluate", _fake_evaluate)
    out = tmp_path / "eval"
    code, err = invoke(evaluate.main, ["--model", str(files["good"]), "--out", str(out)], capsys)
    assert code == EXIT_OUTPUT and "No space left on device" in err and "nothing was written" in err
    assert list(out.iterdir()) == []  # not 2 of 8 files: none


def _fake_evaluate(network, cases, log=None):  # noqa: ANN001, ANN202
    from jarrn_deploy.model.evaluate import METHODS, CaseResult

    metrics = {"rmse": 1.0, "mae": 1.0, "absrel": 0.1, "delta1": 0.9}
    results = [CaseResult(case.name, case.gt.shape, 10, {m: dict(metrics) for m in METHODS}, 0.1) for case in cases]
    return results, {case.name: (case.gt, case.gt) for case in cases}



@pytest.mark.parametrize("which,needle", [("missing", "no such file"), ("not_onnx", "not a valid ONNX file"),
                                          ("no_metadata", "no jarrn.contract_version")])
def test_validate_bad_graphs(files, tmp_path, capsys, which, needle):
    from jarrn_deploy.export.validate import main
    from tests.reliability_support import contract_graph

    path = tmp_path / f"{which}.onnx"
    if which == "not_onnx":
        path.write_bytes(b"garbage")
    elif which == "no_metadata":
        path = contract_graph(tmp_path, name="no_metadata.onnx", metadata={})
    code, err = invoke(main, ["--no-real-frames", "--checkpoint", str(files["good"]), str(path)], capsys)
    assert_one_line_error(code, err, EXIT_INPUT, needle)


@pytest.mark.parametrize("where", ["last.pt", "export"])
def test_train_full_disk_is_one_output_error_line(tmp_path, capsys, monkeypatch, where):
    import safetensors.torch
    from safetensors import SafetensorError

    from jarrn_deploy.model.train import main

    if where == "last.pt":
        def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - torch's wording on a full disk
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 512 vs 64")

        monkeypatch.setattr(torch, "save", full)
    else:
        def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

        monkeypatch.setattr(safetensors.torch, "save_file", full)
    argv = TRAIN_OK + ["--out", str(tmp_path / "run"), "--export", str(tmp_path / "m.safetensors")]
    code, err = invoke(main, argv, capsys)
    assert_one_line_error(code, err, EXIT_OUTPUT, "could not be written")
    assert not (tmp_path / "m.safetensors").exists()


def test_every_error_class_exits_with_a_code_of_the_one_table():
    import importlib

    from jarrn_deploy.errors import EXIT_CODES, JarrnError

    for module in ("jarrn_deploy.model.contract", "jarrn_deploy.model.checkpoint", "jarrn_deploy.model.datasets", "jarrn_deploy.memory", "jarrn_deploy.runtime.infer",
                   "jarrn_deploy.runtime.backends", "jarrn_deploy.export.onnx_graph", "jarrn_deploy.export.export_errors", "jarrn_deploy.benchmarks.arguments"):
        importlib.import_module(module)
    seen, stack = [], [JarrnError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    assert len(seen) > 10
    for cls in seen:
        assert cls.exit_code in EXIT_CODES and cls.exit_code not in (0, 1, 130), cls


def test_a_missing_optional_package_exits_5_with_its_install_command(capsys):
    from jarrn_deploy.cli import command

    @command
    def needs_pictures(argv):  # noqa: ANN001, ANN202
        import jarrn_deploy_absent_plotting_package  # noqa: F401

    assert needs_pictures([]) == EXIT_UNAVAILABLE
    assert capsys.readouterr().err.strip() == ("error: this command needs the Python package "
                                               "'jarrn_deploy_absent_plotting_package', not installed here: "
                                               "pip install jarrn-deploy-absent-plotting-package")


def test_infer_without_matplotlib_names_the_requirement_not_a_traceback(tmp_path):
    frame = REPO / "data" / "real" / "kitti_2011_09_26_drive_0001_f5"
    code = ("import sys; sys.modules['matplotlib'] = None; from jarrn_deploy.cli import main; "
            f"sys.exit(main(['infer', '--rgb', {str(frame / 'image_02.png')!r}, '--sparse', "
            f"{str(frame / 'velodyne_raw_02.png')!r}, '--out', {str(tmp_path / 'out')!r}, '--backend', 'onnxruntime']))")
    result = run_command(["-c", code], tmp_path)
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("error: this command needs the Python package 'matplotlib', "
                                                      'not installed here: pip install "matplotlib>=3.7"')
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_missing_module_of_the_project_itself_is_reported_as_a_bug(capsys):
    from jarrn_deploy.cli import REPORT_HINT, command

    @command
    def broken_install(argv):  # noqa: ANN001, ANN202
        import jarrn_deploy.no_such_module  # noqa: F401

    assert broken_install([]) == 1 and REPORT_HINT in capsys.readouterr().err
