"""The network a run trains: its config from the options, its starting weights (``--init``, ``--start-as-fill``), its
memory format, and the exponential moving average (``--ema``) that validation and the exports then see."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from jarrn_deploy.model.checkpoint import CheckpointError
from jarrn_deploy.model.network import Jarrn, JarrnConfig


@dataclass(frozen=True, eq=False)
class TrainedNetwork:
    """The network being trained and what is validated and exported."""

    config: JarrnConfig
    """Widths, probability activation, depth normalisation and sparse fill."""
    network: Jarrn
    """The weights the optimizer updates (on the training device)."""
    ema: torch.nn.Module | None
    """``torch.optim.swa_utils.AveragedModel`` of ``network`` with ``--ema``; None without."""
    channels_last: bool
    """Whether weights and activations are kept channels-last (NHWC)."""

    @property
    def evaluated(self) -> Jarrn:
        """What validation and the exports see: the moving average with ``--ema``, else the trained weights."""
        return self.ema.module if self.ema is not None else self.network


def requested_config(args: argparse.Namespace) -> JarrnConfig:
    widths = args.widths or (JarrnConfig.small().widths if args.config == "small" else JarrnConfig.full().widths)
    return JarrnConfig(tuple(widths), args.prob_activation, args.depth_normalisation, args.sparse_fill)


def build_network(args: argparse.Namespace, device: torch.device) -> TrainedNetwork:
    """The network of ``args`` on ``device`` with its starting weights (ignored with ``--resume``: last.pt has them)."""
    config = requested_config(args)
    network = Jarrn(config)
    if args.start_as_fill and not args.resume:
        start_as_fill(network)
    if args.init is not None and not args.resume:
        load_init_weights(network, args.init, config)
    network.to(device)
    channels_last = device.type == "cuda" if args.channels_last is None else bool(args.channels_last)
    if channels_last:  # NHWC: what cuDNN's FP16 tensor-core convolutions work in, so no layout transposes per layer
        network.to(memory_format=torch.channels_last)
    ema = None
    if args.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True)
    return TrainedNetwork(config, network, ema, channels_last)


def load_init_weights(network: Jarrn, path: Path, config: JarrnConfig) -> None:
    """``--init``: copy the weights of ``path`` into ``network``; one :class:`CheckpointError` line when they do not
    fit."""
    from jarrn_deploy.model.checkpoint import load_model

    try:
        network.load_state_dict(load_model(path).state_dict())
    except CheckpointError as exc:
        raise CheckpointError(f"--init: {exc}") from None
    except RuntimeError as exc:  # load_state_dict: another architecture than --config/--widths
        raise CheckpointError(f"--init: {path} does not fit the requested model {config.to_dict()} "
                              f"({str(exc).splitlines()[0]}); pass the same --config/--widths") from None


def start_as_fill(network: Jarrn) -> Jarrn:
    """Set the weights so that the untrained network returns its (filled) sparse channel unchanged.

    With the rezero alphas at 0 every bottleneck is its skip path, and a non-negative input passes the LeakyReLUs
    unchanged. So one channel carries the sparse input from the visual branch's stem to its head (stem, the outer
    level's skip concatenation, the 1x1 skip of the last Stacked). The other weights keep their random initialisation,
    the head reads only that channel, and the refine branch's head is zero (scale 1, offset 0), so the rectified depth
    equals the coarse depth. Training then learns corrections on top of the fill rather than the fill itself.
    """
    unet = network.rgb_x_block
    stem, last_stacked, head = unet[0], unet[3], unet[4]
    sparse_channel = 3  # the visual branch reads cat(rgb[3], sparse, mask)
    with torch.no_grad():
        stem.weight[0].zero_()
        stem.weight[0, sparse_channel, 1, 1] = 1.0
        stem.bias[0] = 0.0
        skip = last_stacked.block[0].right
        skip.weight[0].zero_()
        skip.weight[0, 0, 0, 0] = 1.0
        skip.bias[0] = 0.0
        head.weight.zero_()
        head.weight[0, 0, 1, 1] = 1.0
        head.bias.zero_()
        refine_head = network.sfmap_block[4]
        refine_head.weight.zero_()
        refine_head.bias.zero_()
    return network
