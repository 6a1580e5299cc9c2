"""JARRN in PyTorch: the network, its tensor contract, checkpoints, data, sparse patterns and metrics."""

from model.checkpoint import CheckpointError, load_model, save_model
from model.contract import CONTRACT, MetricJarrn, prepare_inputs
from model.network import Jarrn, JarrnConfig, JarrnOutput

__all__ = [
    "CONTRACT",
    "CheckpointError",
    "Jarrn",
    "JarrnConfig",
    "JarrnOutput",
    "MetricJarrn",
    "load_model",
    "prepare_inputs",
    "save_model",
]
