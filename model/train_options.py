"""The command line of ``python -m jarrn_deploy.model.train`` (``jarrn train``): its help, its named choices and its parser.

Pure Python: building the parser imports neither numpy nor torch, so ``--help`` and argument errors answer at once.
``jarrn_deploy.model.train`` parses with it first and imports the training code (:mod:`jarrn_deploy.model.training`) only for a real run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jarrn_deploy.durations import about, on_this_machine

SPARSE_MIXES: dict[str, dict[str, float]] = {
    "official": {"none": 0.32, "ratio_low": 0.16, "ratio_high": 0.16, "dense": 0.16, "lidar": 0.20},
    "eval": {"none": 0.05, "points": 0.45, "lidar": 0.30, "ratio_low": 0.10, "dense": 0.10},
}
"""Sparse-input mixes: regime -> probability, drawn per training sample (``jarrn_deploy.model.training.sparse_sampling``)."""
SYNTHETIC_ON_DEVICE = ("auto", "on", "off")
"""Where synthetic batches are made: 'auto' (on the device for CUDA, else on the host), 'on' or 'off'."""
RUN_FILES = ("last.pt", "best.safetensors", "history.json", "log.csv", "val.csv", "curves.png", "args.json")
"""What a run writes in ``--out`` (their temp files, left by a killed run, are removed at the start)."""
VALIDATION_SCORES = ("mean", "worst")
"""How the validation cases are combined into the score that picks best.safetensors."""

CPU_SAMPLES_PER_S = 1.55
"""Training samples per second with the defaults (small config, synthetic data, 128x128 crops, batch 4) on the shared
2-core CPU machine (load average 3): ``jarrn train --epochs 1 --epoch-samples 64 --val-every -1 --no-progress``, 64
samples in 41.1 s wall, start-up included."""
CPU_VALIDATION_S = 5.0
"""Seconds of one validation on the real frames (default ``--val-max-side``) there: the CPU time of the same run with
its final validation (without ``--val-every -1``) less the one above, 48.2 - 43.0 s (the wall times differed by less
than the load's noise)."""


def plan_line(args: argparse.Namespace) -> str:
    """The line printed before training starts: how much work the options ask for, about how long it takes on a
    2-core CPU when they are the measured defaults (else what it depends on), and how to get a quick run."""
    quick = ("a quick run: --epochs 1 --epoch-samples 64, about 40 s; --time-limit-min M stops (and saves) after M minutes; "
             "--val-every -1 skips validation")
    if not args.epoch_samples:
        return (f"training for {args.epochs} epochs of the whole --data {args.data} set: the time follows from its "
                f"size (about {CPU_SAMPLES_PER_S:g} samples/s with the default small model on 2 CPU cores; a GPU "
                f"is much faster) ({quick})")
    steps = args.epochs * -(-args.epoch_samples // args.batch_size)
    validations = 0 if args.val_every < 0 else 1 + (steps // args.val_every if args.val_every else 0)
    work = (f"training {args.epochs} epochs x {args.epoch_samples} samples ({steps} steps of {args.batch_size}) with "
            f"{validations} validation(s) on the real frames")
    measured = (args.config == "small" and args.widths is None and tuple(args.crop) == (128, 128)
                and args.data == "synthetic" and args.device in ("auto", "cpu"))
    if not measured:
        return (f"{work}: the time depends on the model, crop and device (measured for the defaults on 2 CPU cores: "
                f"{CPU_SAMPLES_PER_S:g} samples/s; a GPU is much faster) ({quick})")
    seconds = args.epochs * args.epoch_samples / CPU_SAMPLES_PER_S + validations * CPU_VALIDATION_S
    return (f"{work}: about {about(seconds)} {on_this_machine()} without a GPU ({CPU_SAMPLES_PER_S:g} samples/s, "
            f"{CPU_VALIDATION_S:.0f} s a validation) ({quick})")


HELP_DESCRIPTION = """\
Train a depth-completion model, with the paper's loss, schedule and mix of sparse inputs, on synthetic
scenes (no download needed) or on a real RGB-D dataset (KITTI, NYUv2, DIODE or a folder of your own).
Writes checkpoints, logs and learning curves to --out and can resume after an interruption."""

HELP_EPILOG = """\
what the run folder (--out) holds:
  last.pt            the training state, saved every --checkpoint-every steps, at the end and on Ctrl-C;
                     --resume continues from it
  best.safetensors   the weights with the best validation score so far (use it with --model elsewhere)
  log.csv, val.csv, history.json, curves.png   losses, validation errors and their curves

sparse inputs (--sparse-mix), drawn for every training sample:
  official  the paper's mix: a third with no depth at all (the model then learns relative depth), random
            subsets of the true depth, noisy or blurred dense depth, and simulated LiDAR lines
  eval      weighted towards what the evaluation measures: random points (3 to 2000) and LiDAR lines

multi-GPU:
  torchrun --nproc_per_node=N -m jarrn_deploy.model.train ...   (one process per GPU; the first one writes the files)

synthetic scenes on a GPU (--synthetic-on-device, default auto = on for CUDA):
  each batch of scenes, its sparse inputs, crops, flips and colour jitter are made on the GPU in the
  training process; with --workers N, N loader processes ray cast the scenes (numpy) and only those
  raw scenes are copied to the GPU; --synthetic-on-device off makes every sample on the CPU (older path).
  Batches are drawn from a pool of 512 rendered scenes on the GPU (--scene-pool), each reused ~8 times with
  fresh crops, sparse inputs and jitter (--scene-reuse), so the scene-drawing rate does not cap training

examples:
  python -m jarrn_deploy.model.train --epochs 2 --epoch-samples 64 --out runs/try      # a small synthetic run on a CPU
  python -m jarrn_deploy.model.train --data kitti --data-root /data/kitti_dc --config full --out runs/kitti
  python -m jarrn_deploy.model.train --data folder --data-root my_frames/ --depth-scale 1000 --init model.safetensors
  python -m jarrn_deploy.model.train --out runs/kitti --resume                          # continue an interrupted run
  torchrun --nproc_per_node=4 -m jarrn_deploy.model.train --data diode --data-root /data/diode --config full
  jarrn train --help
"""


def _pool_scenes(text: str) -> int | str:
    """``--scene-pool``: 'auto' or a whole number (checked in :func:`jarrn_deploy.model.training.arguments.check_args`)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of scenes or 'auto', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jarrn train",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path("runs/train"), help="run directory (created); default %(default)s")
    g.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt (model, optimizer, scaler, step, history, RNG); starts fresh "
                        "when there is none")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, data order and augmentation (default 0)")
    g.add_argument("--device", default="auto",
                   help="'auto' (the first CUDA GPU when PyTorch sees one, else the CPU; default), 'cpu', 'cuda' "
                        "(= cuda:0) or 'cuda:N'; under torchrun every process takes cuda:<LOCAL_RANK>")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="keep weights and activations in channels-last (NHWC) memory format; default: on for CUDA "
                        "(faster FP16 convolutions), off on CPU")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    g.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes (0: load in the main process); with --synthetic-on-device they "
                        "ray cast the scenes (numpy) and the device does the rest")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (torch.autocast float16 + GradScaler); default: on for CUDA, off on CPU")
    g.add_argument("--time-limit-min", type=float, default=0.0,
                   help="stop (checkpoint, validate, export) after this many minutes of training (0: no limit)")

    g = p.add_argument_group("model")
    g.add_argument("--config", choices=("small", "full"), default="small",
                   help="network widths: small (1.45M parameters) or full (36.3M, the paper's); default small")
    g.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")), default=None,
                   help="custom U-Net widths, 7 comma-separated multiples of 4 (innermost first); overrides --config")
    g.add_argument("--prob-activation", choices=("softmax_height", "sigmoid"), default="softmax_height",
                   help="rectification probability: the official softmax over image rows, or a per-pixel sigmoid")
    g.add_argument("--depth-normalisation", choices=("max", "minmax"), default="max",
                   help="how sparse metres become network input (and the GT is mapped likewise): divide by the "
                        "largest sparse depth ('max', official) or map [min, max] to [0, 1] ('minmax')")
    g.add_argument("--sparse-fill", choices=("none", "pushpull"), default="none",
                   help="the network's sparse channel: 'none' (points only, official) or 'pushpull' (points plus a "
                        "push-pull interpolation of the empty pixels; recorded in the exported file)")
    g.add_argument("--start-as-fill", action="store_true",
                   help="with --sparse-fill pushpull: start from a network that returns the fill, so training "
                        "learns corrections to it; not with --init")
    g.add_argument("--init", type=Path, default=None,
                   help="start from these weights (.safetensors, .pth or .pt); ignored with --resume")

    g = p.add_argument_group("data")
    g.add_argument("--data", choices=("synthetic", "kitti", "nyu", "diode", "folder", "rgbd_extra"),
                   default="synthetic",
                   help="training frames: generated synthetic scenes (default) or a dataset on disk (needs "
                        "--data-root)")
    g.add_argument("--data-root", type=Path, default=None,
                   help="dataset root for --data kitti|nyu|diode|folder|rgbd_extra")
    g.add_argument("--real-fraction", type=float, default=0.5,
                   help="--data rgbd_extra: share of real frames in each epoch, the rest synthetic (default 0.5); "
                        "validation then uses the held-out sets (jarrn_deploy.model.rgbd_extra.HELD_OUT_SETS)")
    g.add_argument("--depth-scale", type=float, default=1000.0,
                   help="--data folder/nyu: depth PNG value per metre (1000 = millimetres; KITTI 256, TUM 5000)")
    g.add_argument("--crop", type=lambda s: tuple(int(v) for v in s.split("x")), default=(128, 128),
                   help="training crop HxW, multiples of 64 (default 128x128; the paper uses 320x320)")
    g.add_argument("--render-scale", type=lambda s: tuple(float(v) for v in s.split(",")), default=(1.0, 2.0),
                   help="synthetic: each scene is rendered at crop height times a factor drawn from this range "
                        "(and a random aspect 1.0-1.6), then cropped; default 1.0,2.0")
    g.add_argument("--synthetic-on-device", choices=SYNTHETIC_ON_DEVICE, default="auto",
                   help="--data synthetic: make whole batches (scenes, sparse inputs, crops, augmentation) with "
                        "torch on the training device, in the training process: 'on', 'off' (make each sample with "
                        "numpy on the host, the older path) or 'auto' (default: on for CUDA, off on the CPU); with "
                        "--workers N, N loader processes ray cast the scenes and the device does the rest")
    g.add_argument("--scene-pool", type=_pool_scenes, default="auto", metavar="N|auto",
                   help="--synthetic-on-device: keep N rendered scenes on the device and draw every batch from them "
                        "(fresh crops, sparse patterns, flips, jitter), replacing batch/K of them per step (K = "
                        "--scene-reuse), so training is not capped by the scene-drawing rate; 0 = off (new scenes "
                        "for every batch); 'auto' (default): 512 on CUDA (fewer for short runs), off on the CPU. "
                        "Memory: 7 bytes per pixel of the largest render size (320x320 crops, --render-scale 1,2: "
                        "4.6 MB a scene, 2.3 GB for 512). With --workers 0 a --resume'd run continues bit for bit; "
                        "with --workers N the pool takes rendered scenes when they are ready, so runs (and resumes) "
                        "are not bit-reproducible")
    g.add_argument("--scene-reuse", type=float, default=8.0, metavar="K",
                   help="--scene-pool: each scene is drawn about K times (>= 1; default 8): larger is faster, "
                        "smaller sees more distinct scenes")
    g.add_argument("--sparse-mix", choices=sorted(SPARSE_MIXES), default="official",
                   help="sparse-input mix: 'official' (paper mix at 80%% + 20%% LiDAR lines) or 'eval' (random "
                        "points and LiDAR, few empty inputs); see below the options")
    g.add_argument("--real-sparse-prob", type=float, default=0.5,
                   help="datasets with real sparse input (KITTI LiDAR): probability to use it instead of a mix pattern")
    g.add_argument("--outlier-prob", type=float, default=0.0,
                   help="probability that a random-point pattern gets 0-3%% outliers (depth x or / up to 2..20), "
                        "like the flying pixels of real depth sensors; 0 = none (default)")
    g.add_argument("--jitter", type=float, default=0.2, help="colour-jitter strength (brightness/contrast/saturation)")

    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=int, default=60, help="epochs (default 60; the paper trains 60-100)")
    g.add_argument("--epoch-samples", type=int, default=0,
                   help="samples per epoch (synthetic data: required, each epoch renders fresh scenes; datasets: "
                        "default = dataset size)")
    g.add_argument("--batch-size", type=int, default=4, help="batch size per process/GPU (paper: 4)")
    g.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    g.add_argument("--milestones", type=lambda s: [int(v) for v in s.split(",")], default=[20, 40],
                   help="epochs at which the learning rate is multiplied by --gamma (default 20,40)")
    g.add_argument("--gamma", type=float, default=0.5, help="MultiStepLR factor (default 0.5)")
    g.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up length in epochs (default 1)")
    g.add_argument("--grad-clip", type=float, default=0.0, help="clip the gradient norm to this (0: off, official)")
    g.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.999) and validate "
                        "and export it instead of the raw weights (0: off, official)")
    g.add_argument("--dense-absolute-weight", type=float, default=0.0,
                   help="weight of an extra L1 on all valid GT pixels in the absolute domain for samples with sparse "
                        "input (not in the official loss; 0 = official)")

    g = p.add_argument_group("logging, validation, export")
    g.add_argument("--log-every", type=int, default=20, help="steps between log.csv rows (default 20)")
    g.add_argument("--checkpoint-every", type=int, default=200, help="steps between last.pt writes (default 200)")
    g.add_argument("--val-every", type=int, default=500,
                   help="steps between validations on the real frames (0: only at the end; -1: never)")
    g.add_argument("--val-score", choices=VALIDATION_SCORES, default="mean",
                   help="which validation score picks best.safetensors: the mean or the worst case's RMSE / linear "
                        "RMSE (default mean)")
    g.add_argument("--val-max-side", type=int, default=640,
                   help="validate on frames down-scaled (integer factor) to this longer side for speed (0: full size)")
    g.add_argument("--export", type=Path, default=None, help="write the final weights here (.safetensors) at the end")
    g.add_argument("--export-which", choices=("best", "last"), default="best",
                   help="export the best-validation weights (default; falls back to last) or the last ones")
    g.add_argument("--half", action="store_true", help="export in float16 (half the file size)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    return p
