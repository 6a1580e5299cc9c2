"""TensorRT backend: a serialized TensorRT or TensorRT-RTX engine (``export/build_engine.py``) run with the named-tensor
API (TensorRT 10/11, TensorRT-RTX 1.x).

- The flavour comes from the sidecar manifest (``tensorrt`` or ``tensorrt-rtx``; ``flavour=`` for engines without one,
  else the installed one) and decides which module is imported. Every check that needs no GPU library runs *before*
  anything CUDA or TensorRT is imported (:func:`preflight_engine`, pure Python), so its message reaches users on any
  machine: a missing or unreadable manifest, a truncated, altered or undecodable (``--compress``) file raises
  :class:`EngineFileError`; another flavour or library version (from package metadata), or a GPU the engine cannot
  run on (TensorRT: another GPU model; TensorRT-RTX: a compute capability it does not target, e.g. an H100/H200 or a
  Jetson; the GPUs come from ``nvidia-smi``) raises :class:`EngineMismatchError` naming what to use instead. Only
  then are the library and cuda-python imported, and the GPU and version checks repeated with CUDA's own answers.
- Device buffers for every I/O tensor are allocated once, at the profile maximum, and reused; host staging buffers are
  page-locked; each backend owns one execution context and one CUDA stream; ``execute_async_v3`` runs on it.
- Shapes outside the optimization profile raise :class:`ProfileError` naming the input and the range.
- ``cuda_graphs=True``: TensorRT captures one CUDA graph per input shape on the first call with that shape and replays
  it afterwards; TensorRT-RTX uses its built-in whole-graph capture strategy instead.
- TensorRT-RTX compiles its kernels just in time on the first run; ``runtime_cache`` (or the file the manifest
  records) keeps them between runs: loaded when the backend starts, written back (atomically) when it closes.

Not thread-safe on its own: :class:`runtime.DepthCompleter` serialises calls with a lock; create one completer per
thread for parallel streams (each gets its own context, buffers and stream).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from jarrn_deploy.export.engine.flavours import (
    FLAVOURS,
    FLAVOUR_TITLES,
    TENSORRT,
    TENSORRT_RTX,
    default_flavour,
    import_flavour,
    installed_version,
    same_release,
)
from jarrn_deploy.export.engine.manifest import (
    DeviceInfo,
    EngineManifest,
    beside_engine,
    check_compatible,
    check_engine_file,
    manifest_path,
)
from jarrn_deploy.export.gpu_probe import visible_gpus
from jarrn_deploy.export.export_errors import EngineFileError, EngineMismatchError
from jarrn_deploy.export.engine.profile import BUILD_COMMAND, INPUT_CHANNELS, OUTPUT_NAME, check_shape_in_range
from jarrn_deploy.model.atomic import atomic_write_bytes
from jarrn_deploy.errors import UnavailableError
from jarrn_deploy.runtime.backends import BackendUnavailable

log = logging.getLogger(__name__)
MAX_CUDA_GRAPHS = 8
# INPUT_CHANNELS is ordered as the contract's inputs: rgb, then sparse_depth (what run() receives, in that order).


def import_tensorrt(flavour: str = TENSORRT):  # noqa: ANN201
    """``import tensorrt`` (or ``tensorrt_rtx``), or :class:`BackendUnavailable` with how to get it."""
    try:
        return import_flavour(flavour)
    except ImportError as exc:
        raise BackendUnavailable(str(exc)) from exc.__cause__


def engine_flavour(engine_path: str | os.PathLike, requested: str | None = None) -> str:
    """The flavour to load ``engine_path`` with: the manifest's, else ``requested``, else the installed one
    (``tensorrt`` first), else ``tensorrt``.

    A ``requested`` flavour that contradicts the manifest raises :class:`EngineMismatchError` (before any import).
    """
    if requested is not None and requested not in FLAVOURS:
        raise ValueError(f"flavour: expected one of {', '.join(FLAVOURS)} or None, got {requested!r}")
    sidecar = manifest_path(engine_path)
    if sidecar.is_file():
        try:
            recorded = EngineManifest.load(sidecar).flavour
        except EngineFileError:
            recorded = None  # reported by preflight_engine with its full message
        if recorded is not None and requested not in (None, recorded):
            raise EngineMismatchError(
                f"{engine_path}: this is a {FLAVOUR_TITLES.get(recorded, recorded)} engine (says {sidecar.name}), it "
                f"cannot be loaded as {FLAVOUR_TITLES[requested]}: pass flavour={recorded!r} or leave flavour out"
            )
        if recorded is not None:
            return recorded
    return requested or default_flavour() or TENSORRT


def preflight_engine(
    engine_path: str | os.PathLike,
    device: DeviceInfo | None = None,
    *,
    require_manifest: bool = True,
    verify_hash: bool = True,
) -> tuple[EngineManifest | None, bytes]:
    """Every check that can be made before TensorRT sees the file; returns ``(manifest, plan bytes)``. Imports nothing.

    Order: manifest present (unless ``require_manifest=False``, e.g. trtexec-built engines) and readable; when
    ``device`` is given, the same flavour and library version and a GPU the engine runs on (its unknown parts, "",
    are skipped); the engine file present, not an ONNX, not truncated, sha256 as recorded, decompressed if stored
    with ``--compress``.
    """
    engine_path = Path(engine_path)
    sidecar = manifest_path(engine_path)
    manifest = None
    if sidecar.is_file():
        manifest = EngineManifest.load(sidecar)
    elif require_manifest:
        if not engine_path.is_file():
            check_engine_file(engine_path, None)  # raises the "no such engine file" error
        raise EngineFileError(
            f"{engine_path}: no manifest {sidecar.name} beside the engine, so it cannot be checked (ONNX, flavour and "
            f"library version, target GPUs, size, sha256) before loading. {BUILD_COMMAND} writes one next to every "
            f"engine: copy it along with the engine, or rebuild both with: {BUILD_COMMAND} --onnx MODEL.onnx --out "
            f"{engine_path}. An engine built with trtexec or tensorrt_rtx has none: load it with "
            "require_manifest=False (and flavour='tensorrt-rtx' for tensorrt_rtx's) at your own risk"
        )
    if manifest is not None and device is not None:
        check_compatible(manifest, device, engine_path)
    data = check_engine_file(engine_path, manifest, verify_hash=verify_hash)
    return manifest, data


def check_visible_gpus(manifest: EngineManifest, flavour: str, engine_path: str | os.PathLike) -> None:
    """Before any CUDA import: refuse ``manifest``'s engine when the installed library version (package metadata)
    differs, or when none of the GPUs ``nvidia-smi`` lists can run it (their order may differ from CUDA's, so one
    that fits is enough here; the exact device is checked once CUDA is up). Unknown parts are skipped."""
    version = installed_version(flavour)
    if version and same_release(version, manifest.tensorrt_version):
        version = manifest.tensorrt_version  # metadata may spell it shorter than the module's __version__
    gpus = visible_gpus() or [("", "")]
    refusals = []
    for name, cc in gpus:
        try:
            check_compatible(manifest, DeviceInfo(name, cc, version, flavour), engine_path)
            return
        except EngineMismatchError as exc:
            refusals.append(exc)
    raise refusals[0]


def runtime_cache_path(engine_path: str | os.PathLike, manifest: EngineManifest | None,
                       requested: str | os.PathLike | None) -> Path | None:
    """The TensorRT-RTX runtime cache file: ``requested``, else the manifest's ``build.runtime_cache``; relative paths
    are relative to the engine's folder."""
    value = requested if requested is not None else (manifest.build.get("runtime_cache") if manifest else None)
    if not value:
        return None
    return beside_engine(Path(engine_path).absolute(), value)


class _Tensor:
    """One I/O tensor: name, dtype, device buffer and page-locked host staging buffer, both sized for the maximum."""

    def __init__(self, name: str, is_input: bool, dtype: np.dtype, max_shape: tuple[int, ...]) -> None:
        self.name, self.is_input, self.dtype, self.max_shape = name, is_input, dtype, max_shape
        self.nbytes = int(np.prod(max_shape)) * dtype.itemsize
        self.device_ptr = 0
        self.host_handle: Any = None
        self.host: np.ndarray | None = None

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return self.host[: count * self.dtype.itemsize].view(self.dtype).reshape(shape)


class TensorRTBackend:
    """Runs a TensorRT engine; see the module docstring."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike,
        *,
        cuda_graphs: bool = False,
        require_manifest: bool = True,
        verify_hash: bool = True,
        device: int = 0,
        flavour: str | None = None,
        runtime_cache: str | os.PathLike | None = None,
    ) -> None:
        self.cuda = None
        self.context = self.engine = self.stream = None
        self._tensors: dict[str, _Tensor] = {}
        self.profile_range: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        """Input name -> (min shape, max shape) of the engine's optimization profile; calls outside it are refused."""
        self._graphs: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
        self._runtime_config = None
        self.runtime_cache_file: Path | None = None
        self.source = str(engine_path)
        self.flavour = engine_flavour(engine_path, flavour)
        # Everything that needs no GPU library first, so a bad file or a foreign engine is named on any machine.
        self.manifest, data = preflight_engine(engine_path, require_manifest=require_manifest, verify_hash=verify_hash)
        if self.manifest is not None:
            check_visible_gpus(self.manifest, self.flavour, engine_path)
        trt, cuda = self._load_libraries(engine_path, device)
        self._trt = trt
        here = DeviceInfo(cuda.device_name, DeviceInfo.format_cc(*cuda.compute_capability), trt.__version__, self.flavour)
        self.device_info = here
        if self.manifest is not None:
            check_compatible(self.manifest, here, engine_path)  # again, with CUDA's device and the module's version
        self.cuda = cuda
        self.cuda_graphs = bool(cuda_graphs)
        rtx_graphs = self.flavour == TENSORRT_RTX and self.cuda_graphs
        if rtx_graphs:
            self.cuda_graphs = False  # TensorRT-RTX captures and replays on its own (runtime config strategy)
        cuda.activate()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                other = [f for f in FLAVOURS if f != self.flavour][0]
                raise EngineFileError(
                    f"{engine_path}: {here.library} could not deserialise this engine (see its log above): truncated, "
                    f"built with another version, or a {other} engine (pass flavour={other!r}); rebuild it with "
                    f"{BUILD_COMMAND}"
                )
            if self.flavour == TENSORRT_RTX:
                self.context = self._rtx_context(engine_path, runtime_cache, rtx_graphs)
            else:
                self.context = self.engine.create_execution_context()
            if self.context is None:
                raise RuntimeError(f"{engine_path}: could not create an execution context (out of GPU memory?)")
            self._setup_tensors()
            self.stream, self._stream_handle = self.cuda.stream_create()
        except BaseException:
            self.close()
            raise

    def _load_libraries(self, engine_path: str | os.PathLike, device: int) -> tuple[Any, Any]:
        """The flavour's module and the CUDA API on ``device``; their errors say that the engine itself checked out."""
        from jarrn_deploy.runtime.backends._cuda import load_cuda_api

        try:
            return import_tensorrt(self.flavour), load_cuda_api(device)
        except UnavailableError as exc:
            checked = "its manifest and file check out" if self.manifest is not None else "the file checks out"
            raise type(exc)(f"{engine_path}: {checked}, but it cannot run here: {exc}") from None

    def _rtx_context(self, engine_path: str | os.PathLike, runtime_cache: str | os.PathLike | None, graphs: bool) -> Any:
        """TensorRT-RTX execution context with its runtime config: the runtime cache and the CUDA-graph strategy."""
        trt = self._trt
        config = self.engine.create_runtime_config()
        self._runtime_config = config
        if graphs:
            config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        self.runtime_cache_file = runtime_cache_path(engine_path, self.manifest, runtime_cache)
        if self.runtime_cache_file is not None:
            cache = config.create_runtime_cache()
            if self.runtime_cache_file.is_file():
                try:
                    cache.deserialize(self.runtime_cache_file.read_bytes())
                except Exception as exc:  # noqa: BLE001 - a stale or foreign cache only costs compile time
                    log.warning("runtime cache %s not usable (%s): starting an empty one", self.runtime_cache_file, exc)
                    cache = config.create_runtime_cache()
            config.set_runtime_cache(cache)
        return self.engine.create_execution_context(config)

    @property
    def engine_device_memory_bytes(self) -> int | None:
        """GPU memory the engine's execution context takes for activations (``ICudaEngine.device_memory_size_v2``,
        or ``device_memory_size`` on older TensorRT), in bytes; None when this TensorRT reports neither."""
        if self.engine is None:
            raise RuntimeError("TensorRT backend is closed")
        for attribute in ("device_memory_size_v2", "device_memory_size"):
            try:
                return int(getattr(self.engine, attribute))
            except (AttributeError, TypeError, RuntimeError):
                continue
        return None

    def save_runtime_cache(self) -> Path | None:
        """Write the TensorRT-RTX runtime cache (JIT-compiled kernels) to its file, atomically; None without one."""
        if self._runtime_config is None or self.runtime_cache_file is None:
            return None
        cache = self._runtime_config.get_runtime_cache()
        if cache is None:
            return None
        data = cache.serialize()
        if data is None:
            return None
        return atomic_write_bytes(self.runtime_cache_file, memoryview(data))

    # -- setup ---------------------------------------------------------------------------------------------------------
    def _setup_tensors(self) -> None:
        trt, engine, context = self._trt, self.engine, self.context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if sorted(inputs) != sorted(INPUT_CHANNELS) or OUTPUT_NAME not in outputs:
            raise EngineFileError(
                f"{self.source}: expected inputs ['rgb', 'sparse_depth'] and output 'depth', found inputs {inputs}, "
                f"outputs {outputs}"
            )
        self.profile_range = {}
        for name in inputs:
            low, _opt, high = (tuple(int(v) for v in dims) for dims in engine.get_tensor_profile_shape(name, 0))
            self.profile_range[name] = (low, high)
            context.set_input_shape(name, high)
        for name in names:
            is_input = name in inputs
            shape = self.profile_range[name][1] if is_input else tuple(int(v) for v in context.get_tensor_shape(name))
            if any(v < 0 for v in shape):
                raise EngineFileError(f"{self.source}: output {name} has a data-dependent shape {shape}; not supported")
            tensor = _Tensor(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), shape)
            tensor.device_ptr = self.cuda.malloc(tensor.nbytes)
            tensor.host_handle, tensor.host = self.cuda.host_alloc(tensor.nbytes)
            self._tensors[name] = tensor
            if not context.set_tensor_address(name, tensor.device_ptr):
                raise RuntimeError(f"{self.source}: set_tensor_address failed for {name}")

    # -- inference -----------------------------------------------------------------------------------------------------
    def run(self, rgb_nchw: np.ndarray, sparse_nchw: np.ndarray) -> np.ndarray:
        if self.context is None:
            raise RuntimeError("TensorRT backend is closed")
        for name, array in zip(INPUT_CHANNELS, (rgb_nchw, sparse_nchw)):
            check_shape_in_range(name, array.shape, *self.profile_range[name])
        cuda, context, stream = self.cuda, self.context, self.stream
        cuda.activate()
        for name, array in zip(INPUT_CHANNELS, (rgb_nchw, sparse_nchw)):
            tensor = self._tensors[name]
            staged = tensor.host_view(array.shape)
            np.copyto(staged, array, casting="same_kind")  # float32 -> the engine's I/O type (fp16 I/O engines)
            if not context.set_input_shape(name, array.shape):
                raise RuntimeError(f"{name}: TensorRT rejected input shape {array.shape}")
            cuda.htod_async(tensor.device_ptr, staged, staged.nbytes, stream)
        self._execute(tuple(rgb_nchw.shape))
        out = self._tensors[OUTPUT_NAME]
        out_shape = tuple(int(v) for v in context.get_tensor_shape(OUTPUT_NAME))
        result = out.host_view(out_shape)
        cuda.dtoh_async(result, out.device_ptr, result.nbytes, stream)
        cuda.synchronize(stream)
        return result.astype(np.float32, copy=True)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self._stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def _execute(self, shape_key: tuple) -> None:
        if not self.cuda_graphs:
            self._enqueue()
            return
        cached = self._graphs.get(shape_key)
        if cached is not None:
            self._graphs.move_to_end(shape_key)
            self.cuda.launch(cached[1], self.stream)
            return
        # New shape: one plain enqueue first (TensorRT finishes shape-dependent setup there; it also computes this
        # call's result), then capture the same enqueue into a graph for the next calls with this shape.
        self._enqueue()
        try:
            self.cuda.begin_capture(self.stream)
            try:
                self._enqueue()
            finally:
                graph = self.cuda.end_capture(self.stream)
            graph_exec = self.cuda.instantiate(graph)
        except Exception as exc:  # noqa: BLE001 - some engines cannot be captured; run them without graphs
            log.warning("CUDA graph capture failed (%s): running without CUDA graphs", exc)
            self.cuda_graphs = False
            return
        self._graphs[shape_key] = (graph, graph_exec)
        while len(self._graphs) > MAX_CUDA_GRAPHS:
            _, (old_graph, old_exec) = self._graphs.popitem(last=False)
            self.cuda.destroy_graph(old_graph, old_exec)

    def close(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        try:
            cuda.activate()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            return
        try:
            if self.stream is not None:
                cuda.synchronize(self.stream)
            try:
                self.save_runtime_cache()
            except Exception as exc:  # noqa: BLE001 - losing the cache only costs compile time next run
                log.warning("could not write the runtime cache %s: %s", self.runtime_cache_file, exc)
            self._runtime_config = None
            for graph, graph_exec in self._graphs.values():
                cuda.destroy_graph(graph, graph_exec)
            self._graphs.clear()
            for tensor in self._tensors.values():
                if tensor.device_ptr:
                    cuda.free(tensor.device_ptr)
                if tensor.host_handle is not None:
                    tensor.host = None
                    cuda.host_free(tensor.host_handle)
            self._tensors.clear()
            if self.stream is not None:
                cuda.stream_destroy(self.stream)
                self.stream = None
        finally:
            self.context = None
            self.engine = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
