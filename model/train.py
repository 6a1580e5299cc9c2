"""Train JARRN: the paper's recipe (loss, schedule, sparse-input mix) on synthetic scenes or real RGB-D datasets.

``python -m jarrn_deploy.model.train --help`` shows every option. This module is the command's thin entry (parse, check, run): the
command line lives in :mod:`jarrn_deploy.model.train_options` and the training in :mod:`jarrn_deploy.model.training` (imported only for a real
run, so ``--help`` answers without importing torch). A run directory (``--out``) receives:

- ``last.pt``: the training checkpoint (official layout ``epoch``, ``network_state_dict``, ``optimizer_state_dict``,
  ``scaler_state_dict`` plus ``jarrn_config``, ``step``, ``lr_scheduler``, RNG states and the history), written
  atomically every ``--checkpoint-every`` steps, at the end and on Ctrl-C / SIGTERM; ``--resume`` continues from it.
- ``best.safetensors``: the weights with the best validation score so far (project format, :func:`save_model`).
- ``log.csv`` (training losses), ``val.csv`` (validation metrics per case), ``history.json`` and ``curves.png``.

Data (``--data``): ``synthetic`` renders procedural indoor/outdoor scenes (:mod:`jarrn_deploy.model.synthetic`) at random sizes and
crops them; ``kitti``, ``nyu``, ``diode`` and ``folder`` read real datasets through :mod:`jarrn_deploy.model.datasets`. With
``--synthetic-on-device`` (default ``auto``: on for CUDA) whole batches of synthetic scenes, their sparse inputs and
their augmentation are made with torch on the training device in the training process
(:mod:`jarrn_deploy.model.training.device_batches`) instead of by loader workers on the host (:mod:`jarrn_deploy.model.training.samples`).
On CUDA those batches are drawn from a pool of rendered scenes (``--scene-pool``, default 512 there; each scene reused
``--scene-reuse`` times with fresh crops, sparse patterns and augmentation, :mod:`jarrn_deploy.model.training.scene_pool`), so the
training rate is not capped by the rate at which scenes can be ray cast.

Sparse input mixes (``--sparse-mix``), drawn per sample on the full frame before cropping:

- ``official``: the paper's mix, scaled to 80%, plus 20% LiDAR lines: 32% none (relative mode), 16% keep a random
  0-10% of the GT pixels, 16% keep 10-100%, 16% the dense GT with noise (sigma 0.01-0.1 of the depth range, p=0.3)
  and down/up-sampling blur (x2..x16, p=0.3), 20% LiDAR scanlines (4..128 lines).
- ``eval``: emphasises the sparse regimes of the real-frame evaluation (random points, LiDAR): 5% none, 45% random
  points (3..2000 per frame, log-uniform), 30% LiDAR scanlines (4..128 lines, some with sensor noise and outliers),
  10% keep 0-10% of the GT, 10% noisy/blurred dense GT.

In both, every non-empty pattern gets random hole masks (1-3 rectangles or ellipses) with p=0.5. ``--outlier-prob P``
adds, with probability P, 0-3% outliers (depth multiplied or divided by up to 2..20) to random-point patterns: real
depth maps (whose points the indoor evaluation samples) carry flying pixels, and one wrong point also moves the
per-image normalisation range.

Normalisation matches inference exactly: the sparse input goes through :func:`jarrn_deploy.model.metric_jarrn.normalise_sparse` with
the config's ``depth_normalisation`` and the GT uses the same low/range; a sample without sparse points gets its GT
min-max normalised (the paper's relative mode).

Sparse fill (``--sparse-fill pushpull``): the network's sparse channel carries the contract's push-pull interpolation
of the points (:func:`jarrn_deploy.model.metric_jarrn.pushpull_fill`, applied in :func:`jarrn_deploy.model.training.step.train_step` exactly
as at inference) and the exported file records it. ``--start-as-fill`` initialises the network so that it returns
that fill (:func:`jarrn_deploy.model.training.network_setup.start_as_fill`); training then learns corrections on top of it.
``--ema DECAY`` validates and exports an
exponential moving average of the weights, which damps the step-to-step drift of the output offset.

Multi-GPU: ``torchrun --nproc_per_node=N -m jarrn_deploy.model.train ...`` (DistributedDataParallel, one DistributedSampler shard
per rank, rank 0 writes every file). Schedule: Adam (lr 2e-4), linear warm-up over the first epoch, the learning rate
halved at epochs 20 and 40 (MultiStepLR milestones [20, 40], gamma 0.5); an "epoch" of synthetic data is
``--epoch-samples`` samples.
"""

from __future__ import annotations

import os
import sys

from jarrn_deploy.cli import command
from jarrn_deploy.options import repeated_options
from jarrn_deploy.model.train_options import build_parser, plan_line


@command
def main(argv: list[str] | None = None) -> int:
    """``python -m jarrn_deploy.model.train`` / ``jarrn train``: parse (``--help`` answers here, fast), check, then train."""
    parser = build_parser()
    args = parser.parse_args(argv)
    repeated_options(parser, argv)
    from jarrn_deploy.model.training.arguments import check_args
    from jarrn_deploy.model.training.loop import run

    check_args(args)
    if not args.resume and os.environ.get("RANK", "0") == "0":  # once under torchrun; a resumed run says its step
        print(plan_line(args), flush=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
