"""``jarrn serve``: a real Triton server on loopback, its answers, its 400s for bad requests, and its settings."""

from __future__ import annotations

import json
import os
import urllib.request

import numpy as np
import pytest

pytest.importorskip("pytriton", reason='needs the serve extra: pip install -e ".[serve]"')
tritonclient_http = pytest.importorskip("tritonclient.http")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from model.contract import CONTRACT  # noqa: E402
from runtime.serve import (  # noqa: E402
    RunningServer,
    ServeOptions,
    interpreter_library_dir,
    main,
    python_model_config_text,
    server_environment,
)
from runtime.serving_model import DEFAULT_MAX_PIXELS, CompleterSettings, RequestError, check_request  # noqa: E402

MAX_PIXELS = 128 * 128  # small, so the size limit is exercised without sending a 20000x20000 frame over the wire


def _frame(height: int = 64, width: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Graph-layout inputs: rgb [1,3,H,W] in 0..1, sparse_depth [1,1,H,W] metres with ~5% points."""
    rng = np.random.default_rng(seed)
    rgb = rng.random((1, 3, height, width), dtype=np.float32)
    sparse = np.where(rng.random((1, 1, height, width)) < 0.05, rng.uniform(1, 20, (1, 1, height, width)), 0)
    return rgb, sparse.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# without a server


def test_check_request_returns_the_user_layout_of_a_valid_request() -> None:
    rgb, sparse = _frame()
    rgb_user, sparse_user = check_request(rgb, sparse, MAX_PIXELS)
    assert rgb_user.shape == (1, 64, 96, 3) and sparse_user.shape == (1, 64, 96)
    np.testing.assert_array_equal(rgb_user[0, 5, 7], rgb[0, :, 5, 7])


@pytest.mark.parametrize(
    ("case", "name", "expected"),
    [
        ("nan_depth", CONTRACT.sparse_name, "NaN"),
        ("negative_depth", CONTRACT.sparse_name, "negative"),
        ("zero_height", CONTRACT.rgb_name, "at least 1"),
        ("rgb_above_one", CONTRACT.rgb_name, "[0,1]"),
        ("sizes_differ", CONTRACT.rgb_name, "shapes differ"),
        ("huge", CONTRACT.rgb_name, "limit"),
        ("float64", CONTRACT.rgb_name, "FP32"),
    ],
)
def test_check_request_refuses_bad_requests_naming_the_input(case: str, name: str, expected: str) -> None:
    rgb, sparse = _frame()
    if case == "nan_depth":
        sparse[0, 0, 3, 3] = np.nan
    elif case == "negative_depth":
        sparse[0, 0, 3, 3] = -2.0
    elif case == "zero_height":
        rgb, sparse = rgb[:, :, :0], sparse[:, :, :0]
    elif case == "rgb_above_one":
        rgb = rgb * 255.0
    elif case == "sizes_differ":
        sparse = sparse[:, :, :32]
    elif case == "huge":  # 20000x20000 as broadcast views: refused from the shape alone, no 6 GB allocated
        rgb = np.broadcast_to(np.float32(0.5), (1, 3, 20000, 20000))
        sparse = np.broadcast_to(np.float32(0.0), (1, 1, 20000, 20000))
    elif case == "float64":
        rgb = rgb.astype(np.float64)
    with pytest.raises(RequestError) as error:
        check_request(rgb, sparse, DEFAULT_MAX_PIXELS if case == "huge" else MAX_PIXELS)
    assert str(error.value).startswith(name) and expected in str(error.value)


class _FakeBackendUtils:
    """The few ``triton_python_backend_utils`` names the model uses, to run ``execute`` without Triton."""

    class TritonError:
        INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

        def __init__(self, message: str, code: str) -> None:
            self.message, self.code = message, code

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, array

        def as_numpy(self) -> np.ndarray:
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None) -> None:  # noqa: ANN001
            self.output_tensors, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request: dict, name: str):  # noqa: ANN205
        return _FakeBackendUtils.Tensor(name, request[name])


def test_execute_groups_a_mixed_batch_by_size_and_fails_only_the_bad_request(monkeypatch) -> None:
    import sys

    from runtime.serving_model import TritonPythonModel

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _FakeBackendUtils)
    calls = []

    class RecordingCompleter:
        def complete(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
            calls.append(rgb.shape)
            return sparse * 2.0

    model = TritonPythonModel()
    model.settings, model.completer = CompleterSettings(max_pixels=MAX_PIXELS), RecordingCompleter()
    model._lock = __import__("threading").Lock()
    frames = [_frame(32, 48, 0), _frame(16, 24, 1), _frame(32, 48, 2)]
    bad = _frame(32, 48, 3)
    bad[1][0, 0, 0, 0] = -1.0
    requests = [{CONTRACT.rgb_name: r, CONTRACT.sparse_name: s} for r, s in [frames[0], frames[1], bad, frames[2]]]
    responses = model.execute(requests)
    assert sorted(calls) == [(1, 16, 24, 3), (2, 32, 48, 3)]  # one run per size, the bad request left out
    assert responses[2].error.code == "INVALID_ARG" and responses[2].error.message.startswith(CONTRACT.sparse_name)
    for response, (_, sparse) in zip([responses[0], responses[1], responses[3]], frames):
        (tensor,) = response.output_tensors
        assert tensor.name == CONTRACT.depth_name and response.error is None
        np.testing.assert_array_equal(tensor.array, sparse * 2.0)


def test_stub_environment_puts_this_interpreters_libpython_first_and_the_repo_on_pythonpath() -> None:
    env = server_environment({"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu", "PYTHONPATH": "/elsewhere"})
    libdir = interpreter_library_dir()
    if libdir is not None:
        assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [str(libdir), "/usr/lib/x86_64-linux-gnu"]
    first, rest = env["PYTHONPATH"].split(os.pathsep, 1)
    assert (os.path.isdir(os.path.join(first, "runtime"))) and rest == "/elsewhere"


def test_generated_model_config_parses_with_tritons_schema_and_batches_dynamically() -> None:
    options = ServeOptions(completer=CompleterSettings(max_pixels=1234, threads=2), max_batch_size=4,
                           max_queue_delay_us=500, instances=2)
    config = text_format.Parse(python_model_config_text(options), model_config_pb2.ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == ("jarrn", "python", 4)
    assert [i.name for i in config.input] == [CONTRACT.rgb_name, CONTRACT.sparse_name]
    assert [list(i.dims) for i in config.input] == [[3, -1, -1], [1, -1, -1]]
    assert [o.name for o in config.output] == [CONTRACT.depth_name] and list(config.output[0].dims) == [1, -1, -1]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500 and config.instance_group[0].count == 2
    parameters = json.loads(json.dumps({k: {"string_value": v.string_value} for k, v in config.parameters.items()}))
    assert CompleterSettings.from_parameters(parameters) == CompleterSettings(max_pixels=1234, threads=2)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--max-batch-size", "0"], 2),
        (["--http-port", "9000", "--grpc-port", "9000"], 2),
        (["--http-port", "70000"], 2),
        (["--max-pixels", "0"], 2),
        (["--model", "no/such/model.onnx", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"], 3),
        (["--backend", "onnxruntime", "--model", "model/weights/jarrn_small_default.safetensors",
          "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"], 2),
    ],
)
def test_bad_options_exit_with_one_line_before_any_server_starts(argv: list[str], code: int, capsys) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_a_port_in_use_is_refused_at_once(capsys) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--http-port", str(port), "--grpc-port", "0", "--metrics-port", "0"]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --http-port: cannot listen on 127.0.0.1:{port} (Address already in use); another server is "
                   "there, choose another port (0 = any free one)"]


def test_a_model_that_fails_to_load_stops_the_start_with_its_error(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    argv = ["--model", str(broken), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--threads", "1"]
    assert main(argv) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model 'jarrn' failed to load in Triton: ")


# ---------------------------------------------------------------------------------------------------------------------
# a real server (one for the module: Triton starts in a few seconds, the model loads in the Python-backend stub)


@pytest.fixture(scope="module")
def server():
    options = ServeOptions(completer=CompleterSettings(threads=1, max_pixels=MAX_PIXELS), http_port=0, grpc_port=0,
                           metrics_port=0, max_batch_size=4, max_queue_delay_us=20000)
    with RunningServer(options, log=lambda message: None) as running:
        yield running


@pytest.fixture(scope="module")
def reference():
    from runtime import DepthCompleter

    return DepthCompleter.from_checkpoint()


def _inputs(module, rgb: np.ndarray, sparse: np.ndarray, rgb_type: str = "FP32") -> list:
    inputs = [module.InferInput(CONTRACT.rgb_name, list(rgb.shape), rgb_type),
              module.InferInput(CONTRACT.sparse_name, list(sparse.shape), "FP32")]
    inputs[0].set_data_from_numpy(rgb)
    inputs[1].set_data_from_numpy(sparse)
    return inputs


def test_server_binds_loopback_and_reports_health_and_metrics(server: RunningServer) -> None:
    assert server.http_url.startswith("127.0.0.1:") and server.grpc_url.startswith("127.0.0.1:")
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        assert 'nv_inference_count{model="jarrn"' in response.read().decode()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_answers_equal_depth_completer_within_a_tenth_of_a_millimetre(server, reference, protocol: str) -> None:
    module = tritonclient_http if protocol == "http" else tritonclient_grpc
    client = module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    rgb, sparse = _frame(64, 96, seed=1)
    depth = client.infer("jarrn", _inputs(module, rgb, sparse)).as_numpy(CONTRACT.depth_name)
    expected = reference.complete(rgb[0].transpose(1, 2, 0), sparse[0, 0])
    assert depth.shape == (1, 1, 64, 96) and depth.dtype == np.float32
    assert np.abs(depth[0, 0] - expected).max() <= 1e-4
    client.close()


BAD_REQUESTS = {
    "float64_rgb": (CONTRACT.rgb_name, "FP64"),
    "rank_3_rgb": (CONTRACT.rgb_name, "shape"),
    "zero_width": (CONTRACT.rgb_name, "at least 1"),
    "nan_depth": (CONTRACT.sparse_name, "NaN"),
    "negative_depth": (CONTRACT.sparse_name, "negative"),
    "above_max_pixels": (CONTRACT.rgb_name, "limit"),
    "above_max_pixels_70_mb": (CONTRACT.rgb_name, "limit"),
}


def _bad_request(module, case: str) -> list:
    rgb, sparse = _frame(32, 48)
    if case == "float64_rgb":
        return _inputs(module, rgb.astype(np.float64), sparse, rgb_type="FP64")
    if case == "rank_3_rgb":
        return _inputs(module, rgb[:, 0], sparse)
    if case == "zero_width":
        return _inputs(module, rgb[..., :0], sparse[..., :0])
    if case == "nan_depth":
        sparse[0, 0, 1, 1] = np.nan
    elif case == "negative_depth":
        sparse[0, 0, 1, 1] = -1.0
    elif case == "above_max_pixels":
        rgb, sparse = _frame(160, 160)
    elif case == "above_max_pixels_70_mb":  # a large body: received, refused from its shape, the server unharmed
        rgb, sparse = np.full((1, 3, 2100, 2100), 0.5, np.float32), np.zeros((1, 1, 2100, 2100), np.float32)
    return _inputs(module, rgb, sparse)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_client_error_naming_the_input_and_the_server_keeps_serving(server, protocol, case) -> None:
    module = tritonclient_http if protocol == "http" else tritonclient_grpc
    client = module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    name, expected = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException) as error:
        client.infer("jarrn", _bad_request(module, case))
    status = str(error.value.status())
    assert status == "400" if protocol == "http" else status == "StatusCode.INVALID_ARGUMENT"
    assert f"'{name}'" in error.value.message() or error.value.message().startswith(name)
    assert expected in error.value.message()
    rgb, sparse = _frame(32, 48)
    assert client.infer("jarrn", _inputs(module, rgb, sparse)).as_numpy(CONTRACT.depth_name).shape == (1, 1, 32, 48)
    client.close()


def test_a_bad_request_batched_with_good_ones_fails_alone(server) -> None:
    client = tritonclient_http.InferenceServerClient(server.http_url, concurrency=6)
    good = [_inputs(tritonclient_http, *_frame(32, 48, seed=s)) for s in range(5)]
    bad = _bad_request(tritonclient_http, "nan_depth")
    pending = [client.async_infer("jarrn", inputs) for inputs in [*good[:2], bad, *good[2:]]]
    outcomes = []
    for handle in pending:
        try:
            outcomes.append(handle.get_result().as_numpy(CONTRACT.depth_name).shape)
        except InferenceServerException as exc:
            outcomes.append(str(exc.status()))
    assert outcomes == [(1, 1, 32, 48)] * 2 + ["400"] + [(1, 1, 32, 48)] * 3
    client.close()
