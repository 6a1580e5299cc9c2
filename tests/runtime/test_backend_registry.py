"""The backend registry is the one list of backends: the command lines offer its names, files map to backends by its
suffixes, unknown names are refused (never run on PyTorch), and each record is consistent."""

from __future__ import annotations

import argparse
import dataclasses
from types import SimpleNamespace

import pytest

from jarrn_deploy.errors import InputError, UsageError
from jarrn_deploy.runtime.backends.registry import (BACKEND_NAMES, BACKENDS, MODEL_KINDS, backend_for_file,
                                                    backend_spec, backends_for_file)


def _choices(parser: argparse.ArgumentParser, flag: str) -> tuple[str, ...]:
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    return tuple(action.choices)


def test_infer_serve_and_bag_offer_exactly_the_registry_names() -> None:
    from jarrn_deploy.runtime.bag.cli import build_parser as bag_parser
    from jarrn_deploy.runtime.infer import build_parser as infer_parser
    from jarrn_deploy.runtime.serve import build_parser as serve_parser

    assert BACKEND_NAMES == tuple(BACKENDS) and "openvino" in BACKEND_NAMES
    for parser in (infer_parser(), serve_parser(), bag_parser()):
        assert _choices(parser, "--backend") == BACKEND_NAMES, parser.prog


def test_an_unknown_backend_name_is_a_usage_error_naming_the_flag_and_the_choices() -> None:
    with pytest.raises(UsageError, match=r"--backend: unknown backend 'tensorflow'; expected one of torch, "):
        backend_spec("tensorflow")
    with pytest.raises(UsageError, match="--engine-backend: unknown backend"):
        backend_spec("tensorflow", flag="--engine-backend")


def test_an_unknown_backend_name_no_longer_falls_through_to_pytorch() -> None:
    from jarrn_deploy.runtime import DepthCompleter
    from jarrn_deploy.runtime.infer import build_completer, choose_backend

    with pytest.raises(UsageError, match="unknown backend 'tflite'"):
        build_completer("tflite", None)
    with pytest.raises(UsageError, match="unknown backend 'tflite'"):
        choose_backend("model.onnx", "tflite")
    with pytest.raises(UsageError, match="name: unknown backend 'tflite'"):
        DepthCompleter.from_backend("tflite")


def test_model_files_map_to_backends_by_suffix_in_order_of_preference() -> None:
    assert backend_for_file("a/jarrn.onnx").name == "onnxruntime"
    assert [spec.name for spec in backends_for_file("jarrn.ONNX")] == ["onnxruntime", "openvino"]
    assert backend_for_file("jarrn_fp16.engine").name == backend_for_file("x.plan").name == "tensorrt"
    assert backend_for_file("weights.safetensors").name == "torch"
    with pytest.raises(InputError, match=r"--model: no backend runs 'notes.txt'; expected a file ending in .*\.onnx"):
        backend_for_file("notes.txt")


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_record_is_consistent(name: str) -> None:
    from jarrn_deploy.runtime.infer import build_parser

    spec = BACKENDS[name]
    assert spec.name == name and spec.label and spec.model_kind in MODEL_KINDS
    assert spec.suffixes and all(s.startswith(".") and s == s.lower() for s in spec.suffixes)
    assert callable(spec.open) and callable(spec.missing)
    reason = spec.missing()
    assert reason is None or (isinstance(reason, str) and "install" in reason)
    assert spec.bytes_per_pixel_channel is None or spec.bytes_per_pixel_channel > 0
    assert (spec.bundled_model is None) == (spec.model_kind == "checkpoint")  # a file-based backend gets the export
    if spec.options_type is not None:
        assert dataclasses.is_dataclass(spec.options_type) and spec.options_type.__dataclass_params__.frozen
        spec.options_type()  # the defaults are valid
        from jarrn_deploy.runtime.backends.options import CliValues

        assert isinstance(spec.options_type.from_cli(CliValues(threads=2)), spec.options_type)  # flags map here
    flags = {flag for action in build_parser()._actions for flag in action.option_strings}
    assert set(spec.cli_options) <= flags and (spec.device_flag is None or spec.device_flag in flags)


def test_from_backend_refuses_options_of_another_backend(tmp_path) -> None:
    from jarrn_deploy.runtime import DepthCompleter
    from jarrn_deploy.runtime.backends.options import OpenVinoOptions

    with pytest.raises(UsageError, match="options: expected a OnnxRuntimeOptions for the onnxruntime backend, got "
                                         "OpenVinoOptions"):
        DepthCompleter.from_backend("onnxruntime", tmp_path / "g.onnx", OpenVinoOptions())


def test_the_memory_guard_takes_each_backends_coefficient_from_its_record() -> None:
    from jarrn_deploy.runtime.memory_guard import guard_for_backend

    widths = (8,) * 7
    for name, spec in BACKENDS.items():
        guard = guard_for_backend(SimpleNamespace(name=name, widths=widths))
        if spec.bytes_per_pixel_channel is None:
            assert guard is None, name
        else:
            assert guard.bytes_per_pixel_channel == spec.bytes_per_pixel_channel and guard.widths == widths
    assert guard_for_backend(SimpleNamespace(name="tflite")) is None
    assert guard_for_backend(SimpleNamespace(name="onnxruntime", widths=widths, on_host=False)) is None  # a GPU EP
    openvino = guard_for_backend(SimpleNamespace(name="openvino", widths=widths)).estimate((1, 3, 640, 640))
    onnxruntime = guard_for_backend(SimpleNamespace(name="onnxruntime", widths=widths)).estimate((1, 3, 640, 640))
    assert openvino > onnxruntime  # measured: OpenVINO's peak is larger per pixel


def test_backend_only_options_warn_when_another_backend_runs(capsys: pytest.CaptureFixture) -> None:
    from jarrn_deploy.runtime.infer import choose_backend, parse_args, warn_ignored_options

    with pytest.raises(UsageError, match="--backend openvino needs --model to be an ONNX file"):
        choose_backend("weights.safetensors", "openvino")
    args = parse_args(["--rgb", "a.png", "--sparse", "b.png", "--out", "o", "--backend", "openvino",
                       "--device", "cuda", "--providers", "cpu", "--cuda-graphs"])
    warn_ignored_options(args, "openvino")
    err = capsys.readouterr().err
    assert "--device has no effect: only PyTorch takes a device (openvino runs the model)" in err
    assert "--providers has no effect: only ONNX Runtime takes execution providers, and openvino runs" in err
    assert "--cuda-graphs has no effect: only TensorRT replays CUDA graphs, and openvino runs" in err
