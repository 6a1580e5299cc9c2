"""The tensor contract shared by every backend: names, layout, units, padding and depth normalisation.

User side (numpy): RGB as uint8 ``HxWx3`` (or float in [0,1]), sparse depth in metres as ``HxW`` float (0 = missing),
batches with a leading ``B``. :func:`prepare_inputs` validates and converts them to the graph inputs below, and
:func:`depth_to_user` converts the graph output back; every backend (PyTorch, ONNX Runtime, TensorRT) uses these two.

Graph side (what :class:`MetricJarrn` computes and what the ONNX export contains):
  inputs  ``rgb``          float32 ``[B,3,H,W]`` in [0,1]
          ``sparse_depth`` float32 ``[B,1,H,W]`` metres, 0 = missing
  output  ``depth``        float32 ``[B,1,H,W]`` metres (aux: ``coarse``, ``scale``, ``offset``, ``prob``, network domain)
Inside: validity mask ``sparse > 0``; per-image normalisation of the sparse depth ('max': divide by the largest
sparse depth; 'minmax': map [min, max] of the sparse depth to [0, 1]); padding to a multiple of 64 (RGB by edge
replication, sparse depth and mask with zeros = missing); for models configured with ``sparse_fill='pushpull'``, the
empty pixels of the sparse channel filled by :func:`pushpull_fill` (the mask is unchanged); the network; cropping
back; de-normalisation to metres.

With no sparse point at all (the paper's relative mode) the normalisation is the identity: the output is the
network's relative depth, roughly in [0, 1] and not in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.network import DOWNSAMPLING_FACTOR, SPARSE_FILLS, Jarrn

CONTRACT_VERSION = "1"


@dataclass(frozen=True)
class TensorContract:
    """Names and conventions every backend shares."""

    rgb_name: str = "rgb"
    """Graph input: float32 [B,3,H,W], RGB order, values in [0,1]."""
    sparse_name: str = "sparse_depth"
    """Graph input: float32 [B,1,H,W], metres, 0 = missing."""
    depth_name: str = "depth"
    """Graph output: float32 [B,1,H,W], metres."""
    aux_names: tuple[str, ...] = ("coarse", "scale", "offset", "prob")
    """Optional graph outputs (network domain), in this order after ``depth``."""
    pad_multiple: int = DOWNSAMPLING_FACTOR
    """Inputs are padded inside the graph to a multiple of this and cropped back."""
    max_plausible_depth_m: float = 1000.0
    """Sparse depth above this is rejected as raw sensor units (e.g. uint16 millimetres) rather than metres."""
    version: str = CONTRACT_VERSION
    """Bumped whenever any convention above changes."""


CONTRACT = TensorContract()
_NORMALISATION_EPS = 1e-6


def normalise_sparse(sparse: torch.Tensor, mask: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ``(normalised sparse, low, range)`` with ``metres = normalised * range + low``.

    Images without valid points get ``low = 0, range = 1`` (relative mode); 'minmax' falls back to 'max' when all
    points have the same depth, since their range would be zero.
    """
    high = torch.amax(sparse, dim=(1, 2, 3), keepdim=True)
    has_points = high > 0
    if method == "max":
        low = torch.zeros_like(high)
    elif method == "minmax":
        masked_for_min = torch.where(mask > 0, sparse, torch.full_like(sparse, float("inf")))
        low = torch.amin(masked_for_min, dim=(1, 2, 3), keepdim=True)
        low = torch.where((high - low) > _NORMALISATION_EPS * high, low, torch.zeros_like(low))
        low = torch.where(has_points, low, torch.zeros_like(low))
    else:
        raise ValueError(f"depth_normalisation: expected 'max' or 'minmax', got {method!r}")
    value_range = torch.where(has_points, high - low, torch.ones_like(high))
    normalised = (sparse - low) / value_range * mask
    return normalised, low, value_range


PUSHPULL_LEVELS = 12
"""Pyramid levels of :func:`pushpull_fill`: a 4096-pixel side reaches a single cell (the image-wide mean)."""


def _pad_to_even(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))


def _binomial_blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 binomial (1-2-1) smoothing of a one-channel map; zero padding, i.e. no points outside the image."""
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16.0)[None, None]
    return F.conv2d(x, kernel, padding=1)


def pushpull_fill(sparse: torch.Tensor, mask: torch.Tensor, levels: int = PUSHPULL_LEVELS) -> torch.Tensor:
    """Fill every empty pixel of ``sparse`` ``[B,1,H,W]`` from the finest pyramid level that has points around it.

    Push: smooth the points and the mask (3x3 binomial) and average them over 2x2 cells, level after level. Pull: from
    the coarsest level down, a pixel with points in its smoothed neighbourhood takes their weighted mean, any other
    pixel the bilinear upsampling of the coarser level. Measured pixels keep their exact value. Odd sizes are padded
    with zeros (= no points) before pooling, so PyTorch, ONNX Runtime and TensorRT divide the same way; cells still
    empty at the top take the image's mean point. Affine in the depth, so it commutes with the normalisation; a
    fixed level count, so it traces to one graph for every input size.
    """
    values, weights = [sparse * mask], [mask]
    for _ in range(levels):
        values.append(F.avg_pool2d(_pad_to_even(_binomial_blur(values[-1])), 2))
        weights.append(F.avg_pool2d(_pad_to_even(_binomial_blur(weights[-1])), 2))
    point_sum = torch.sum(values[0], dim=(1, 2, 3), keepdim=True)
    point_count = torch.sum(weights[0], dim=(1, 2, 3), keepdim=True)
    image_mean = point_sum / torch.clamp(point_count, min=1.0)
    filled = _cell_mean_or(values[-1], weights[-1], image_mean.expand_as(values[-1]))
    for value, weight in zip(reversed(values[:-1]), reversed(weights[:-1])):
        upsampled = F.interpolate(filled, scale_factor=2.0, mode="bilinear", align_corners=False)
        upsampled = upsampled[:, :, : value.shape[-2], : value.shape[-1]]
        filled = _cell_mean_or(_binomial_blur(value), _binomial_blur(weight), upsampled)
    return torch.where(mask > 0, sparse, filled)


def _cell_mean_or(value: torch.Tensor, weight: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    has_points = weight > 0
    mean = value / torch.where(has_points, weight, torch.ones_like(weight))
    return torch.where(has_points, mean, fallback)


def network_sparse_input(sparse: torch.Tensor, mask: torch.Tensor, fill: str) -> torch.Tensor:
    """What the network's sparse channel receives for the config's ``sparse_fill`` (normalised depth, ``[B,1,H,W]``)."""
    if fill == "none":
        return sparse
    if fill == "pushpull":
        return pushpull_fill(sparse, mask)
    raise ValueError(f"sparse_fill: expected one of {sorted(SPARSE_FILLS)}, got {fill!r}")


def _pad_amount(size: int) -> int:
    return (CONTRACT.pad_multiple - size % CONTRACT.pad_multiple) % CONTRACT.pad_multiple


class MetricJarrn(nn.Module):
    """The whole contract around a :class:`Jarrn`: metric inputs of any size in, metric depth out (the ONNX graph)."""

    def __init__(self, network: Jarrn, aux_outputs: bool = False) -> None:
        super().__init__()
        self.network = network
        self.aux_outputs = aux_outputs

    def forward(self, rgb: torch.Tensor, sparse_depth: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        height, width = rgb.shape[-2], rgb.shape[-1]
        mask = (sparse_depth > 0).to(sparse_depth.dtype)
        sparse, low, value_range = normalise_sparse(sparse_depth, mask, self.network.config.depth_normalisation)
        pad = (0, _pad_amount(width), 0, _pad_amount(height))
        rgb_padded = F.pad(rgb, pad, mode="replicate")
        mask_padded = F.pad(mask, pad)
        sparse_padded = network_sparse_input(F.pad(sparse, pad), mask_padded, self.network.config.sparse_fill)
        out = self.network(rgb_padded, sparse_padded, mask_padded)
        cropped = [t[:, :, :height, :width] for t in out]
        depth = torch.clamp(cropped[0] * value_range + low, min=0.0)
        if self.aux_outputs:
            return (depth, *cropped[1:])
        return depth


# ---------------------------------------------------------------------------------------------------------------------
# numpy side: validation and layout conversion, shared by every backend


def _as_batched_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"rgb: expected a numpy array, got {type(rgb).__name__}")
    if rgb.ndim == 3:
        rgb = rgb[None]
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb: expected HxWx3 or BxHxWx3 (RGB, channels last), got shape {tuple(rgb.shape)}")
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / 255.0
    if not np.issubdtype(rgb.dtype, np.floating):
        raise ValueError(f"rgb: expected uint8 (0..255) or float in [0,1], got dtype {rgb.dtype}")
    rgb = rgb.astype(np.float32, copy=False)
    if not np.isfinite(rgb).all():
        raise ValueError("rgb: contains NaN or inf")
    if rgb.min() < 0.0 or rgb.max() > 1.0:
        raise ValueError(
            f"rgb: float input must lie in [0,1], got values in [{rgb.min():.3g}, {rgb.max():.3g}] "
            "(pass uint8 for 0..255 images)"
        )
    return rgb


def _as_batched_sparse(sparse: np.ndarray) -> np.ndarray:
    if not isinstance(sparse, np.ndarray):
        raise TypeError(f"sparse_depth: expected a numpy array, got {type(sparse).__name__}")
    if sparse.ndim == 2:
        sparse = sparse[None]
    if sparse.ndim == 4 and sparse.shape[1] == 1:
        sparse = sparse[:, 0]
    if sparse.ndim != 3:
        raise ValueError(f"sparse_depth: expected HxW or BxHxW metres, got shape {tuple(sparse.shape)}")
    if not np.issubdtype(sparse.dtype, np.floating):
        raise ValueError(
            f"sparse_depth: expected float metres, got dtype {sparse.dtype}; raw depth PNGs must be converted first "
            "(model.depth_io.read_depth_png: KITTI value/256, TUM value/5000, millimetres value/1000)"
        )
    sparse = sparse.astype(np.float32, copy=False)
    if not np.isfinite(sparse).all():
        raise ValueError("sparse_depth: contains NaN or inf; mark missing depth with 0")
    if sparse.min(initial=0.0) < 0.0:
        raise ValueError(f"sparse_depth: negative depth ({sparse.min():.3g} m); mark missing depth with 0")
    if sparse.max(initial=0.0) > CONTRACT.max_plausible_depth_m:
        raise ValueError(
            f"sparse_depth: values up to {sparse.max():.6g} look like raw sensor units, not metres "
            f"(limit {CONTRACT.max_plausible_depth_m:g} m); divide by the sensor's scale (KITTI 256, TUM 5000, mm 1000)"
        )
    return sparse


def prepare_inputs(rgb: np.ndarray, sparse_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate user inputs and return graph inputs ``(rgb [B,3,H,W], sparse_depth [B,1,H,W], was_batched)``."""
    was_batched = rgb.ndim == 4 if isinstance(rgb, np.ndarray) else False
    rgb_b = _as_batched_rgb(rgb)
    sparse_b = _as_batched_sparse(sparse_depth)
    if rgb_b.shape[:3] != sparse_b.shape:
        raise ValueError(
            f"rgb and sparse_depth: sizes differ, rgb is {rgb_b.shape[1]}x{rgb_b.shape[2]} (batch {rgb_b.shape[0]}), "
            f"sparse_depth is {sparse_b.shape[1]}x{sparse_b.shape[2]} (batch {sparse_b.shape[0]})"
        )
    rgb_nchw = np.ascontiguousarray(rgb_b.transpose(0, 3, 1, 2))
    return rgb_nchw, np.ascontiguousarray(sparse_b[:, None]), was_batched


def depth_to_user(depth: np.ndarray, was_batched: bool) -> np.ndarray:
    """Graph output ``[B,1,H,W]`` to ``BxHxW`` (batched input) or ``HxW`` float32 metres."""
    depth = np.asarray(depth, dtype=np.float32)[:, 0]
    return depth if was_batched else depth[0]


@torch.inference_mode()
def complete_depth(network: Jarrn, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
    """PyTorch reference path: user numpy inputs in, float32 metres out, any H and W."""
    rgb_nchw, sparse_nchw, was_batched = prepare_inputs(rgb, sparse_depth)
    device = next(network.parameters()).device
    wrapper = MetricJarrn(network).eval()
    depth = wrapper(torch.from_numpy(rgb_nchw).to(device), torch.from_numpy(sparse_nchw).to(device))
    return depth_to_user(depth.float().cpu().numpy(), was_batched)
