"""Training samples on the host: frame sources (:class:`SyntheticSource`) and :class:`TrainingSamples`, which turns
their full frames into augmented, normalised training crops (random crop, flip, colour jitter, sparse pattern).

Items are dicts keyed by the contract's input names (rgb, sparse, mask) plus "gt" and "gt_valid".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from jarrn_deploy.model.metric_jarrn import normalise_sparse
from jarrn_deploy.model.train_options import SPARSE_MIXES
from jarrn_deploy.model.training.sparse_sampling import sample_sparse

class SyntheticSource(Dataset):
    """Procedural scenes rendered at a random size (``render_scale`` x the crop, random aspect) for every sample.

    Item ``i`` is deterministic in ``(seed, i)``; indices beyond ``length`` give new scenes, so every epoch can see
    fresh data (see :class:`TrainingSamples`). Items: {"rgb" [3,H,W] in [0,1], "depth" [1,H,W] m, "intrinsics"}.
    """

    def __init__(self, length: int, crop: tuple[int, int], seed: int = 0,
                 render_scale: tuple[float, float] = (1.0, 2.0), kind: str = "random") -> None:
        self.length, self.crop, self.seed = int(length), crop, int(seed)
        self.render_scale, self.kind = render_scale, kind

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        from jarrn_deploy.model.synthetic import generate_scene

        rng = np.random.default_rng([self.seed, 7919, int(index)])
        scale = rng.uniform(*self.render_scale)
        h = max(self.crop[0], int(round(self.crop[0] * scale)))
        w = max(self.crop[1], int(round(h * rng.uniform(1.0, 1.6))))
        scene_seed = int(np.random.default_rng([self.seed, int(index)]).integers(0, 2**31 - 1))
        s = generate_scene(scene_seed, h, w, self.kind)
        rgb = torch.from_numpy(s.rgb).permute(2, 0, 1).float().div_(255.0)
        return {"rgb": rgb.contiguous(), "depth": torch.from_numpy(s.depth)[None], "intrinsics": s.intrinsics}


GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""Luma weights of R, G, B for the contrast and saturation jitter."""


def jitter_colours(rgb: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness (op 0), contrast (1) and saturation (2) jitter of ``[B,3,H,W]`` in [0,1], per sample: ``order``
    ``[B,3]`` gives the ops in the order applied and ``factors`` ``[B,3]`` the factor of each applied op."""
    red, green, blue = GRAY_WEIGHTS
    for position in range(3):
        op = order[:, position].reshape(-1, 1, 1, 1)
        factor = factors[:, position].to(rgb.dtype).reshape(-1, 1, 1, 1)
        gray = red * rgb[:, 0:1] + green * rgb[:, 1:2] + blue * rgb[:, 2:3]
        mean = gray.mean(dim=(2, 3), keepdim=True)
        brightness = rgb * factor
        contrast = (rgb - mean) * factor + mean
        saturation = (rgb - gray) * factor + gray
        rgb = torch.where(op == 0, brightness, torch.where(op == 1, contrast, saturation)).clamp(0.0, 1.0)
    return rgb


def draw_jitter(rng: np.random.Generator, strength: float) -> tuple[list[int], list[float]]:
    """One sample's jitter: the order of the three ops and the factor (in [1-s, 1+s]) of each applied op."""
    order = [int(op) for op in rng.permutation(3)]
    return order, [float(rng.uniform(1.0 - strength, 1.0 + strength)) for _ in order]


def colour_jitter(rgb: torch.Tensor, rng: np.random.Generator, strength: float = 0.2) -> torch.Tensor:
    """Brightness, contrast and saturation jitter (each factor in [1-s, 1+s], random order) on ``[3,H,W]`` in [0,1]."""
    order, factors = draw_jitter(rng, strength)
    return jitter_colours(rgb[None], torch.tensor([order]), torch.tensor([factors]))[0]


def normalise_batch(sparse: torch.Tensor, gt: torch.Tensor, method: str) -> tuple[torch.Tensor, ...]:
    """``(sparse_n, mask, gt_n, gt_valid)`` for ``[B,1,H,W]`` metres, exactly as inference normalises the input.

    The GT uses the sparse input's low/range; without sparse points it is min-max normalised itself (relative mode).
    Works on any device without reading values back to the host.
    """
    mask = (sparse > 0).float()
    gt_valid = (gt > 0).float()
    sparse_n, low, value_range = normalise_sparse(sparse, mask, method)
    dims = (1, 2, 3)
    relative = ~(mask > 0).any(dim=1, keepdim=True).any(dim=2, keepdim=True).any(dim=3, keepdim=True)
    relative &= (gt_valid > 0).any(dim=1, keepdim=True).any(dim=2, keepdim=True).any(dim=3, keepdim=True)
    gt_low = torch.where(gt_valid > 0, gt, torch.full_like(gt, math.inf)).amin(dim=dims, keepdim=True)
    gt_high = torch.where(gt_valid > 0, gt, torch.full_like(gt, -math.inf)).amax(dim=dims, keepdim=True)
    low = torch.where(relative, gt_low, low)
    value_range = torch.where(relative, (gt_high - gt_low).clamp(min=1e-6), value_range)
    gt_n = (gt - low) / value_range * gt_valid
    return sparse_n, mask, gt_n, gt_valid


def normalise_sample(sparse: torch.Tensor, gt: torch.Tensor, method: str) -> tuple[torch.Tensor, ...]:
    """:func:`normalise_batch` for one ``[1,H,W]`` sample."""
    return tuple(t[0] for t in normalise_batch(sparse[None], gt[None], method))


def flip_jitter_normalise(rgb: torch.Tensor, sparse: torch.Tensor, gt: torch.Tensor, rng: np.random.Generator, *,
                          jitter: float, normalisation: str) -> dict[str, torch.Tensor]:
    """The last steps of every host-made sample, on a ``[C,h,w]`` crop: a horizontal flip (p=0.5), colour jitter and
    the normalisation; returns the training item (rgb, sparse, mask, gt, gt_valid)."""
    if rng.random() < 0.5:
        rgb, sparse, gt = rgb.flip(-1), sparse.flip(-1), gt.flip(-1)
    if jitter > 0:
        rgb = colour_jitter(rgb, rng, jitter)
    sparse_n, mask, gt_n, gt_valid = normalise_sample(sparse, gt, normalisation)
    return {"rgb": rgb.contiguous(), "sparse": sparse_n.contiguous(), "mask": mask.contiguous(),
            "gt": gt_n.contiguous(), "gt_valid": gt_valid.contiguous()}


class TrainingSamples(Dataset):
    """Random crop + flip + colour jitter + sparse pattern + normalisation on top of a frame source.

    Sample ``i`` of epoch ``e`` reads source item ``e * len + i`` (wrapped when the source is finite: ``source_cycles``)
    and draws its randomness from ``(seed, e, i)``, so runs are reproducible and resumable. Items: {"rgb" [3,h,w],
    "sparse" [1,h,w] normalised, "mask", "gt" [1,h,w] normalised like the sparse input, "gt_valid"}.
    """

    def __init__(self, source: Dataset, crop: tuple[int, int], *, mix: str, normalisation: str, seed: int,
                 epoch_samples: int | None = None, fresh_source_per_epoch: bool = False,
                 real_sparse_probability: float = 0.5, jitter: float = 0.2, outlier_probability: float = 0.0) -> None:
        if mix not in SPARSE_MIXES:
            raise ValueError(f"sparse mix: expected one of {sorted(SPARSE_MIXES)}, got {mix!r}")
        self.source, self.crop, self.mix = source, crop, SPARSE_MIXES[mix]
        self.normalisation, self.seed = normalisation, int(seed)
        self.epoch_samples = int(epoch_samples or len(source))  # type: ignore[arg-type]
        self.fresh = fresh_source_per_epoch
        self.real_sparse_probability, self.jitter = real_sparse_probability, jitter
        self.outlier_probability = outlier_probability
        self.epoch = 0

    def __len__(self) -> int:
        return self.epoch_samples

    def _source_index(self, index: int) -> int:
        if self.fresh:
            return self.epoch * self.epoch_samples + index
        return (self.epoch * self.epoch_samples + index) % len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        item = self.source[self._source_index(int(index))]
        rgb, depth = item["rgb"].float(), item["depth"].float()
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
        real = item.get("sparse")
        if real is not None and rng.random() < self.real_sparse_probability:
            sparse = real.float()
        else:
            sparse_np, _ = sample_sparse(depth[0].numpy(), rng, self.mix, item.get("intrinsics"),
                                         self.outlier_probability)
            sparse = torch.from_numpy(sparse_np)[None]
        rgb, depth, sparse = self._crop(rgb, depth, sparse, rng)
        return flip_jitter_normalise(rgb, sparse, depth, rng, jitter=self.jitter, normalisation=self.normalisation)

    def _crop(self, rgb: torch.Tensor, depth: torch.Tensor, sparse: torch.Tensor, rng: np.random.Generator):
        ch, cw = self.crop
        h, w = rgb.shape[-2:]
        if h < ch or w < cw:  # too small: scale up so the crop fits (depth by nearest neighbour)
            factor = max(ch / h, cw / w)
            size = (max(ch, math.ceil(h * factor)), max(cw, math.ceil(w * factor)))
            rgb = F.interpolate(rgb[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
            depth = F.interpolate(depth[None], size=size, mode="nearest")[0]
            sparse = F.interpolate(sparse[None], size=size, mode="nearest")[0]
            h, w = size
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        window = (..., slice(top, top + ch), slice(left, left + cw))
        return rgb[window], depth[window], sparse[window]

