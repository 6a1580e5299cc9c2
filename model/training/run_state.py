"""What a run carries from step to step and across a restart: the step, the history, the best validation score and
the random-number state, saved in last.pt (:func:`checkpoint_payload`) and restored by ``--resume``
(:func:`resume_from`)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jarrn_deploy.errors import UsageError
from jarrn_deploy.model.checkpoint import CheckpointError, read_training_checkpoint, strip_prefixes
from jarrn_deploy.model.network import JarrnConfig
from jarrn_deploy.model.training.network_setup import TrainedNetwork


@dataclass
class RunProgress:
    """The mutable part of a run: where it is and what it has logged."""

    step: int = 0
    """Optimisation steps done."""
    history: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"train": [], "val": []})
    """log.csv rows ("train") and val.csv rows ("val")."""
    best_score: float = math.inf
    """Lowest validation score so far (the one best.safetensors holds)."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def args_record(args: argparse.Namespace) -> dict[str, Any]:
    """The options as JSON values (args.json and last.pt)."""
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in vars(args).items() if v is not None}


def checkpoint_payload(progress: RunProgress, trained: TrainedNetwork, optimizer: torch.optim.Optimizer,
                       scaler: torch.amp.GradScaler, *, steps_per_epoch: int, lr_scheduler: dict[str, Any],
                       args: argparse.Namespace) -> dict[str, Any]:
    """last.pt: the official layout (epoch, network/optimizer/scaler states) plus what ``--resume`` needs."""
    return {
        "epoch": progress.step // steps_per_epoch,
        "step": progress.step,
        "network_state_dict": trained.network.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scaler_state_dict": scaler.state_dict(),
        **({"ema_state_dict": trained.ema.state_dict()} if trained.ema is not None else {}),
        "jarrn_config": trained.config.to_dict(),
        "lr_scheduler": lr_scheduler,
        "rng": rng_state(),
        "history": progress.history,
        "best_score": progress.best_score,
        "args": args_record(args),
    }


def resume_from(last_path: Path, trained: TrainedNetwork, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler) -> tuple[RunProgress, int]:
    """Restore the weights, optimizer, scaler, moving average and RNG of ``last_path``; its progress and epoch."""
    payload = read_training_checkpoint(last_path)
    saved: JarrnConfig = payload["jarrn_config"]
    config = trained.config
    if saved != config:
        raise UsageError(f"{last_path}: saved config {saved.to_dict()} differs from the requested "
                         f"{config.to_dict()}; use the same --config/--widths/--prob-activation/"
                         "--depth-normalisation/--sparse-fill")
    try:
        trained.network.load_state_dict(strip_prefixes(payload["network_state_dict"]))
        optimizer.load_state_dict(payload["optimizer_state_dict"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"--resume: {last_path} does not fit this run "
                              f"({str(exc).splitlines()[0]}); delete it or use another --out") from None
    if payload.get("scaler_state_dict"):
        scaler.load_state_dict(payload["scaler_state_dict"])
    if trained.ema is not None and payload.get("ema_state_dict"):
        trained.ema.load_state_dict(payload["ema_state_dict"])
    set_rng_state(payload.get("rng", {}))
    progress = RunProgress(int(payload["step"]), payload.get("history", {"train": [], "val": []}),
                           float(payload.get("best_score", math.inf)))
    return progress, int(payload["epoch"])
