"""Training throughput on a GPU, for the device check (``benchmarks/device_check.py``): two numbers that together say
what limits training.

- :func:`step_throughput`: :func:`jarrn_deploy.model.training.step.train_step` on one batch that already lives on the GPU,
  repeated: what the GPU sustains (the compute and launch ceiling of the training step).
- :func:`training_smoke`: ``python -m jarrn_deploy.model.train`` on synthetic scenes for about a minute, exactly as users run it.
  By default with ``--synthetic-on-device on`` and a scene pool (``--scene-pool 512 --scene-reuse 8``): loader
  workers only ray cast the pool's new scenes (numpy), and every batch is drawn from the pool on the GPU with fresh
  sparse inputs, crops and augmentation; ``scene_pool=0`` renders new scenes for every batch, ``on_device=False``
  measures the older path (loader workers making every sample with numpy, copies of finished crops to the GPU).
- :func:`data_throughput` (also ``python -m jarrn_deploy.benchmarks.device_train``): the synthetic data alone, without the model,
  for the ways of making it (host, device in the training process, device with render workers, each device path
  with and without the scene pool).

When the second is far below the first, the data pipeline sets the pace, not the GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

from jarrn_deploy.progress import Log  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_TARGET = 400.0
"""Samples/s that training of the full config at 320x320, batch 16 should reach on an H100/H200-class GPU (issue 11)."""


@dataclass(frozen=True)
class TrainingShape:
    """What one training step works on."""

    config: str = "full"
    """'full' (the paper's widths, 36.3M parameters) or 'small' (the bundled model's widths)."""
    crop: tuple[int, int] = (320, 320)
    """Training crop, height and width."""
    batch: int = 16
    """Samples per step."""
    amp: bool = True
    """Mixed precision (float16 autocast + GradScaler), as training on CUDA runs by default."""

    def widths(self) -> tuple[int, ...]:
        from jarrn_deploy.model.network import JarrnConfig

        return (JarrnConfig.full() if self.config == "full" else JarrnConfig.small()).widths


def default_workers() -> int:
    """Data loader workers for the smoke: every CPU but two (the training process and the GPU's launch thread)."""
    return max(1, (os.cpu_count() or 2) - 2)


def step_throughput(device: str, shape: TrainingShape = TrainingShape(), *, seconds: float = 10.0,
                    channels_last: bool | None = None, log: Log = print) -> dict:
    """Samples/s of :func:`jarrn_deploy.model.training.step.train_step` on one fixed batch already on ``device``, for about
    ``seconds``."""
    import torch

    from jarrn_deploy.model.network import Jarrn, JarrnConfig
    from jarrn_deploy.model.training.step import train_step

    torch_device = torch.device(device)
    channels_last = torch_device.type == "cuda" if channels_last is None else channels_last
    amp = shape.amp and torch_device.type == "cuda"
    torch.manual_seed(0)
    network = Jarrn(JarrnConfig(shape.widths())).to(torch_device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as model.train sets it on CUDA (restored below)
    optimizer = torch.optim.Adam(network.parameters(), lr=2e-4)
    scaler = torch.amp.GradScaler(torch_device.type, enabled=amp)
    h, w = shape.crop
    generator = torch.Generator().manual_seed(0)
    depth = torch.rand(shape.batch, 1, h, w, generator=generator)
    mask = (torch.rand(shape.batch, 1, h, w, generator=generator) < 0.05).float()
    batch = {"rgb": torch.rand(shape.batch, 3, h, w, generator=generator), "sparse": depth * mask, "mask": mask,
             "gt": depth, "gt_valid": torch.ones_like(depth)}
    batch = {k: v.to(torch_device) for k, v in batch.items()}

    def sync() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)

    def step() -> None:
        train_step(network, batch, optimizer, scaler, device=torch_device, amp=amp)

    network.train()
    started = time.perf_counter()
    for _ in range(3):  # cuDNN autotuning and allocator warm-up
        step()
    sync()
    warmup_s = time.perf_counter() - started
    steps, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        step()
        steps += 1
    sync()
    elapsed = time.perf_counter() - begin
    result = {"device": str(torch_device), **asdict(shape), "channels_last": channels_last, "amp": amp,
              "steps": steps, "seconds": round(elapsed, 2), "warmup_seconds": round(warmup_s, 2),
              "ms_per_step": 1e3 * elapsed / max(steps, 1), "samples_per_s": steps * shape.batch / elapsed}
    log(f"training step alone: {result['samples_per_s']:.0f} samples/s ({result['ms_per_step']:.1f} ms per step of "
        f"{shape.batch} at {h}x{w})")
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return result


SMOKE_POOL = (512, 8.0)
"""The smoke's ``--scene-pool`` scenes and ``--scene-reuse`` draws per scene."""
SMOKE_DESCRIPTION = ("jarrn_deploy.model.train for 60 s on synthetic scenes, sparse inputs and augmentation made on the GPU "
                     f"(--synthetic-on-device on, batches drawn from a pool of {SMOKE_POOL[0]} scenes each reused "
                     f"~{SMOKE_POOL[1]:g} times, new scenes ray cast by loader workers; full, 320x320, batch 16, AMP)")
"""The smoke's line in the device check's plan (``--dry-run``)."""


def data_throughput(device: str, shape: TrainingShape = TrainingShape(), *, on_device: bool = True,
                    render_workers: int = 0, seconds: float = 10.0, scene_pool: int = 0, scene_reuse: float = 8.0,
                    log: Log = print) -> dict:
    """Samples/s of the synthetic data path alone (no model) for about ``seconds``: batches made on ``device``
    (``on_device``; the scenes ray cast in this process, or by ``render_workers`` loader processes; drawn from a pool
    of ``scene_pool`` scenes each reused ~``scene_reuse`` times when > 0), or the host path's samples made with numpy
    in this process and copied to ``device``. The pool's first fill is outside the timed part."""
    import torch

    from jarrn_deploy.model.training.device_batches import DeviceBatchSettings, DeviceSyntheticBatches
    from jarrn_deploy.model.training.samples import SyntheticSource, TrainingSamples

    torch_device = torch.device(device)
    epoch_samples = 1_000_000
    if on_device:
        batches = DeviceSyntheticBatches(DeviceBatchSettings(shape.crop, shape.batch, "official", "max"),
                                         torch_device, epoch_samples=epoch_samples, render_workers=render_workers,
                                         pool_scenes=scene_pool if on_device else 0, pool_reuse=scene_reuse,
                                         log=lambda line: None)
        stream = batches.epoch_batches(0)
    else:
        samples = TrainingSamples(SyntheticSource(epoch_samples, shape.crop), shape.crop, mix="official",
                                  normalisation="max", seed=0, fresh_source_per_epoch=True)

        def host_batches():  # noqa: ANN202
            for index in range(epoch_samples // shape.batch):
                items = [samples[index * shape.batch + i] for i in range(shape.batch)]
                yield {k: torch.stack([item[k] for item in items]).to(torch_device) for k in items[0]}

        stream = host_batches()

    def sync() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)

    next(stream)  # warm-up (workers, allocator, first kernels)
    sync()
    batches_made, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        next(stream)
        batches_made += 1
    sync()
    elapsed = time.perf_counter() - begin
    stream.close()
    path = ("device" + (f", {render_workers} render workers" if render_workers else "")) if on_device else "host"
    result = {"device": str(torch_device), "path": path, "crop": list(shape.crop), "batch": shape.batch,
              "batches": batches_made, "seconds": round(elapsed, 2),
              "samples_per_s": batches_made * shape.batch / elapsed}
    if on_device and batches.pool is not None:
        batches.close()
        layout = batches.pool.layout
        path += f", pool of {layout.scenes} reused ~{scene_reuse:g}x"
        result.update(path=path, pool=batches.pool.stats(), pool_bytes_per_scene=layout.bytes_per_scene,
                      pool_bytes=layout.bytes)
    log(f"synthetic data alone ({path}): {result['samples_per_s']:.1f} samples/s ({batches_made} batches of "
        f"{shape.batch} at {shape.crop[0]}x{shape.crop[1]})")
    return result


def smoke_command(device: str, out: Path, shape: TrainingShape = TrainingShape(), *, seconds: float = 60.0,
                  workers: int | None = None, widths: tuple[int, ...] | None = None, log_every: int = 10,
                  on_device: bool = True, scene_pool: tuple[int, float] = SMOKE_POOL) -> list[str]:
    """The ``python -m jarrn_deploy.model.train`` command of the smoke: synthetic scenes, no validation, stopped by its time limit.

    ``workers`` loader processes (default: every CPU but two) ray cast the scenes; ``on_device``: the rest of each
    sample is made on the training device, from a pool of ``scene_pool`` = (scenes, reuse) (0 scenes: new scenes for
    every batch), else in the workers too (the older path)."""
    crop = f"{shape.crop[0]}x{shape.crop[1]}"
    model = ["--widths", ",".join(map(str, widths))] if widths else ["--config", shape.config]
    data = ["--synthetic-on-device", "on" if on_device else "off",
            "--workers", str(default_workers() if workers is None else workers)]
    if on_device:  # no pool on the CPU (the tests): its first fill would take most of a seconds-long run
        pool = scene_pool[0] if device != "cpu" else 0
        data += ["--scene-pool", str(pool), "--scene-reuse", f"{scene_pool[1]:g}"]
    return [sys.executable, "-m", "jarrn_deploy.model.train", "--device", device, *model, "--crop", crop,
            "--batch-size", str(shape.batch), "--amp" if shape.amp else "--no-amp", *data, "--data", "synthetic",
            "--epoch-samples", "200000", "--epochs", "1", "--time-limit-min", f"{seconds / 60:.4f}",
            "--val-every", "-1", "--log-every", str(log_every), "--checkpoint-every", "1000000", "--no-progress",
            "--out", str(out)]


def summarise_history(history: dict, batch: int) -> dict:
    """Samples/s of a training run from its ``history.json``: overall, and the median of the log windows after the
    first (which holds the data loader's start and cuDNN's autotuning)."""
    rows = history.get("train") or []
    if not rows:
        return {"steps": 0, "samples_per_s": None, "steady_samples_per_s": None, "windows": []}
    rates = [float(r["samples_per_s"]) for r in rows]
    steady = sorted(rates[1:]) if len(rates) > 1 else rates
    last = rows[-1]
    return {
        "steps": int(last["step"]),
        "elapsed_s": float(last["elapsed_s"]),
        "samples_per_s": int(last["step"]) * batch / max(float(last["elapsed_s"]), 1e-9),
        "steady_samples_per_s": steady[len(steady) // 2],
        "windows": [{"step": int(r["step"]), "samples_per_s": float(r["samples_per_s"]),
                     "loss": float(r["loss"])} for r in rows],
        "final_loss": float(last["loss"]),
    }


def training_smoke(device: str, shape: TrainingShape = TrainingShape(), *, seconds: float = 60.0,
                   timeout_s: float = 90.0, workers: int | None = None, widths: tuple[int, ...] | None = None,
                   log_every: int = 10, on_device: bool = True, scene_pool: tuple[int, float] = SMOKE_POOL,
                   log: Log = print) -> dict:
    """Run :func:`smoke_command` in a fresh process (killed after ``timeout_s``) and summarise its samples/s."""
    with tempfile.TemporaryDirectory(prefix="jarrn_train_smoke_") as tmp:
        out = Path(tmp) / "run"
        cmd = smoke_command(device, out, shape, seconds=seconds, workers=workers, widths=widths, log_every=log_every,
                            on_device=on_device, scene_pool=scene_pool)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        log(f"training smoke: {' '.join(cmd[1:])}")
        code, lines, timed_out, wall = run_streaming(cmd, timeout_s=timeout_s, env=env, log=log, prefix="  train: ")
        result: dict = {"command": cmd, "exit_code": code, "wall_seconds": round(wall, 1), "shape": asdict(shape),
                        "workers": int(cmd[cmd.index("--workers") + 1]), "time_limit_s": seconds,
                        "data_path": (("scenes ray cast by loader workers, the rest made on the device"
                                       + (f", from a pool of {scene_pool[0]} scenes each reused ~{scene_pool[1]:g}x"
                                          if "--scene-pool" in cmd and cmd[cmd.index("--scene-pool") + 1] != "0"
                                          else "")) if on_device
                                      else "samples made by loader workers (numpy)")}
        history_path = out / "history.json"
        if history_path.is_file():
            result.update(summarise_history(json.loads(history_path.read_text()), shape.batch))
        if timed_out:
            result["status"] = "failed"
            result["error"] = f"killed after {timeout_s:.0f} s (the run did not stop at its time limit)"
        elif code != 0:
            result["status"] = "failed"
            result["error"] = f"jarrn_deploy.model.train exited {code}: " + (lines[-1].strip() if lines else "no output")
        elif not result.get("steps"):
            result["status"] = "failed"
            result["error"] = "jarrn_deploy.model.train logged no training step"
        else:
            result["status"] = "ok"
        return result


def run_streaming(cmd: list[str], *, timeout_s: float, env: dict | None = None, log: Log = print,
                  prefix: str = "  ") -> tuple[int, list[str], bool, float]:
    """Run ``cmd`` in the repository root, passing each output line (stdout and stderr) to ``log`` as it comes, and kill
    it after ``timeout_s``. Returns ``(exit code, lines, timed out, wall seconds)``."""
    import selectors

    started = time.perf_counter()
    # Its own process group, so a timeout also ends what it started (data loader workers, pytest's children).
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    buffer, timed_out = "", False

    def emit(line: str) -> None:
        lines.append(line)
        if line.strip():
            log(prefix + line.rstrip())

    while True:
        remaining = started + timeout_s - time.perf_counter()
        if remaining <= 0:
            timed_out = True
            _kill_group(proc)
            break
        if not selector.select(timeout=min(remaining, 1.0)):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536).decode("utf-8", "replace")
        if not chunk:
            break
        buffer += chunk
        *complete, buffer = buffer.split("\n")
        for line in complete:
            emit(line)
    if buffer:
        emit(buffer)
    selector.close()
    code = proc.wait()
    proc.stdout.close()
    return code, lines, timed_out, time.perf_counter() - started


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


if __name__ == "__main__":  # python -m jarrn_deploy.benchmarks.device_train: the data path alone, host vs device
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jarrn_deploy.benchmarks.device_train",
                                     description="Samples/s of the synthetic training data alone (no model): scenes, "
                                                 "sparse inputs and augmentation made on the host or on the device.")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda:N' (default cpu)")
    parser.add_argument("--crop", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--render-workers", type=int, default=default_workers(),
                        help="loader processes for the render-worker measurements (default: every CPU but two)")
    parser.add_argument("--scene-pool", type=int, default=64,
                        help="scenes in the pool of the pooled measurements (default 64; 0: skip them)")
    parser.add_argument("--scene-reuse", type=float, default=8.0, help="draws per pooled scene (default 8)")
    cli = parser.parse_args()
    import torch

    torch.set_num_threads(cli.threads)
    data_shape = TrainingShape(crop=tuple(cli.crop), batch=cli.batch)
    data_throughput(cli.device, data_shape, on_device=False, seconds=cli.seconds)
    for pool in (0, cli.scene_pool) if cli.scene_pool > 0 else (0,):
        for workers in (0, cli.render_workers):
            rate = data_throughput(cli.device, data_shape, on_device=True, render_workers=workers,
                                   seconds=cli.seconds, scene_pool=pool, scene_reuse=cli.scene_reuse)
            if "pool" in rate:
                print(f"  pool: {rate['pool_bytes_per_scene'] / 1e6:.2f} MB per scene, "
                      f"{rate['pool_bytes'] / 1e6:.0f} MB in all; {json.dumps(rate['pool'])}")
