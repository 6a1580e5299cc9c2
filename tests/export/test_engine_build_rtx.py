"""Every exported graph builds in a real TensorRT builder: TensorRT-RTX's ahead-of-time build, on the CPU.

TensorRT-RTX shares the ONNX parser and the Myelin graph compiler with TensorRT 10/11, so a graph it builds is a graph
``trtexec`` builds. Covered: the bundled default model (``sparse_fill='pushpull'``) and an official-style config
(``sparse_fill='none'``, tiny widths to stay fast) x FP32/FP16/INT8 x the dynamic default graph (profile 1x64x64 ..
4x384x1280, opt 1x320x320) and the static KITTI graph (375x1242, batch 1); the full-size config behind ``slow``. A
failed build fails the test with the builder's own error text. ONNX files are exported once per session and shared.

Set ``JARRN_ENGINE_BUILD_REPORT=path.json`` to get build time and engine size per graph and precision. Exports are
cached between sessions (``~/.cache/jarrn-deploy/test-exports``, keyed by the sources of ``model/`` and ``export/``,
the weights, the options and the library versions; ``JARRN_TEST_EXPORT_CACHE=off`` disables it, ``=DIR`` moves it);
the builds always run.

Also here, runnable everywhere: the push-pull fill's upsampling (a fixed transposed convolution instead of the 2x
bilinear ``Resize`` that Myelin refused) gives the same numbers as before; and, on a GPU (``gpu`` marker), the engine's
depth matches PyTorch within the export's validation bounds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jarrn_deploy.model.metric_jarrn as in_graph
from jarrn_deploy.model import Jarrn, JarrnConfig

OFFICIAL_TINY = JarrnConfig((16, 16, 16, 16, 8, 8, 8))  # official defaults: sparse_fill='none', 'max', softmax_height
KITTI_HW = (375, 1242)
PROFILE_ARGS = ["--min", "1x64x64", "--opt", "1x320x320", "--max", "4x384x1280"]


def _rtx_skip_reason() -> str | None:
    try:
        importlib.import_module("tensorrt_rtx")
    except (ImportError, OSError) as exc:
        return f"tensorrt_rtx not importable ({type(exc).__name__}: {exc}); pip install -e \".[trt-rtx]\""
    return None


RTX_SKIP = _rtx_skip_reason()
needs_rtx = pytest.mark.skipif(RTX_SKIP is not None, reason=RTX_SKIP or "")


# ---------------------------------------------------------------------------------------------------------------------
# the fill's upsampling: same numbers as the bilinear Resize it replaces (no TensorRT needed)


def _resize_upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 3), (2, 2), (3, 5), (6, 4), (33, 20)])
def test_fill_upsampling_equals_bilinear_interpolation(height: int, width: int) -> None:
    x = torch.rand(2, 1, height, width, generator=torch.Generator().manual_seed(height * 100 + width)) * 80.0
    torch.testing.assert_close(in_graph.upsample2x_bilinear(x), _resize_upsample(x), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (75, 130), (384, 1280), (375, 1242)])
def test_pushpull_fill_numbers_unchanged_by_the_rewrite(monkeypatch: pytest.MonkeyPatch, height: int, width: int) -> None:
    generator = torch.Generator().manual_seed(height + width)
    mask = (torch.rand(2, 1, height, width, generator=generator) < 0.05).float()
    sparse = torch.rand(2, 1, height, width, generator=generator) * mask
    new = in_graph.pushpull_fill(sparse, mask)
    monkeypatch.setattr(in_graph, "upsample2x_bilinear", _resize_upsample)
    old = in_graph.pushpull_fill(sparse, mask)
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# shared exports and builds


class Exports:
    """ONNX files exported on first use and shared by every test of the session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[tuple[str, str, str], Path] = {}
        self.export_seconds: dict[str, float] = {}
        self._networks: dict[str, Jarrn] = {}

    def network(self, model_name: str) -> Jarrn:
        if model_name not in self._networks:
            if model_name == "bundled":
                from jarrn_deploy.model.checkpoint import load_model

                self._networks[model_name] = load_model()
            else:
                config = {"official-tiny": OFFICIAL_TINY, "official-full": JarrnConfig.full()}[model_name]
                torch.manual_seed(0)
                self._networks[model_name] = Jarrn(config).eval()
        return self._networks[model_name]

    def _calibration(self, graph: str) -> str:
        """A small calibration file (the graph only has to build; accuracy is the export validation's job)."""
        hw, count = (KITTI_HW, 1) if graph == "kitti" else ((64, 96), 2)
        path = self.folder / f"calibration_{graph}.npz"
        if not path.is_file():
            rng = np.random.default_rng(0)
            rgb = rng.random((count, 3, *hw), dtype=np.float32)
            sparse = (rng.random((count, 1, *hw)) * 40.0 * (rng.random((count, 1, *hw)) < 0.05)).astype(np.float32)
            np.savez(path, rgb=rgb, sparse_depth=sparse)
        return str(path)

    def get(self, model_name: str, precision: str, graph: str, calibration: str = "small") -> Path:
        """The exported graph; ``calibration`` "small" (a few random frames: enough to build) or "builtin" (the
        export's own set, for accuracy checks)."""
        from jarrn_deploy.export.onnx_graph import ExportOptions, export_onnx

        key = (model_name, precision, graph) + (() if calibration == "small" else (calibration,))
        if key not in self.paths:
            options = {"precision": precision}
            if precision != "fp32" and calibration == "small":
                options["calibration"] = self._calibration(graph)
            if graph == "kitti":
                options.update(static_hw=KITTI_HW, static_batch=1)
            path = self.folder / f"{'_'.join(key)}.onnx"
            cached = _cache_file(model_name, options)
            if cached is not None and cached.is_file():
                shutil.copyfile(cached, path)
            else:
                start = time.perf_counter()
                export_onnx(self.network(model_name), path, ExportOptions(**options))
                self.export_seconds["_".join(key)] = round(time.perf_counter() - start, 1)
                _store(path, cached)
            self.paths[key] = path
        return self.paths[key]


# Exports are cached between sessions under a key of everything that shapes them: the sources of model/ and export/,
# the bundled weights, the export options (calibration data by content) and the library versions. Any change there
# exports afresh. JARRN_TEST_EXPORT_CACHE=off disables the cache; =DIR moves it.
_CACHE_KEEP = 32
_CACHE_LIBRARIES = ("torch", "onnx", "onnxslim", "onnxruntime", "nvidia-modelopt", "onnxconverter-common")


def _cache_dir() -> Path | None:
    setting = os.environ.get("JARRN_TEST_EXPORT_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jarrn-deploy" / "test-exports"


def _cache_file(model_name: str, options: dict) -> Path | None:
    from importlib import metadata

    folder = _cache_dir()
    if folder is None:
        return None
    from tests.support import REPO

    repo = REPO
    described = {k: ("<content>" if k == "calibration" else str(v)) for k, v in sorted(options.items())}
    digest = hashlib.sha256(json.dumps([model_name, described]).encode())
    sources = [*repo.glob("model/**/*.py"), *repo.glob("export/**/*.py"), *repo.glob("model/weights/*.safetensors")]
    for source in sorted(sources):
        digest.update(str(source.relative_to(repo)).encode() + hashlib.sha256(source.read_bytes()).digest())
    if "calibration" in options:
        digest.update(Path(options["calibration"]).read_bytes())
    for library in _CACHE_LIBRARIES:
        try:
            digest.update(f"{library}={metadata.version(library)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library}=none".encode())
    return folder / f"{model_name}_{digest.hexdigest()[:24]}.onnx"


def _store(path: Path, cached: Path | None) -> None:
    """Copy a fresh export into the cache (atomically); a cache that cannot be written is skipped."""
    if cached is None:
        return
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, staging)
        os.replace(staging, cached)
        entries = sorted(cached.parent.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[_CACHE_KEEP:]:  # every source change makes new keys: keep the newest few only
            stale.unlink(missing_ok=True)
    except OSError:
        pass


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("rtx_exports"))


@pytest.fixture(scope="session")
def build_report(exports: Exports):
    """Collects build time and engine size per build; written to $JARRN_ENGINE_BUILD_REPORT at the end."""
    rows: list[dict] = []
    yield rows
    target = os.environ.get("JARRN_ENGINE_BUILD_REPORT")
    if target and rows:
        Path(target).write_text(json.dumps({"builds": rows, "export_seconds": exports.export_seconds}, indent=2) + "\n")


def _build(onnx_path: Path, *extra: str) -> tuple[Path, dict]:
    """build_engine.py --flavour tensorrt-rtx in-process; the builder's own error fails the test."""
    import jarrn_deploy.export.build_engine as build_engine
    from jarrn_deploy.errors import JarrnError

    engine = onnx_path.with_suffix(".engine")
    args = ["--onnx", str(onnx_path), "--out", str(engine), "--flavour", "tensorrt-rtx", *extra]
    try:
        assert build_engine.run(build_engine.parse_args(args)) == 0
    except JarrnError as exc:
        pytest.fail(f"TensorRT-RTX build of {onnx_path.name} failed: {exc}", pytrace=False)
    return engine, json.loads((engine.parent / (engine.name + ".json")).read_text())


def _check_built(engine: Path, manifest: dict, precision: str, profile: dict) -> None:
    import tensorrt_rtx

    assert engine.stat().st_size == manifest["engine_bytes"] > 1_000_000
    assert manifest["flavour"] == "tensorrt-rtx" and manifest["tensorrt_version"] == tensorrt_rtx.__version__
    assert manifest["compute_capabilities"] == ["8.0", "8.6", "8.9", "12.0", "12.1"]
    assert manifest["precision"] == precision and manifest["profile"] == profile


GRAPHS = {
    "dynamic": (PROFILE_ARGS, {"min": [1, 64, 64], "opt": [1, 320, 320], "max": [4, 384, 1280]}),
    "kitti": ([], {"min": [1, *KITTI_HW], "opt": [1, *KITTI_HW], "max": [1, *KITTI_HW]}),
}


# The default suite builds the bundled model's FP32 dynamic graph (the push-pull fill through Myelin) and every
# precision of the official-style model's static KITTI graph; the rest of the grid (the bundled model's FP16/INT8
# exports take minutes in Model Optimizer on two cores) is behind ``slow``.
DEFAULT_BUILDS = {("bundled", "fp32", "dynamic"), ("official-tiny", "fp32", "kitti"), ("official-tiny", "fp16", "kitti"),
                  ("official-tiny", "int8", "kitti")}
ENGINE_GRID = [
    pytest.param(model_name, precision, graph, id=f"{model_name}-{precision}-{graph}",
                 marks=() if (model_name, precision, graph) in DEFAULT_BUILDS else (pytest.mark.slow,))
    for model_name in ("bundled", "official-tiny") for precision in ("fp32", "fp16", "int8")
    for graph in ("dynamic", "kitti")
]


@needs_rtx
@pytest.mark.parametrize(("model_name", "precision", "graph"), ENGINE_GRID)
def test_export_builds_in_tensorrt_rtx(exports: Exports, build_report: list, model_name: str, precision: str,
                                       graph: str) -> None:
    onnx_path = exports.get(model_name, precision, graph)
    if model_name == "bundled":  # the push-pull fill: no bilinear Resize left for Myelin to refuse
        import onnx

        resizes = [n for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.op_type == "Resize"
                   and any(a.name == "mode" and a.s == b"linear" for a in n.attribute)]
        assert resizes == []
    extra, profile = GRAPHS[graph]
    engine, manifest = _build(onnx_path, *extra)
    _check_built(engine, manifest, precision, profile)
    build_report.append({"model": model_name, "precision": precision, "graph": graph,
                         "build_seconds": manifest["build"]["build_seconds"], "engine_mib": round(engine.stat().st_size / 2**20, 1)})


@needs_rtx
def test_the_old_resize_fill_is_what_myelin_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pins the original failure and that its text reaches the user: the Resize-based fill does not build."""
    import jarrn_deploy.export.build_engine as build_engine
    from jarrn_deploy.export.onnx_graph import export_onnx
    from jarrn_deploy.errors import CheckFailedError

    monkeypatch.setattr(in_graph, "upsample2x_bilinear", _resize_upsample)
    torch.manual_seed(0)
    network = Jarrn(JarrnConfig(OFFICIAL_TINY.widths, depth_normalisation="minmax", sparse_fill="pushpull")).eval()
    onnx_path = export_onnx(network, tmp_path / "old_fill.onnx")
    with pytest.raises(CheckFailedError, match=r"TensorRT-RTX .* could not build an engine: .*Myelin.*Resize") as err:
        build_engine.run(build_engine.parse_args(["--onnx", str(onnx_path), "--flavour", "tensorrt-rtx", *PROFILE_ARGS]))
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old_fill.onnx"]  # nothing half-written


@needs_rtx
def test_static_graph_with_a_profile_it_cannot_hold_is_refused(exports: Exports, tmp_path: Path) -> None:
    import jarrn_deploy.export.build_engine as build_engine
    from jarrn_deploy.errors import UsageError

    onnx_path = exports.get("official-tiny", "fp32", "kitti")
    engine = tmp_path / "kitti.engine"
    with pytest.raises(UsageError, match=r"fixed batch of 1 \(input rgb is 1x3x375x1242\), but the profile asks for "
                                         r"batch 1\.\.4"):
        build_engine.run(build_engine.parse_args(["--onnx", str(onnx_path), "--out", str(engine), *PROFILE_ARGS]))
    assert not engine.exists() and not (tmp_path / "kitti.engine.json").exists()


@needs_rtx
def test_rebuild_is_skipped_and_targets_change_the_build(exports: Exports, capsys: pytest.CaptureFixture) -> None:
    onnx_path = exports.get("official-tiny", "fp32", "dynamic")
    engine, first = _build(onnx_path, *PROFILE_ARGS)
    capsys.readouterr()
    _, again = _build(onnx_path, *PROFILE_ARGS)
    assert "up to date" in capsys.readouterr().out and again["engine_sha256"] == first["engine_sha256"]
    _, turing = _build(onnx_path, *PROFILE_ARGS, "--compute-capability", "7.5")
    assert turing["compute_capabilities"] == ["7.5"] and turing["cache_key"] != first["cache_key"]


@needs_rtx
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_full_size_official_config_builds(exports: Exports, build_report: list, precision: str) -> None:
    onnx_path = exports.get("official-full", precision, "dynamic")
    engine, manifest = _build(onnx_path, *PROFILE_ARGS)
    _check_built(engine, manifest, precision, GRAPHS["dynamic"][1])
    build_report.append({"model": "official-full", "precision": precision, "graph": "dynamic",
                         "build_seconds": manifest["build"]["build_seconds"], "engine_mib": round(engine.stat().st_size / 2**20, 1)})


# ---------------------------------------------------------------------------------------------------------------------
# on a GPU: the engine's depth matches PyTorch within the export's validation bounds


def _gpu_flavour() -> tuple[str | None, str]:
    """The flavour to test on this machine's GPU, or None and why not."""
    from jarrn_deploy.export.engine.flavours import is_installed, rtx_runs_on
    from jarrn_deploy.export.engine.flavours import RTX_PORTABLE_TARGETS
    from jarrn_deploy.export.gpu_probe import probe_gpu

    found = probe_gpu(0)
    if found is None:
        return None, "no CUDA GPU"
    if importlib.util.find_spec("cuda") is None:
        return None, "cuda-python not installed (pip install cuda-python)"
    if is_installed("tensorrt-rtx") and rtx_runs_on(RTX_PORTABLE_TARGETS, found[1]):
        return "tensorrt-rtx", ""
    if is_installed("tensorrt"):
        return "tensorrt", ""
    return None, f"{found[0]} (sm {found[1]}) needs standard TensorRT, which is not installed"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_depth_matches_pytorch_within_validation_bounds(exports: Exports, precision: str) -> None:
    import jarrn_deploy.export.build_engine as build_engine
    from jarrn_deploy.export.validate import Bounds, real_cases
    from jarrn_deploy.model import MetricJarrn
    from jarrn_deploy.runtime import DepthCompleter

    flavour, why = _gpu_flavour()
    if flavour is None:
        pytest.skip(why)
    onnx_path = exports.get("bundled", precision, "dynamic", calibration="builtin")
    engine = onnx_path.with_name(f"{onnx_path.stem}_{flavour}.engine")
    assert build_engine.run(build_engine.parse_args(["--onnx", str(onnx_path), "--out", str(engine), "--flavour",
                                                     flavour, "--min", "1x64x64", "--opt", "1x320x320",
                                                     "--max", "1x1080x1440"])) == 0
    reference = MetricJarrn(exports.network("bundled")).eval()
    bounds = Bounds()
    completer = DepthCompleter.from_engine(engine)
    try:
        for case in real_cases():
            got = completer.backend.run(case.rgb, case.sparse)[0, 0]
            with torch.no_grad():
                want = reference(torch.from_numpy(case.rgb), torch.from_numpy(case.sparse)).numpy()[0, 0]
            if precision in bounds.max_abs_m:
                assert float(np.abs(got - want).max()) <= bounds.max_abs_m[precision], case.name
            else:
                valid = case.gt > 0
                rmse = lambda pred: float(np.sqrt(np.mean((pred[valid] - case.gt[valid]) ** 2)))  # noqa: E731
                allowed = bounds.rmse_rel[precision]
                assert rmse(got) <= rmse(want) * (1.0 + allowed), (case.name, rmse(got), rmse(want))
    finally:
        completer.close()
