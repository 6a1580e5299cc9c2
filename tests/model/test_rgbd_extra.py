"""The rgbd_extra adapter: split by set, sample shapes, evaluation patterns, errors naming the file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jarrn_deploy.model.datasets import DatasetError
from jarrn_deploy.model.rgbd_extra import (
    HELD_OUT_SETS, discover_sets, frame_cases, held_out_cases, load_frame, split_lidar, split_sets,
)
from jarrn_deploy.model.training.rgbd_extra_samples import MixedSamples, RgbdExtraSamples, mixed_training_samples

from tests.support import SHARED  # noqa: E402

SHARED_ROOT = SHARED / "data" / "rgbd_extra"
needs_shared = pytest.mark.skipif(not SHARED_ROOT.is_dir(), reason=f"no rgbd_extra data at {SHARED_ROOT}")


def _write_frame(folder: Path, *, size=(48, 64), depth_size=None, scene="indoor", kind="dense_sensor",
                 depth_dtype=np.uint16) -> Path:
    folder.mkdir(parents=True)
    h, w = size
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / "rgb.png")
    dh, dw = depth_size or size
    depth = rng.integers(500, 4000, (dh, dw)).astype(depth_dtype)
    if kind == "lidar_sparse":
        depth[rng.random((dh, dw)) > 0.2] = 0
    Image.fromarray(depth).save(folder / "depth_mm.png")
    (folder / "meta.json").write_text(json.dumps({"set": folder.parent.name, "frame": folder.name, "scene": scene,
                                                  "kind": kind, "intrinsics": [50.0, 50.0, w / 2, h / 2]}))
    return folder


@pytest.fixture()
def tiny_root(tmp_path: Path) -> Path:
    """Two training sets and two held-out sets (one indoor, one LiDAR each), two frames per set."""
    root = tmp_path / "rgbd_extra"
    for name, scene, kind in (("train_in", "indoor", "dense_sensor"), ("train_out", "outdoor", "lidar_sparse"),
                              (HELD_OUT_SETS[0], "indoor", "dense_sensor"),
                              (HELD_OUT_SETS[2], "outdoor", "lidar_sparse")):
        for frame in ("a", "b"):
            _write_frame(root / name / frame, size=(160, 200), scene=scene, kind=kind)
    return root


def test_load_frame_gives_uint8_rgb_and_float_metres_of_the_same_size(tiny_root: Path) -> None:
    frame = load_frame(tiny_root / "train_in" / "a")
    assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (160, 200, 3)
    assert frame.depth.dtype == np.float32 and frame.depth.shape == (160, 200)
    assert 0.5 <= frame.depth[frame.depth > 0].min() and frame.depth.max() < 4.0  # millimetres became metres


def test_split_keeps_every_set_on_one_side(tiny_root: Path) -> None:
    sets = discover_sets(tiny_root)
    train, held = split_sets(list(sets))
    assert set(train).isdisjoint(held) and set(train) | set(held) == set(sets)
    assert {c.group.split("@")[0] for c in held_out_cases(tiny_root)} == set(held)


def test_training_samples_read_only_training_sets(tiny_root: Path) -> None:
    args = argparse.Namespace(data_root=tiny_root, real_fraction=1.0, depth_normalisation="minmax", seed=0,
                              jitter=0.2)
    mixed = mixed_training_samples(args, (64, 64), _FakeSynthetic(8))
    assert {f.parent.name for f in mixed.real.folders} == {"train_in", "train_out"}


@needs_shared
def test_shared_split_leaks_no_set_and_holds_out_indoor_and_outdoor() -> None:
    sets = discover_sets(SHARED_ROOT)
    train, held = split_sets(list(sets))
    assert set(held) == set(HELD_OUT_SETS) and set(train).isdisjoint(held)
    scenes = {load_frame(sets[s][0]).scene for s in held}
    assert scenes == {"indoor", "outdoor"}


class _FakeSynthetic:
    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"synthetic": index}


def test_training_sample_shapes_dtypes_and_normalisation(tiny_root: Path) -> None:
    folders = [f for s in ("train_in", "train_out") for f in discover_sets(tiny_root)[s]]
    samples = RgbdExtraSamples(folders, (64, 64), normalisation="minmax", seed=0, epoch_samples=6)
    for i in range(6):
        item = samples[i]
        assert item["rgb"].shape == (3, 64, 64) and item["rgb"].dtype.is_floating_point
        for key in ("sparse", "mask", "gt", "gt_valid"):
            assert item[key].shape == (1, 64, 64)
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert 0.0 <= float(item["rgb"].min()) and float(item["rgb"].max()) <= 1.0
        assert float(item["sparse"].max()) <= 1.0 + 1e-6  # minmax-normalised like inference
    again = RgbdExtraSamples(folders, (64, 64), normalisation="minmax", seed=0, epoch_samples=6)
    assert bool((again[3]["sparse"] == samples[3]["sparse"]).all())  # deterministic in (seed, epoch, index)


def test_mixed_samples_follow_the_fraction_and_pass_the_epoch_on() -> None:
    mixed = MixedSamples(_Tagged("real", 200), _Tagged("synthetic", 200), 0.6, seed=0)
    mixed.epoch = 3
    assert mixed.real.epoch == 3 and mixed.synthetic.epoch == 3
    share = np.mean([mixed[i] == "real" for i in range(200)])
    assert 0.45 < share < 0.75


class _Tagged:
    def __init__(self, tag: str, n: int) -> None:
        self.tag, self.n, self.epoch = tag, n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> str:
        return self.tag


def test_lidar_case_scores_only_points_the_input_does_not_hold(tiny_root: Path) -> None:
    frame = load_frame(tiny_root / HELD_OUT_SETS[2] / "a")
    (case,) = frame_cases(frame, seed=0)
    assert case.name.endswith("@lidar20")
    assert not ((case.sparse > 0) & (case.gt > 0)).any()
    assert ((case.sparse > 0) | (case.gt > 0)).sum() == (frame.depth > 0).sum()
    share = (case.sparse > 0).sum() / (frame.depth > 0).sum()
    assert 0.15 < share < 0.25


def test_indoor_cases_use_500_and_100_gt_points(tiny_root: Path) -> None:
    cases = frame_cases(load_frame(tiny_root / HELD_OUT_SETS[0] / "a"), seed=0)
    assert [c.name.rsplit("@", 1)[1] for c in cases] == ["500", "100"]
    assert [(c.sparse > 0).sum() for c in cases] == [500, 100]


def test_split_lidar_is_reproducible() -> None:
    depth = np.where(np.random.default_rng(1).random((30, 30)) < 0.3, 5.0, 0.0).astype(np.float32)
    a = split_lidar(depth, 0.2, np.random.default_rng(7))
    b = split_lidar(depth, 0.2, np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_mismatched_sizes_name_the_depth_file(tmp_path: Path) -> None:
    folder = _write_frame(tmp_path / "s" / "f", size=(32, 40), depth_size=(32, 20))
    with pytest.raises(DatasetError, match=r"depth_mm\.png.*32x20.*rgb\.png.*32x40"):
        load_frame(folder)


def test_unreadable_rgb_names_the_file(tmp_path: Path) -> None:
    folder = _write_frame(tmp_path / "s" / "f")
    (folder / "rgb.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"cannot read RGB image .*rgb\.png"):
        load_frame(folder)


def test_eight_bit_depth_png_names_the_file_and_the_bit_depth(tmp_path: Path) -> None:
    folder = _write_frame(tmp_path / "s" / "f", depth_dtype=np.uint8)
    with pytest.raises(DatasetError, match=r"depth_mm\.png: expected a 16-bit .*got uint8"):
        load_frame(folder)


def test_bad_meta_names_the_file(tmp_path: Path) -> None:
    folder = _write_frame(tmp_path / "s" / "f")
    (folder / "meta.json").write_text("{broken")
    with pytest.raises(DatasetError, match=r"cannot read .*meta\.json"):
        load_frame(folder)
    (folder / "meta.json").write_text(json.dumps({"scene": "underwater", "kind": "dense_sensor"}))
    with pytest.raises(DatasetError, match=r"meta\.json: 'scene'"):
        load_frame(folder)


def test_missing_root_and_empty_root_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        discover_sets(tmp_path / "nothing")
    with pytest.raises(DatasetError, match="no <set>/<frame>/meta.json"):
        discover_sets(tmp_path)


def test_train_cli_runs_on_rgbd_extra_and_validates_on_held_out_sets(tiny_root: Path, tmp_path: Path) -> None:
    from jarrn_deploy.model.train import main

    out = tmp_path / "run"
    rc = main(["--data", "rgbd_extra", "--data-root", str(tiny_root), "--real-fraction", "0.5", "--out", str(out),
               "--widths", "16,16,12,8,8,4,4", "--sparse-fill", "pushpull", "--start-as-fill", "--crop", "64x64",
               "--batch-size", "2", "--epochs", "1", "--epoch-samples", "4", "--workers", "0", "--threads", "1",
               "--val-every", "0", "--val-max-side", "128", "--no-progress", "--device", "cpu"])
    assert rc == 0
    val = (out / "val.csv").read_text()
    assert HELD_OUT_SETS[0] in val and HELD_OUT_SETS[2] in val and "train_in" not in val


def test_held_out_report_has_a_row_per_set_and_pattern_with_the_gain_over_fill(tiny_root: Path,
                                                                                 tmp_path: Path) -> None:
    from jarrn_deploy.model.heldout_eval import evaluate_held_out, gain_over_fill, write_report
    from jarrn_deploy.model.network import Jarrn, JarrnConfig
    from jarrn_deploy.model.training.network_setup import start_as_fill

    network = start_as_fill(Jarrn(JarrnConfig((16, 16, 12, 8, 8, 4, 4), depth_normalisation="minmax",
                                              sparse_fill="pushpull")))
    report = evaluate_held_out(network, tiny_root, panels=False, log=lambda line: None)
    assert [r.name for r in report.sets] == [f"{HELD_OUT_SETS[2]}@lidar20 (n=2)", f"{HELD_OUT_SETS[0]}@500 (n=2)",
                                            f"{HELD_OUT_SETS[0]}@100 (n=2)"]
    frame_rmse = [r.metrics["linear"]["rmse"] for r in report.frames[:2]]
    assert report.sets[0].metrics["linear"]["rmse"] == pytest.approx(np.mean(frame_rmse))
    for r in report.sets:  # a network that returns its fill gains nothing over it
        assert gain_over_fill(r) == pytest.approx(0.0, abs=5e-3)
    write_report(tmp_path, report, [], "tiny", "test")
    text = (tmp_path / "summary.md").read_text()
    assert "gain over fill" in text and f"{HELD_OUT_SETS[0]}@100 (n=2)" in text
    assert (tmp_path / "heldout.json").is_file() and (tmp_path / "heldout.png").is_file()
