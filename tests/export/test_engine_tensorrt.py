"""TensorRT build and runtime paths.

Most tests run everywhere against a *fake* ``tensorrt`` module and a fake CUDA API that implement only the documented
TensorRT 10/11 calls this project makes (builder, strongly typed network flag, profile, timing cache, named tensors,
``set_input_shape``, ``execute_async_v3``) over host memory. They check our logic (flags by version, profile shapes,
manifest, build reuse, buffer reuse, profile errors, CUDA-graph caching, checks before deserialising), not TensorRT.
Tests marked ``tensorrt`` use the real library and a GPU and are skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import jarrn_deploy.export.build_engine as build_engine
import jarrn_deploy.export.engine.build as engine_build
from jarrn_deploy.export.engine.manifest import DeviceInfo, EngineManifest, manifest_path, timing_cache_path
from jarrn_deploy.export.export_errors import EngineMismatchError
from jarrn_deploy.export.engine.profile import ProfileError

# ---------------------------------------------------------------------------------------------------------------------
# skip logic for the real-TensorRT tests (kept here: tests/conftest.py belongs to the whole suite)


def _tensorrt_skip_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed"
    try:
        from jarrn_deploy.runtime.backends._cuda import load_cuda_api

        load_cuda_api(0)
    except Exception:  # noqa: BLE001 - no bindings, no driver or no device: all mean no GPU for us
        return "no CUDA GPU (or no cuda-python to reach it)"
    return None


_SKIP_REASON = _tensorrt_skip_reason()


# ---------------------------------------------------------------------------------------------------------------------
# fakes


def reference(rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """What the fake engine computes: depth [B,1,H,W] from rgb [B,3,H,W] and sparse [B,1,H,W]."""
    return (sparse * 2.0 + rgb.sum(axis=1, keepdims=True)).astype(np.float32)


class FakeGpu:
    """Device memory as host arrays, a stream that runs work at once, stream capture into replayable graphs."""

    name = "fake-cuda"

    def __init__(self, name: str = "NVIDIA Fake GPU", cc: tuple[int, int] = (8, 9)) -> None:
        self.device_name, self.compute_capability = name, cc
        self.memory: dict[int, np.ndarray] = {}
        self.next_ptr = 0x1000
        self.capture: list | None = None
        self.counts = {"malloc": 0, "host_alloc": 0, "capture": 0, "launch": 0, "enqueue_run": 0}

    def activate(self) -> None: ...

    def malloc(self, nbytes: int) -> int:
        self.counts["malloc"] += 1
        ptr, self.next_ptr = self.next_ptr, self.next_ptr + nbytes + 256
        self.memory[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def host_alloc(self, nbytes: int):
        self.counts["host_alloc"] += 1
        array = np.zeros(nbytes, np.uint8)
        return array, array

    def host_free(self, handle) -> None: ...
    def stream_create(self):
        return "stream", 1234

    def stream_destroy(self, stream) -> None: ...
    def synchronize(self, stream) -> None: ...

    def htod_async(self, dst: int, src: np.ndarray, nbytes: int, stream) -> None:
        self.memory[dst][:nbytes] = src.reshape(-1).view(np.uint8)[:nbytes]

    def dtoh_async(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        dst.reshape(-1).view(np.uint8)[:nbytes] = self.memory[src][:nbytes]

    def submit(self, work) -> None:
        if self.capture is not None:
            self.capture.append(work)
        else:
            work()

    def begin_capture(self, stream) -> None:
        self.counts["capture"] += 1
        self.capture = []

    def end_capture(self, stream):
        graph, self.capture = self.capture, None
        return graph

    def instantiate(self, graph):
        return list(graph)

    def launch(self, graph_exec, stream) -> None:
        self.counts["launch"] += 1
        for work in graph_exec:
            work()

    def destroy_graph(self, graph, graph_exec) -> None: ...


def make_fake_tensorrt(version: str, gpu: FakeGpu, rtx: bool = False) -> types.ModuleType:
    """A ``tensorrt`` (or, with ``rtx``, ``tensorrt_rtx``) stand-in with the calls build_engine.py and
    tensorrt_backend.py make (TRT 10/11 and TensorRT-RTX 1.x Python API)."""
    trt = types.ModuleType("tensorrt_rtx" if rtx else "tensorrt")
    trt.__version__ = version
    trt.calls = {"deserialize": 0, "build": 0, "timing_cache": 0}
    trt.Logger = type("Logger", (), {"WARNING": 2, "VERBOSE": 4, "__init__": lambda self, level=2: None})
    trt.ILogger = type("ILogger", (), {"Severity": types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3,
                                                                          VERBOSE=4),
                                       "__init__": lambda self: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)  # as in TRT 10 (EXPLICIT_BATCH=0); 11.x keeps it, ignored
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dtype: np.float32

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.inputs = flags, []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int):
            return types.SimpleNamespace(name=self.inputs[i])

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            self.network.inputs = [i.name for i in onnx.load(path).graph.input]
            return True

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+"

    class Config:
        def __init__(self) -> None:
            self.pools, self.profiles, self.builder_optimization_level, self.cache = {}, [], 3, None
            self.num_compute_capabilities, self.targets = 0, {}

        def set_compute_capability(self, cc, index: int) -> None:
            assert rtx and 0 <= index < self.num_compute_capabilities
            self.targets[index] = cc

        def set_memory_pool_limit(self, pool, size: int) -> None:
            self.pools[pool] = size

        def add_optimization_profile(self, profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> TimingCache:
            trt.calls["timing_cache"] += 1  # TensorRT-RTX: would make the AOT build look for a GPU
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.cache

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name: str, low, opt, high) -> None:
            self.shapes[name] = [list(low), list(opt), list(high)]

    class Builder:
        def __init__(self, logger) -> None: ...

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            trt.calls["build"] += 1
            record = {"flags": network.flags, "inputs": network.inputs, "profile": config.profiles[0].shapes,
                      "workspace": config.pools.get("workspace"), "opt_level": config.builder_optimization_level,
                      "targets": [config.targets[i] for i in range(config.num_compute_capabilities)]}
            return (b"FAKEPLAN" + json.dumps(record).encode()).ljust(4096, b"\0")

    class Context:
        def __init__(self, engine) -> None:
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape) -> bool:
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str):
            if name == "depth":
                b, _, h, w = self.shapes["rgb"]
                return (b, 1, h, w)
            return self.shapes[name]

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            assert stream_handle == 1234
            shapes = dict(self.shapes)

            def work() -> None:
                gpu.counts["enqueue_run"] += 1
                arrays = {}
                for name in ("rgb", "sparse_depth"):
                    count = int(np.prod(shapes[name]))
                    arrays[name] = gpu.memory[self.addresses[name]][: count * 4].view(np.float32).reshape(shapes[name])
                out = reference(arrays["rgb"], arrays["sparse_depth"]).reshape(-1).view(np.uint8)
                gpu.memory[self.addresses["depth"]][: out.size] = out

            gpu.submit(work)
            return True

    class Engine:
        def __init__(self, record: dict) -> None:
            self.record = record
            self.names = ["rgb", "sparse_depth", "depth"]

        num_io_tensors = 3
        device_memory_size_v2 = 3 << 20

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return "output" if name == "depth" else "input"

        def get_tensor_dtype(self, name: str) -> str:
            return "float"

        def get_tensor_profile_shape(self, name: str, index: int):
            assert index == 0
            return [tuple(s) for s in self.record["profile"][name]]

        def create_execution_context(self, runtime_config=None) -> Context:
            assert rtx or runtime_config is None
            context = Context(self)
            context.runtime_config = runtime_config
            return context

        def create_runtime_config(self):
            assert rtx, "standard TensorRT has no runtime config"
            return RuntimeConfig()

    class RuntimeCache:
        def __init__(self) -> None:
            self.data = b""

        def deserialize(self, data: bytes) -> None:
            trt.calls["cache_loaded"] = bytes(data)
            self.data = bytes(data)

        def serialize(self) -> bytes:
            return self.data + b"kernels;"

    class RuntimeConfig:
        def __init__(self) -> None:
            self.cuda_graph_strategy, self.cache = "DISABLED", None

        def create_runtime_cache(self) -> RuntimeCache:
            return RuntimeCache()

        def set_runtime_cache(self, cache: RuntimeCache) -> bool:
            self.cache = cache
            return True

        def get_runtime_cache(self) -> RuntimeCache | None:
            return self.cache

    class Runtime:
        def __init__(self, logger) -> None: ...

        def deserialize_cuda_engine(self, data: bytes):
            trt.calls["deserialize"] += 1
            if not data.startswith(b"FAKEPLAN"):
                return None
            return Engine(json.loads(data[8:].rstrip(b"\0")))

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    if rtx:
        trt.ComputeCapability = types.SimpleNamespace(SM75="SM75", SM80="SM80", SM86="SM86", SM89="SM89",
                                                      SM120="SM120", SM121="SM121")
        trt.CudaGraphStrategy = types.SimpleNamespace(DISABLED="DISABLED", WHOLE_GRAPH_CAPTURE="WHOLE_GRAPH_CAPTURE")
    return trt


@pytest.fixture()
def fake_env(monkeypatch: pytest.MonkeyPatch):
    """Install a fake TensorRT 10.3 (JetPack 6 level) and fake GPU; returns a function to switch versions/GPUs.

    The runtime's checks before any CUDA import see the same: the fake's version as the installed package's, and the
    fake GPU as what nvidia-smi lists."""
    import jarrn_deploy.runtime.backends._cuda as cuda_module
    import jarrn_deploy.runtime.backends.tensorrt_backend as backend_module

    state = {}

    def install(version: str = "10.3.0.30", gpu: FakeGpu | None = None, rtx: bool = False):
        gpu = gpu or FakeGpu()
        trt = make_fake_tensorrt(version, gpu, rtx)
        monkeypatch.setitem(sys.modules, trt.__name__, trt)
        if rtx:
            monkeypatch.setitem(sys.modules, "tensorrt", None)  # only TensorRT-RTX installed: it is the default
        monkeypatch.setattr(cuda_module, "load_cuda_api", lambda device=0: gpu)
        monkeypatch.setattr(backend_module, "installed_version", lambda flavour: version)
        monkeypatch.setattr(backend_module, "visible_gpus",
                            lambda: [(gpu.device_name, DeviceInfo.format_cc(*gpu.compute_capability))])
        monkeypatch.setattr(engine_build, "probe_gpu",
                            lambda device=0: (gpu.device_name, DeviceInfo.format_cc(*gpu.compute_capability)))
        state.update(trt=trt, gpu=gpu)
        return trt, gpu

    install()
    return install


def _onnx(path: Path) -> Path:
    def info(name: str, channels: int):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", channels, "height", "width"])

    graph = helper.make_graph([helper.make_node("Identity", ["sparse_depth"], ["depth"])], "g",
                              [info("rgb", 3), info("sparse_depth", 1)], [info("depth", 1)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"jarrn.precision": "fp16"})
    onnx.save(model, str(path))
    return path


def _static_onnx(path: Path, batch: int = 1, height: int = 375, width: int = 1242) -> Path:
    def info(name: str, channels: int):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, channels, height, width])

    graph = helper.make_graph([helper.make_node("Identity", ["sparse_depth"], ["depth"])], "g",
                              [info("rgb", 3), info("sparse_depth", 1)], [info("depth", 1)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _build(tmp_path: Path, *extra: str) -> int:
    args = build_engine.parse_args(["--onnx", str(tmp_path / "m.onnx"), "--timing-cache-dir", str(tmp_path / "tc"),
                                    "--min", "1x16x16", "--opt", "1x32x48", "--max", "2x64x96", *extra])
    return build_engine.run(args)


# ---------------------------------------------------------------------------------------------------------------------
# build_engine.py over the fake


@pytest.mark.parametrize(("version", "flags"), [("10.3.0.30", 2), ("10.16.1.11", 2), ("11.4.0.106", 0)])
def test_build_sets_strong_typing_by_version_and_profile(tmp_path: Path, fake_env, version: str, flags: int,
                                                         capsys: pytest.CaptureFixture) -> None:
    trt, gpu = fake_env(version)
    _onnx(tmp_path / "m.onnx")
    assert _build(tmp_path, "--opt-level", "5", "--workspace", "512") == 0
    engine = tmp_path / "m.engine"
    record = json.loads(engine.read_bytes()[8:].rstrip(b"\0"))
    assert record["flags"] == flags  # TRT 10: 1 << STRONGLY_TYPED; TRT 11: strongly typed is implicit
    assert record["profile"] == {"rgb": [[1, 3, 16, 16], [1, 3, 32, 48], [2, 3, 64, 96]],
                                 "sparse_depth": [[1, 1, 16, 16], [1, 1, 32, 48], [2, 1, 64, 96]]}
    assert record["workspace"] == 512 << 20 and record["opt_level"] == 5
    manifest = EngineManifest.load(manifest_path(engine))
    assert manifest.precision == "fp16" and manifest.tensorrt_version == version
    assert manifest.gpu_name == "NVIDIA Fake GPU" and manifest.compute_capability == "8.9"
    assert manifest.engine_bytes == engine.stat().st_size and manifest.build["strongly_typed"] is True
    cache = timing_cache_path(tmp_path / "tc", manifest.device)
    assert cache.read_bytes() == b"+"  # timing cache written after the build, one file per GPU + TRT version
    assert "wrote" in capsys.readouterr().out


def test_unchanged_build_is_reused(tmp_path: Path, fake_env, capsys: pytest.CaptureFixture) -> None:
    trt, _ = fake_env()
    _onnx(tmp_path / "m.onnx")
    assert _build(tmp_path) == 0 and trt.calls["build"] == 1
    capsys.readouterr()
    assert _build(tmp_path) == 0 and trt.calls["build"] == 1
    assert "up to date" in capsys.readouterr().out
    assert _build(tmp_path, "--force") == 0 and trt.calls["build"] == 2
    assert _build(tmp_path, "--max", "4x64x96") == 0 and trt.calls["build"] == 3  # new profile
    (tmp_path / "m.engine").write_bytes(b"truncated")
    assert _build(tmp_path, "--max", "4x64x96") == 0 and trt.calls["build"] == 4  # damaged engine is rebuilt
    assert "rebuilding" in capsys.readouterr().err
    trt, _ = fake_env("10.4.0.26")  # TensorRT upgrade invalidates the engine
    assert _build(tmp_path, "--max", "4x64x96") == 0 and trt.calls["build"] == 1


# ---------------------------------------------------------------------------------------------------------------------
# tensorrt_backend.py over the fake


@pytest.fixture()
def fake_engine(tmp_path: Path, fake_env) -> Path:
    _onnx(tmp_path / "m.onnx")
    assert _build(tmp_path) == 0
    return tmp_path / "m.engine"


def _inputs(batch: int, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    sparse = (rng.random((batch, height, width)) * 10 * (rng.random((batch, height, width)) < 0.1)).astype(np.float32)
    return rgb, sparse


def _expected(rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    return reference(rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, sparse[:, None])[:, 0]


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_engine_backend_runs_and_reuses_buffers(fake_engine: Path, fake_env, cuda_graphs: bool) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    trt, gpu = fake_env()
    completer = DepthCompleter.from_engine(fake_engine, cuda_graphs=cuda_graphs)
    assert completer.backend_name == "tensorrt" and trt.calls["deserialize"] == 1
    allocations = dict(gpu.counts)
    assert allocations["malloc"] == 3 and allocations["host_alloc"] == 3  # one per I/O tensor, at the profile max
    for shape in [(1, 32, 48), (2, 64, 96), (1, 16, 16), (1, 32, 48), (2, 64, 96), (1, 32, 48)]:
        rgb, sparse = _inputs(*shape, seed=sum(shape))
        single = completer.complete(rgb[0], sparse[0])
        np.testing.assert_allclose(single, _expected(rgb[:1], sparse[:1])[0], rtol=1e-6, atol=1e-6)
        batched = completer.complete(rgb, sparse)
        assert batched.shape == shape
        np.testing.assert_allclose(batched, _expected(rgb, sparse), rtol=1e-6, atol=1e-6)
    assert gpu.counts["malloc"] == 3 and gpu.counts["host_alloc"] == 3  # nothing allocated per call
    if cuda_graphs:  # one capture per distinct input shape, replays afterwards
        assert gpu.counts["capture"] == 4  # (1,32,48) (2,64,96) (1,16,16) (2,32,48)
        assert gpu.counts["launch"] == 12 - 4
    else:
        assert gpu.counts["capture"] == 0
    completer.close()
    assert gpu.memory == {}


def test_engine_backend_reports_its_device_memory_and_profile(fake_engine: Path, fake_env) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    backend = DepthCompleter.from_engine(fake_engine).backend
    assert backend.engine_device_memory_bytes == 3 << 20
    assert backend.profile_range["rgb"] == ((1, 3, 16, 16), (2, 3, 64, 96))
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.engine_device_memory_bytes  # noqa: B018


def test_engine_shapes_outside_profile_name_input_and_range(fake_engine: Path, fake_env) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    completer = DepthCompleter.from_engine(fake_engine)
    rgb, sparse = _inputs(1, 128, 96)
    with pytest.raises(ProfileError, match=r"rgb: shape 1x3x128x96 is outside .* \(min 1x3x16x16, max 2x3x64x96"):
        completer.complete(rgb[0], sparse[0])
    rgb, sparse = _inputs(3, 32, 48)
    with pytest.raises(ProfileError, match="batch|rgb: shape 3x3x32x48"):
        completer.complete(rgb, sparse)


def test_engine_for_other_gpu_is_refused_before_deserialising(fake_engine: Path, fake_env) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    trt, _ = fake_env(gpu=FakeGpu("Orin (nvgpu)", (8, 7)))
    with pytest.raises(EngineMismatchError, match="Orin.*jarrn build-engine --onnx .*m.onnx --out .*m.engine"):
        DepthCompleter.from_engine(fake_engine)
    trt, _ = fake_env("10.4.0.26")
    with pytest.raises(EngineMismatchError, match="TensorRT 10.3.0.30, this machine has TensorRT 10.4.0.26"):
        DepthCompleter.from_engine(fake_engine)
    assert trt.calls["deserialize"] == 0


def test_truncated_engine_is_refused_before_deserialising(fake_engine: Path, fake_env) -> None:
    from jarrn_deploy.runtime import DepthCompleter, EngineFileError

    trt, _ = fake_env()
    fake_engine.write_bytes(fake_engine.read_bytes()[:2048])
    with pytest.raises(EngineFileError, match="2048 bytes but its manifest records 4096"):
        DepthCompleter.from_engine(fake_engine)
    assert trt.calls["deserialize"] == 0
    # without the manifest's help, TensorRT's refusal becomes a clear error too
    with pytest.raises(EngineFileError, match="could not deserialise"):
        DepthCompleter.from_engine(_garbage_without_manifest(fake_engine), require_manifest=False)


def _garbage_without_manifest(engine: Path) -> Path:
    target = engine.with_name("garbage.plan")
    target.write_bytes(b"\x00" * 4096)
    return target


def test_missing_tensorrt_gives_install_hint_after_the_engine_checks(fake_engine: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from jarrn_deploy.runtime import BackendUnavailable, DepthCompleter

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match=r"m\.engine: its manifest and file check out, but it cannot run here: "
                                                 "TensorRT is not installed: run this inside NVIDIA's TensorRT container"):
        DepthCompleter.from_engine(fake_engine)


# ---------------------------------------------------------------------------------------------------------------------
# TensorRT-RTX over the fake: CPU-only AOT build with targets, runtime cache, built-in CUDA graphs, GPU preflight

RTX_VERSION = "1.7.1.116"


@pytest.fixture()
def fake_rtx_engine(tmp_path: Path, fake_env) -> Path:
    trt, _ = fake_env(RTX_VERSION, FakeGpu("NVIDIA GeForce RTX 4090", (8, 9)), rtx=True)
    _onnx(tmp_path / "m.onnx")
    assert _build(tmp_path, "--runtime-cache", "jit.cache") == 0  # no --flavour: TensorRT-RTX is the installed one
    return tmp_path / "m.engine"


def test_rtx_build_is_cpu_only_with_portable_targets_and_no_timing_cache(fake_rtx_engine: Path, fake_env) -> None:
    from jarrn_deploy.export.engine.flavours import RTX_PORTABLE_TARGETS

    record = json.loads(fake_rtx_engine.read_bytes()[8:].rstrip(b"\0"))
    assert record["targets"] == [] and record["flags"] == 2  # portable default: no target set; strongly typed
    manifest = EngineManifest.load(manifest_path(fake_rtx_engine))
    assert manifest.flavour == "tensorrt-rtx" and manifest.tensorrt_version == RTX_VERSION
    assert tuple(manifest.compute_capabilities) == RTX_PORTABLE_TARGETS and manifest.gpu_name == ""
    assert manifest.build["cpu_only_aot"] is True and manifest.build["runtime_cache"] == "jit.cache"
    assert "timing_cache" not in manifest.build and not (fake_rtx_engine.parent / "tc").exists()


def test_rtx_build_sets_chosen_compute_capabilities(tmp_path: Path, fake_env) -> None:
    trt, _ = fake_env(RTX_VERSION, rtx=True)
    _onnx(tmp_path / "m.onnx")
    assert _build(tmp_path, "--flavour", "tensorrt-rtx", "--compute-capability", "sm_89,8.6") == 0
    record = json.loads((tmp_path / "m.engine").read_bytes()[8:].rstrip(b"\0"))
    assert record["targets"] == ["SM86", "SM89"] and trt.calls["timing_cache"] == 0
    assert EngineManifest.load(tmp_path / "m.engine.json").compute_capabilities == ["8.6", "8.9"]
    assert _build(tmp_path, "--compute-capability", "8.9,8.6") == 0 and trt.calls["build"] == 1  # same build: reused
    assert _build(tmp_path, "--compute-capability", "8.9") == 0 and trt.calls["build"] == 2  # other targets: rebuilt


def test_unknown_compute_capability_is_one_usage_error_and_writes_nothing(tmp_path: Path, fake_env) -> None:
    from jarrn_deploy.errors import UsageError

    trt, _ = fake_env(RTX_VERSION, rtx=True)
    _onnx(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match=r"--compute-capability: '8\.7' is not a TensorRT-RTX target.*Jetson Orin"):
        _build(tmp_path, "--compute-capability", "8.7")
    assert trt.calls["build"] == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_rtx_engine_runs_with_runtime_cache_and_builtin_cuda_graphs(fake_rtx_engine: Path, fake_env,
                                                                     cuda_graphs: bool) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    trt, gpu = fake_env(RTX_VERSION, FakeGpu("NVIDIA GeForce RTX 4090", (8, 9)), rtx=True)
    completer = DepthCompleter.from_engine(fake_rtx_engine, cuda_graphs=cuda_graphs)
    backend = completer.backend
    assert backend.flavour == "tensorrt-rtx" and trt.calls["deserialize"] == 1
    strategy = backend.context.runtime_config.cuda_graph_strategy
    assert strategy == ("WHOLE_GRAPH_CAPTURE" if cuda_graphs else "DISABLED")
    for shape in [(1, 32, 48), (2, 64, 96), (1, 32, 48)]:
        rgb, sparse = _inputs(*shape, seed=sum(shape))
        np.testing.assert_allclose(completer.complete(rgb, sparse), _expected(rgb, sparse), rtol=1e-6, atol=1e-6)
    assert gpu.counts["capture"] == 0  # TensorRT-RTX captures on its own; no manual stream capture
    cache_file = fake_rtx_engine.parent / "jit.cache"  # from the manifest, relative to the engine's folder
    assert not cache_file.exists()
    completer.close()
    assert cache_file.read_bytes() == b"kernels;"
    again = DepthCompleter.from_engine(fake_rtx_engine)
    assert trt.calls["cache_loaded"] == b"kernels;"
    again.close()
    assert cache_file.read_bytes() == b"kernels;kernels;"
    explicit = fake_rtx_engine.parent / "elsewhere.cache"
    DepthCompleter.from_engine(fake_rtx_engine, runtime_cache=explicit).close()
    assert explicit.read_bytes() == b"kernels;"


@pytest.mark.parametrize(
    ("gpu", "says"),
    [
        (FakeGpu("NVIDIA H200", (9, 0)), r"NVIDIA H200 has compute capability 9\.0.*Hopper.*standard TensorRT.*"
                                          r"--flavour tensorrt "),
        (FakeGpu("NVIDIA H100 80GB HBM3", (9, 0)), r"H100 80GB HBM3 has compute capability 9\.0"),
        (FakeGpu("Orin (nvgpu)", (8, 7)), r"Orin \(nvgpu\) has compute capability 8\.7.*JetPack's TensorRT"),
        (FakeGpu("NVIDIA GeForce RTX 2080 Ti", (7, 5)), r"7\.5.*--flavour tensorrt-rtx .*--compute-capability 7\.5$"),
    ],
)
def test_rtx_engine_is_refused_before_deserialising_on_a_gpu_it_does_not_target(fake_rtx_engine: Path, fake_env,
                                                                                gpu: FakeGpu, says: str) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    trt, _ = fake_env(RTX_VERSION, gpu, rtx=True)
    with pytest.raises(EngineMismatchError, match=says) as err:
        DepthCompleter.from_engine(fake_rtx_engine)
    assert "\n" not in str(err.value) and trt.calls["deserialize"] == 0


def test_rtx_engine_runs_on_every_portable_target_and_newer_blackwell(fake_rtx_engine: Path, fake_env) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    for name, cc in [("NVIDIA A100-SXM4-80GB", (8, 0)), ("NVIDIA GeForce RTX 3090", (8, 6)),
                     ("NVIDIA GeForce RTX 5090", (12, 0)), ("NVIDIA GB10", (12, 1))]:
        fake_env(RTX_VERSION, FakeGpu(name, cc), rtx=True)
        DepthCompleter.from_engine(fake_rtx_engine).close()


def test_engine_of_the_other_flavour_is_refused(fake_rtx_engine: Path, fake_engine_factory) -> None:
    from jarrn_deploy.runtime import DepthCompleter

    with pytest.raises(EngineMismatchError, match=r"TensorRT-RTX engine \(says m\.engine\.json\).*flavour='tensorrt-rtx'"):
        DepthCompleter.from_engine(fake_rtx_engine, flavour="tensorrt")
    trt_engine = fake_engine_factory()
    with pytest.raises(EngineMismatchError, match=r"a TensorRT engine .*cannot be loaded as TensorRT-RTX"):
        DepthCompleter.from_engine(trt_engine, flavour="tensorrt-rtx")


@pytest.fixture()
def fake_engine_factory(tmp_path: Path, fake_env):
    def make() -> Path:
        folder = tmp_path / "trt"
        folder.mkdir()
        _onnx(folder / "m.onnx")
        fake_env()
        assert _build(folder) == 0
        return folder / "m.engine"

    return make


def test_rtx_build_failure_shows_the_builders_own_error_and_writes_nothing(tmp_path: Path, fake_env) -> None:
    from jarrn_deploy.errors import CheckFailedError

    trt, _ = fake_env(RTX_VERSION, rtx=True)
    _onnx(tmp_path / "m.onnx")

    def refuse(self, network, config):
        engine_build._LOGGERS[trt].log(trt.ILogger.Severity.ERROR,
                                       "Error Code 1: Myelin (Resize shape dims should be\nnon-negative)")
        return None

    trt.Builder.build_serialized_network = refuse
    with pytest.raises(CheckFailedError, match=r"TensorRT-RTX 1\.7\.1\.116 could not build an engine: Error Code 1: "
                                               r"Myelin \(Resize shape dims should be non-negative\)$"):
        _build(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_static_graph_gets_its_own_shape_as_profile(tmp_path: Path, fake_env) -> None:
    fake_env(RTX_VERSION, rtx=True)
    onnx_path = _static_onnx(tmp_path / "kitti.onnx")
    assert build_engine.run(build_engine.parse_args(["--onnx", str(onnx_path)])) == 0
    record = json.loads((tmp_path / "kitti.engine").read_bytes()[8:].rstrip(b"\0"))
    assert record["profile"]["rgb"] == [[1, 3, 375, 1242]] * 3 and record["profile"]["sparse_depth"] == [[1, 1, 375, 1242]] * 3
    assert EngineManifest.load(tmp_path / "kitti.engine.json").profile == {"min": [1, 375, 1242], "opt": [1, 375, 1242],
                                                                           "max": [1, 375, 1242]}


@pytest.mark.parametrize(("args", "says"), [
    (["--max", "4x384x1280"], r"--min/--opt/--max: .*kitti\.onnx has a fixed batch of 1 \(input rgb is 1x3x375x1242\), "
                              r"but the profile asks for batch 1\.\.4"),
    (["--min", "1x375x1242", "--opt", "1x375x1242", "--max", "1x384x1280"], r"fixed height of 375"),
])
def test_profile_that_cannot_hold_a_static_graph_is_refused_and_nothing_written(tmp_path: Path, fake_env, args,
                                                                                says: str) -> None:
    from jarrn_deploy.errors import UsageError

    trt, _ = fake_env(RTX_VERSION, rtx=True)
    onnx_path = _static_onnx(tmp_path / "kitti.onnx")
    with pytest.raises(UsageError, match=says):
        build_engine.run(build_engine.parse_args(["--onnx", str(onnx_path), *args]))
    assert trt.calls["build"] == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["kitti.onnx"]


def test_truncated_rtx_engine_is_refused_before_deserialising(fake_rtx_engine: Path, fake_env) -> None:
    from jarrn_deploy.runtime import DepthCompleter, EngineFileError

    trt, _ = fake_env(RTX_VERSION, FakeGpu("NVIDIA GeForce RTX 4090", (8, 9)), rtx=True)
    fake_rtx_engine.write_bytes(fake_rtx_engine.read_bytes()[:3000])
    with pytest.raises(EngineFileError, match=r"3000 bytes but its manifest records 4096 \(truncated or replaced\)\. "
                                              r"Rebuild it with: jarrn build-engine .*--flavour tensorrt-rtx"):
        DepthCompleter.from_engine(fake_rtx_engine)
    assert trt.calls["deserialize"] == 0


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is None, reason="zstandard not installed")
def test_compressed_engine_is_handed_to_tensorrt_decompressed(tmp_path: Path, fake_env) -> None:
    from jarrn_deploy.export.engine.compression import is_zstd
    from jarrn_deploy.runtime import DepthCompleter

    trt, _ = fake_env(RTX_VERSION, FakeGpu("NVIDIA GeForce RTX 4090", (8, 9)), rtx=True)
    _onnx(tmp_path / "m.onnx")
    assert _build(tmp_path, "--compress") == 0
    assert is_zstd((tmp_path / "m.engine").read_bytes())
    completer = DepthCompleter.from_engine(tmp_path / "m.engine")
    rgb, sparse = _inputs(1, 32, 48)
    np.testing.assert_allclose(completer.complete(rgb, sparse), _expected(rgb, sparse), rtol=1e-6, atol=1e-6)
    completer.close()
    assert trt.calls["deserialize"] == 1


# ---------------------------------------------------------------------------------------------------------------------
# the real thing (GPU machines with TensorRT only)


def _tiny_onnx(folder: Path) -> Path:
    import torch

    from jarrn_deploy.export.onnx_graph import ExportOptions, export_onnx
    from jarrn_deploy.model import Jarrn, JarrnConfig

    torch.manual_seed(0)
    net = Jarrn(JarrnConfig((16, 16, 16, 16, 8, 8, 8))).eval()
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith("alpha"):
                param.fill_(0.3)
    return export_onnx(net, folder / "tiny.onnx", ExportOptions())


@pytest.mark.tensorrt
@pytest.mark.skipif(_SKIP_REASON is not None, reason=_SKIP_REASON or "")
def test_real_engine_matches_onnxruntime(tmp_path: Path) -> None:
    import subprocess

    from jarrn_deploy.runtime import DepthCompleter

    onnx_path = _tiny_onnx(tmp_path)
    engine = tmp_path / "tiny.engine"
    cmd = [sys.executable, "export/build_engine.py", "--onnx", str(onnx_path), "--out", str(engine),
           "--min", "1x64x64", "--opt", "1x128x192", "--max", "2x384x1280", "--timing-cache-dir", str(tmp_path)]
    from tests.support import REPO

    repo = REPO
    first = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0 and "up to date" in second.stdout
    reference_ort = DepthCompleter.from_onnx(onnx_path)
    for graphs in (False, True):
        completer = DepthCompleter.from_engine(engine, cuda_graphs=graphs)
        for shape in [(1, 100, 130), (2, 375, 1242), (1, 100, 130)]:
            rgb, sparse = _inputs(*shape)
            got, want = completer.complete(rgb, sparse), reference_ort.complete(rgb, sparse)
            # FP32 engine; TensorRT may use TF32 for convolutions on Ampere and newer
            np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
        with pytest.raises(ProfileError, match="sparse_depth|rgb"):
            completer.complete(*(a[0] for a in _inputs(1, 32, 32)))
        completer.close()
