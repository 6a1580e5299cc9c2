"""A new user's first minutes: help written for users, the bundled model on every backend, pictures with a scale,
warnings for mis-scaled depth, true export summaries, the quick start's test command in CI (the installer:
tests/scripts/test_install.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jarrn_deploy.cli import VERBS

from tests.support import REPO
TUM = REPO / "data" / "real" / "tum_desk"
KITTI = REPO / "data" / "real" / "kitti_2011_09_26_drive_0001_f5"

# Every command a user types: each `jarrn` verb, and the direct forms the README shows.
HELP_COMMANDS = [
    ["-m", "jarrn_deploy.cli"],
    *[["-m", "jarrn_deploy.cli", verb] for verb in VERBS],
    ["export/to_onnx.py"],
    ["export/build_engine.py"],
    ["-m", "jarrn_deploy.runtime.infer"],
    ["-m", "jarrn_deploy.model.train"],
    ["-m", "jarrn_deploy.model.evaluate"],
    ["benchmarks/run.py"],
    ["scripts/install.py"],
]
MARKUP_AND_INTERNAL_REFERENCES = ("``", ":func:", ":mod:", ":class:", "REFERENCE.md", "issue ")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# help for users


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c))
def test_help_is_plain_words_and_ends_with_examples(command: list[str]) -> None:
    result = _run([*command, "--help"])
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for bad in MARKUP_AND_INTERNAL_REFERENCES:
        assert bad not in text, f"{bad!r} in the help of {' '.join(command)}"
    assert re.search(r"^examples?:\s*$", text, flags=re.MULTILINE), f"no 'examples:' section in {' '.join(command)}"
    assert text.rstrip().splitlines()[-1].startswith("  "), "the examples come last"


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("jarrn_deploy.runtime.infer", ["--rgb", "a.png", "--sparse", "b.png", "--out", "o"]),
        ("jarrn_deploy.export.to_onnx", ["--precision", "int8"]),
        ("jarrn_deploy.benchmarks.run", ["--quick"]),
        ("jarrn_deploy.model.train_options", ["--epochs", "1", "--data", "synthetic"]),
    ],
)
def test_parsing_arguments_loads_no_heavy_library(module: str, argv: list[str]) -> None:
    """``--help`` and argument errors answer at once: the parser is built and used before torch, onnx or
    onnxruntime are imported (they take seconds)."""
    script = (
        "import sys\n"
        f"import {module} as command\n"
        f"command.build_parser().parse_args({argv!r})\n"
        "heavy = sorted({'torch', 'onnx', 'onnxruntime', 'tensorrt', 'modelopt'} & set(sys.modules))\n"
        "print(heavy)\n"
    )
    result = _run(["-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} imported {result.stdout.strip()} to parse its arguments"


def test_constants_spelled_for_fast_help_match_their_owners() -> None:
    import jarrn_deploy.export.to_onnx as to_onnx
    import jarrn_deploy.runtime.infer as infer
    from jarrn_deploy.export.onnx_graph import PRECISIONS
    from jarrn_deploy.model.checkpoint import DEFAULT_CHECKPOINT
    from jarrn_deploy.model.depth_io import KITTI_DEPTH_SCALE
    from jarrn_deploy.runtime.default_model import bundled_checkpoint

    assert to_onnx.PRECISION_CHOICES == PRECISIONS
    assert infer.KITTI_SCALE == KITTI_DEPTH_SCALE
    assert bundled_checkpoint() == Path(DEFAULT_CHECKPOINT).resolve()


# ---------------------------------------------------------------------------------------------------------------------
# plausibility of the sparse depth scale


def test_tum_frame_read_with_the_kitti_scale_warns_once_and_suggests_5000(monkeypatch: pytest.MonkeyPatch) -> None:
    from jarrn_deploy.model import depth_io

    monkeypatch.setattr(depth_io, "_SCALES_WARNED", set())
    with pytest.warns(depth_io.DepthScaleWarning, match=r"Try scale 5000 \(TUM RGB-D") as caught:
        depth_io.read_depth_png(TUM / "depth.png", scale=256)
        depth_io.read_depth_png(TUM / "depth.png", scale=256)  # a dataset of such frames: one warning, not one each
    assert len(caught) == 1 and "\n" not in str(caught[0].message)


@pytest.mark.parametrize(
    ("path", "scale"),
    [(TUM / "depth.png", 5000), (KITTI / "velodyne_raw_02.png", 256), (KITTI / "groundtruth_02.png", 256),
     (REPO / "data" / "real" / "kinect2_lounge" / "depth.png", 1000)],
)
def test_correctly_scaled_real_frames_give_no_warning(path: Path, scale: float) -> None:
    import warnings

    from jarrn_deploy.model.depth_io import read_depth_png

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_depth_png(path, scale=scale)


def test_scale_warning_for_points_mostly_too_near_or_too_far() -> None:
    from jarrn_deploy.model.depth_io import depth_scale_warning

    sparse = np.zeros((100, 100), np.float32)
    sparse[::10, ::10] = np.linspace(0.01, 0.05, 100).reshape(10, 10)  # sensible depths read 100x too small
    assert "nearer than 0.1 m" in depth_scale_warning(sparse, 1000 * 100)
    sparse[::10, ::10] = np.linspace(200, 900, 100).reshape(10, 10)
    assert "beyond 100 m" in depth_scale_warning(sparse, 1.0)
    sparse[::10, ::10] = np.linspace(2, 60, 100).reshape(10, 10)
    assert depth_scale_warning(sparse, 256) is None


# ---------------------------------------------------------------------------------------------------------------------
# jarrn_deploy.runtime.infer: the bundled model on every backend, pictures, warnings


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny network saved like the bundled one: exporting it takes a second, not fifteen."""

    from tests.support import tiny_network as build_tiny_network
    from jarrn_deploy.model import save_model

    network = build_tiny_network()
    return save_model(network, tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture(scope="module")
def tum_crop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 128x160 crop of the TUM frame: RGB PNG and its depth PNG in TUM units (metres x 5000)."""
    folder = tmp_path_factory.mktemp("tum_crop")
    rgb = np.asarray(Image.open(TUM / "rgb.png").convert("RGB"))[200:328, 240:400]
    depth = np.asarray(Image.open(TUM / "depth.png"))[200:328, 240:400].astype(np.uint16)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(depth).save(folder / "depth.png")
    return {"rgb": folder / "rgb.png", "sparse": folder / "depth.png"}


@pytest.fixture()
def bundled_is_tiny(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runtime's bundled model replaced by the tiny one, with a fresh export cache."""
    from jarrn_deploy.runtime import default_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(default_model, "bundled_checkpoint", lambda: tiny_checkpoint)
    return tmp_path / "cache"


def test_onnxruntime_runs_the_bundled_model_without_model_exported_once_then_cached(
        bundled_is_tiny: Path, tum_crop: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.runtime.infer import main as infer_main

    argv = ["--rgb", str(tum_crop["rgb"]), "--sparse", str(tum_crop["sparse"]), "--sparse-scale", "5000",
            "--backend", "onnxruntime"]
    assert infer_main([*argv, "--out", str(tmp_path / "first")]) == 0
    first = capsys.readouterr()
    assert "exporting it to ONNX once" in first.err and "exported in" in first.err
    assert first.out.startswith("onnxruntime fp32")
    exported = sorted(bundled_is_tiny.rglob("*.onnx"))
    assert len(exported) == 1 and not list(bundled_is_tiny.rglob("*.tmp"))
    stamp = exported[0].stat().st_mtime_ns

    assert infer_main([*argv, "--out", str(tmp_path / "second")]) == 0
    second = capsys.readouterr()
    assert "cached ONNX export" in second.err and "exporting" not in second.err
    assert exported[0].stat().st_mtime_ns == stamp
    first_depth = np.asarray(Image.open(tmp_path / "first" / "depth.png"))
    np.testing.assert_array_equal(first_depth, np.asarray(Image.open(tmp_path / "second" / "depth.png")))


def test_export_cache_key_follows_the_checkpoint_content(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from jarrn_deploy.runtime.default_model import cached_onnx_path

    copy = tmp_path / "same.safetensors"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_checkpoint.read_bytes() + b" ")
    recipe = {"precision": "fp32"}
    assert cached_onnx_path(copy, recipe) == cached_onnx_path(tiny_checkpoint, recipe)
    assert cached_onnx_path(other, recipe) != cached_onnx_path(tiny_checkpoint, recipe)
    assert cached_onnx_path(copy, {"precision": "fp16"}) != cached_onnx_path(copy, recipe)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_without_tensorrt_says_so_in_one_line(tum_crop: dict[str, Path], tmp_path: Path) -> None:
    result = _run(["-m", "jarrn_deploy.runtime.infer", "--rgb", str(tum_crop["rgb"]), "--sparse", str(tum_crop["sparse"]),
                   "--sparse-scale", "5000", "--backend", "tensorrt", "--out", str(tmp_path / "o")])
    assert result.returncode == 5
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "TensorRT is not installed" in result.stderr and "Traceback" not in result.stderr


def test_infer_warns_once_when_a_tum_file_is_read_with_the_kitti_scale(
        tiny_checkpoint: Path, tum_crop: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.runtime.infer import main as infer_main

    out = tmp_path / "out"
    assert infer_main(["--rgb", str(tum_crop["rgb"]), "--sparse", str(tum_crop["sparse"]), "--model",
                       str(tiny_checkpoint), "--out", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "mis-scaled" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: --sparse:")
    assert "--sparse-scale 5000" in warnings[0] and "KITTI 256" in warnings[0] and "millimetres 1000" in warnings[0]

    assert infer_main(["--rgb", str(tum_crop["rgb"]), "--sparse", str(tum_crop["sparse"]), "--sparse-scale", "5000",
                       "--model", str(tiny_checkpoint), "--out", str(tmp_path / "right")]) == 0
    assert "mis-scaled" not in capsys.readouterr().err


def test_infer_pictures_have_a_colour_bar_and_say_what_made_them(
        tiny_checkpoint: Path, tum_crop: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.runtime.infer import main as infer_main

    out = tmp_path / "out"
    assert infer_main(["--rgb", str(tum_crop["rgb"]), "--sparse", str(tum_crop["sparse"]), "--sparse-scale", "5000",
                       "--model", str(tiny_checkpoint), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("torch fp32")
    colour = np.asarray(Image.open(out / "depth_color.png"))
    assert colour.shape[0] > 128 + 40 and colour.shape[1] >= 160  # title above, colour bar below
    panel = np.asarray(Image.open(out / "panel.png"))
    assert panel.shape[1] > 3 * 160


def test_depth_with_colorbar_draws_the_turbo_ramp_from_near_to_far() -> None:
    from matplotlib import colormaps

    from jarrn_deploy.model.visualize import DEPTH_SPAN
    from jarrn_deploy.runtime.panel import depth_with_colorbar

    depth = np.tile(np.linspace(1.0, 5.0, 200, dtype=np.float32), (100, 1))
    image = depth_with_colorbar(depth, title="onnxruntime FP32, model m.onnx", value_range=(1.0, 5.0))
    near, far = (np.asarray(colormaps["turbo"](v, bytes=True)[:3], dtype=int) for v in DEPTH_SPAN)
    below = image[image.shape[0] - 60:]  # the colour bar and its labels

    def has_ramp(row: np.ndarray) -> bool:
        coloured = np.flatnonzero(np.abs(row.astype(int) - 255).sum(axis=1) > 30)
        return coloured.size > 100 and (np.abs(row[coloured[0]] - near).max() < 40
                                        and np.abs(row[coloured[-1]] - far).max() < 40)

    assert any(has_ramp(row) for row in below)


def test_panel_caption_adds_a_line_above_the_tiles() -> None:
    from jarrn_deploy.runtime.panel import make_panel

    rgb = np.zeros((64, 64, 3), np.uint8)
    depth = np.full((64, 64), 2.0, np.float32)
    plain = make_panel(rgb, depth, depth)
    captioned = make_panel(rgb, depth, depth, caption="tensorrt FP16, model jarrn_fp16.engine")
    assert captioned.shape[0] > plain.shape[0] and captioned.shape[1] == plain.shape[1]


# ---------------------------------------------------------------------------------------------------------------------
# export: true summaries and progress


def test_export_summary_reads_opset_and_precision_from_the_written_file(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from jarrn_deploy.export.to_onnx import written_graph_facts

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.metadata_props.add(key="jarrn.precision", value="int8")
    onnx.save(model, tmp_path / "m.onnx")
    assert written_graph_facts(tmp_path / "m.onnx") == (19, "int8", (tmp_path / "m.onnx").stat().st_size)


def test_heartbeat_reports_a_long_silent_step() -> None:
    from jarrn_deploy.export.onnx_graph import heartbeat

    lines: list[str] = []
    with heartbeat(lines.append, "FP16 conversion", every_s=0.05):
        time.sleep(0.3)
    assert lines and all(line.startswith("FP16 conversion: still working") for line in lines)
    count = len(lines)
    time.sleep(0.15)
    assert len(lines) == count  # stops with the step


# ---------------------------------------------------------------------------------------------------------------------
# the README's quick start


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].strip() for line in quick_start.strip().splitlines()]
    assert len(commands) == 2
    assert commands[1] in (REPO / ".ci" / "run").read_text().splitlines()
