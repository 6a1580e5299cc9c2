"""The official JARRN training loss (docs/REFERENCE.md section 2), in the network's normalised depth domain.

``total = absolute + relative + 0.5 * gradient (+ dense_absolute_weight * dense_absolute)``

- ``absolute``: L1 between prediction and GT at pixels that have sparse input (and valid GT): ties the output to the
  absolute (normalised metric) depth where the sensor measured it.
- ``relative``: L1 between the mean/MAD-standardised prediction and the standardised GT over all valid GT pixels
  (per image): scale- and shift-invariant, teaches the scene's shape.
- ``gradient``: L1 of the Sobel gradients of the standardised residual ``std(pred) - std(gt)``, averaged over 4 scales
  (full, 1/2, 1/4, 1/8 by 2x2 average pooling), only where the whole 3x3 Sobel window has valid GT: sharp edges.
- ``dense_absolute`` (not official; weight 0 by default): L1 between prediction and GT over *all* valid GT pixels of
  images that have sparse input, i.e. the metric error the evaluation measures.

Every term is a per-image mean, averaged over the images where it is defined (``absolute`` and ``dense_absolute`` skip
images without sparse input: relative mode). All inputs are ``[B,1,H,W]``; masks are 0/1 floats or bools.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

GRADIENT_WEIGHT = 0.5
GRADIENT_SCALES = 4
_EPS = 1e-6

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_SOBEL_KERNELS = torch.stack((_SOBEL_X, _SOBEL_X.t()))[:, None]  # [2,1,3,3]: d/dx, d/dy


class LossTerms(NamedTuple):
    """The total loss and its parts (each already averaged; ``total`` is what to backpropagate)."""

    total: torch.Tensor
    absolute: torch.Tensor
    relative: torch.Tensor
    gradient: torch.Tensor
    dense_absolute: torch.Tensor


def _per_image_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean per image ``[B]`` and whether the image has any masked pixel ``[B]``."""
    count = mask.sum(dim=(1, 2, 3))
    total = (values * mask).sum(dim=(1, 2, 3))
    return total / count.clamp(min=1.0), count > 0


def _mean_over_defined(per_image: torch.Tensor, defined: torch.Tensor) -> torch.Tensor:
    weights = defined.to(per_image.dtype)
    return (per_image * weights).sum() / weights.sum().clamp(min=1.0)


def standardise(depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(depth - mean) / MAD`` per image, mean and mean absolute deviation over ``mask`` (invariant to affine maps).

    Pixels outside the mask get the same transform (their values are meaningless but finite).
    """
    mask = mask.to(depth.dtype)
    mean, _ = _per_image_mean(depth, mask)
    centred = depth - mean[:, None, None, None]
    mad, _ = _per_image_mean(centred.abs(), mask)
    return centred / (mad[:, None, None, None] + _EPS)


def sobel(image: torch.Tensor) -> torch.Tensor:
    """Sobel x and y responses ``[B,2,H-2,W-2]`` (valid convolution) of a ``[B,1,H,W]`` map."""
    return F.conv2d(image, _SOBEL_KERNELS.to(image.device, image.dtype))


def gradient_loss(residual: torch.Tensor, mask: torch.Tensor, scales: int = GRADIENT_SCALES) -> torch.Tensor:
    """Multi-scale Sobel L1 of ``residual`` where the whole 3x3 window is valid, averaged over scales with pixels."""
    mask = mask.to(residual.dtype)
    residual = residual * mask
    losses = []
    for scale in range(scales):
        if scale:
            if min(residual.shape[-2:]) < 6:
                break
            pooled_mask = F.avg_pool2d(mask, 2)
            residual = F.avg_pool2d(residual, 2) / pooled_mask.clamp(min=_EPS) * (pooled_mask > 0.999)
            mask = (pooled_mask > 0.999).to(residual.dtype)
        window_valid = (-F.max_pool2d(-mask, 3, stride=1)) > 0.5  # erosion: every pixel of the 3x3 window valid
        grads = sobel(residual).abs().sum(dim=1, keepdim=True)
        per_image, defined = _per_image_mean(grads, window_valid.to(residual.dtype))
        losses.append(_mean_over_defined(per_image, defined))
    return torch.stack(losses).mean() if losses else residual.sum() * 0.0


def jarrn_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    gt_valid: torch.Tensor,
    sparse_mask: torch.Tensor,
    *,
    gradient_weight: float = GRADIENT_WEIGHT,
    dense_absolute_weight: float = 0.0,
) -> LossTerms:
    """The official loss on normalised depth: ``pred`` and ``gt`` ``[B,1,H,W]``, ``gt_valid`` and ``sparse_mask`` 0/1.

    ``gt`` must be in the same normalised domain as the network input (same low/range as the sparse depth), so the
    absolute term compares like with like. Computed in float32 even under autocast.
    """
    if pred.shape != gt.shape or gt_valid.shape != gt.shape or sparse_mask.shape != gt.shape:
        raise ValueError(
            f"jarrn_loss: pred, gt, gt_valid and sparse_mask must share one shape [B,1,H,W], got "
            f"{tuple(pred.shape)}, {tuple(gt.shape)}, {tuple(gt_valid.shape)}, {tuple(sparse_mask.shape)}"
        )
    pred = pred.float()
    gt = gt.float()
    valid = gt_valid.float()
    absolute_mask = valid * sparse_mask.float()
    error = (pred - gt).abs()

    absolute_per_image, has_points = _per_image_mean(error, absolute_mask)
    absolute = _mean_over_defined(absolute_per_image, has_points)

    pred_std = standardise(pred, valid)
    gt_std = standardise(gt, valid)
    relative_per_image, has_gt = _per_image_mean((pred_std - gt_std).abs(), valid)
    relative = _mean_over_defined(relative_per_image, has_gt)

    gradient = gradient_loss(pred_std - gt_std, valid)

    dense_per_image, _ = _per_image_mean(error, valid)
    dense_absolute = _mean_over_defined(dense_per_image, has_points & has_gt)

    total = absolute + relative + gradient_weight * gradient
    if dense_absolute_weight:
        total = total + dense_absolute_weight * dense_absolute
    return LossTerms(total, absolute, relative, gradient, dense_absolute)
