"""``jarrn infer`` under the failures of reliability round 3: every failure through the one exit-code table, checked
before the work where it can be; no input overwritten; no NaN written as depth; options that do nothing say so.
In-process ``main(argv)`` calls on a 64x64 frame with a tiny model: fast."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jarrn_deploy.errors import EXIT_CHECK_FAILED, EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_UNAVAILABLE, EXIT_USAGE
from jarrn_deploy.model import Jarrn, JarrnConfig, save_model
from tests.reliability_support import nan_graph
from tests.support import TINY_WIDTHS

SIZE = 64


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return make_files(tmp_path_factory.mktemp("infer"))


def make_files(root: Path) -> dict[str, Path]:
    """A 64x64 frame (RGB PNG, sparse .npy and PNG, an empty map, an HxWx1 map), a tiny model, a NaN graph, and a
    folder, a plain file and a broken PNG to give where files are expected."""
    import torch

    torch.manual_seed(0)
    model = save_model(Jarrn(JarrnConfig(TINY_WIDTHS)), root / "tiny.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "rgb.png")
    sparse = np.zeros((SIZE, SIZE), np.float32)
    sparse[rng.integers(0, SIZE, 40), rng.integers(0, SIZE, 40)] = rng.uniform(1, 10, 40)
    np.save(root / "sparse.npy", sparse)
    Image.fromarray((sparse * 256).astype(np.uint16)).save(root / "sparse.png")
    np.save(root / "empty.npy", np.zeros((SIZE, SIZE), np.float32))
    np.save(root / "channel.npy", sparse[..., None])
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "a_folder").mkdir()
    (root / "a_file").write_text("x")
    return {"root": root, "model": model, "rgb": root / "rgb.png", "npy": root / "sparse.npy",
            "png": root / "sparse.png", "empty": root / "empty.npy", "channel": root / "channel.npy",
            "broken": root / "broken.png", "a_folder": root / "a_folder", "a_file": root / "a_file",
            "nan_onnx": nan_graph(root / "nan.onnx")}


def _infer(files: dict, tmp_path: Path, capsys, **overrides: str | None) -> tuple[int, str, str]:
    from jarrn_deploy.runtime.infer import main

    options = {"--rgb": str(files["rgb"]), "--sparse": str(files["npy"]), "--out": str(tmp_path / "out"),
               "--model": str(files["model"])}
    flags = []
    for flag, value in overrides.items():
        flag = "--" + flag.replace("_", "-")
        if value is None:
            options.pop(flag, None)
        elif value == "":
            flags.append(flag)
        else:
            options[flag] = value.format(**files, tmp=tmp_path)
    argv = [item for pair in options.items() for item in pair] + flags
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ROWS = [  # (overrides, exit status, the one line's needle); each row a cause of issue 25
    ({"rgb": "{root}/missing.png"}, EXIT_INPUT, "--rgb: no such file"),
    ({"rgb": "{a_folder}"}, EXIT_INPUT, "--rgb: .* is a folder, expected an 8-bit PNG or JPEG"),
    ({"rgb": "{broken}"}, EXIT_INPUT, "--rgb: .* could not be read as an image"),
    ({"sparse": "{a_folder}"}, EXIT_INPUT, "--sparse: .* is a folder"),
    ({"sparse": "{a_file}"}, EXIT_INPUT, "--sparse: "),
    ({"model": "{a_folder}"}, EXIT_INPUT, "--model: .* is a folder"),
    ({"model": "{root}/missing.onnx"}, EXIT_INPUT, "--model: no such file"),
    ({"sparse": "{empty}"}, EXIT_INPUT, "sparse_depth: the map has no valid point .* at least one measured point"),
    ({"sparse": "{png}", "sparse_scale": "0"}, EXIT_USAGE, "--sparse-scale: expected a positive number"),
    ({"sparse": "{png}", "sparse_scale": "nan"}, EXIT_USAGE, "--sparse-scale: expected a positive number"),
    ({"out": "{a_file}"}, EXIT_OUTPUT, "--out: .* exists and is not a folder"),
    ({"out": "{a_file}/sub"}, EXIT_OUTPUT, "--out: "),
    ({"model": "{nan_onnx}", "backend": "onnxruntime"}, EXIT_CHECK_FAILED,
     "the model file .*nan.onnx produces non-finite depth"),
    ({"model": "{nan_onnx}", "providers": "bogus"}, EXIT_USAGE, "providers: unknown provider 'bogus'"),
    ({"model": None, "backend": "tensorrt"}, EXIT_UNAVAILABLE, "TensorRT is not installed"),
    ({"backend": "tensorrt"}, EXIT_USAGE, "--backend tensorrt needs --model to be an engine"),
]


@pytest.mark.parametrize("overrides,expected,needle", ROWS, ids=lambda v: ",".join(v) if isinstance(v, dict) else None)
def test_infer_failures_follow_the_exit_table(files, tmp_path, capsys, overrides, expected, needle):
    if overrides.get("backend") == "tensorrt" and overrides.get("model", "") is None:
        import importlib.util

        if importlib.util.find_spec("tensorrt") is not None:
            pytest.skip("TensorRT is installed here")
    code, _, err = _infer(files, tmp_path, capsys, **overrides)
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == expected, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(needle, lines[0]), err
    assert not (tmp_path / "out" / "depth.png").exists()


@pytest.mark.parametrize("name", ["depth.png", "panel.png"])
def test_infer_refuses_to_write_over_its_own_input(files, tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    rgb = out / name
    rgb.write_bytes(files["rgb"].read_bytes())
    before = rgb.read_bytes()
    code, _, err = _infer(files, tmp_path, capsys, rgb=str(rgb))
    assert code == EXIT_OUTPUT and re.search(f"--rgb: .*{name} would be replaced by the output", err), err
    assert rgb.read_bytes() == before


def test_infer_full_disk_is_one_line_and_leaves_nothing(files, tmp_path, capsys, monkeypatch):
    import jarrn_deploy.runtime.infer as infer

    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(infer, "write_outputs", full_disk)
    code, _, err = _infer(files, tmp_path, capsys)
    assert code == EXIT_OUTPUT and "No space left on device" in err and len(err.strip().splitlines()) == 1, err


def test_infer_memory_guard_reads_only_the_header(files, tmp_path, capsys, monkeypatch):
    import jarrn_deploy.memory
    import jarrn_deploy.model.depth_io

    monkeypatch.setattr(jarrn_deploy.memory, "available_host_bytes", lambda: 2**20)
    monkeypatch.setattr(jarrn_deploy.memory, "SMALL_CALL_BYTES", 0)
    monkeypatch.setattr(jarrn_deploy.model.depth_io, "read_rgb", lambda *a: pytest.fail("pixels read before the memory guard"))
    code, _, err = _infer(files, tmp_path, capsys)
    assert code == EXIT_UNAVAILABLE and "input 64x64 (batch 1)" in err, err


def test_infer_accepts_an_hxwx1_npy_as_one_map(files, tmp_path, capsys):
    code, out, err = _infer(files, tmp_path, capsys, sparse=str(files["channel"]))
    assert code == EXIT_OK and "64x64" in out, err


@pytest.mark.parametrize("overrides,option", [
    ({"cuda_graphs": ""}, "--cuda-graphs"),
    ({"providers": "cpu"}, "--providers"),
    ({"sparse_scale": "256"}, "--sparse-scale"),
    ({"model": "{nan_onnx}", "device": "cpu"}, "--device"),
])
def test_options_that_do_nothing_warn_with_one_wording(files, tmp_path, capsys, overrides, option):
    code, _, err = _infer(files, tmp_path, capsys, **overrides)
    assert re.search(f"^warning: {option} has no effect: .*; ignored$", err, re.M), err
    if "nan_onnx" not in str(overrides):
        assert code == EXIT_OK, err


def test_repeated_flag_warns_that_the_last_wins(files, tmp_path, capsys):
    from jarrn_deploy.options import repeated_options
    from jarrn_deploy.runtime.infer import build_parser

    lines = repeated_options(build_parser(), ["--rgb", "a", "--rgb=b", "--sparse", "c", "--out", "d"])
    assert lines == ["--rgb given 2 times; only the last one is used"]
    assert "warning: --rgb given 2 times" in capsys.readouterr().err


def test_junk_memory_guard_switch_is_a_usage_error_before_the_model_loads(files, tmp_path, capsys, monkeypatch):
    import jarrn_deploy.runtime.infer as infer

    monkeypatch.setenv("JARRN_MEMORY_GUARD", "maybe")
    monkeypatch.setattr(infer, "build_completer", lambda *a: pytest.fail("the model loaded first"))
    code, _, err = _infer(files, tmp_path, capsys)
    assert code == EXIT_USAGE and "JARRN_MEMORY_GUARD: expected off" in err, err
