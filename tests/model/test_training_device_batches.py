"""Synthetic batches made on the training device (``--synthetic-on-device``), checked on the CPU: the same items as
the host path, reproducible from the seed, every regime well-formed, and a training run that resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jarrn_deploy.model import train
from jarrn_deploy.model.train_options import SPARSE_MIXES
from jarrn_deploy.model.training.device_batches import DeviceBatchSettings, DeviceSyntheticBatches, draw_sparse
from jarrn_deploy.model.training.samples import SyntheticSource, TrainingSamples

CROP = (64, 64)
TINY = "8,8,8,8,8,8,8"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batches(seed: int = 1, batch: int = 4, mix: str = "official", **settings) -> DeviceSyntheticBatches:
    return DeviceSyntheticBatches(DeviceBatchSettings(CROP, batch, mix, "max", seed=seed, **settings), "cpu",
                                  epoch_samples=4 * batch)


def test_device_batches_have_the_keys_shapes_dtypes_and_ranges_of_the_host_samples() -> None:
    host = TrainingSamples(SyntheticSource(2, CROP, seed=1), CROP, mix="official", normalisation="max", seed=1)
    expected = {k: v[None].expand(4, *v.shape) for k, v in host[0].items()}
    batch = _batches(outlier_probability=0.5).batch(0, 0)
    assert set(batch) == set(expected)
    for key, value in batch.items():
        assert value.shape == expected[key].shape and value.dtype == expected[key].dtype, key
        assert value.device.type == "cpu" and torch.isfinite(value).all(), key
    assert 0.0 <= float(batch["rgb"].min()) and float(batch["rgb"].max()) <= 1.0
    for key in ("mask", "gt_valid"):
        assert set(batch[key].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(batch["mask"], (batch["sparse"] > 0).float())
    assert not ((batch["mask"] > 0) & (batch["gt_valid"] == 0)).any()  # points only where the scene has depth
    assert float(batch["sparse"].min()) >= 0.0 and float(batch["sparse"].max()) <= 1.0  # 'max': divided by the largest
    assert float(batch["gt"].min()) >= -1e-6


def test_device_batches_are_reproducible_from_seed_epoch_and_index() -> None:
    a, b = _batches(seed=3), _batches(seed=3)
    first = a.batch(1, 2)
    for key, value in b.batch(1, 2).items():
        torch.testing.assert_close(value, first[key], rtol=0, atol=0)
    assert not torch.equal(a.batch(1, 3)["rgb"], first["rgb"])  # another batch of the epoch
    assert not torch.equal(a.batch(2, 2)["rgb"], first["rgb"])  # the next epoch renders new scenes
    assert not torch.equal(_batches(seed=4).batch(1, 2)["rgb"], first["rgb"])
    resumed = list(a.epoch_batches(1, first_batch=2))
    assert len(resumed) == a.steps_per_epoch - 2 and torch.equal(resumed[0]["gt"], first["gt"])


def test_device_batches_shard_an_epoch_over_processes() -> None:
    settings = DeviceBatchSettings(CROP, 2, "eval", "max")
    ranks = [DeviceSyntheticBatches(settings, "cpu", epoch_samples=9, rank=r, world=2) for r in (0, 1)]
    assert [r.steps_per_epoch for r in ranks] == [2, 2]  # 9 samples: 4 per process, 2 whole batches each
    assert not torch.equal(ranks[0].batch(0, 0)["rgb"], ranks[1].batch(0, 0)["rgb"])


@pytest.mark.parametrize("regime", sorted(set(SPARSE_MIXES["official"]) | set(SPARSE_MIXES["eval"])))
def test_every_sparse_regime_keeps_only_valid_pixels(regime: str) -> None:
    from jarrn_deploy.model.synthetic import generate_batch

    scenes = generate_batch([5, 6, 7], 80, 112)
    depth = scenes.depth
    generator = torch.Generator().manual_seed(0)
    counts = []
    for seed in range(4):
        sparse = draw_sparse(depth, scenes.intrinsics, np.random.default_rng(seed), generator, {regime: 1.0},
                             outlier_probability=1.0)
        assert sparse.shape == depth.shape and sparse.dtype == torch.float32
        assert torch.isfinite(sparse).all() and (sparse >= 0).all()
        assert not ((sparse > 0) & (depth <= 0)).any()
        counts += (sparse > 0).flatten(1).sum(1).tolist()
    if regime == "none":
        assert max(counts) == 0
    else:
        assert max(counts) > 0, counts
    if regime == "points":
        assert max(counts) <= 2000


def test_random_points_keep_exactly_the_drawn_count_before_holes() -> None:
    """Without holes (all samples' hole coins come up tails), a points pattern keeps exactly its log-uniform count."""
    from jarrn_deploy.model.training import device_batches

    depth = torch.full((4, 1, 48, 64), 5.0)
    depth[:, :, :, :8] = 0.0
    rng = np.random.default_rng(11)
    sparse = device_batches._random_subsets(depth, ["points", "ratio_low", "ratio_high", "none"], rng,
                                            torch.Generator().manual_seed(0), 0.0)
    replay = np.random.default_rng(11)
    ratios, counts = [], []
    for regime in ("points", "ratio_low", "ratio_high", "none"):
        ratios.append(replay.uniform(0.0, 0.1) if regime == "ratio_low" else
                      replay.uniform(0.1, 1.0) if regime == "ratio_high" else None)
        counts.append(round(device_batches.log_uniform(replay, 3, 2000)) if regime == "points" else 0)
    n_valid = 48 * 56
    kept = (sparse > 0).flatten(1).sum(1).tolist()
    assert kept == [counts[0], round(ratios[1] * n_valid), round(ratios[2] * n_valid), 0]
    assert torch.equal(sparse[sparse > 0], torch.full_like(sparse[sparse > 0], 5.0))


def _args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--widths", TINY, "--crop", "64x64", "--batch-size", "2", "--epoch-samples", "4",
            "--threads", "1", "--no-progress", "--log-every", "1", "--val-every", "-1", "--synthetic-on-device", "on",
            *extra]


def test_training_on_device_batches_resumes_like_an_uninterrupted_run(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(_args(straight, "--epochs", "2")) == 0
    assert "rendered on the device" in capsys.readouterr().out
    assert train.main(_args(split, "--epochs", "1")) == 0
    assert train.main(_args(split, "--epochs", "2", "--resume")) == 0
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key, value in a["network_state_dict"].items():
        torch.testing.assert_close(b["network_state_dict"][key], value, rtol=1e-4, atol=1e-5)
    history = json.loads((split / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2, 3, 4]
    assert all(np.isfinite(row["loss"]) for row in history["train"])


def test_device_batches_are_refused_for_datasets_on_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(_args(tmp_path / "run", "--data", "kitti", "--data-root", str(tmp_path))) == 2
    assert capsys.readouterr().err.strip() == ("error: --synthetic-on-device on: renders --data synthetic only, "
                                               "got --data kitti")
    assert not (tmp_path / "run").exists()


def test_auto_makes_synthetic_batches_on_cuda_only() -> None:
    from jarrn_deploy.model.train_options import build_parser
    from jarrn_deploy.model.training.data import synthetic_on_device

    def chosen(device: str, *extra: str) -> bool:
        return synthetic_on_device(build_parser().parse_args(list(extra)), torch.device(device))

    assert not chosen("cpu")
    assert chosen("cuda:0") and chosen("cuda:0", "--workers", "4")
    assert chosen("cpu", "--synthetic-on-device", "on")
    assert not chosen("cuda:0", "--synthetic-on-device", "off")
    assert not chosen("cuda:0", "--data", "kitti")


def test_render_workers_give_the_batches_of_in_process_rendering() -> None:
    """With --workers, numpy ray casts the scenes in loader processes; the batches equal the in-process ones (up to
    the renderers' float rounding)."""
    batches = DeviceSyntheticBatches(DeviceBatchSettings(CROP, 2, "eval", "max", seed=2), "cpu", epoch_samples=6,
                                     render_workers=1)
    from_workers = list(batches.epoch_batches(0, first_batch=1))
    assert len(from_workers) == 2
    for index, batch in zip((1, 2), from_workers):
        in_process = batches.batch(0, index)
        for key, value in batch.items():
            assert value.shape == in_process[key].shape and value.dtype == in_process[key].dtype
        torch.testing.assert_close(batch["rgb"], in_process["rgb"], atol=1.5 / 255, rtol=0)
        assert (batch["mask"] != in_process["mask"]).float().mean() < 0.01
        assert (batch["gt_valid"] != in_process["gt_valid"]).float().mean() < 0.01


@pytest.mark.parametrize("regime", ["lidar", "points", "ratio_low", "ratio_high", "dense"])
def test_device_regimes_keep_as_many_points_as_the_host_ones(regime: str) -> None:
    """Same scene, same regime: the device patterns keep about as many points as the host's, on average."""
    from jarrn_deploy.model.synthetic import generate_batch, generate_scene
    from jarrn_deploy.model.training.sparse_sampling import sample_sparse

    scene, batch = generate_scene(5, 96, 144), generate_batch([5], 96, 144)
    generator = torch.Generator().manual_seed(0)
    host = [(sample_sparse(scene.depth, np.random.default_rng(s), {regime: 1.0}, scene.intrinsics)[0] > 0).sum()
            for s in range(30)]
    device = [int((draw_sparse(batch.depth, batch.intrinsics, np.random.default_rng(s), generator, {regime: 1.0})
                   > 0).sum()) for s in range(30)]
    assert np.mean(device) == pytest.approx(np.mean(host), rel=0.25)
