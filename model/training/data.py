"""Where a run's batches come from: frames from a source (synthetic scenes or a dataset on disk) turned into training
samples by loader workers on the host (:class:`HostBatches`), or synthetic batches made whole on the training device
(:class:`~jarrn_deploy.model.training.device_batches.DeviceSyntheticBatches`, ``--synthetic-on-device``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from jarrn_deploy.errors import UsageError
from jarrn_deploy.model.training.distributed import ProcessPlace, ResumableDistributedSampler
from jarrn_deploy.model.training.samples import SyntheticSource, TrainingSamples


class BatchSource(Protocol):
    """What the training loop draws its batches from."""

    steps_per_epoch: int

    def epoch_batches(self, epoch: int, first_batch: int = 0) -> Iterable[dict[str, torch.Tensor]]:
        """The batches of ``epoch`` from batch ``first_batch`` on (a resumed run starts part-way in)."""


class HostBatches:
    """Training samples made on the host (in ``workers`` loader processes, or in this one) and batched by a
    :class:`torch.utils.data.DataLoader`, this process's shard of every epoch."""

    def __init__(self, samples: Dataset, place: ProcessPlace, *, batch_size: int, seed: int, workers: int,
                 pin_memory: bool) -> None:
        self.samples, self.batch_size, self.workers, self.pin_memory = samples, batch_size, workers, pin_memory
        self.sampler = ResumableDistributedSampler(samples, num_replicas=place.world, rank=place.rank, shuffle=True,
                                                   seed=seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // batch_size

    def epoch_batches(self, epoch: int, first_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        self.samples.epoch = epoch
        self.sampler.set_epoch(epoch)
        self.sampler.start_index = first_batch * self.batch_size
        return iter(DataLoader(self.samples, batch_size=self.batch_size, sampler=self.sampler,
                               num_workers=self.workers, drop_last=True, pin_memory=self.pin_memory,
                               persistent_workers=False, prefetch_factor=4 if self.workers > 0 else None))


def synthetic_on_device(args: argparse.Namespace, device: torch.device) -> bool:
    """Whether this run's batches are made on the device: ``--synthetic-on-device on``, or ``auto`` for synthetic data
    on CUDA."""
    if args.data != "synthetic":
        return False
    if args.synthetic_on_device == "auto":
        return device.type == "cuda"
    return args.synthetic_on_device == "on"


def build_batches(args: argparse.Namespace, crop: tuple[int, int], place: ProcessPlace, device: torch.device,
                  *, channels_last: bool) -> BatchSource:
    """The run's :class:`BatchSource`; one :class:`UsageError` line when an epoch has no full batch."""
    if synthetic_on_device(args, device):
        from jarrn_deploy.model.training.device_batches import DeviceBatchSettings, DeviceSyntheticBatches

        if args.epoch_samples <= 0:
            raise UsageError("--data synthetic needs --epoch-samples N (samples per epoch)")
        settings = DeviceBatchSettings(crop, args.batch_size, args.sparse_mix, args.depth_normalisation, args.seed,
                                       tuple(args.render_scale), args.jitter, args.outlier_prob, channels_last)
        pool = pool_scenes(args, device, place.world)
        batches: BatchSource = DeviceSyntheticBatches(settings, device, epoch_samples=args.epoch_samples,
                                                      rank=place.rank, world=place.world, render_workers=args.workers,
                                                      pool_scenes=pool, pool_reuse=args.scene_reuse,
                                                      log=print if place.is_main else _quiet)
        layout = batches.pool_layout
        if layout is not None:
            from jarrn_deploy.model.training.scene_pool import memory_problem

            problem = memory_problem(layout, device)
            if problem is not None:
                raise UsageError(problem)
        epoch_size = args.epoch_samples
    else:
        if args.scene_pool not in ("auto", 0):
            raise UsageError(f"--scene-pool {args.scene_pool}: pools scenes rendered on the device; on {device} "
                             "that needs --synthetic-on-device on")
        samples = training_samples(args, crop)
        batches = HostBatches(samples, place, batch_size=args.batch_size, seed=args.seed, workers=args.workers,
                              pin_memory=device.type == "cuda")
        epoch_size = len(samples)
    if batches.steps_per_epoch < 1:
        raise UsageError(f"an epoch of {epoch_size} samples over {place.world} process(es) gives no full batch of "
                         f"{args.batch_size}; raise --epoch-samples or lower --batch-size")
    return batches


def pool_scenes(args: argparse.Namespace, device: torch.device, world: int) -> int:
    """Scenes in the scene pool (0: off): ``--scene-pool N``, or for 'auto' 512 on CUDA but no more than this
    process draws over the run divided by ``--scene-reuse`` (and at least a batch), and off on the CPU."""
    if args.scene_pool != "auto":
        return int(args.scene_pool)
    if device.type != "cuda":
        return 0
    from jarrn_deploy.model.training.scene_pool import DEFAULT_POOL_SCENES

    drawn = args.epochs * (args.epoch_samples // max(world, 1))
    return max(args.batch_size, min(DEFAULT_POOL_SCENES, int(drawn / args.scene_reuse)))


def _quiet(_: str) -> None:
    """Progress lines of the processes other than the first."""


def training_samples(args: argparse.Namespace, crop: tuple[int, int]) -> Dataset:
    """The host path's training samples: the frame source with crop, flip, jitter, sparse pattern, normalisation."""
    source, fresh = build_source(args, crop)
    samples: Dataset = TrainingSamples(
        source, crop, mix=args.sparse_mix, normalisation=args.depth_normalisation, seed=args.seed,
        epoch_samples=args.epoch_samples or None, fresh_source_per_epoch=fresh,
        real_sparse_probability=args.real_sparse_prob, jitter=args.jitter, outlier_probability=args.outlier_prob)
    if args.data == "rgbd_extra":  # the training sets' real frames, mixed with the synthetic samples above
        from jarrn_deploy.model.training.rgbd_extra_samples import mixed_training_samples

        samples = mixed_training_samples(args, crop, samples)
    return samples


def build_source(args: argparse.Namespace, crop: tuple[int, int]) -> tuple[Dataset, bool]:
    """The frame source and whether it is unbounded (fresh frames every epoch)."""
    if args.data in ("synthetic", "rgbd_extra"):  # rgbd_extra: training_samples() mixes real frames in
        if args.epoch_samples <= 0:
            raise UsageError(f"--data {args.data} needs --epoch-samples N (samples per epoch)")
        return SyntheticSource(args.epoch_samples, crop, seed=args.seed, render_scale=args.render_scale), True
    if args.data_root is None:
        raise UsageError(f"--data {args.data} needs --data-root")
    from jarrn_deploy.model import datasets

    if args.data == "kitti":
        source = datasets.KittiDepthCompletion(args.data_root)
    elif args.data == "nyu":
        source = datasets.NyuV2(args.data_root, depth_scale=args.depth_scale)
    elif args.data == "diode":
        source = datasets.Diode(args.data_root)
    else:
        source = datasets.DepthFolder(args.data_root, depth_scale=args.depth_scale)
    source[0]  # a corrupt or mismatched first frame fails now, with its file name, not inside the first batch
    return source, False
