"""The one builder of Triton model configurations (``config.pbtxt``) and the one name the model is served under.

Both repositories use it: the ones ``export/triton_repo.py`` writes for NVIDIA's Triton container (TensorRT plan, ONNX
Runtime) and the Python-backend model ``jarrn serve`` runs (:mod:`jarrn_deploy.runtime.serve`). Every config gets the
model name, the contract's tensors (``rgb`` FP32 [B,3,H,W], ``sparse_depth`` FP32 [B,1,H,W] -> ``depth`` FP32
[B,1,H,W]; B is Triton's batch dimension), dynamic batching and one instance group. It is built with Triton's own
model-config protobuf (shipped in ``tritonclient``, imported only when a config is built), so it is schema-valid by
construction. Importing this module needs nothing beyond the project: the Python-backend model imports
:data:`MODEL_NAME`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from jarrn_deploy.errors import UnavailableError, UsageError

MODEL_NAME = "jarrn"
"""The name every Triton repository of this project serves the model under (clients ask for it)."""
INSTANCE_KINDS = ("gpu", "cpu")
"""Instance-group kinds: KIND_GPU and KIND_CPU."""
TRITON_INSTALL_HINT = 'Triton model configurations need tritonclient: pip install -e ".[serve]"'


@dataclass(frozen=True)
class QueuePolicy:
    """The dynamic batcher's default queue policy: a bounded queue whose requests time out."""

    max_queue_size: int
    """How many requests may wait at once; the rest are refused."""
    timeout_us: int
    """How long a request may wait, in microseconds (a client may ask for less); then it is rejected."""


def triton_protobuf(install_hint: str = TRITON_INSTALL_HINT) -> tuple[Any, Any]:
    """``(model_config_pb2, text_format)``; :class:`UnavailableError` with ``install_hint`` when tritonclient is
    missing."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise UnavailableError(install_hint) from exc
    return model_config_pb2, text_format


def model_config(
    *,
    max_batch_size: int,
    max_queue_delay_us: int,
    instances: int,
    instance_kind: str,
    platform: str = "",
    backend: str = "",
    default_model_filename: str = "",
    height: int = -1,
    width: int = -1,
    preferred_batch: int = 0,
    profile: str | None = None,
    queue: QueuePolicy | None = None,
    accelerator: Mapping[str, str] | None = None,
    install_hint: str = TRITON_INSTALL_HINT,
) -> Any:
    """The ``ModelConfig`` of :data:`MODEL_NAME`.

    ``platform`` ("tensorrt_plan", "onnxruntime_onnx") or ``backend`` ("python", with ``default_model_filename``)
    says what runs it; ``height`` and ``width`` are -1 (any) unless the model fixes them. Dynamic batching waits
    ``max_queue_delay_us`` and prefers ``preferred_batch`` when it lies in 2..``max_batch_size``; ``queue`` bounds the
    queue. ``instances`` instances of ``instance_kind`` ("gpu" or "cpu"), on optimisation ``profile`` (a plan's
    profile index) when given; ``accelerator``: parameters of ONNX Runtime's TensorRT execution accelerator.
    """
    if instance_kind not in INSTANCE_KINDS:
        raise UsageError(f"--instance-kind: expected one of {INSTANCE_KINDS}, got {instance_kind!r}")
    from jarrn_deploy.model.contract import CONTRACT

    pb2, _ = triton_protobuf(install_hint)
    config = pb2.ModelConfig(name=MODEL_NAME, platform=platform, backend=backend, max_batch_size=max_batch_size,
                             default_model_filename=default_model_filename)
    for name, channels in CONTRACT.input_channels.items():
        tensor = config.input.add()
        tensor.name, tensor.data_type = name, pb2.TYPE_FP32
        tensor.dims.extend([channels, height, width])
    output = config.output.add()
    output.name, output.data_type = CONTRACT.depth_name, pb2.TYPE_FP32
    output.dims.extend([1, height, width])

    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    if 1 < preferred_batch <= max_batch_size:
        config.dynamic_batching.preferred_batch_size.append(preferred_batch)
    if queue is not None:
        policy = config.dynamic_batching.default_queue_policy
        policy.max_queue_size = queue.max_queue_size
        policy.default_timeout_microseconds = queue.timeout_us
        policy.allow_timeout_override = True  # a client that gives up sooner says so, and its request leaves the queue
        policy.timeout_action = pb2.ModelQueuePolicy.REJECT

    group = config.instance_group.add()
    group.count = instances
    group.kind = pb2.ModelInstanceGroup.KIND_GPU if instance_kind == "gpu" else pb2.ModelInstanceGroup.KIND_CPU
    if profile is not None:
        group.profile.append(profile)
    if accelerator is not None:
        trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
        trt.name = "tensorrt"
        for key, value in accelerator.items():
            trt.parameters[key] = value
    return config


def config_text(config: Any) -> str:
    """``config.pbtxt`` text of a ``ModelConfig``."""
    _, text_format = triton_protobuf()
    return text_format.MessageToString(config)
