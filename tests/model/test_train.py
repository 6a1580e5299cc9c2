from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jarrn_deploy.model import train
from jarrn_deploy.model.checkpoint import load_model
from jarrn_deploy.model.train_options import SPARSE_MIXES, build_parser
from jarrn_deploy.model.training import loop
from jarrn_deploy.model.training.network_setup import start_as_fill
from jarrn_deploy.model.training.samples import SyntheticSource, TrainingSamples, normalise_sample
from jarrn_deploy.model.training.schedule import learning_rate
from jarrn_deploy.model.training.sparse_sampling import sample_sparse
from jarrn_deploy.model.training.step import train_step
from jarrn_deploy.model.training.validation import downscale_case
from jarrn_deploy.model.metric_jarrn import normalise_sparse
from jarrn_deploy.model.network import Jarrn, JarrnConfig
from tests.support import TINY_WIDTHS

TINY = "8,8,8,8,8,8,8"


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tiny models gain nothing from more, and spinning threads slow down badly when the
    CPU is shared with other jobs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--widths", TINY, "--crop", "64x64", "--batch-size", "2", "--epoch-samples", "4",
            "--threads", "1", "--no-progress", "--log-every", "1", "--checkpoint-every", "2", *extra]


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for action in parser._actions:
        assert action.help, f"option {action.option_strings} has no help text"
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    for word in ("--sparse-mix", "official", "eval", "--epoch-samples", "--resume", "torchrun", "--export"):
        assert word in text


def test_short_run_writes_checkpoint_logs_curves_and_export(tmp_path: Path) -> None:
    out = tmp_path / "run"
    export = tmp_path / "final.safetensors"
    rc = train.main(_args(out, "--epochs", "2", "--val-every", "0", "--val-max-side", "96",
                          "--export", str(export), "--half"))
    assert rc == 0
    for name in ("last.pt", "log.csv", "val.csv", "history.json", "curves.png", "best.safetensors", "args.json"):
        assert (out / name).is_file(), name
    payload = torch.load(out / "last.pt", weights_only=True)
    assert payload["step"] == 4 and payload["epoch"] == 2
    for key in ("network_state_dict", "optimizer_state_dict", "scaler_state_dict", "jarrn_config", "lr_scheduler"):
        assert key in payload
    history = json.loads((out / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2, 3, 4]
    assert len(history["val"]) == 1 and "kitti_02/rmse" in history["val"][0]
    assert np.isfinite(history["val"][0]["score"])
    # load_model reads both the training checkpoint and the exported weights
    assert load_model(out / "last.pt").config.widths == (8,) * 7
    exported = load_model(export)
    assert exported.config.widths == (8,) * 7
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp*"))


def test_resume_continues_from_the_saved_step(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train.main(_args(out, "--epochs", "1", "--val-every", "-1")) == 0
    first = torch.load(out / "last.pt", weights_only=True)
    assert first["step"] == 2
    assert train.main(_args(out, "--epochs", "3", "--val-every", "-1", "--resume")) == 0
    resumed = torch.load(out / "last.pt", weights_only=True)
    assert resumed["step"] == 6
    steps = [row["step"] for row in resumed["history"]["train"]]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not torch.equal(first["network_state_dict"]["rgb_x_block.0.weight"],
                           resumed["network_state_dict"]["rgb_x_block.0.weight"])


def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(_args(straight, "--epochs", "2", "--val-every", "-1")) == 0
    assert train.main(_args(split, "--epochs", "1", "--val-every", "-1")) == 0
    assert train.main(_args(split, "--epochs", "2", "--val-every", "-1", "--resume")) == 0
    a = torch.load(straight / "last.pt", weights_only=True)["network_state_dict"]
    b = torch.load(split / "last.pt", weights_only=True)["network_state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_interrupt_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    real_step = train_step
    calls = {"n": 0}

    def interrupting_step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", interrupting_step)
    assert train.main(_args(out, "--epochs", "5", "--val-every", "-1", "--checkpoint-every", "100")) == 130
    payload = torch.load(out / "last.pt", weights_only=True)
    assert payload["step"] == 3
    assert (out / "log.csv").is_file()


def test_training_overfits_a_fixed_batch() -> None:
    torch.manual_seed(0)
    network = Jarrn(JarrnConfig(TINY_WIDTHS))
    source = SyntheticSource(4, (64, 64), seed=3)
    samples = TrainingSamples(source, (64, 64), mix="eval", normalisation="max", seed=3)
    batch = {k: torch.stack([samples[i][k] for i in range(4)]) for k in ("rgb", "sparse", "mask", "gt", "gt_valid")}
    optimizer = torch.optim.Adam(network.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = [float(train_step(network, batch, optimizer, scaler, device=torch.device("cpu"), amp=False,
                                     dense_absolute_weight=1.0).total) for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses


def test_start_as_fill_network_returns_the_filled_sparse_input_before_training() -> None:
    from jarrn_deploy.model.metric_jarrn import MetricJarrn, pushpull_fill

    torch.manual_seed(0)
    config = JarrnConfig((16, 16, 16, 16, 8, 8, 8), depth_normalisation="minmax", sparse_fill="pushpull")
    network = start_as_fill(Jarrn(config)).eval()
    rng = np.random.default_rng(0)
    sparse = np.zeros((128, 192), np.float32)
    sparse[rng.integers(0, 128, 80), rng.integers(0, 192, 80)] = rng.uniform(1.0, 9.0, 80)
    sparse_t = torch.from_numpy(sparse)[None, None]
    with torch.no_grad():
        depth = MetricJarrn(network)(torch.rand(1, 3, 128, 192), sparse_t)
    torch.testing.assert_close(depth, pushpull_fill(sparse_t, (sparse_t > 0).float()), atol=1e-4, rtol=1e-5)


def test_start_as_fill_needs_the_pushpull_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(_args(tmp_path / "run", "--start-as-fill")) == 2  # a usage error: one line, no traceback
    assert "error: --start-as-fill" in capsys.readouterr().err


def test_pushpull_run_records_the_fill_in_its_export(tmp_path: Path) -> None:
    export = tmp_path / "final.safetensors"
    rc = train.main(_args(tmp_path / "run", "--epochs", "1", "--val-every", "-1", "--sparse-fill", "pushpull",
                          "--depth-normalisation", "minmax", "--start-as-fill", "--export", str(export)))
    assert rc == 0
    assert load_model(export).config.sparse_fill == "pushpull"


def test_ema_run_validates_and_exports_the_averaged_weights(tmp_path: Path) -> None:
    out, export = tmp_path / "run", tmp_path / "final.safetensors"
    rc = train.main(_args(out, "--epochs", "2", "--val-every", "-1", "--ema", "0.5", "--export", str(export),
                          "--export-which", "last"))
    assert rc == 0
    payload = torch.load(out / "last.pt", weights_only=True)
    averaged = {k[len("module."):]: v for k, v in payload["ema_state_dict"].items() if k.startswith("module.")}
    raw, exported = payload["network_state_dict"], load_model(export).state_dict()
    assert int(payload["ema_state_dict"]["n_averaged"]) == 4
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)
    for key, value in averaged.items():
        torch.testing.assert_close(exported[key], value)


def test_ema_decay_outside_the_unit_interval_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(_args(tmp_path / "run", "--ema", "1.5")) == 2
    assert "error: --ema" in capsys.readouterr().err


def test_learning_rate_schedule() -> None:
    kwargs = dict(base_lr=2e-4, steps_per_epoch=10, milestones=[20, 40], gamma=0.5)
    assert learning_rate(0, **kwargs) == pytest.approx(2e-5)
    assert learning_rate(9, **kwargs) == pytest.approx(2e-4)
    assert learning_rate(199, **kwargs) == pytest.approx(2e-4)
    assert learning_rate(200, **kwargs) == pytest.approx(1e-4)
    assert learning_rate(400, **kwargs) == pytest.approx(5e-5)


@pytest.mark.parametrize("mix", sorted(SPARSE_MIXES))
def test_sparse_mixes_only_keep_valid_pixels_and_cover_their_regimes(mix: str) -> None:
    from jarrn_deploy.model.synthetic import generate_scene

    scene = generate_scene(5, 96, 128)
    depth = scene.depth
    regimes = set()
    for seed in range(60):
        sparse, regime = sample_sparse(depth, np.random.default_rng(seed), SPARSE_MIXES[mix],
                                             scene.intrinsics)
        regimes.add(regime)
        assert sparse.shape == depth.shape and sparse.dtype == np.float32
        assert np.isfinite(sparse).all() and (sparse >= 0).all()
        assert not ((sparse > 0) & (depth <= 0)).any()
        if regime == "none":
            assert not sparse.any()
    assert regimes == set(SPARSE_MIXES[mix])


def test_normalise_sample_matches_inference_and_relative_mode() -> None:
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 32, 32, generator=gen) * 5 + 1
    sparse = torch.where(torch.rand(1, 32, 32, generator=gen) > 0.9, gt, torch.zeros_like(gt))
    for method in ("max", "minmax"):
        sparse_n, mask, gt_n, valid = normalise_sample(sparse, gt, method)
        ref, low, rng = normalise_sparse(sparse[None], (sparse > 0).float()[None], method)
        torch.testing.assert_close(sparse_n, ref[0])
        torch.testing.assert_close(gt_n * rng[0] + low[0], gt)
        torch.testing.assert_close(gt_n[mask > 0], sparse_n[mask > 0])
    _, mask, gt_n, _ = normalise_sample(torch.zeros_like(gt), gt, "max")
    assert not mask.any()
    assert float(gt_n.min()) == pytest.approx(0.0, abs=1e-6) and float(gt_n.max()) == pytest.approx(1.0, abs=1e-6)


def test_training_samples_are_deterministic_and_well_formed() -> None:
    source = SyntheticSource(8, (64, 64), seed=1)
    a = TrainingSamples(source, (64, 64), mix="official", normalisation="max", seed=1, epoch_samples=8,
                              fresh_source_per_epoch=True)
    b = TrainingSamples(source, (64, 64), mix="official", normalisation="max", seed=1, epoch_samples=8,
                              fresh_source_per_epoch=True)
    x, y = a[3], b[3]
    for key in x:
        assert x[key].shape[-2:] == (64, 64)
        torch.testing.assert_close(x[key], y[key])
    assert 0 <= float(x["rgb"].min()) and float(x["rgb"].max()) <= 1
    a.epoch = 1
    assert not torch.equal(a[3]["rgb"], x["rgb"])  # a new epoch renders new scenes


def test_downscale_case_keeps_every_point_once() -> None:
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    gt = np.ones((10, 12), dtype=np.float32)
    sparse = np.zeros_like(gt)
    sparse[0, 0], sparse[1, 1], sparse[5, 7] = 3.0, 2.0, 4.0
    small_rgb, small_sparse, small_gt = downscale_case(rgb, sparse, gt, 2)
    assert small_rgb.shape == (5, 6, 3) and small_gt.shape == small_sparse.shape == (5, 6)
    assert small_sparse[0, 0] == 2.0  # the nearer of the two points in that cell
    assert small_sparse[2, 3] == 4.0


def test_outlier_option_corrupts_points_and_is_off_by_default() -> None:
    from jarrn_deploy.model.synthetic import generate_scene

    scene = generate_scene(1, 96, 128)
    mix = {"points": 1.0}
    for seed in range(5):
        clean, _ = sample_sparse(scene.depth, np.random.default_rng(seed), mix, scene.intrinsics)
        again, _ = sample_sparse(scene.depth, np.random.default_rng(seed), mix, scene.intrinsics, 0.0)
        np.testing.assert_array_equal(clean, again)
        valid = clean > 0
        np.testing.assert_array_equal(clean[valid], scene.depth[valid])
    wrong = 0
    for seed in range(20):
        noisy, _ = sample_sparse(scene.depth, np.random.default_rng(seed), mix, scene.intrinsics, 1.0)
        valid = noisy > 0
        assert not (valid & (scene.depth <= 0)).any()
        wrong += int((np.abs(noisy[valid] - scene.depth[valid]) > 0.2 * scene.depth[valid]).sum())
    assert wrong > 0
