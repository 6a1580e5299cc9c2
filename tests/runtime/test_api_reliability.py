"""The API rows of issue 14: clear errors of the documented types, with messages that are true, and the memory guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jarrn_deploy.errors import EXIT_UNAVAILABLE, UnavailableError, UsageError
from jarrn_deploy.model import Jarrn, JarrnConfig, save_model
from jarrn_deploy.model.contract import prepare_inputs
from jarrn_deploy.runtime import DepthCompleter
from jarrn_deploy.runtime.memory_guard import ENV_SWITCH, MemoryGuard, MemoryGuardError
from tests.reliability_support import contract_graph

from tests.support import TINY_WIDTHS  # noqa: E402

from jarrn_deploy.runtime.backends.registry import BACKENDS  # noqa: E402

TINY = JarrnConfig(TINY_WIDTHS)
ORT_BPPC = BACKENDS["onnxruntime"].bytes_per_pixel_channel


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(Jarrn(TINY), tmp_path_factory.mktemp("api") / "tiny.safetensors")


@pytest.fixture(scope="module")
def completers(checkpoint, tmp_path_factory):
    graph = contract_graph(tmp_path_factory.mktemp("graph"))
    return {"torch": DepthCompleter.from_checkpoint(checkpoint), "ort": DepthCompleter.from_onnx(graph)}


RGB = np.zeros((8, 8, 3), np.uint8)
SPARSE = np.zeros((8, 8), np.float32)


@pytest.mark.parametrize("backend", ["torch", "ort"])
@pytest.mark.parametrize("rgb,sparse,error,needle", [
    (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32), ValueError, r"rgb: empty array of shape \(0, 0, 3\)"),
    (RGB, np.zeros((8, 0), np.float32), ValueError, "sparse_depth: empty array"),
    (np.full((8, 8, 3), 1.0001, np.float32), SPARSE, ValueError, r"values in \[1.0001, 1.0001\]"),
    (RGB, np.full((8, 8), 1e300), ValueError, "values up to 1e\\+300 look like raw sensor units"),
    (np.zeros((3, 8, 8), np.uint8), SPARSE, ValueError, r"got shape \(3, 8, 8\)"),
    (np.zeros((1, 3, 8, 8), np.uint8), SPARSE[None], ValueError, r"got shape \(1, 3, 8, 8\) \(channels first"),
    (RGB, np.ma.masked_equal(SPARSE, 0), TypeError, r"sparse_depth: expected a plain numpy array, got a masked"),
    (np.ma.masked_array(RGB), SPARSE, TypeError, "rgb: expected a plain numpy array"),
    (RGB, np.asmatrix(SPARSE), TypeError, "sparse_depth: expected a plain numpy array, got np.matrix"),
    (RGB, np.full((8, 8), np.nan), ValueError, "sparse_depth: contains NaN or inf"),
])
def test_bad_arrays_raise_the_documented_type_naming_the_argument(completers, backend, rgb, sparse, error, needle):
    with pytest.raises(error, match=needle):
        completers[backend].complete(rgb, sparse)


def test_validation_happens_before_any_backend_in_one_place():
    with pytest.raises(ValueError, match="rgb: empty"):
        prepare_inputs(np.zeros((0, 5, 3), np.uint8), np.zeros((0, 5), np.float32))


def test_cuda_device_without_cuda_is_an_unavailable_error(checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UnavailableError, match="device cuda") as info:
        DepthCompleter.from_checkpoint(checkpoint, device="cuda")
    assert info.value.exit_code == EXIT_UNAVAILABLE
    with pytest.raises(UsageError, match="device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        DepthCompleter.from_checkpoint(checkpoint, device="gpu")


def test_complete_after_close_is_a_usage_error(checkpoint, tmp_path):
    for completer in (DepthCompleter.from_checkpoint(checkpoint), DepthCompleter.from_onnx(contract_graph(tmp_path))):
        completer.close()
        completer.close()  # twice is harmless
        with pytest.raises(UsageError, match=r"complete\(\) after close\(\)"):
            completer.complete(RGB, SPARSE)


@pytest.mark.parametrize("kwargs,needle", [
    ({"providers": None}, "providers: expected a name"),
    ({"providers": [3]}, "providers: expected provider names as strings"),
    ({"providers": [("cpu",)]}, r"providers: expected \(name, options dict\) pairs"),
    ({"intra_op_threads": "two"}, "intra_op_threads: expected a non-negative integer"),
    ({"intra_op_threads": -1}, "intra_op_threads: expected a non-negative integer"),
    ({"intra_op_threads": True}, "intra_op_threads: expected a non-negative integer"),
])
def test_bad_onnxruntime_options_are_usage_errors(tmp_path, kwargs, needle):
    with pytest.raises(UsageError, match=needle):
        DepthCompleter.from_onnx(contract_graph(tmp_path), **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# memory guard


def test_memory_guard_refuses_with_size_estimate_and_override(completers):
    guard = MemoryGuard("onnxruntime", TINY.widths, limit_bytes=2**30, bytes_per_pixel_channel=ORT_BPPC)
    with pytest.raises(MemoryGuardError) as info:
        guard.check((1, 3, 8000, 8000))
    message = str(info.value)
    assert "input 8000x8000 (batch 1)" in message and "GiB" in message and f"{ENV_SWITCH}=off" in message
    assert isinstance(info.value, MemoryError) and info.value.exit_code == EXIT_UNAVAILABLE
    guard.check((1, 3, 256, 256))  # small sizes pass


def test_memory_guard_estimate_grows_with_pixels_batch_and_widths():
    small, full = MemoryGuard.for_torch(TINY.widths, None), MemoryGuard.for_torch(None, None)
    assert small.estimate((1, 3, 1000, 1000)) * 3.9 < small.estimate((1, 3, 2000, 2000))
    assert small.estimate((2, 3, 500, 500)) == 2 * small.estimate((1, 3, 500, 500))
    assert full.estimate((1, 3, 500, 500)) > 4 * small.estimate((1, 3, 500, 500))


def test_completer_refuses_a_size_that_cannot_fit_before_running(completers, monkeypatch):
    completer = completers["ort"]
    monkeypatch.setattr(completer.memory_guard, "free_bytes", lambda: 64 * 2**20)
    big = np.zeros((2048, 2048, 3), np.uint8), np.ones((2048, 2048), np.float32)
    with pytest.raises(MemoryGuardError, match="input 2048x2048"):
        completer.complete(*big)
    monkeypatch.setenv(ENV_SWITCH, "off")
    assert completer.complete(*big).shape == (2048, 2048)


def test_export_refuses_static_sizes_that_cannot_be_built(monkeypatch):
    import argparse

    from jarrn_deploy.export.onnx_graph import ExportMemoryError, ExportOptions, check_static_size_fits
    from jarrn_deploy.export.to_onnx import parse_static

    with pytest.raises(argparse.ArgumentTypeError, match="too large"):
        parse_static("100000x100000")
    import jarrn_deploy.memory

    monkeypatch.setattr(jarrn_deploy.memory, "available_host_bytes", lambda: 2**30)
    with pytest.raises(ExportMemoryError, match=r"exporting at 8000x8000 .* needs about .* GiB"):
        check_static_size_fits(ExportOptions(static_hw=(8000, 8000)), TINY.widths)
    check_static_size_fits(ExportOptions(static_hw=(64, 64)), TINY.widths)


def test_memory_guard_does_not_refuse_a_size_that_already_ran(monkeypatch):
    guard = MemoryGuard("onnxruntime", TINY.widths, free_bytes=lambda: 10 * 2**30, bytes_per_pixel_channel=ORT_BPPC)
    guard.check((1, 3, 4000, 4000))
    guard.ran((1, 3, 4000, 4000))
    guard.free_bytes = lambda: 2**20  # the arena now holds that memory
    guard.check((1, 3, 4000, 4000))
    with pytest.raises(MemoryGuardError):
        guard.check((1, 3, 8000, 8000))


def test_memory_guard_refuses_before_converting_the_arrays(completers, monkeypatch):
    import jarrn_deploy.runtime.completer

    completer = completers["torch"]
    monkeypatch.setattr(completer.memory_guard, "free_bytes", lambda: 2**20)
    monkeypatch.setattr(jarrn_deploy.runtime.completer, "prepare_inputs", lambda *a: pytest.fail("converted before the guard"))
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (6000, 6000, 3))  # no memory for the test itself
    with pytest.raises(MemoryGuardError, match="input 6000x6000"):
        completer.complete(huge, np.broadcast_to(np.float32(0), (6000, 6000)))
