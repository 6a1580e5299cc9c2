"""One optimisation step: the config's sparse fill, the forward pass (AMP on CUDA), the JARRN loss, the update."""

from __future__ import annotations

import torch

from jarrn_deploy.model.losses import LossTerms, jarrn_loss
from jarrn_deploy.model.metric_jarrn import network_sparse_input


def train_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, *, device: torch.device, amp: bool,
               dense_absolute_weight: float = 0.0, grad_clip: float = 0.0, sparse_fill: str = "none") -> LossTerms:
    """One optimisation step on a batch of training samples (host or device made); returns the detached loss terms.

    ``sparse_fill``: the config's fill, applied here exactly as :class:`jarrn_deploy.model.metric_jarrn.MetricJarrn` applies it.
    """
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    sparse_input = network_sparse_input(batch["sparse"], batch["mask"], sparse_fill)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        out = model(batch["rgb"], sparse_input, batch["mask"])
    terms = jarrn_loss(out.depth, batch["gt"], batch["gt_valid"], batch["mask"],
                       dense_absolute_weight=dense_absolute_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms.total).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return LossTerms(*(t.detach() for t in terms))


LOSS_TERM_NAMES = ("loss", "absolute", "relative", "gradient", "dense_absolute")
"""Column names in log.csv of the :class:`jarrn_deploy.model.losses.LossTerms` fields, in their order."""
