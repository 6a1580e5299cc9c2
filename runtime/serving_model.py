"""The Triton model behind ``jarrn serve``: a Python-backend ``TritonPythonModel`` over :class:`DepthCompleter`.

Triton runs this class in its Python-backend stub process (one process per model instance); ``runtime/serve.py``
writes the model repository whose ``model.py`` imports it, and the completer's settings in ``jarrn_settings.json`` next
to ``config.pbtxt`` (not as config parameters, which any client can read).

Why the Python backend and not PyTriton's ``bind()``: PyTriton 0.7 turns any exception of the inference callable into
one ``TritonModelException`` for the whole batch (HTTP 500 / gRPC INTERNAL for every request Triton batched together).
Here each request, and each item of a request, is checked on its own; a bad one gets its own ``INVALID_ARG`` response
(HTTP 400 / gRPC INVALID_ARGUMENT) naming the input and, in a batch, the item ("item 1 of 2: sparse_depth: ...",
0-based), while the good requests of the same batch are answered normally. Errors are mapped by type:
:class:`jarrn_deploy.errors.InputError` (and its subclasses, e.g. ``EmptySparseDepthError`` for a map without a point > 0)
-> INVALID_ARG; ``MemoryError`` (the memory guard) -> UNAVAILABLE with this server's limits; anything else -> INTERNAL.

Memory: the model never runs more than ``max_pixels`` pixels (B*H*W) at once; a larger batch of Triton's dynamic
batcher is run in parts, so a batch costs the memory of one largest image, whatever other clients sent.

Value checks happen here, after the request has waited in Triton's queue: Triton itself only checks dtype, rank and
channel count against the config before queueing, and runs no user code before the backend (sizes are checked before
Triton by the gate, :mod:`jarrn_deploy.runtime.serving_gate`, and again here).

Abandoned work: requests whose client has given up are answered without running, and a run in progress on a backend
with a ``cancel()`` (ONNX Runtime, OpenVINO) is stopped once every request in it has been given up
(:class:`AbandonWatch`).

Processes and runs: ``jarrn serve --instances N`` runs at most N batches at once (:class:`RunSlots`, shared by the
server's model processes); with ``--spare-instances`` Triton gets more model processes than that, so that a request
arriving while every run slot is busy is handed to a model process at once and waits for a slot there
(:func:`jarrn_deploy.runtime.serve.spare_instances` says why). A small run (at most ``max_pixels`` /
:data:`SMALL_RUN_DIVISOR` pixels) takes no slot: it runs at once beside the others, so a small request does not wait
for a large image (or for the operator a stopped run is finishing), and the memory can exceed N runs by at most one
small run per spare process.

Graph layout on the wire (Triton's first dimension is the batch): ``rgb`` FP32 ``[B,3,H,W]`` in 0..1,
``sparse_depth`` FP32 ``[B,1,H,W]`` metres (0 = missing) -> ``depth`` FP32 ``[B,1,H,W]`` metres.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import numpy as np

from jarrn_deploy.errors import InputError
from jarrn_deploy.export.triton_config import MODEL_NAME  # noqa: F401 - the model's name in Triton

DEFAULT_MAX_PIXELS = 2048 * 2048
"""Largest accepted H*W per image unless ``--max-pixels`` says otherwise (a 4-megapixel frame, 10x a KITTI frame)."""
SETTINGS_FILE = "jarrn_settings.json"
"""The completer's settings, in the model's folder (see the module docstring)."""
SMALL_RUN_DIVISOR = 16
"""A run of at most ``max_pixels / SMALL_RUN_DIVISOR`` pixels (B*H*W; 512x512 with the default limit) takes no run
slot."""
RELEASE_MEMORY_DIVISOR = 4
"""After a run of more than ``max_pixels / RELEASE_MEMORY_DIVISOR`` pixels (a 1024x1024 image with the default limit)
a model process gives its ONNX Runtime arena's free memory back: with a spare process, eight 1024x1024 requests at
once under ``--max-pixels 1048576`` cost +2.1 GB without it, +1.2 GB with it (+1.06 GB with a single process), and
shrinking after every run cost 19% of the load test's full-frame throughput."""
RUN_SLOT_FILE = "run-slot-{index}.lock"
"""In the model's folder: one lock file per run slot (``flock``; the kernel releases a dead process's lock)."""


class RequestError(InputError):
    """A request this server refuses; the message names the input and what was expected."""


@dataclass(frozen=True)
class CompleterSettings:
    """What each model process needs: how to build its :class:`DepthCompleter`, the size limit and the run slots (in
    :data:`SETTINGS_FILE`, written by ``jarrn serve``)."""

    backend: str = "torch"
    """A name of the registry (:data:`jarrn_deploy.runtime.backends.registry.BACKEND_NAMES`), as chosen by
    :func:`jarrn_deploy.runtime.infer.choose_backend`."""
    model: str = ""
    """Engine, ONNX or checkpoint path; empty = the bundled default model."""
    providers: str = ""
    """onnxruntime: execution providers in priority order, comma separated (empty = infer's default)."""
    device: str = ""
    """torch: device (empty = cuda when available, else cpu)."""
    threads: int = 0
    """Threads per instance for torch / onnxruntime / openvino (0 = the library's default)."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Largest accepted H*W per image; larger requests get INVALID_ARG."""
    run_slots: int = 1
    """Runs at once across the server's model processes (``--instances``, written by ``jarrn serve``)."""

    @classmethod
    def load(cls, model_dir: str | Path) -> "CompleterSettings":
        """The settings ``jarrn serve`` wrote into ``model_dir``."""
        return cls(**json.loads((Path(model_dir) / SETTINGS_FILE).read_text()))


def _item_prefix(index: int, batch: int) -> str:
    return f"item {index} of {batch}: " if batch > 1 else ""


def pixel_limit_message(name: str, height: int, width: int, max_pixels: int) -> str:
    """The refusal of an image above ``--max-pixels`` (here and in the gate, :mod:`jarrn_deploy.runtime.serving_gate`)."""
    return (f"{name}: {height}x{width} is {height * width:,} pixels, above this server's limit of {max_pixels:,} "
            f"(jarrn serve --max-pixels {max_pixels})")


def check_request(rgb: np.ndarray, sparse_depth: np.ndarray, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one request's graph tensors and return them in the user layout ``(BxHxWx3, BxHxW)`` that
    :meth:`DepthCompleter.complete` takes; raise :class:`RequestError` naming the input (and the item of a batch).

    Shapes are checked before any value is read, so a 20000x20000 request is refused without touching its data.
    """
    from jarrn_deploy.model.contract import CONTRACT, prepare_inputs

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
            raise RequestError(pixel_limit_message(name, height, width, max_pixels))
    if rgb.shape[0] != sparse_depth.shape[0] or rgb.shape[2:] != sparse_depth.shape[2:]:
        raise RequestError(
            f"{rgb_name} and {sparse_name}: shapes differ, {rgb_name} is {list(rgb.shape)}, "
            f"{sparse_name} is {list(sparse_depth.shape)} (expected the same B, H and W)"
        )
    rgb_user, sparse_user = rgb.transpose(0, 2, 3, 1), sparse_depth[:, 0]
    batch = rgb.shape[0]
    for index in range(batch):  # the contract's value checks (range, NaN/inf, negative, no point > 0), item by item
        try:
            prepare_inputs(rgb_user[index], sparse_user[index])
        except InputError as exc:
            raise RequestError(_item_prefix(index, batch) + str(exc)) from None
    return rgb_user, sparse_user


def run_parts(batch: int, height: int, width: int, max_pixels: int) -> list[slice]:
    """Slices of a batch such that no part holds more than ``max_pixels`` pixels (at least one image per part)."""
    step = max(1, max_pixels // max(height * width, 1))
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)]


def build_completer(settings: CompleterSettings):  # noqa: ANN201 - DepthCompleter, imported lazily
    """The :class:`DepthCompleter` these settings describe (the same rules and options as ``jarrn infer``)."""
    from jarrn_deploy.runtime.infer import backend_options
    from jarrn_deploy.runtime.infer import build_completer as build_for_backend

    if settings.threads > 0:
        os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
        if settings.backend == "torch":
            import torch

            torch.set_num_threads(settings.threads)
    options = backend_options(settings.backend, providers=settings.providers, device=settings.device,
                              threads=settings.threads)
    if options is not None and any(f.name == "release_memory_above_pixels" for f in fields(options)):
        # several model processes share the machine: an idle one must not keep the memory of a large run
        options = replace(options, release_memory_above_pixels=settings.max_pixels // RELEASE_MEMORY_DIVISOR)
    return build_for_backend(settings.backend, settings.model or None, options)


class Member(NamedTuple):
    """One valid request of an execution, in the user layout."""

    index: int
    rgb: np.ndarray
    sparse: np.ndarray
    request: Any


class TritonPythonModel:
    """Triton Python-backend model: validates each request, runs the valid ones batched by shape (in parts within
    ``max_pixels``), answers each one."""

    def initialize(self, args: Mapping[str, str]) -> None:
        from jarrn_deploy.runtime.serving_server import watch_parents

        watch_parents()  # this process dies with Triton and with jarrn serve, even in the middle of a batch
        self.settings = CompleterSettings.load(args["model_repository"])
        self.completer = build_completer(self.settings)
        self._lock = threading.Lock()
        self.slots = RunSlots(Path(args["model_repository"]), self.settings.run_slots)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        from jarrn_deploy.model.contract import CONTRACT

        started = time.monotonic()
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[int, int], list[Member]] = {}
        for index, request in enumerate(requests):
            if _given_up(request, started):  # before the value checks, which read every pixel
                responses[index] = _error_response(pb_utils, GIVEN_UP_MESSAGE + " while it waited",
                                                   pb_utils.TritonError.UNAVAILABLE)
                continue
            try:
                rgb = pb_utils.get_input_tensor_by_name(request, CONTRACT.rgb_name).as_numpy()
                sparse = pb_utils.get_input_tensor_by_name(request, CONTRACT.sparse_name).as_numpy()
                rgb_user, sparse_user = check_request(rgb, sparse, self.settings.max_pixels)
            except RequestError as exc:
                responses[index] = _error_response(pb_utils, str(exc), pb_utils.TritonError.INVALID_ARG)
                continue
            member = Member(index, rgb_user, sparse_user, request)
            groups.setdefault(rgb_user.shape[1:3], []).append(member)
        for members in groups.values():  # Triton batches equal shapes only; grouping keeps any mix correct anyway
            batch = sum(m.rgb.shape[0] for m in members)
            if len(run_parts(batch, *members[0].rgb.shape[1:3], self.settings.max_pixels)) == 1:
                self._run_group(pb_utils, members, responses, started)
                continue
            for member in members:  # large images: one request at a time, each still wanted when its turn comes
                if _given_up(member.request, started):
                    responses[member.index] = _error_response(
                        pb_utils, GIVEN_UP_MESSAGE + " while earlier requests of its batch ran",
                        pb_utils.TritonError.UNAVAILABLE)
                else:
                    self._run_group(pb_utils, [member], responses, started)
        return responses

    def _complete(self, rgb: np.ndarray, sparse: np.ndarray, watch: "AbandonWatch") -> np.ndarray:
        """The completer over ``rgb``, in parts of at most ``max_pixels`` pixels, stopped once nobody waits for it."""
        parts = run_parts(rgb.shape[0], rgb.shape[1], rgb.shape[2], self.settings.max_pixels)
        outputs = []
        pixels = rgb.shape[0] * rgb.shape[1] * rgb.shape[2]
        small = pixels <= self.settings.max_pixels // SMALL_RUN_DIVISOR
        with self._lock, watch, nullcontext() if small else self.slots.held(watch.given_up):
            for part in parts:
                if watch.given_up():
                    raise RuntimeError(GIVEN_UP_MESSAGE)
                outputs.append(self.completer.complete(rgb[part], sparse[part]))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _run_group(self, pb_utils: Any, members: list[Member], responses: list[Any], started: float) -> None:
        from jarrn_deploy.model.contract import CONTRACT

        rgb = np.concatenate([m.rgb for m in members])
        sparse = np.concatenate([m.sparse for m in members])
        watch = AbandonWatch(getattr(self.completer, "backend", None), members, started)
        try:
            depth = self._complete(rgb, sparse, watch)
        except Exception as exc:  # noqa: BLE001 - one line to the clients of this group; the server keeps serving
            message, code = _client_error(exc, rgb.shape[1:3], self.settings.max_pixels, pb_utils.TritonError)
            if watch.stopped:
                message, code = GIVEN_UP_MESSAGE + " (its run was stopped)", pb_utils.TritonError.UNAVAILABLE
            for member in members:
                responses[member.index] = _error_response(pb_utils, message, code)
            return
        start = 0
        for member in members:
            count = member.rgb.shape[0]
            out = np.ascontiguousarray(depth[start:start + count, None], dtype=np.float32)
            start += count
            responses[member.index] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(CONTRACT.depth_name, out)])

    def finalize(self) -> None:
        completer = getattr(self, "completer", None)
        if completer is not None:
            completer.close()


GIVEN_UP_MESSAGE = "request timeout expired (or cancelled)"
WATCH_PERIOD_S = 0.02
"""How often a run checks whether its clients are still there (and a request waiting for a run slot, for a slot)."""


class RunSlots:
    """At most ``count`` runs at once across the processes that share ``folder``: one ``flock``-ed file per slot."""

    def __init__(self, folder: Path, count: int) -> None:
        self.paths = [folder / RUN_SLOT_FILE.format(index=index) for index in range(max(count, 1))]

    @contextmanager
    def held(self, given_up: Callable[[], bool]) -> Iterator[None]:
        """Hold a free slot for the ``with`` block; while every slot is busy, wait, and raise (the run's clients'
        message) once ``given_up()`` is true."""
        import fcntl

        while True:
            for path in self.paths:
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    os.close(descriptor)
                    if isinstance(exc, BlockingIOError):
                        continue  # another process runs in this slot
                    raise
                try:
                    yield
                finally:
                    os.close(descriptor)  # releases the lock
                return
            if given_up():
                raise RuntimeError(GIVEN_UP_MESSAGE)
            time.sleep(WATCH_PERIOD_S / 4)


class AbandonWatch:
    """While a run is in its ``with`` block: a thread that stops it through the backend's ``cancel()`` (ONNX
    Runtime: ``RunOptions.terminate``; OpenVINO: the infer request's cancel) as soon as every request of the run has
    been given up (:func:`_given_up`), and keeps stopping the runs that follow until the block ends. Backends without
    ``cancel`` run to the end."""

    def __init__(self, backend: Any, members: list[Member], started: float) -> None:
        self.backend, self.members, self.started = backend, members, started
        self.stopped = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "AbandonWatch":
        if callable(getattr(self.backend, "cancel", None)):
            self._thread = threading.Thread(target=self._watch, name="jarrn-abandon-watch", daemon=True)
            self._thread.start()
        return self

    def given_up(self) -> bool:
        """Whether every request of the run has been given up (once true, stays true)."""
        if not self.stopped and all(_given_up(m.request, self.started) for m in self.members):
            self.stopped = True
        return self.stopped

    def _watch(self) -> None:
        while not self._done.wait(WATCH_PERIOD_S):
            if self.given_up():
                self.backend.cancel()  # again each period: a run that started after the last cancel stops too

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


def _given_up(request: Any, started: float) -> bool:
    """Whether the request was cancelled (its gRPC client cancelled or left; an HTTP client that leaves makes the gate
    cancel its gRPC call) or its own timeout (Triton's ``timeout`` parameter, microseconds) has passed; counted from the
    start of this execution, so never too early."""
    cancelled = getattr(request, "is_cancelled", None)
    if cancelled is not None and cancelled():
        return True
    timeout = getattr(request, "timeout", None)
    limit_us = timeout() if timeout is not None else 0
    return bool(limit_us) and (time.monotonic() - started) * 1e6 > limit_us


def _client_error(exc: Exception, size: tuple[int, int], max_pixels: int, codes: Any) -> tuple[str, Any]:
    """``(message, Triton error code)`` for an exception of a run, by its type; messages name this server's limits,
    never its environment (a remote client cannot change that)."""
    if isinstance(exc, InputError):  # e.g. a size outside a TensorRT engine's profile
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0], codes.INVALID_ARG
    if isinstance(exc, MemoryError):
        return (f"the server has not enough free memory now for {size[0]}x{size[1]} images (its limit: "
                f"jarrn serve --max-pixels {max_pixels}); retry later or send a smaller size"), codes.UNAVAILABLE
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0], codes.INTERNAL


def _error_response(pb_utils: Any, message: str, code: Any) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
