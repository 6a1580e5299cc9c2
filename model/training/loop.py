"""A training run from checked options to the last checkpoint: set up the device, the network and the batches
(:func:`run`), then :class:`TrainingRun` steps, logs, validates, checkpoints and exports.

Rank 0 writes every file. Ctrl-C and SIGTERM save last.pt and exit 130; ``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from jarrn_deploy.errors import OutputError
from jarrn_deploy.model.atomic import atomic_write_text, check_writable_folder, remove_stale_temp_files
from jarrn_deploy.model.train_options import RUN_FILES
from jarrn_deploy.model.checkpoint import save_model, save_training_checkpoint
from jarrn_deploy.model.training.curves import write_logs
from jarrn_deploy.model.training.data import BatchSource, build_batches, synthetic_on_device
from jarrn_deploy.model.training.distributed import (
    ProcessPlace,
    end_process_group,
    process_place,
    start_process_group,
    time_is_up,
)
from jarrn_deploy.model.training.network_setup import TrainedNetwork, build_network
from jarrn_deploy.model.training.run_state import RunProgress, args_record, checkpoint_payload, resume_from
from jarrn_deploy.model.training.schedule import learning_rate
from jarrn_deploy.model.training.step import LOSS_TERM_NAMES, train_step
from jarrn_deploy.model.training.validation import ValCase, build_val_cases, validate, validation_row


class StopRequested(Exception):
    """Raised by the SIGTERM handler so the run checkpoints and exits like on Ctrl-C."""


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` (already checked) say; returns the exit status (0, or 130 when interrupted)."""
    from jarrn_deploy.model.datasets import DatasetError

    place = process_place()
    device = training_device(args, place)
    start_process_group(place, device)
    previous_handler = None
    try:
        training = TrainingRun.prepare(args, place, device)
        if _on_main_thread():
            previous_handler = signal.signal(signal.SIGTERM, _raise_stop)
        try:
            return training.train()
        except DatasetError as exc:  # from a DataLoader worker it carries the worker's traceback: keep the message
            raise DatasetError.from_loader(exc) from None
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        end_process_group(place)


def training_device(args: argparse.Namespace, place: ProcessPlace) -> torch.device:
    """``--device`` resolved (one process per GPU under torchrun: each takes cuda:<LOCAL_RANK>), made current."""
    from jarrn_deploy.devices import resolve_device

    device = torch.device(resolve_device(args.device, local_rank=place.local_rank if place.world > 1 else None))
    if device.type == "cuda":
        torch.cuda.set_device(device.index)  # an index: set_device rejects a bare torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # fixed crop and batch: let cuDNN pick the fastest convolutions once
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return device


def prepare_out_folder(out: Path) -> None:
    """Create ``out`` (or say why not) and remove the temp files of a run that was killed while saving."""
    check_writable_folder(out, "--out")
    for stale in [f for name in RUN_FILES for f in remove_stale_temp_files(out / name)]:
        print(f"removed {stale.name}, left by a run that was killed while saving", flush=True)


def _raise_stop(signum, frame):  # noqa: ANN001, ANN202, ARG001
    raise StopRequested()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class TrainingRun:
    """One run's parts and progress; :meth:`train` runs the loop."""

    def __init__(self, args: argparse.Namespace, place: ProcessPlace, device: torch.device, trained: TrainedNetwork,
                 batches: BatchSource, progress: RunProgress, val_cases: list[ValCase]) -> None:
        self.args, self.place, self.device, self.trained = args, place, device, trained
        self.batches, self.progress, self.val_cases = batches, progress, val_cases
        self.amp = device.type == "cuda" and (args.amp is None or bool(args.amp))
        self.optimizer = torch.optim.Adam(trained.network.parameters(), lr=args.lr)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.model: torch.nn.Module = trained.network
        self.out: Path = args.out
        self.last_path = self.out / "last.pt"
        self.steps_per_epoch = batches.steps_per_epoch
        self.total_steps = args.epochs * self.steps_per_epoch
        self.started = time.monotonic()
        # The loss terms of the steps since the last log row, summed on the device: reading them on the host every
        # step would wait for the GPU five times a step (the step itself is a few ms on a big GPU).
        self.window: torch.Tensor | None = None
        self.window_count, self.window_start = 0, time.monotonic()

    @classmethod
    def prepare(cls, args: argparse.Namespace, place: ProcessPlace, device: torch.device) -> TrainingRun:
        """Folder, seed, network, batches, resumed state, DDP wrapper and validation cases, in that order."""
        if place.is_main:
            prepare_out_folder(args.out)
        torch.manual_seed(args.seed + place.rank)
        trained = build_network(args, device)
        batches = build_batches(args, tuple(args.crop), place, device, channels_last=trained.channels_last)
        training = cls(args, place, device, trained, batches, RunProgress(), [])
        training.resume_if_asked()
        if place.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            training.model = DistributedDataParallel(trained.network,
                                                     device_ids=[device.index] if device.type == "cuda" else None)
        training.val_cases = training_val_cases(args) if place.is_main else []
        return training

    def resume_if_asked(self) -> None:
        if self.args.resume and self.last_path.is_file():
            self.progress, epoch = resume_from(self.last_path, self.trained, self.optimizer, self.scaler)
            if self.place.is_main:
                print(f"resumed from {self.last_path} at step {self.progress.step} (epoch {epoch})", flush=True)
        elif self.args.resume and self.place.is_main:
            print(f"--resume: no {self.last_path}, starting a new run", flush=True)

    # -- the loop ------------------------------------------------------------------------------------------------------

    def train(self) -> int:
        """Step until the last epoch or the time limit; checkpoint and exit 130 on Ctrl-C / SIGTERM."""
        if self.place.is_main:
            self.announce()
        progress_bar = self.progress_bar()
        self.started = time.monotonic()
        try:
            self.run_epochs(progress_bar)
        except (KeyboardInterrupt, StopRequested):
            if progress_bar is not None:
                progress_bar.close()
            if self.place.is_main:
                self.save()
                print(f"\ninterrupted at step {self.progress.step}: saved {self.last_path}; continue with --resume",
                      flush=True)
            return 130
        if progress_bar is not None:
            progress_bar.close()
        if self.place.is_main:
            self.finish()
        return 0

    def run_epochs(self, progress_bar: Any) -> None:
        self.window, self.window_count, self.window_start = None, 0, time.monotonic()
        self.trained.network.train()
        while self.progress.step < self.total_steps:
            epoch, first = divmod(self.progress.step, self.steps_per_epoch)
            for batch in self.batches.epoch_batches(epoch, first):
                lr = self.step_once(batch)
                if progress_bar is not None:
                    progress_bar.update(1)
                if self.after_step(lr, progress_bar):
                    return
                if self.progress.step >= self.total_steps:
                    break

    def step_once(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimisation step at the scheduled learning rate; adds its loss terms to the log window."""
        lr = self.lr_at(self.progress.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        args = self.args
        terms = train_step(self.model, batch, self.optimizer, self.scaler, device=self.device, amp=self.amp,
                           dense_absolute_weight=args.dense_absolute_weight, grad_clip=args.grad_clip,
                           sparse_fill=self.trained.config.sparse_fill)
        if self.trained.ema is not None:
            self.trained.ema.update_parameters(self.trained.network)
        self.progress.step += 1
        step_terms = torch.stack([t.float() for t in terms])
        self.window = step_terms if self.window is None else self.window + step_terms
        self.window_count += 1
        return lr

    def after_step(self, lr: float, progress_bar: Any) -> bool:
        """Log, validate and checkpoint when due; True when the time limit says stop."""
        args, step = self.args, self.progress.step
        val_due = args.val_every > 0 and step % args.val_every == 0
        log_due = step % args.log_every == 0 or step == self.total_steps
        if log_due or val_due or step % args.checkpoint_every == 0:  # check the loss before saving anything
            self.read_window(lr, log_due, progress_bar)
        if self.place.is_main and val_due and step < self.total_steps:
            self.run_validation()
        if self.place.is_main and (step % args.checkpoint_every == 0 or val_due):
            self.save()
        # With several processes the decision is shared (a broadcast read back on the host): only at log steps.
        time_check_due = self.place.world == 1 or log_due
        if args.time_limit_min > 0 and time_check_due and time_is_up(self.started, args.time_limit_min,
                                                                     self.place.world, self.device):
            if self.place.is_main:
                print(f"\ntime limit of {args.time_limit_min} min reached at step {step}", flush=True)
            return True
        return False

    def read_window(self, lr: float, log_due: bool, progress_bar: Any) -> None:
        """The mean loss terms since the last log row (the one read back from the device); a log row when due."""
        step = self.progress.step
        means = dict(zip(LOSS_TERM_NAMES, (self.window / self.window_count).tolist()))
        if not math.isfinite(means["loss"]):
            raise FloatingPointError(f"loss is {means['loss']} in steps {step - self.window_count + 1}..{step}")
        if progress_bar is not None:
            progress_bar.set_postfix(loss=f"{means['loss']:.3f}", lr=f"{lr:.1e}", refresh=False)
        if not log_due:
            return
        if self.place.is_main:
            elapsed = time.monotonic() - self.window_start
            self.progress.history["train"].append({
                "step": step, "epoch": step / self.steps_per_epoch, "lr": lr, **means,
                "samples_per_s": self.window_count * self.args.batch_size * self.place.world / max(elapsed, 1e-9),
                "elapsed_s": time.monotonic() - self.started})
        self.window, self.window_count, self.window_start = None, 0, time.monotonic()

    # -- schedule, validation, files -----------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        a = self.args
        return learning_rate(step, base_lr=a.lr, steps_per_epoch=self.steps_per_epoch, milestones=a.milestones,
                             gamma=a.gamma, warmup_epochs=a.warmup_epochs)

    def lr_scheduler_record(self) -> dict[str, Any]:
        a, s = self.args, self.progress.step
        return {"kind": "linear_warmup_multistep", "base_lr": a.lr, "lr": self.lr_at(max(s - 1, 0)),
                "steps_per_epoch": self.steps_per_epoch, "milestones": list(a.milestones), "gamma": a.gamma,
                "warmup_epochs": a.warmup_epochs, "last_step": s}

    def save(self) -> None:
        """last.pt, then the logs and curves."""
        payload = checkpoint_payload(self.progress, self.trained, self.optimizer, self.scaler,
                                     steps_per_epoch=self.steps_per_epoch, lr_scheduler=self.lr_scheduler_record(),
                                     args=self.args)
        save_training_checkpoint(self.last_path, payload)
        write_logs(self.out, self.progress.history)

    def run_validation(self) -> None:
        """Validate on the cases, log the row, and write best.safetensors when the score improved."""
        step, progress = self.progress.step, self.progress
        results = validate(self.trained.evaluated, self.val_cases)
        row = validation_row(step, step // self.steps_per_epoch, results, self.args.val_score)
        progress.history["val"].append(row)
        summary = "  ".join(f"{n} {r['rmse']:.3f} ({r['ratio']:.2f}x)" for n, r in results.items())
        print(f"\n[val step {step}] score {row['score']:.3f}  {summary}", flush=True)
        if row["score"] < progress.best_score:
            progress.best_score = row["score"]
            save_model(self.trained.evaluated, self.out / "best.safetensors",
                       extra_metadata={"step": str(step), "val_score": f"{progress.best_score:.5f}"})

    def announce(self) -> None:
        """args.json and one line saying what is trained on what."""
        a, config = self.args, self.trained.config
        try:
            atomic_write_text(self.out / "args.json", json.dumps(args_record(a), indent=1))
        except OSError as exc:  # a full disk: one line, before the first step
            raise OutputError(f"--out: could not write {self.out / 'args.json'} ({exc.strerror or exc})") from None
        crop = tuple(a.crop)
        where = " (rendered on the device)" if synthetic_on_device(a, self.device) else ""
        print(f"training {config.to_dict()} on {a.data}{where} ({a.sparse_mix} mix), crop {crop[0]}x{crop[1]}, "
              f"batch {a.batch_size} x {self.place.world}, {self.steps_per_epoch} steps/epoch, {self.total_steps} "
              f"steps, device {self.device}{' (AMP)' if self.amp else ''}"
              f"{' (channels-last)' if self.trained.channels_last else ''}", flush=True)

    def progress_bar(self) -> Any:
        if not (self.place.is_main and self.args.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=self.total_steps, initial=self.progress.step, unit="step", dynamic_ncols=True,
                    mininterval=1.0 if sys.stderr.isatty() else 30.0)

    def finish(self) -> None:
        """The last validation (unless the last step had one), last.pt, the logs, and ``--export``."""
        args, progress = self.args, self.progress
        if args.val_every >= 0 and self.val_cases:
            if not progress.history["val"] or progress.history["val"][-1]["step"] != progress.step:
                self.run_validation()
        self.save()
        minutes = (time.monotonic() - self.started) / 60
        print(f"finished at step {progress.step} in {minutes:.1f} min; best validation score "
              f"{progress.best_score:.4f}", flush=True)
        if args.export is not None:
            self.export(args.export)

    def export(self, path: Path) -> None:
        """``--export``: the best-validation weights (or the last ones) as a .safetensors file."""
        args, best = self.args, self.out / "best.safetensors"
        if args.export_which == "best" and best.is_file():
            from jarrn_deploy.model.checkpoint import load_model

            exported = load_model(best)
        else:
            exported = self.trained.evaluated
        save_model(exported, path, half=args.half,
                   extra_metadata={"trained_steps": str(self.progress.step), "weights": args.export_which,
                                   "val_score": f"{self.progress.best_score:.5f}"})
        print(f"exported {args.export_which} weights to {path}", flush=True)


def training_val_cases(args: argparse.Namespace) -> list[ValCase]:
    """The real frames (or, with ``--data rgbd_extra``, the held-out sets); none with ``--val-every -1``."""
    if args.val_every < 0:
        return []
    if args.data == "rgbd_extra":  # the held-out sets, not the reported frames
        from jarrn_deploy.model.training.rgbd_extra_samples import validation_cases

        return validation_cases(args.data_root, args.val_max_side, seed=args.seed)
    return build_val_cases(args.val_max_side)
