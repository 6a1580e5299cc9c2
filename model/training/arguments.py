"""The checks every training option passes before any work (and before ``--out`` is touched)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from jarrn_deploy.errors import InputError, OutputError, UsageError
from jarrn_deploy.model.atomic import check_input_file, check_writable_folder, refuse_overwriting_inputs
from jarrn_deploy.model.contract import DOWNSAMPLING_FACTOR
from jarrn_deploy.model.train_options import RUN_FILES


def _positive(args: argparse.Namespace, name: str, *, allow_zero: bool = False, integer: bool = False,
              upper: float | None = None) -> None:
    """:class:`UsageError` naming ``--name`` unless its value is finite and > 0 (>= 0 with ``allow_zero``)."""
    value = getattr(args, name)
    flag = "--" + name.replace("_", "-")
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if ok and upper is not None:
        ok = value <= upper if allow_zero or integer else value < upper
    if not ok:
        kind = "integer" if integer else "number"
        bound = f" <= {upper:g}" if upper is not None else ""
        raise UsageError(f"{flag}: expected a {'non-negative' if allow_zero else 'positive'} {kind}{bound}, got {value}")


def check_args(args: argparse.Namespace) -> None:
    """Every value checked before any work (and before ``--out`` is touched): one :class:`UsageError` line naming the
    option and what it accepts."""
    for name in ("batch_size", "checkpoint_every", "log_every", "epochs"):
        _positive(args, name, integer=True)
    for name in ("workers", "threads", "epoch_samples", "val_max_side"):
        _positive(args, name, allow_zero=True, integer=True)
    for name in ("lr", "gamma", "depth_scale"):
        _positive(args, name)
    for name in ("warmup_epochs", "grad_clip", "jitter", "time_limit_min", "dense_absolute_weight"):
        _positive(args, name, allow_zero=True)
    for name in ("real_sparse_prob", "outlier_prob"):
        _positive(args, name, allow_zero=True, upper=1.0)
    if args.val_every < -1:
        raise UsageError(f"--val-every: expected steps >= 1, 0 (only at the end) or -1 (never), got {args.val_every}")
    scales = tuple(args.render_scale)
    if len(scales) != 2 or not all(math.isfinite(v) and v > 0 for v in scales) or scales[0] > scales[1]:
        raise UsageError(f"--render-scale: expected LOW,HIGH with 0 < LOW <= HIGH, got {','.join(map(str, scales))}")
    if len(tuple(args.crop)) != 2 or any(c <= 0 or c % DOWNSAMPLING_FACTOR for c in args.crop):
        raise UsageError(f"--crop: expected HxW, multiples of {DOWNSAMPLING_FACTOR}, got {args.crop}")
    if not 0.0 <= args.ema < 1.0:
        raise UsageError(f"--ema: expected a decay in [0, 1) (0 = off), got {args.ema}")
    if args.start_as_fill and (args.sparse_fill == "none" or args.init is not None):
        raise UsageError("--start-as-fill: needs --sparse-fill pushpull and no --init")
    if args.synthetic_on_device == "on" and args.data != "synthetic":
        raise UsageError(f"--synthetic-on-device on: renders --data synthetic only, got --data {args.data}")
    check_scene_pool_args(args)
    if any(m < 0 for m in args.milestones):
        raise UsageError(f"--milestones: expected non-negative epochs, got {args.milestones}")
    if args.widths is not None:
        from jarrn_deploy.model.network import JarrnConfig

        try:
            JarrnConfig(tuple(args.widths))
        except ValueError as exc:
            raise UsageError(f"--widths: {str(exc).split(': ', 1)[-1]}") from None
    if args.init is not None:
        check_input_file(args.init, "--init", "a .safetensors, .pth or .pt file")
    if args.data_root is not None and not Path(args.data_root).exists():
        raise InputError(f"--data-root: no such folder {args.data_root}")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise InputError(f"--data-root: {args.data_root} is a file, expected a dataset folder")
    outputs = [Path(args.out) / name for name in RUN_FILES] + ([Path(args.export)] if args.export is not None else [])
    refuse_overwriting_inputs(outputs, {"--init": args.init}, "--out/--export")
    if args.export is not None:
        export = Path(args.export)
        if export.suffix != ".safetensors":
            raise UsageError(f"--export: expected a file name ending in .safetensors, got {export}")
        if export.is_dir():
            raise OutputError(f"--export: {export} is a folder; give a file name such as {export / 'model.safetensors'}")
        check_writable_folder(export.parent, "--export", create=False)



def check_scene_pool_args(args: argparse.Namespace) -> None:
    """``--scene-pool`` / ``--scene-reuse``: one :class:`UsageError` line for a value out of range or a pool the data
    path cannot use (whether the device makes the batches is settled later, in ``build_batches``)."""
    pool = args.scene_pool
    if pool != "auto" and (not isinstance(pool, int) or pool < 0):
        raise UsageError(f"--scene-pool: expected a number of scenes >= 0 (0 = off) or 'auto', got {pool}")
    if not (math.isfinite(args.scene_reuse) and args.scene_reuse >= 1.0):
        raise UsageError(f"--scene-reuse: expected a number >= 1 (draws per pooled scene), got {args.scene_reuse}")
    if pool != "auto" and 0 < pool < args.batch_size:
        raise UsageError(f"--scene-pool: expected 0 (off) or at least --batch-size ({args.batch_size}) scenes, "
                         f"got {pool}")
    if pool not in ("auto", 0) and (args.data != "synthetic" or args.synthetic_on_device == "off"):
        raise UsageError(f"--scene-pool {pool}: pools scenes rendered on the device (--data synthetic with "
                         f"--synthetic-on-device on|auto), got --data {args.data} --synthetic-on-device "
                         f"{args.synthetic_on_device}")
