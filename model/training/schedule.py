"""The learning-rate schedule: linear warm-up, then the paper's MultiStepLR."""

from __future__ import annotations


def learning_rate(step: int, *, base_lr: float, steps_per_epoch: int, milestones: list[int], gamma: float,
                  warmup_epochs: float = 1.0) -> float:
    """Linear warm-up over ``warmup_epochs`` then MultiStepLR (``gamma`` at every milestone epoch reached)."""
    warmup_steps = max(1, int(round(warmup_epochs * steps_per_epoch)))
    warm = min(1.0, (step + 1) / warmup_steps)
    epoch = step // max(1, steps_per_epoch)
    return base_lr * warm * gamma ** sum(epoch >= m for m in milestones)
