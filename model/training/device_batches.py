"""Synthetic training batches made whole on the training device (``--synthetic-on-device``).

The host path (:class:`jarrn_deploy.model.training.samples.TrainingSamples` over :class:`~jarrn_deploy.model.training.samples.SyntheticSource`)
renders each sample with numpy in a loader worker and copies the finished crops to the GPU. Here one batch is made in
the training process with torch on the training device: :func:`jarrn_deploy.model.synthetic.generate_batch` renders the batch's
scenes (one render size per batch, drawn from ``--render-scale`` and a random aspect 1.0-1.6, like the host path), then
the sparse patterns of the ``--sparse-mix`` regimes (:func:`draw_sparse`), hole masks, outliers, random crops, flips,
colour jitter and the normalisation run as batched torch ops on that device.

With ``--workers N`` the ray casting of each batch's scenes runs with numpy in N loader processes instead
(:class:`NumpySceneRenders`: the same scenes, as :func:`~jarrn_deploy.model.synthetic.generate_batch` matches the numpy path), and
only the raw scenes (uint8 RGB, float depth) are copied to the device; everything after the ray casting stays there.
The in-process renderer issues a few thousand small torch operations per scene, so on a GPU it is bound by launch
overhead; the workers spread that cost over the CPUs.

With a scene pool (``--scene-pool N``, :mod:`jarrn_deploy.model.training.scene_pool`) the scenes are not rendered per batch:
:meth:`DeviceSyntheticBatches.pooled_batch` draws the batch's scenes from N rendered ones kept on the device, crops
each first and draws the sparse pattern on the crop (so hole sizes, LiDAR line spacing and point counts refer to the
crop rather than the whole rendered scene), and the pool's refresh renders ``batch / --scene-reuse`` new scenes per
step (in this process, or in the ``--workers`` processes without waiting for them).

Randomness: the scalar draws of a batch (scene seeds, regimes, counts, crop offsets ...) come from a numpy generator
seeded with ``(seed, epoch, rank, batch index)`` on the host, and the per-pixel draws from a torch generator on the
device seeded from it; so a batch is the same whenever it is made again, and ``--resume`` continues exactly. Besides
the scenes (with workers), only a few hundred bytes of per-sample parameters go to the device, and no value is read
back from it.

Differences from the host path, by design: random subsets keep an exact count of points (as the host does), but the
outliers of LiDAR and point patterns pick each point with their ratio as probability instead of an exact count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from jarrn_deploy.model.train_options import SPARSE_MIXES
from jarrn_deploy.model.training.scene_pool import PoolLayout, ScenePool, pool_layout
from jarrn_deploy.model.training.samples import draw_jitter, jitter_colours, normalise_batch
from jarrn_deploy.model.training.sparse_sampling import (
    DENSE_BLUR_FACTORS,
    DENSE_BLUR_PROBABILITY,
    DENSE_NOISE_PROBABILITY,
    DENSE_NOISE_SIGMA,
    HOLE_PROBABILITY,
    LIDAR_LINES,
    OUTLIER_MAX_FACTOR,
    OUTLIER_RATIO_MAX,
    POINT_COUNTS,
    blur_depth,
    log_uniform,
)

ASPECT_RANGE = (1.0, 1.6)
"""Width / height of a rendered scene, drawn uniformly (as :class:`~jarrn_deploy.model.training.samples.SyntheticSource`)."""
MAX_HOLES = 3
OUTLIER_MIN_FACTOR = 1.25
"""Smallest factor an outlier's depth is multiplied or divided by (:func:`jarrn_deploy.model.sparse.add_outliers`' default)."""
LIDAR_OUTLIER_MAX_FACTOR = 4.0


@dataclass(frozen=True)
class DeviceBatchSettings:
    """What the batches look like."""

    crop: tuple[int, int]
    """Training crop, height and width."""
    batch_size: int
    """Samples per batch (per process)."""
    mix: str
    """Sparse-input mix, a key of :data:`jarrn_deploy.model.train_options.SPARSE_MIXES`."""
    normalisation: str
    """The config's depth normalisation ('max' or 'minmax')."""
    seed: int = 0
    """Seed of every random draw."""
    render_scale: tuple[float, float] = (1.0, 2.0)
    """Scenes are rendered at crop height times a factor from this range, then cropped."""
    jitter: float = 0.2
    """Colour-jitter strength (0: none)."""
    outlier_probability: float = 0.0
    """Chance that a random-point pattern gets 0-3% outliers."""
    channels_last: bool = False
    """Return the RGB in channels-last memory format (what the network uses on CUDA)."""


def to_device(values: object, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Host values (a list or numpy array) as a tensor on ``device`` without waiting for it: a blocking copy to a GPU
    would first wait for every queued kernel, the training step's included; from pinned memory it is queued."""
    host = torch.as_tensor(values, dtype=dtype)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True)
class ScenePlan:
    """The scenes of one batch, drawn on the host before any rendering."""

    rng: np.random.Generator
    """The batch's host generator, past the draws below: the sparse patterns, crops and jitter draw from it next."""
    generator_seed: int
    """Seed of the torch generator for the per-pixel draws."""
    height: int
    """Render height (every scene of the batch shares the size)."""
    width: int
    """Render width."""
    scene_seeds: tuple[int, ...]
    """One :func:`jarrn_deploy.model.synthetic.generate_scene` seed per sample."""


def plan_scenes(settings: DeviceBatchSettings, epoch: int, rank: int, index: int) -> ScenePlan:
    """Batch ``index`` of ``epoch`` on process ``rank``: render size and scene seeds, drawn from
    ``(seed, epoch, rank, index)``."""
    rng = np.random.default_rng([settings.seed, 7919, int(epoch), int(rank), int(index)])
    generator_seed = int(rng.integers(0, 2**62))
    ch, cw = settings.crop
    h = max(ch, int(round(ch * rng.uniform(*settings.render_scale))))
    w = max(cw, int(round(h * rng.uniform(*ASPECT_RANGE))))
    seeds = tuple(int(v) for v in rng.integers(0, 2**31 - 1, size=settings.batch_size))
    return ScenePlan(rng, generator_seed, h, w, seeds)


class NumpySceneRenders:
    """Map-style dataset for loader workers: item ``(epoch, index)`` is that batch's scenes rendered with numpy
    (:func:`jarrn_deploy.model.synthetic.generate_scene`, which :func:`~jarrn_deploy.model.synthetic.generate_batch` matches): uint8 RGB
    ``[B,H,W,3]``, depth ``[B,1,H,W]`` metres and intrinsics ``[B,4]``."""

    def __init__(self, settings: DeviceBatchSettings, rank: int) -> None:
        self.settings, self.rank = settings, rank

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from jarrn_deploy.model.synthetic import generate_scene

        plan = plan_scenes(self.settings, key[0], self.rank, key[1])
        scenes = [generate_scene(seed, plan.height, plan.width) for seed in plan.scene_seeds]
        return (torch.from_numpy(np.stack([sc.rgb for sc in scenes])),
                torch.from_numpy(np.stack([sc.depth for sc in scenes]))[:, None],
                torch.tensor([sc.intrinsics for sc in scenes], dtype=torch.float32))


def plan_chunk(settings: DeviceBatchSettings, rank: int, chunk: int, size: int) -> tuple[int, int, tuple[int, ...]]:
    """Render height, width and scene seeds of scene-pool chunk ``chunk`` (``size`` scenes), drawn from
    ``(seed, rank, chunk)`` like :func:`plan_scenes`."""
    rng = np.random.default_rng([settings.seed, 4241, int(rank), int(chunk)])
    ch, cw = settings.crop
    h = max(ch, int(round(ch * rng.uniform(*settings.render_scale))))
    w = max(cw, int(round(h * rng.uniform(*ASPECT_RANGE))))
    return h, w, tuple(int(v) for v in rng.integers(0, 2**31 - 1, size=size))


class NumpyChunkRenders:
    """Map-style dataset for loader workers: item ``c`` is scene-pool chunk ``c`` rendered with numpy: uint8 RGB
    ``[C,3,H,W]``, depth ``[C,1,H,W]`` metres and intrinsics ``[C,4]``."""

    def __init__(self, settings: DeviceBatchSettings, rank: int, size: int) -> None:
        self.settings, self.rank, self.size = settings, rank, size

    def __getitem__(self, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from jarrn_deploy.model.synthetic import generate_scene

        h, w, seeds = plan_chunk(self.settings, self.rank, chunk, self.size)
        scenes = [generate_scene(seed, h, w) for seed in seeds]
        return (torch.from_numpy(np.stack([sc.rgb for sc in scenes])).permute(0, 3, 1, 2).contiguous(),
                torch.from_numpy(np.stack([sc.depth for sc in scenes]))[:, None],
                torch.tensor([sc.intrinsics for sc in scenes], dtype=torch.float32))


class _CountFrom:
    """The chunk numbers ``first, first + 1, ...`` as a loader's sampler."""

    def __init__(self, first: int) -> None:
        self.first = first

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.first)


class DeviceSyntheticBatches:
    """Batches of synthetic training samples made on ``device``; an epoch is ``epoch_samples`` over ``world``
    processes, in whole batches (like :class:`~jarrn_deploy.model.training.distributed.ResumableDistributedSampler` with drop_last).
    Items have the keys and shapes of :class:`~jarrn_deploy.model.training.samples.TrainingSamples` with a leading batch axis.

    ``render_workers`` > 0: the scenes are ray cast with numpy by that many loader processes (whole batches, copied
    to the device as uint8 RGB and float depth) and only the rest runs on the device; the scenes are the same.

    ``pool_scenes`` > 0: batches are drawn from a :class:`~jarrn_deploy.model.training.scene_pool.ScenePool` of that many scenes,
    each drawn about ``pool_reuse`` times (:meth:`pooled_batch`); the render workers then render the pool's chunks.
    """

    def __init__(self, settings: DeviceBatchSettings, device: str | torch.device, *, epoch_samples: int,
                 rank: int = 0, world: int = 1, render_workers: int = 0, pool_scenes: int = 0,
                 pool_reuse: float = 8.0, log: Callable[[str], None] = print) -> None:
        if settings.mix not in SPARSE_MIXES:
            raise ValueError(f"sparse mix: expected one of {sorted(SPARSE_MIXES)}, got {settings.mix!r}")
        self.settings, self.device = settings, torch.device(device)
        self.rank, self.world, self.render_workers = int(rank), int(world), int(render_workers)
        self.steps_per_epoch = (int(epoch_samples) // self.world) // settings.batch_size
        self.pool: ScenePool | None = None
        self.pool_layout: PoolLayout | None = None
        if pool_scenes > 0:
            self.pool_layout = pool_layout(pool_scenes, pool_reuse, settings.batch_size, settings.crop,
                                           settings.render_scale, ASPECT_RANGE[1])
        self.log = log

    def epoch_batches(self, epoch: int, first_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        indices = range(first_batch, self.steps_per_epoch)
        if self.pool_layout is not None:
            for index in indices:
                yield self.pooled_batch(epoch, index)
            return
        if self.render_workers == 0:
            for index in indices:
                yield self.batch(epoch, index)
            return
        from torch.utils.data import DataLoader

        renders = DataLoader(NumpySceneRenders(self.settings, self.rank), batch_size=None,  # type: ignore[arg-type]
                             sampler=[(epoch, index) for index in indices], num_workers=self.render_workers,
                             pin_memory=self.device.type == "cuda", prefetch_factor=2)  # whole uncropped batches
        for index, (rgb, depth, intrinsics) in zip(indices, renders):
            rgb = rgb.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
            yield self.finish(plan_scenes(self.settings, epoch, self.rank, index), rgb,
                              depth.to(self.device, non_blocking=True), intrinsics.to(self.device, non_blocking=True))

    def batch(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """Batch ``index`` of ``epoch``, rendered on the device: the same tensors every time it is asked for."""
        from jarrn_deploy.model.synthetic import generate_batch

        plan = plan_scenes(self.settings, epoch, self.rank, index)
        scenes = generate_batch(list(plan.scene_seeds), plan.height, plan.width, device=self.device)
        return self.finish(plan, scenes.rgb, scenes.depth, scenes.intrinsics)

    def scene_pool(self) -> ScenePool:
        """The pool (made at the first pooled batch)."""
        if self.pool is None:
            assert self.pool_layout is not None
            layout, settings, rank = self.pool_layout, self.settings, self.rank

            def size_of(chunk: int) -> tuple[int, int]:
                return plan_chunk(settings, rank, chunk, layout.chunk)[:2]

            def render(chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                from jarrn_deploy.model.synthetic import generate_batch

                h, w, seeds = plan_chunk(settings, rank, chunk, layout.chunk)
                scenes = generate_batch(list(seeds), h, w, device=self.device)
                rgb = scenes.rgb.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
                return rgb, scenes.depth, scenes.intrinsics

            def from_workers(first: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
                from torch.utils.data import DataLoader

                loader = DataLoader(NumpyChunkRenders(settings, rank, layout.chunk),  # type: ignore[arg-type]
                                    batch_size=None, sampler=_CountFrom(first),  # type: ignore[arg-type]
                                    num_workers=self.render_workers, pin_memory=self.device.type == "cuda",
                                    prefetch_factor=4)
                yield from loader

            self.pool = ScenePool(layout, self.device, settings.batch_size, size_of, render,
                                  from_workers if self.render_workers > 0 else None, log=self.log)
        return self.pool

    def pooled_batch(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """Batch ``index`` of ``epoch`` from the scene pool, refreshed for that step first: ``batch_size`` distinct
        scenes, each with a random crop (within its own render size), then a sparse pattern drawn on the crop, a flip,
        colour jitter and the normalisation. The draws come from ``(seed, epoch, rank, index)``."""
        s, pool = self.settings, self.scene_pool()
        pool.ready_for(epoch * self.steps_per_epoch + index)
        rng = np.random.default_rng([s.seed, 6133, int(epoch), int(self.rank), int(index)])
        generator = torch.Generator(device=self.device).manual_seed(int(rng.integers(0, 2**62)))
        (ch, cw), b = s.crop, s.batch_size
        slots = rng.choice(pool.layout.scenes, size=b, replace=b > pool.layout.scenes)
        sizes = pool.sizes[slots]
        tops = [int(rng.integers(0, h - ch + 1)) for h in sizes[:, 0]]
        lefts = [int(rng.integers(0, w - cw + 1)) for w in sizes[:, 1]]
        rgb = torch.stack([pool.rgb[i, :, t:t + ch, left:left + cw] for i, t, left in zip(slots, tops, lefts)])
        depth = torch.stack([pool.depth[i, :, t:t + ch, left:left + cw] for i, t, left in zip(slots, tops, lefts)])
        shift = np.zeros((b, 4), dtype=np.float32)
        shift[:, 2], shift[:, 3] = lefts, tops
        intrinsics = pool.intrinsics[to_device(slots, torch.int64, self.device)] - to_device(shift, torch.float32,
                                                                                            self.device)
        pool.samples_drawn += b
        rgb = rgb.float().div_(255.0)
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
        sparse = draw_sparse(depth, intrinsics, rng, generator, SPARSE_MIXES[s.mix], s.outlier_probability)
        return self.augment(rng, torch.cat([rgb, depth, sparse], dim=1))

    def close(self) -> None:
        """Stop the scene pool's loader workers, if any."""
        if self.pool is not None:
            self.pool.close()

    def finish(self, plan: ScenePlan, rgb: torch.Tensor, depth: torch.Tensor,
               intrinsics: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sparse inputs, crops, flips, colour jitter and normalisation of rendered scenes, on the device."""
        s, rng = self.settings, plan.rng
        generator = torch.Generator(device=self.device).manual_seed(plan.generator_seed)
        (ch, cw), b, h, w = s.crop, s.batch_size, plan.height, plan.width
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
        sparse = draw_sparse(depth, intrinsics, rng, generator, SPARSE_MIXES[s.mix], s.outlier_probability)
        tops, lefts = rng.integers(0, h - ch + 1, size=b), rng.integers(0, w - cw + 1, size=b)
        stacked = torch.cat([rgb, depth, sparse], dim=1)
        stacked = torch.stack([stacked[i, :, t:t + ch, left:left + cw] for i, (t, left) in enumerate(zip(tops, lefts))])
        return self.augment(rng, stacked)

    def augment(self, rng: np.random.Generator, stacked: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flips, colour jitter and normalisation of crops ``[B,5,h,w]`` (RGB, depth, sparse depth)."""
        s, b = self.settings, stacked.shape[0]
        flips = to_device(rng.random(b) < 0.5, torch.bool, self.device).reshape(-1, 1, 1, 1)
        stacked = torch.where(flips, stacked.flip(-1), stacked)
        rgb, depth, sparse = stacked[:, :3], stacked[:, 3:4], stacked[:, 4:5]
        if s.jitter > 0:
            draws = [draw_jitter(rng, s.jitter) for _ in range(b)]
            order = to_device([d[0] for d in draws], torch.int64, self.device)
            factors = to_device([d[1] for d in draws], torch.float32, self.device)
            rgb = jitter_colours(rgb, order, factors)
        sparse_n, mask, gt_n, gt_valid = normalise_batch(sparse, depth, s.normalisation)
        memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
        return {"rgb": rgb.contiguous(memory_format=memory_format), "sparse": sparse_n.contiguous(),
                "mask": mask.contiguous(), "gt": gt_n.contiguous(), "gt_valid": gt_valid.contiguous()}


# ---------------------------------------------------------------------------------------------------------------------
# Sparse patterns, batched: the regimes of jarrn_deploy.model.training.sparse_sampling.sample_sparse as torch ops


def draw_sparse(depth: torch.Tensor, intrinsics: torch.Tensor, rng: np.random.Generator,
                generator: torch.Generator, mix: dict[str, float], outlier_probability: float = 0.0) -> torch.Tensor:
    """One sparse input per sample of ``depth`` ``[B,1,H,W]`` (metres, 0 = invalid), each from a regime of ``mix``,
    with hole masks; ``intrinsics`` ``[B,4]`` (fx, fy, cx, cy) place the LiDAR lines. Stays on ``depth``'s device."""
    names = list(mix)
    probs = np.asarray([mix[n] for n in names], dtype=np.float64)
    regimes = [names[i] for i in rng.choice(len(names), size=depth.shape[0], p=probs / probs.sum())]
    sparse = torch.zeros_like(depth)
    if any(r in ("ratio_low", "ratio_high", "points") for r in regimes):
        chosen = _regime_mask(regimes, ("ratio_low", "ratio_high", "points"), depth.device)
        subset = _random_subsets(depth, regimes, rng, generator, outlier_probability)
        sparse = torch.where(chosen, subset, sparse)
    if "dense" in regimes:
        sparse = torch.where(_regime_mask(regimes, ("dense",), depth.device),
                             _noisy_dense(depth, regimes, rng, generator), sparse)
    if "lidar" in regimes:
        sparse = torch.where(_regime_mask(regimes, ("lidar",), depth.device),
                             _lidar(depth, intrinsics, regimes, rng, generator), sparse)
    return torch.where(_holes(depth, regimes, rng), torch.zeros_like(sparse), sparse)


def _regime_mask(regimes: list[str], names: tuple[str, ...], device: torch.device) -> torch.Tensor:
    return to_device([r in names for r in regimes], torch.bool, device).reshape(-1, 1, 1, 1)


def _per_sample(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """Host scalars, one per sample, as a ``[B,1,1,1]`` tensor on ``like``'s device (a few bytes copied)."""
    return to_device(values, like.dtype, like.device).reshape(-1, 1, 1, 1)


def _valid_counts(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).flatten(1).sum(1).to(x.dtype).reshape(-1, 1, 1, 1)


def _random_subsets(depth: torch.Tensor, regimes: list[str], rng: np.random.Generator, generator: torch.Generator,
                    outlier_probability: float) -> torch.Tensor:
    """ratio_low / ratio_high keep a share (0-10% / 10-100%) of the valid pixels, points a count (3-2000,
    log-uniform); exactly that many, chosen by ranking one random score per pixel."""
    ratios, counts, outlier_ratios, outlier_max = [], [], [], []
    for regime in regimes:
        ratios.append(float(rng.uniform(0.0, 0.1)) if regime == "ratio_low" else
                      float(rng.uniform(0.1, 1.0)) if regime == "ratio_high" else -1.0)
        counts.append(float(round(log_uniform(rng, *POINT_COUNTS))) if regime == "points" else 0.0)
        corrupt = outlier_probability > 0 and rng.random() < outlier_probability
        outlier_ratios.append(float(rng.uniform(0.0, OUTLIER_RATIO_MAX)) if corrupt else 0.0)
        outlier_max.append(log_uniform(rng, *OUTLIER_MAX_FACTOR) if corrupt else OUTLIER_MIN_FACTOR)
    b = depth.shape[0]
    valid = depth > 0
    n_valid = _valid_counts(depth)
    ratio = _per_sample(ratios, depth)
    wanted = torch.where(ratio >= 0, torch.round(ratio * n_valid), _per_sample(counts, depth)).minimum(n_valid)
    scores = torch.rand(depth.shape, generator=generator, device=depth.device)
    scores = torch.where(valid, scores, torch.full_like(scores, 2.0)).reshape(b, -1)
    kth = (wanted.reshape(b, 1).long() - 1).clamp(min=0)
    threshold = scores.sort(dim=1).values.gather(1, kth).reshape(-1, 1, 1, 1)
    keep = valid & (scores.reshape(depth.shape) <= threshold) & (wanted > 0)
    subset = torch.where(keep, depth, torch.zeros_like(depth))
    return _outliers(subset, _per_sample(outlier_ratios, depth), _per_sample(outlier_max, depth), generator)


def _outliers(sparse: torch.Tensor, ratio: torch.Tensor, max_factor: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    """Each valid point becomes, with probability ``ratio`` (per sample), its depth multiplied or divided by a factor
    drawn log-uniformly from [1.25, ``max_factor``] (as :func:`jarrn_deploy.model.sparse.add_outliers`)."""
    shape, device = sparse.shape, sparse.device
    chosen = (sparse > 0) & (torch.rand(shape, generator=generator, device=device) < ratio)
    log_low = math.log(OUTLIER_MIN_FACTOR)
    log_factor = log_low + torch.rand(shape, generator=generator, device=device) * (max_factor.log() - log_low)
    sign = torch.where(torch.rand(shape, generator=generator, device=device) < 0.5, -1.0, 1.0)
    return torch.where(chosen, sparse * torch.exp(sign * log_factor), sparse)


def _noisy_dense(depth: torch.Tensor, regimes: list[str], rng: np.random.Generator,
                 generator: torch.Generator) -> torch.Tensor:
    """The dense depth, down/up-sampled (x2..x16, p=0.3) and with Gaussian noise (sigma 1-10% of the depth range,
    p=0.3), as the host's dense regime."""
    dense = depth.clone()
    sigmas = []
    for i, regime in enumerate(regimes):
        if regime == "dense" and rng.random() < DENSE_BLUR_PROBABILITY:
            factor = int(rng.integers(DENSE_BLUR_FACTORS[0], DENSE_BLUR_FACTORS[1] + 1))
            dense[i:i + 1] = blur_depth(dense[i:i + 1], factor)
        noisy = regime == "dense" and rng.random() < DENSE_NOISE_PROBABILITY
        sigmas.append(float(rng.uniform(*DENSE_NOISE_SIGMA)) if noisy else 0.0)
    valid = dense > 0
    dims = (1, 2, 3)
    low = torch.where(valid, dense, torch.full_like(dense, math.inf)).amin(dim=dims, keepdim=True)
    high = torch.where(valid, dense, torch.full_like(dense, -math.inf)).amax(dim=dims, keepdim=True)
    sigma = _per_sample(sigmas, dense) * (high - low).clamp(min=1e-3)
    noisy = dense + sigma * torch.randn(dense.shape, generator=generator, device=dense.device)
    floor = 0.01 * low.clamp(min=1e-3)
    return torch.where(valid & (sigma > 0), torch.maximum(noisy, floor), dense)


def _lidar(depth: torch.Tensor, intrinsics: torch.Tensor, regimes: list[str], rng: np.random.Generator,
           generator: torch.Generator) -> torch.Tensor:
    """Spinning multi-beam LiDAR lines (4..128, log-uniform) as :func:`jarrn_deploy.model.sparse.lidar_scanlines` draws them,
    with sensor noise (p=0.3) and outliers (p=0.3)."""
    b, _, h, w = depth.shape
    max_lines = LIDAR_LINES[1]
    params = np.zeros((b, 7), dtype=np.float32)  # lines, use_fov, fov low, fov high (radians), subsample, noise, outl.
    offsets = np.zeros((b, max_lines), dtype=np.float32)
    for i, regime in enumerate(regimes):
        if regime != "lidar":
            continue
        lines = int(round(log_uniform(rng, *LIDAR_LINES)))
        use_fov = rng.random() >= 0.5
        fov = (math.radians(rng.uniform(-30.0, -8.0)), math.radians(rng.uniform(-3.0, 5.0))) if use_fov else (0, 0)
        subsample = int(rng.integers(1, 5))
        offsets[i] = rng.integers(0, subsample, size=max_lines)
        noise = float(rng.uniform(0.003, 0.03)) if rng.random() < 0.3 else 0.0
        outliers = float(rng.uniform(0.0, 0.02)) if rng.random() < 0.3 else 0.0
        params[i] = (lines, use_fov, fov[0], fov[1], subsample, noise, outliers)
    p = to_device(params, torch.float32, depth.device)
    lines, use_fov, fov_low, fov_high, subsample, noise, outlier_ratio = (c.reshape(b, 1, 1) for c in p.unbind(1))
    fx, fy, cx, cy = (c.reshape(b, 1, 1) for c in intrinsics.to(depth.dtype).unbind(1))
    low = torch.where(use_fov > 0, fov_low, torch.atan((cy - (h - 0.5)) / fy))
    high = torch.where(use_fov > 0, fov_high, torch.atan((cy + 0.5) / fy))
    beam = torch.arange(max_lines, device=depth.device, dtype=depth.dtype).reshape(1, -1, 1)
    elevation = high - (beam + 0.5) * (high - low) / lines.clamp(min=1)
    cols = torch.arange(w, device=depth.device, dtype=depth.dtype).reshape(1, 1, -1)
    stretch = torch.sqrt(1.0 + ((cols - cx) / fx) ** 2)
    rows = torch.round(cy - fy * torch.tan(elevation) * stretch)
    offset = to_device(offsets, torch.float32, depth.device).reshape(b, -1, 1)
    on_beam = ((beam < lines) & (rows >= 0) & (rows < h)
               & (torch.remainder(cols - offset, subsample.clamp(min=1)) == 0))
    flat = torch.where(on_beam, rows * w + cols, torch.full_like(rows, h * w)).long().reshape(b, -1)
    hit = torch.zeros(b, h * w + 1, dtype=torch.bool, device=depth.device)
    hit.scatter_(1, flat, torch.ones_like(flat, dtype=torch.bool))
    kept = hit[:, : h * w].reshape(depth.shape) & (depth > 0)
    scan = torch.where(kept, depth, torch.zeros_like(depth))
    noise = noise.reshape(b, 1, 1, 1)
    factor = (1.0 + noise * torch.randn(depth.shape, generator=generator, device=depth.device)).clamp(min=0.01)
    scan = torch.where(noise > 0, scan * factor, scan)
    return _outliers(scan, outlier_ratio.reshape(b, 1, 1, 1), torch.full_like(noise, LIDAR_OUTLIER_MAX_FACTOR),
                     generator)


def _holes(depth: torch.Tensor, regimes: list[str], rng: np.random.Generator) -> torch.Tensor:
    """``[B,1,H,W]`` True where a hole (p=0.5: 1-3 rectangles or ellipses, 5-35% of each side) removes the input."""
    b, _, h, w = depth.shape
    params = np.zeros((b, MAX_HOLES, 6), dtype=np.float32)  # active, half height, half width, centre y, x, rectangle
    params[..., 1:3] = 1.0
    for i, regime in enumerate(regimes):
        if regime == "none" or rng.random() >= HOLE_PROBABILITY:
            continue
        for k in range(int(rng.integers(1, MAX_HOLES + 1))):
            half_h, half_w = rng.uniform(0.05, 0.35) * h / 2, rng.uniform(0.05, 0.35) * w / 2
            params[i, k] = (1.0, half_h, half_w, rng.uniform(0, h), rng.uniform(0, w), rng.random() < 0.5)
    p = to_device(params, torch.float32, depth.device)
    active, half_h, half_w, centre_y, centre_x, rectangle = (c.reshape(b, MAX_HOLES, 1, 1) for c in p.unbind(2))
    dy = (torch.arange(h, device=depth.device, dtype=p.dtype).reshape(1, 1, -1, 1) - centre_y) / half_h
    dx = (torch.arange(w, device=depth.device, dtype=p.dtype).reshape(1, 1, 1, -1) - centre_x) / half_w
    inside = torch.where(rectangle > 0, (dy.abs() < 1) & (dx.abs() < 1), dy * dy + dx * dx < 1.0)
    return (inside & (active > 0)).any(dim=1, keepdim=True)
