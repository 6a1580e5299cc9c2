"""The Triton model behind ``jarrn serve``: a Python-backend ``TritonPythonModel`` over :class:`DepthCompleter`.

Triton runs this class in its Python-backend stub process (one process per model instance); ``runtime/serve.py``
writes the model repository whose ``model.py`` imports it and passes the completer's settings as config parameters.

Why the Python backend and not PyTriton's ``bind()``: PyTriton 0.7 turns any exception of the inference callable into
one ``TritonModelException`` for the whole batch (HTTP 500 / gRPC INTERNAL for every request Triton batched together).
Here each request is checked on its own and a bad one gets its own ``INVALID_ARG`` response (HTTP 400 / gRPC
INVALID_ARGUMENT) naming the input, while the good requests of the same batch are answered normally.

Graph layout on the wire (Triton's first dimension is the batch): ``rgb`` FP32 ``[B,3,H,W]`` in 0..1,
``sparse_depth`` FP32 ``[B,1,H,W]`` metres (0 = missing) -> ``depth`` FP32 ``[B,1,H,W]`` metres. Triton itself rejects
a wrong dtype, rank or channel count with a 400 before the model sees the request.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping
from jarrn.errors import InputError

import numpy as np

MODEL_NAME = "jarrn"
"""The model's name in Triton (``/v2/models/jarrn``)."""
DEFAULT_MAX_PIXELS = 2048 * 2048
"""Largest accepted H*W per image unless ``--max-pixels`` says otherwise (a 4-megapixel frame, 10x a KITTI frame)."""
PARAMETER_PREFIX = "jarrn_"
"""Config parameters this model reads are named ``jarrn_<field>`` (see :class:`CompleterSettings`)."""


class RequestError(InputError):
    """A request this server refuses; the message names the input and what was expected."""


@dataclass(frozen=True)
class CompleterSettings:
    """How each model instance builds its :class:`DepthCompleter` (passed through the model config's parameters)."""

    backend: str = "torch"
    """"torch", "onnxruntime", "tensorrt" (as chosen by :func:`runtime.infer.choose_backend`)."""
    model: str = ""
    """Engine, ONNX or checkpoint path; empty = the bundled default model."""
    providers: str = ""
    """onnxruntime: execution providers in priority order, comma separated (empty = infer's default)."""
    device: str = ""
    """torch: device (empty = cuda when available, else cpu)."""
    threads: int = 0
    """Intra-op threads per instance for torch / onnxruntime (0 = the library's default)."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Largest accepted H*W per image; larger requests get INVALID_ARG."""

    def to_parameters(self) -> dict[str, str]:
        """Model-config ``parameters`` (string values, as Triton stores them)."""
        return {PARAMETER_PREFIX + name: str(value) for name, value in self.__dict__.items()}

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> "CompleterSettings":
        """Inverse of :meth:`to_parameters`; accepts Triton's ``{"key": {"string_value": "..."}}`` JSON form too."""
        values = {}
        for name, default in cls().__dict__.items():
            raw = parameters.get(PARAMETER_PREFIX + name)
            if isinstance(raw, Mapping):
                raw = raw.get("string_value")
            if raw is not None:
                values[name] = type(default)(raw)
        return cls(**values)


def check_request(rgb: np.ndarray, sparse_depth: np.ndarray, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one request's graph tensors and return them in the user layout ``(BxHxWx3, BxHxW)`` that
    :meth:`DepthCompleter.complete` takes; raise :class:`RequestError` naming the input otherwise.

    Shapes are checked before any value is read, so a 20000x20000 request is refused without touching its data.
    """
    from model.contract import CONTRACT, prepare_inputs

    rgb_name, sparse_name = CONTRACT.rgb_name, CONTRACT.sparse_name
    for name, array, channels in ((rgb_name, rgb, 3), (sparse_name, sparse_depth, 1)):
        if array.dtype != np.float32:
            raise RequestError(f"{name}: expected FP32, got {array.dtype}")
        if array.ndim != 4 or array.shape[1] != channels:
            raise RequestError(f"{name}: expected [B,{channels},H,W], got {list(array.shape)}")
        batch, _, height, width = array.shape
        if batch < 1 or height < 1 or width < 1:
            raise RequestError(f"{name}: batch, height and width must be at least 1, got {list(array.shape)}")
        if height * width > max_pixels:
            raise RequestError(
                f"{name}: {height}x{width} is {height * width:,} pixels, above this server's limit of "
                f"{max_pixels:,} (jarrn serve --max-pixels)"
            )
    if rgb.shape[0] != sparse_depth.shape[0] or rgb.shape[2:] != sparse_depth.shape[2:]:
        raise RequestError(
            f"{rgb_name} and {sparse_name}: shapes differ, {rgb_name} is {list(rgb.shape)}, "
            f"{sparse_name} is {list(sparse_depth.shape)} (expected the same B, H and W)"
        )
    rgb_user, sparse_user = rgb.transpose(0, 2, 3, 1), sparse_depth[:, 0]
    try:
        prepare_inputs(rgb_user, sparse_user)  # the contract's value checks: range, NaN/inf, negative or raw depth
    except (ValueError, TypeError) as exc:
        raise RequestError(str(exc)) from None
    return rgb_user, sparse_user


def build_completer(settings: CompleterSettings):  # noqa: ANN201 - DepthCompleter, imported lazily
    """The :class:`DepthCompleter` these settings describe (the same rules as ``jarrn infer``)."""
    from argparse import Namespace

    from runtime.infer import build_completer as build_for_backend

    if settings.threads > 0:
        os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
        if settings.backend == "torch":
            import torch

            torch.set_num_threads(settings.threads)
    if settings.backend == "onnxruntime" and settings.model and settings.threads > 0:
        from runtime import DepthCompleter

        providers = [p.strip() for p in settings.providers.split(",") if p.strip()] or _default_ort_providers()
        return DepthCompleter.from_onnx(settings.model, providers=providers, intra_op_threads=settings.threads)
    args = Namespace(providers=settings.providers or None, device=settings.device or None, cuda_graphs=False)
    return build_for_backend(settings.backend, settings.model or None, args)


def _default_ort_providers() -> list[str]:
    """CUDA then CPU when onnxruntime-gpu sees a GPU, else CPU (``jarrn infer``'s default)."""
    import onnxruntime

    return ["cuda", "cpu"] if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else ["cpu"]


class TritonPythonModel:
    """Triton Python-backend model: validates each request, runs the valid ones batched by shape, answers each one."""

    def initialize(self, args: Mapping[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.settings = CompleterSettings.from_parameters(config.get("parameters", {}))
        self.completer = build_completer(self.settings)
        self._lock = threading.Lock()

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        from model.contract import CONTRACT

        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for index, request in enumerate(requests):
            try:
                rgb = pb_utils.get_input_tensor_by_name(request, CONTRACT.rgb_name).as_numpy()
                sparse = pb_utils.get_input_tensor_by_name(request, CONTRACT.sparse_name).as_numpy()
                rgb_user, sparse_user = check_request(rgb, sparse, self.settings.max_pixels)
            except RequestError as exc:
                responses[index] = _error_response(pb_utils, str(exc), invalid_argument=True)
                continue
            groups.setdefault(rgb_user.shape[1:3], []).append((index, rgb_user, sparse_user))
        for members in groups.values():  # Triton batches equal shapes only; grouping keeps any mix correct anyway
            self._run_group(pb_utils, members, responses)
        return responses

    def _run_group(self, pb_utils: Any, members: list[tuple[int, np.ndarray, np.ndarray]], responses: list[Any]) -> None:
        rgb = np.concatenate([m[1] for m in members])
        sparse = np.concatenate([m[2] for m in members])
        try:
            with self._lock:
                depth = self.completer.complete(rgb, sparse)
        except Exception as exc:  # noqa: BLE001 - one line to the clients of this group; the server keeps serving
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            is_shape_error = type(exc).__name__ == "ProfileError"  # a size outside a TensorRT engine's profile
            for index, _, _ in members:
                responses[index] = _error_response(pb_utils, message, invalid_argument=is_shape_error)
            return
        from model.contract import CONTRACT

        start = 0
        for index, rgb_user, _ in members:
            count = rgb_user.shape[0]
            out = np.ascontiguousarray(depth[start:start + count, None], dtype=np.float32)
            start += count
            responses[index] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(CONTRACT.depth_name, out)])

    def finalize(self) -> None:
        completer = getattr(self, "completer", None)
        if completer is not None:
            completer.close()


def _error_response(pb_utils: Any, message: str, *, invalid_argument: bool) -> Any:
    code = pb_utils.TritonError.INVALID_ARG if invalid_argument else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
