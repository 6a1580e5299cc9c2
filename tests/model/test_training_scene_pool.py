"""The scene pool of on-device synthetic batches (``--scene-pool``, ``--scene-reuse``), checked on the CPU: pooled
batches look like fresh ones, new scenes arrive at batch/K per step, the oldest are replaced, the batches follow from
the seed (and a resumed run gets the same ones), and bad values are one-line usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jarrn_deploy.model import train
from jarrn_deploy.model.training import scene_pool
from jarrn_deploy.model.training.device_batches import DeviceBatchSettings, DeviceSyntheticBatches

CROP = (64, 64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pooled(seed: int = 1, batch: int = 4, pool: int = 8, reuse: float = 2.0, workers: int = 0,
            epoch_samples: int = 64) -> DeviceSyntheticBatches:
    return DeviceSyntheticBatches(DeviceBatchSettings(CROP, batch, "official", "max", seed=seed,
                                                      render_scale=(1.0, 1.5)), "cpu",
                                  epoch_samples=epoch_samples, render_workers=workers, pool_scenes=pool,
                                  pool_reuse=reuse, log=lambda line: None)


def test_pooled_batches_have_the_shapes_dtypes_and_ranges_of_fresh_ones() -> None:
    pooled = _pooled()
    fresh = DeviceSyntheticBatches(pooled.settings, "cpu", epoch_samples=64).batch(0, 0)
    batch = pooled.pooled_batch(0, 0)
    assert set(batch) == set(fresh)
    for key, value in batch.items():
        assert value.shape == fresh[key].shape and value.dtype == fresh[key].dtype, key
        assert torch.isfinite(value).all(), key
    assert 0.0 <= float(batch["rgb"].min()) and float(batch["rgb"].max()) <= 1.0
    assert torch.equal(batch["mask"], (batch["sparse"] > 0).float())
    assert not ((batch["mask"] > 0) & (batch["gt_valid"] == 0)).any()  # points only where the scene has depth
    assert float(batch["sparse"].min()) >= 0.0 and float(batch["sparse"].max()) <= 1.0
    pool = pooled.pool
    assert pool is not None and pool.rgb.dtype == torch.uint8 and pool.depth.dtype == torch.float32
    layout = pool.layout
    assert pool.rgb.shape == (8, 3, layout.height, layout.width) and (layout.height, layout.width) == (96, 154)
    assert (pool.sizes[:, 0] >= CROP[0]).all() and (pool.sizes[:, 0] <= layout.height).all()
    assert (pool.sizes[:, 1] >= CROP[1]).all() and (pool.sizes[:, 1] <= layout.width).all()
    assert layout.bytes_per_scene == 96 * 154 * 7 + 16 and layout.bytes == 8 * layout.bytes_per_scene


@pytest.mark.parametrize("reuse", [2.0, 4.0])
def test_new_scenes_arrive_at_batch_over_reuse_per_step(reuse: float) -> None:
    pooled = _pooled(reuse=reuse)
    batches = list(pooled.epoch_batches(0))
    pool = pooled.pool
    assert pool is not None and len(batches) == 16
    refreshed = pool.scenes_written - pool.layout.scenes
    assert refreshed == pool.layout.chunk * int(15 * 4 / (reuse * pool.layout.chunk))  # before batches 1..15
    assert pool.samples_drawn / refreshed == pytest.approx(reuse, rel=0.15)


def test_a_refresh_replaces_the_oldest_scenes_only() -> None:
    pooled = _pooled(reuse=2.0)  # 4 samples a step, 2 new scenes a step: chunks of 2
    pooled.pooled_batch(0, 0)
    pool = pooled.pool
    assert pool is not None and pool.layout.chunk == 2
    before = pool.depth.clone()
    pooled.pooled_batch(0, 1)
    changed = [not torch.equal(before[i], pool.depth[i]) for i in range(8)]
    assert changed == [True, True] + [False] * 6
    pooled.pooled_batch(0, 2)
    assert not torch.equal(before[2], pool.depth[2]) and torch.equal(before[4], pool.depth[4])


def test_pooled_batches_follow_from_the_seed_and_a_resumed_run_gets_the_same_ones() -> None:
    straight = list(_pooled(seed=3, epoch_samples=32).epoch_batches(0))
    again = list(_pooled(seed=3, epoch_samples=32).epoch_batches(0))
    for a, b in zip(straight, again):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert not torch.equal(_pooled(seed=4).pooled_batch(0, 0)["rgb"], straight[0]["rgb"])
    resumed = _pooled(seed=3, epoch_samples=32).epoch_batches(0, first_batch=5)  # a fresh process: --resume
    for a, b in zip(straight[5:], resumed):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    next_epoch = _pooled(seed=3, epoch_samples=32).pooled_batch(1, 0)  # the pool carries on into the next epoch
    assert not torch.equal(next_epoch["rgb"], straight[0]["rgb"])


def test_render_workers_fill_the_pool_with_the_same_scenes() -> None:
    """With --workers the chunks are ray cast with numpy in loader processes; the pool they fill holds the scenes
    in-process rendering would (up to the renderers' rounding)."""
    in_process, workers = _pooled(seed=2), _pooled(seed=2, workers=1)
    in_process.pooled_batch(0, 0)
    batch = workers.pooled_batch(0, 0)
    try:
        a, b = in_process.pool, workers.pool
        assert a is not None and b is not None and (a.sizes == b.sizes).all()
        assert (a.rgb.int() - b.rgb.int()).abs().max() <= 2
        assert ((a.depth > 0) != (b.depth > 0)).float().mean() < 0.01
        assert batch["rgb"].shape == (4, 3, *CROP)
    finally:
        workers.close()


def test_the_pool_size_defaults_to_512_on_cuda_fewer_for_short_runs_and_off_on_the_cpu() -> None:
    from jarrn_deploy.model.train_options import build_parser
    from jarrn_deploy.model.training.data import pool_scenes

    def scenes(device: str, *extra: str) -> int:
        return pool_scenes(build_parser().parse_args(list(extra)), torch.device(device), 1)

    assert scenes("cuda:0", "--epoch-samples", "200000") == 512
    assert scenes("cuda:0", "--epoch-samples", "800", "--epochs", "2") == 200  # 1600 samples / 8 draws per scene
    assert scenes("cuda:0", "--epoch-samples", "8", "--epochs", "1", "--batch-size", "16") == 16  # at least a batch
    assert scenes("cpu", "--epoch-samples", "200000") == 0
    assert scenes("cpu", "--scene-pool", "32") == 32


def test_a_pool_larger_than_half_the_free_memory_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    layout = scene_pool.pool_layout(512, 8.0, 16, (320, 320), (1.0, 2.0), 1.6)
    assert (layout.height, layout.width, layout.bytes_per_scene) == (640, 1024, 4_587_536)
    monkeypatch.setattr(scene_pool, "free_memory_bytes", lambda device: 4_000_000_000)
    problem = scene_pool.memory_problem(layout, torch.device("cpu"))
    assert problem is not None and "\n" not in problem
    assert problem.startswith("--scene-pool 512: 2.35 GB (4.59 MB per scene of up to 640x1024)")
    monkeypatch.setattr(scene_pool, "free_memory_bytes", lambda device: 8_000_000_000)
    assert scene_pool.memory_problem(layout, torch.device("cpu")) is None


@pytest.mark.parametrize(("extra", "message"), [
    (["--scene-pool", "-1"], "--scene-pool: expected a number of scenes >= 0 (0 = off) or 'auto', got -1"),
    (["--scene-reuse", "0.5"], "--scene-reuse: expected a number >= 1 (draws per pooled scene), got 0.5"),
    (["--scene-pool", "1"], "--scene-pool: expected 0 (off) or at least --batch-size (2) scenes, got 1"),
    (["--scene-pool", "8", "--synthetic-on-device", "off"],
     "--scene-pool 8: pools scenes rendered on the device (--data synthetic with --synthetic-on-device on|auto), "
     "got --data synthetic --synthetic-on-device off"),
])
def test_bad_pool_values_are_one_line_usage_errors(extra: list[str], message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = train.main(["--out", str(tmp_path / "run"), "--epoch-samples", "4", "--batch-size", "2", "--threads", "1",
                       "--widths", "8,8,8,8,8,8,8", "--no-progress", *extra])
    assert code == 2 and capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "run").exists()


def test_scene_pool_flags_parse_auto_and_numbers() -> None:
    from jarrn_deploy.model.train_options import build_parser

    assert build_parser().parse_args([]).scene_pool == "auto"
    assert build_parser().parse_args(["--scene-pool", "256"]).scene_pool == 256
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--scene-pool", "many"])
