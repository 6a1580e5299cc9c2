"""``DepthCompleter``: one API over every backend of the registry (TensorRT, ONNX Runtime, OpenVINO, the PyTorch
reference).

    from jarrn_deploy.runtime import DepthCompleter
    completer = DepthCompleter.from_engine("artifacts/jarrn_fp16.engine")      # TensorRT
    completer = DepthCompleter.from_onnx("artifacts/jarrn_fp32.onnx", providers="cuda")  # ONNX Runtime
    completer = DepthCompleter.from_checkpoint()                               # PyTorch, bundled default model
    completer = DepthCompleter.from_backend("openvino", "artifacts/jarrn_fp32.onnx")  # any backend, by name
    depth = completer.complete(rgb, sparse_depth)   # uint8 HxWx3 + float HxW metres -> float32 HxW metres

Batches (``BxHxWx3`` + ``BxHxW``) give ``BxHxW``. Inputs are validated and converted by
:func:`jarrn_deploy.model.contract.prepare_inputs` and outputs by :func:`jarrn_deploy.model.contract.depth_to_user` for every backend, so all
backends accept and reject exactly the same inputs.

Thread safety: a completer may be shared between threads. Each one holds a lock around its backend call (a TensorRT
execution context, its buffers and stream serve one inference at a time; PyTorch and ONNX Runtime are serialised the
same way for identical behaviour). Input validation and layout conversion run outside the lock, so they overlap.
For parallel inference, create one completer per thread: each gets its own session, or execution context and stream.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from jarrn_deploy.errors import UsageError
from jarrn_deploy.model.contract import depth_to_user, prepare_inputs
from jarrn_deploy.runtime.backends import Backend
from jarrn_deploy.runtime.memory_guard import MemoryGuard, guard_for_backend, user_batch_shape


class DepthCompleter:
    """Dense metric depth from RGB + sparse depth, numpy in and out, on any backend (see the module docstring)."""

    def __init__(self, backend: Backend, *, memory_guard: MemoryGuard | bool = True) -> None:
        """``memory_guard``: refuse inputs whose estimated peak memory does not fit (:class:`MemoryGuard`; ``False``
        or ``JARRN_MEMORY_GUARD=off`` turns it off, ``MemoryGuard(limit_bytes=...)`` sets the budget)."""
        self.backend = backend
        self._lock = threading.Lock()
        self._closed = False
        if memory_guard is True:
            memory_guard = guard_for_backend(backend)
        self.memory_guard: MemoryGuard | None = memory_guard or None

    # -- constructors --------------------------------------------------------------------------------------------------
    @classmethod
    def from_backend(cls, name: str, model: str | os.PathLike | None = None, options: Any | None = None, *,
                     memory_guard: MemoryGuard | bool = True) -> "DepthCompleter":
        """Any backend of the registry (:data:`jarrn_deploy.runtime.backends.registry.BACKENDS`) by name, e.g.
        ``DepthCompleter.from_backend("openvino", "artifacts/jarrn_fp32.onnx", OpenVinoOptions(threads=2))``.

        ``model``: a file the backend runs (its record's ``suffixes``); None = the bundled default model (exported or
        built once and cached for the backends that need a file). ``options``: the record's ``options_type``
        (None: its defaults). Unknown names raise :class:`UsageError`; a backend whose library is missing raises
        :class:`jarrn_deploy.runtime.BackendUnavailable` (exit status 5) naming the install command."""
        from jarrn_deploy.runtime.backends.registry import backend_spec

        spec = backend_spec(name, "name")
        if options is not None and spec.options_type is not None and not isinstance(options, spec.options_type):
            raise UsageError(f"options: expected a {spec.options_type.__name__} for the {name} backend, got "
                             f"{type(options).__name__}")
        if model is None:
            spec.require()  # before exporting or building the bundled model (the backends check their own files first)
            if spec.bundled_model is not None:
                model = spec.bundled_model(lambda message: None)
        return cls(spec.open(None if model is None else str(model), options), memory_guard=memory_guard)

    @classmethod
    def from_engine(
        cls,
        path: str | os.PathLike,
        *,
        cuda_graphs: bool = False,
        require_manifest: bool = True,
        verify_hash: bool = True,
        device: int = 0,
        flavour: str | None = None,
        runtime_cache: str | os.PathLike | None = None,
    ) -> "DepthCompleter":
        """TensorRT or TensorRT-RTX engine built by ``export/build_engine.py`` (its ``.json`` manifest, which also names
        the flavour, is checked before loading).

        ``require_manifest=False`` accepts engines without a manifest (e.g. from ``trtexec``; ``flavour="tensorrt-rtx"``
        for one from ``tensorrt_rtx``) at your own risk; ``cuda_graphs=True`` replays one CUDA graph per input shape
        (TensorRT: needs cuda-python; TensorRT-RTX: its built-in strategy); ``runtime_cache`` (TensorRT-RTX) keeps the
        just-in-time compiled kernels in that file between runs (default: the file the manifest records, if any).
        """
        from jarrn_deploy.runtime.backends.options import TensorRTOptions

        return cls.from_backend("tensorrt", path, TensorRTOptions(
            cuda_graphs=cuda_graphs, require_manifest=require_manifest, verify_hash=verify_hash, device=device,
            flavour=flavour, runtime_cache=None if runtime_cache is None else str(runtime_cache)))

    @classmethod
    def from_onnx(
        cls,
        path: str | os.PathLike,
        providers: str | Sequence[str | tuple[str, Mapping[str, Any]]] = ("cpu",),
        *,
        intra_op_threads: int | None = None,
        trt_cache_dir: str | os.PathLike | None = None,
        profile: Any | None = None,
        check_metadata: bool = True,
    ) -> "DepthCompleter":
        """ONNX Runtime session; ``providers`` in priority order: "cpu", "cuda", "tensorrt" (or full provider names,
        or ``(name, options)`` pairs). For "tensorrt", ``trt_cache_dir`` keeps its engines between runs and
        ``profile`` (:class:`jarrn_deploy.export.engine.profile.Profile`) fixes the shape range it builds for.

        The graph is checked before it is trusted (:func:`jarrn_deploy.runtime.backends.onnxruntime_backend.check_graph`): the
        contract's inputs and ``depth`` output, and the ``jarrn.*`` metadata of ``export/to_onnx.py`` (skip the
        metadata part with ``check_metadata=False`` for graphs exported another way); :class:`GraphError` otherwise."""
        from jarrn_deploy.runtime.backends.onnxruntime_backend import provider_sequence
        from jarrn_deploy.runtime.backends.options import OnnxRuntimeOptions

        return cls.from_backend("onnxruntime", path, OnnxRuntimeOptions(
            providers=provider_sequence(providers),
            intra_op_threads=intra_op_threads, trt_cache_dir=None if trt_cache_dir is None else str(trt_cache_dir),
            profile=profile, check_metadata=check_metadata))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, device: str = "cpu",
                        options: Any | None = None) -> "DepthCompleter":
        """PyTorch reference (:class:`model.MetricJarrn`); ``path=None`` loads the bundled default model.

        ``device``: 'cpu', 'cuda', 'cuda:N' or 'auto'. ``options``: a
        :class:`jarrn_deploy.runtime.backends.torch_backend.TorchBackendOptions` (FP16 autocast, channels-last, torch.compile with
        CUDA graphs; ``TorchBackendOptions.gpu_fast()`` on a GPU); default FP32 eager."""
        from jarrn_deploy.runtime.backends.torch_backend import TorchBackend

        return cls(TorchBackend.from_checkpoint(path, device, options))

    @classmethod
    def from_network(cls, network: Any, device: str = "cpu", options: Any | None = None) -> "DepthCompleter":
        """PyTorch reference around an already loaded :class:`model.Jarrn` (``options`` as in from_checkpoint)."""
        from jarrn_deploy.runtime.backends.torch_backend import TorchBackend

        return cls(TorchBackend(network, device, options))

    # -- inference -----------------------------------------------------------------------------------------------------
    def complete(self, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
        """``rgb`` uint8 HxWx3 (or float in [0,1]), ``sparse_depth`` float HxW metres (0 = missing), or batches with a
        leading B -> float32 depth in metres, HxW (or BxHxW). Raises ValueError/TypeError naming the bad argument
        (:class:`jarrn_deploy.model.contract.EmptySparseDepthError` for a map without a point > 0),
        :class:`jarrn_deploy.model.contract.NonFiniteDepthError` naming the model file when it produces NaN or inf,
        :class:`jarrn_deploy.runtime.memory_guard.MemoryGuardError` (a MemoryError) for a size whose estimated peak memory does not
        fit, and :class:`jarrn_deploy.errors.UsageError` after :meth:`close`."""
        if self._closed:
            raise UsageError("DepthCompleter: complete() after close(); create a new completer")
        guard, shape = self.memory_guard, user_batch_shape(rgb)
        if guard is not None and shape is not None:
            guard.check(shape)  # before the conversion, which allocates for the size too
        rgb_nchw, sparse_nchw, was_batched = prepare_inputs(rgb, sparse_depth)
        with self._lock:
            if self._closed:
                raise UsageError("DepthCompleter: complete() after close(); create a new completer")
            depth = self.backend.run(rgb_nchw, sparse_nchw)
        if guard is not None:
            guard.ran(rgb_nchw.shape)
        return depth_to_user(depth, was_batched, getattr(self.backend, "source", None))

    __call__ = complete

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def close(self) -> None:
        """Release the backend; closing twice is harmless, :meth:`complete` afterwards raises UsageError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.backend.close()

    def __enter__(self) -> "DepthCompleter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DepthCompleter(backend={self.backend.name!r}, source={getattr(self.backend, 'source', None)!r})"
