"""The in-graph half of the tensor contract, in PyTorch: what :class:`MetricJarrn` computes and the ONNX graph contains.

Validity mask ``sparse > 0``; per-image normalisation of the sparse depth; padding to ``CONTRACT.pad_multiple``;
the optional push-pull fill of the sparse channel; the network; cropping back; de-normalisation to metres. The names,
layout and numpy conversions every backend shares are in :mod:`jarrn_deploy.model.contract`.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jarrn_deploy.memory import ENV_OVERRIDE_HINT, MemoryGuard, user_batch_shape
from jarrn_deploy.model.contract import CONTRACT, depth_to_user, prepare_inputs

DEPTH_NORMALISATIONS = frozenset({"max", "minmax"})
"""How :func:`normalise_sparse` can normalise the sparse depth per image (``JarrnConfig.depth_normalisation``)."""
SPARSE_FILLS = frozenset({"none", "pushpull"})
"""What :func:`network_sparse_input` can feed the network's sparse channel (``JarrnConfig.sparse_fill``)."""
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
        raise ValueError(f"depth_normalisation: expected one of {sorted(DEPTH_NORMALISATIONS)}, got {method!r}")
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


_BILINEAR_2X_TAPS = (0.25, 0.75, 0.75, 0.25)
"""1-D weights of a 2x bilinear upsampling (half-pixel centres): output ``2i`` is ``0.25 x[i-1] + 0.75 x[i]``, output
``2i+1`` is ``0.75 x[i] + 0.25 x[i+1]``."""


def upsample2x_bilinear(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)`` of a one-channel map ``[B,1,h,w]``.

    Written as edge replication by one pixel, a fixed stride-2 transposed convolution and a crop of 3 pixels per side
    (the convolution's ``padding``), which give exactly the bilinear weights with its clamping at the borders. ONNX
    gets a ``Pad`` and a ``ConvTranspose`` instead of a ``Resize``: TensorRT's Myelin compiler could not prove the
    ``Resize`` output dims non-negative on the dynamic pad-to-even pyramid and refused to build the graph.
    """
    taps = torch.tensor(_BILINEAR_2X_TAPS, dtype=x.dtype, device=x.device)
    kernel = (taps[:, None] * taps[None, :])[None, None]
    return F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=2, padding=3)


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
        upsampled = upsample2x_bilinear(filled)[:, :, : value.shape[-2], : value.shape[-1]]
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

    def __init__(self, network: nn.Module, aux_outputs: bool = False) -> None:
        """``network``: a :class:`jarrn_deploy.model.network.Jarrn` (this module is below it, so it is not named in the type: any
        module with the same ``config`` and ``forward(rgb, sparse, mask)`` does)."""
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


@torch.inference_mode()
def complete_depth(network: nn.Module, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
    """PyTorch reference path: user numpy inputs in, float32 metres out, any H and W (``network``: a
    :class:`jarrn_deploy.model.network.Jarrn`, whose ``complete`` calls this)."""
    device = next(network.parameters()).device
    guard, shape = _memory_guard(network, device), user_batch_shape(rgb)
    if shape is not None:
        guard.check(shape)  # before the conversion, which allocates for the size too
    rgb_nchw, sparse_nchw, was_batched = prepare_inputs(rgb, sparse_depth)
    wrapper = MetricJarrn(network).eval()
    depth = wrapper(torch.from_numpy(rgb_nchw).to(device), torch.from_numpy(sparse_nchw).to(device))
    guard.ran(rgb_nchw.shape)
    return depth_to_user(depth.float().cpu().numpy(), was_batched, getattr(network, "source_path", None))


_GUARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""network -> (device, its memory guard): kept per network, so sizes that already ran are not refused again."""


def _memory_guard(network: nn.Module, device: torch.device) -> MemoryGuard:
    """The memory guard of ``network`` on ``device`` (a new one when the network moved)."""
    known = _GUARDS.get(network)
    if known is None or known[0] != device:
        known = (device, MemoryGuard.for_torch(network.config.widths, device, ENV_OVERRIDE_HINT))
        _GUARDS[network] = known
    return known[1]
