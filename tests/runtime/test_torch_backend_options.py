"""The PyTorch backend's options (FP16 autocast, channels-last, torch.compile with CUDA graphs): accepted and refused on
the CPU, and on a GPU (``-m gpu``) as accurate as the FP32 reference within the export's FP16 bound."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from jarrn_deploy.errors import UsageError
from jarrn_deploy.runtime import DepthCompleter
from jarrn_deploy.runtime.backends.torch_backend import TorchBackend, TorchBackendOptions
from tests.support import TINY_WIDTHS


def test_defaults_are_the_fp32_eager_reference() -> None:
    options = TorchBackendOptions()
    assert (options.precision, options.compile, options.channels_last) == ("fp32", False, False)
    assert options.label == "fp32"
    assert TorchBackendOptions.gpu_fast() == TorchBackendOptions("fp16", compile=True, channels_last=True)
    assert TorchBackendOptions.gpu_fast().label == "fp16 + channels-last + compile"


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TorchBackendOptions().precision = "fp16"  # type: ignore[misc]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"precision": "bf16"}, "TorchBackendOptions.precision: expected one of fp32, fp16, got 'bf16'"),
    ({"precision": "int8"}, "TorchBackendOptions.precision: expected one of fp32, fp16, got 'int8'"),
    ({"compile": "yes"}, "TorchBackendOptions.compile: expected True or False, got 'yes'"),
    ({"channels_last": 1}, "TorchBackendOptions.channels_last: expected True or False, got 1"),
])
def test_bad_option_values_are_refused_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError) as info:
        TorchBackendOptions(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(("options", "message"), [
    (TorchBackendOptions(precision="fp16"), "precision 'fp16' needs a CUDA device .*use precision='fp32' on the CPU"),
    (TorchBackendOptions(compile=True), "compile needs a CUDA device .*reduce-overhead.*use compile=False on the CPU"),
])
def test_gpu_only_options_are_refused_on_the_cpu_before_loading(options: TorchBackendOptions, message: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import jarrn_deploy.model.checkpoint

    def no_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("weights were read before the options were checked")

    monkeypatch.setattr(jarrn_deploy.model.checkpoint, "load_model", no_load)
    with pytest.raises(UsageError, match=message):
        DepthCompleter.from_checkpoint(device="cpu", options=options)


def test_options_of_the_wrong_type_are_refused() -> None:
    from jarrn_deploy.model.network import Jarrn, JarrnConfig

    with pytest.raises(UsageError, match="options: expected a TorchBackendOptions, got dict"):
        TorchBackend(Jarrn(JarrnConfig(TINY_WIDTHS)), "cpu", {"precision": "fp16"})  # type: ignore[arg-type]


def test_module_and_device_are_read_only_and_the_module_goes_with_close() -> None:
    from jarrn_deploy.model import Jarrn, JarrnConfig, MetricJarrn

    backend = TorchBackend(Jarrn(JarrnConfig(TINY_WIDTHS)), "cpu")
    assert isinstance(backend.module, MetricJarrn) and backend.device == torch.device("cpu")
    with pytest.raises(AttributeError):
        backend.module = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        backend.device = torch.device("cpu")  # type: ignore[misc]
    backend.close()
    assert backend.module is None


def test_channels_last_on_the_cpu_gives_the_reference_depth() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (96, 130, 3), dtype=np.uint8)
    sparse = np.where(rng.random((96, 130)) < 0.05, rng.uniform(1, 10, (96, 130)), 0).astype(np.float32)
    reference = DepthCompleter.from_checkpoint(device="cpu").complete(rgb, sparse)
    fast = DepthCompleter.from_checkpoint(device="cpu", options=TorchBackendOptions(channels_last=True))
    assert fast.backend.options.channels_last
    np.testing.assert_allclose(fast.complete(rgb, sparse), reference, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# on a GPU

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_OPTIONS = [
    TorchBackendOptions(precision="fp16"),
    TorchBackendOptions(precision="fp16", channels_last=True),
    TorchBackendOptions.gpu_fast(),
]
# Compiling costs tens of seconds per input shape, and the device check gives its gpu tests about a minute: the
# compiled path is checked on the KITTI frames (375x1242, one compilation, also what the benchmark compiles first), the
# eager paths on every real frame.
COMPILED_CASES = ("kitti_02", "kitti_03")


@pytest.fixture(scope="module")
def gpu_reference():  # noqa: ANN201
    from jarrn_deploy.model.metrics import depth_metrics
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    cases = evaluation_cases(load_real_frames())
    completer = DepthCompleter.from_checkpoint(device="cuda")
    reference = {c.name: completer.complete(c.rgb, c.sparse) for c in cases}
    rmse = {c.name: depth_metrics(reference[c.name], c.gt).rmse for c in cases}
    return cases, reference, rmse


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("options", GPU_OPTIONS, ids=lambda o: o.label)
def test_fast_gpu_paths_stay_within_the_export_fp16_bound(options: TorchBackendOptions, gpu_reference) -> None:  # noqa: ANN001
    from jarrn_deploy.export.validate import Bounds
    from jarrn_deploy.model.metrics import depth_metrics

    bound = Bounds().rmse_rel["fp16"]  # the bound every exported FP16 graph must meet
    cases, reference, reference_rmse = gpu_reference
    completer = DepthCompleter.from_checkpoint(device="cuda", options=options)
    failures = []
    for case in cases:
        if options.compile and case.name not in COMPILED_CASES:
            continue
        depth = completer.complete(case.rgb, case.sparse)
        assert depth.shape == case.gt.shape and depth.dtype == np.float32 and np.isfinite(depth).all()
        rmse = depth_metrics(depth, case.gt).rmse
        if rmse > reference_rmse[case.name] * (1 + bound):
            failures.append(f"{case.name}: RMSE {rmse:.4f} m vs FP32 {reference_rmse[case.name]:.4f} m")
        assert np.abs(depth - reference[case.name]).mean() < 0.05  # metres: the same map, not just a similar RMSE
    assert not failures, f"{options.label} exceeds +{bound * 100:g}% RMSE: " + "; ".join(failures)


@pytest.mark.gpu
@needs_cuda
def test_compiled_backend_replays_without_overwriting_earlier_results(gpu_reference) -> None:  # noqa: ANN001
    cases = {c.name: c for c in gpu_reference[0]}
    first_case, other_case = (cases[name] for name in COMPILED_CASES)  # same size: replays of one CUDA graph
    completer = DepthCompleter.from_checkpoint(device="cuda", options=TorchBackendOptions.gpu_fast())
    first = completer.complete(first_case.rgb, first_case.sparse)
    second = completer.complete(other_case.rgb, other_case.sparse)
    third = completer.complete(first_case.rgb, first_case.sparse)
    np.testing.assert_array_equal(first, third)
    assert not np.array_equal(first, second)
