"""``jarrn serve``: a real Triton server on loopback, its answers, its 400s for bad requests, and its settings."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from jarrn_deploy.model.contract import CONTRACT  # noqa: E402
from jarrn_deploy.runtime.serve import (  # noqa: E402
    RunningServer,
    ServeOptions,
    exposure_warning,
    interpreter_library_dir,
    main,
    python_model_config_text,
    server_environment,
    triton_arguments,
)
from jarrn_deploy.runtime.serving_model import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    CompleterSettings,
    RequestError,
    _client_error,
    check_request,
    run_parts,
)

MAX_PIXELS = 256 * 256  # small, so the size limit is exercised without sending a 20000x20000 frame over the wire


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
        INVALID_ARG, INTERNAL, UNAVAILABLE = "INVALID_ARG", "INTERNAL", "UNAVAILABLE"

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


class _RecordingCompleter:
    """Records the shape of every run and answers ``sparse * 2 + 1`` after ``delay_s``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.delay_s = delay_s

    def complete(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        self.calls.append(rgb.shape)
        time.sleep(self.delay_s)
        return sparse * 2.0 + 1.0


def _model(monkeypatch, completer: _RecordingCompleter, max_pixels: int, folder):  # noqa: ANN001, ANN202
    """A ``TritonPythonModel`` over ``completer``, run without Triton."""
    import sys
    import threading

    from jarrn_deploy.runtime.serving_model import TritonPythonModel

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _FakeBackendUtils)
    model = TritonPythonModel()
    from jarrn_deploy.runtime.serving_model import RunSlots

    model.settings, model.completer, model._lock = CompleterSettings(max_pixels=max_pixels), completer, threading.Lock()
    model.slots = RunSlots(folder, 1)  # the lock files jarrn serve keeps in the model's folder
    return model


def test_execute_groups_a_mixed_batch_by_size_and_fails_only_the_bad_request(monkeypatch, tmp_path) -> None:
    completer = _RecordingCompleter()
    model = _model(monkeypatch, completer, MAX_PIXELS, tmp_path)
    frames = [_frame(32, 48, 0), _frame(16, 24, 1), _frame(32, 48, 2)]
    bad = _frame(32, 48, 3)
    bad[1][0, 0, 0, 0] = -1.0
    requests = [{CONTRACT.rgb_name: r, CONTRACT.sparse_name: s} for r, s in [frames[0], frames[1], bad, frames[2]]]
    responses = model.execute(requests)
    assert sorted(completer.calls) == [(1, 16, 24, 3), (2, 32, 48, 3)]  # one run per size, the bad request left out
    assert responses[2].error.code == "INVALID_ARG" and responses[2].error.message.startswith(CONTRACT.sparse_name)
    for response, (_, sparse) in zip([responses[0], responses[1], responses[3]], frames):
        (tensor,) = response.output_tensors
        assert tensor.name == CONTRACT.depth_name and response.error is None
        np.testing.assert_array_equal(tensor.array, sparse * 2.0 + 1.0)


class _Request(dict):
    """A fake Triton request with the client's timeout (microseconds, 0 = none)."""

    def __init__(self, tensors: dict, timeout_us: int = 0) -> None:
        super().__init__(tensors)
        self._timeout_us = timeout_us

    def timeout(self) -> int:
        return self._timeout_us

    def is_cancelled(self) -> bool:
        return False


def test_large_requests_run_one_at_a_time_and_those_whose_client_gave_up_are_dropped(monkeypatch, tmp_path) -> None:
    completer = _RecordingCompleter(delay_s=0.05)
    model = _model(monkeypatch, completer, 64 * 96, tmp_path)
    frames = [_frame(64, 96, seed) for seed in range(3)]
    timeouts = [0, 10_000, 0]  # the second client allows 10 ms: gone by the time the first request has run
    requests = [_Request({CONTRACT.rgb_name: r, CONTRACT.sparse_name: s}, t) for (r, s), t in zip(frames, timeouts)]
    responses = model.execute(requests)
    assert completer.calls == [(1, 64, 96, 3)] * 2  # one image per run (max_pixels), the abandoned one not run
    assert responses[1].error.code == "UNAVAILABLE" and "timeout" in responses[1].error.message
    for index in (0, 2):
        np.testing.assert_array_equal(responses[index].output_tensors[0].array, frames[index][1] * 2.0 + 1.0)


class _CancelledLater(_Request):
    """A fake Triton request whose client cancels ``after_s`` seconds from now."""

    def __init__(self, tensors: dict, after_s: float) -> None:
        super().__init__(tensors)
        self._at = time.monotonic() + after_s

    def is_cancelled(self) -> bool:
        return time.monotonic() >= self._at


def test_a_running_onnx_runtime_batch_stops_once_every_client_has_cancelled(monkeypatch, tmp_path) -> None:
    from jarrn_deploy.runtime.serve import resolve_completer
    from jarrn_deploy.runtime.serving_model import build_completer

    settings = resolve_completer(CompleterSettings(backend="onnxruntime", threads=1), log=lambda message: None)
    completer = build_completer(settings)
    assert completer.backend.release_memory_above_pixels == settings.max_pixels // 4  # idle: no large run kept
    model = _model(monkeypatch, completer, 1024 * 1024, tmp_path)
    rgb, sparse = _frame(1024, 1024)
    started = time.perf_counter()
    (response,) = model.execute([_CancelledLater({CONTRACT.rgb_name: rgb, CONTRACT.sparse_name: sparse}, 0.2)])
    stopped_s = time.perf_counter() - started
    assert response.error.code == "UNAVAILABLE" and "stopped" in response.error.message
    assert stopped_s < 1.5, stopped_s  # a whole 1024x1024 run takes seconds on a CPU
    rgb, sparse = _frame(32, 48)
    (response,) = model.execute([_Request({CONTRACT.rgb_name: rgb, CONTRACT.sparse_name: sparse})])
    assert response.error is None and response.output_tensors[0].array.shape == (1, 1, 32, 48)
    completer.close()


def test_stub_environment_puts_this_interpreters_libpython_first_and_the_repo_on_pythonpath() -> None:
    env = server_environment({"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu", "PYTHONPATH": "/elsewhere"})
    libdir = interpreter_library_dir()
    if libdir is not None:
        assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [str(libdir), "/usr/lib/x86_64-linux-gnu"]
    first, rest = env["PYTHONPATH"].split(os.pathsep, 1)
    assert os.path.isfile(os.path.join(first, "jarrn_deploy", "__init__.py")) and rest == "/elsewhere"


def test_generated_model_config_bounds_the_queue_and_shows_no_server_paths(tmp_path) -> None:
    from dataclasses import replace

    from jarrn_deploy.runtime.serve import write_python_model_repository

    settings = CompleterSettings(backend="onnxruntime", model="/srv/secret/models/jarrn.onnx", max_pixels=1234,
                                 threads=2)
    options = ServeOptions(completer=settings, max_batch_size=4, max_queue_delay_us=500, instances=2,
                           spare_instances=1, max_queue_size=7, queue_timeout_s=1.5)
    config = text_format.Parse(python_model_config_text(options), model_config_pb2.ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == ("jarrn", "python", 4)
    assert [i.name for i in config.input] == [CONTRACT.rgb_name, CONTRACT.sparse_name]
    assert [list(i.dims) for i in config.input] == [[3, -1, -1], [1, -1, -1]]
    assert [o.name for o in config.output] == [CONTRACT.depth_name] and list(config.output[0].dims) == [1, -1, -1]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 3  # two runs at once, a spare process takes requests meanwhile
    policy = config.dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 7 and policy.default_timeout_microseconds == 1500000
    assert policy.allow_timeout_override
    assert not config.parameters and "/srv/secret" not in python_model_config_text(options)
    model_dir = write_python_model_repository(tmp_path, options)  # the model reads its settings from a file instead
    assert CompleterSettings.load(model_dir) == replace(settings, run_slots=2)


def test_triton_command_line_holds_no_secret_and_closes_model_loading(tmp_path) -> None:
    args = triton_arguments(ServeOptions(), tmp_path / "models", tmp_path / "backends", "jarrn-serve-1-x-")
    assert "--model-control-mode=none" in args
    restricted = [a for a in args if a.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))]
    assert len(restricted) == 2 and all("model-repository" in a and "shared-memory" in a for a in restricted)
    assert all("\n" in a.split("=", 2)[2] for a in restricted)  # a header value no HTTP or gRPC client can send


def test_behind_the_gate_triton_listens_on_loopback_only_whatever_the_host(tmp_path) -> None:
    args = triton_arguments(ServeOptions(host="0.0.0.0"), tmp_path / "models", tmp_path / "backends", "p-", (5001, 5002))
    assert {"--http-address=127.0.0.1", "--http-port=5001", "--grpc-address=127.0.0.1", "--grpc-port=5002",
            "--metrics-address=0.0.0.0"} <= set(args)


def test_only_a_non_loopback_host_gets_the_no_authentication_warning() -> None:
    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    warning = exposure_warning("0.0.0.0")
    assert warning.startswith("warning: --host 0.0.0.0") and "no authentication" in warning and "\n" not in warning


def test_a_bad_item_of_a_batch_is_named_by_its_index() -> None:
    rgb, sparse = _frame()
    rgb, sparse = np.concatenate([rgb, rgb]), np.concatenate([sparse, sparse])
    sparse[1, 0, 2, 2] = -1.0
    with pytest.raises(RequestError, match=r"^item 1 of 2: sparse_depth: negative"):
        check_request(rgb, sparse, MAX_PIXELS)


def test_a_map_without_any_valid_point_is_refused_with_a_clear_message() -> None:
    rgb, sparse = _frame()
    with pytest.raises(RequestError, match=r"^sparse_depth: .*no valid point"):
        check_request(rgb, np.zeros_like(sparse), MAX_PIXELS)


def test_batches_run_in_parts_of_at_most_max_pixels() -> None:
    parts = run_parts(8, 2048, 2048, 2048 * 2048)
    assert len(parts) == 8 and all(p.stop - p.start == 1 for p in parts)
    assert run_parts(8, 64, 64, 2048 * 2048) == [slice(0, 8)]
    assert run_parts(5, 100, 100, 20000) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert run_parts(3, 300, 300, 100) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # one image at least


def test_run_errors_map_by_type_and_name_the_servers_limits_not_its_environment() -> None:
    from jarrn_deploy.errors import InputError
    from jarrn_deploy.runtime.memory_guard import MemoryGuardError

    codes = _FakeBackendUtils.TritonError
    message, code = _client_error(MemoryGuardError("needs 9 GiB; override with JARRN_MEMORY_GUARD=off"), (2048, 2048),
                                  4194304, codes)
    assert code == "UNAVAILABLE" and "--max-pixels 4194304" in message and "JARRN" not in message
    assert _client_error(InputError("rgb: outside the profile"), (8, 8), 64, codes) == ("rgb: outside the profile",
                                                                                       "INVALID_ARG")
    assert _client_error(RuntimeError("boom\ntrace"), (8, 8), 64, codes) == ("boom", "INTERNAL")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--max-batch-size", "0"], 2),
        (["--http-port", "9000", "--grpc-port", "9000"], 2),
        (["--http-port", "70000"], 2),
        (["--max-pixels", "0"], 2),
        (["--max-pixels", "20000000", "--max-batch-size", "8"], 2),  # requests over gRPC's 2 GiB message limit
        (["--max-queue-size", "0"], 2),
        (["--queue-timeout", "0"], 2),
        (["--drain-timeout", "-1"], 2),
        (["--spare-instances", "-1"], 2),
        (["--model", "no/such/model.onnx", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"], 3),
        (["--backend", "onnxruntime", "--model", "model/weights/jarrn_small_default.safetensors",
          "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"], 2),
    ],
)
def test_bad_options_exit_with_one_line_before_any_server_starts(argv: list[str], code: int, capsys) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    flag = next((a for a in argv if a.startswith("--") and a[2:].replace("-", "_") in err[0].replace("-", "_")), None)
    assert code == 3 or flag is not None, err[0]  # the message names the flag the user typed


def test_a_spare_model_process_is_the_default_without_a_gpu_only(monkeypatch) -> None:
    from jarrn_deploy.export import gpu_probe
    from jarrn_deploy.runtime.serve import spare_instances

    monkeypatch.setattr(gpu_probe, "visible_gpus", lambda: [])
    assert spare_instances(ServeOptions()) == 1
    monkeypatch.setattr(gpu_probe, "visible_gpus", lambda: [("NVIDIA H100 80GB HBM3", "9.0")])
    assert spare_instances(ServeOptions()) == 0  # there a spare would hold its own engine in GPU memory
    assert spare_instances(ServeOptions(spare_instances=2)) == 2
    options = ServeOptions(instances=2, spare_instances=0)
    config = text_format.Parse(python_model_config_text(options), model_config_pb2.ModelConfig())
    assert config.instance_group[0].count == 2


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
    options = ServeOptions(completer=CompleterSettings(backend="", threads=1, max_pixels=MAX_PIXELS), http_port=0,
                           grpc_port=0, metrics_port=0, max_batch_size=4, max_queue_delay_us=20000,
                           drain_timeout_s=2)  # teardown: abandoned test requests need no 10 s drain
    with RunningServer(options, log=lambda message: None) as running:
        yield running


@pytest.fixture(scope="module")
def reference(server):
    from jarrn_deploy.runtime.serving_model import build_completer

    completer = build_completer(server.options.completer)  # the backend and model file the server chose
    yield completer
    completer.close()


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


def _post(address: str, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://{address}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _answer(status: int, headers: dict, body: bytes) -> tuple:
    """What a client reads in an HTTP answer: status, content type of a success, JSON header (parsed), tensors."""
    from jarrn_deploy.runtime.serving_http_infer import HEADER_LENGTH

    size = int(headers.get(HEADER_LENGTH, len(body)))
    return status, headers.get("Content-Type") if status == 200 else None, json.loads(body[:size]), body[size:]


PARITY_FORMS = ["binary", "outputs_unnamed", "json_output", "json_input", "id_and_parameters", "unknown_input",
                "unknown_model", "shared_memory"]


@pytest.mark.parametrize("form", PARITY_FORMS)
def test_inference_over_http_through_the_gate_answers_what_tritons_own_http_port_answers(server, form: str) -> None:
    from jarrn_deploy.runtime.serving_http_infer import HEADER_LENGTH

    rgb, sparse = _frame(32, 48)
    inputs = _inputs(tritonclient_http, rgb, sparse)
    if form == "json_input":
        for tensor, array in zip(inputs, (rgb, sparse)):
            tensor.set_data_from_numpy(array, binary_data=False)
    elif form == "unknown_input":
        inputs = [tritonclient_http.InferInput("colour", list(rgb.shape), "FP32")]
        inputs[0].set_data_from_numpy(rgb)
    elif form == "shared_memory":  # not translated: forwarded to Triton's HTTP port as it came
        inputs[1].set_shared_memory("nowhere", sparse.nbytes)
    outputs = None if form == "outputs_unnamed" else [
        tritonclient_http.InferRequestedOutput(CONTRACT.depth_name, binary_data=form != "json_output")]
    options = {"request_id": "r7", "parameters": {"note": "x", "weight": 0.5}} if form == "id_and_parameters" else {}
    body, json_size = tritonclient_http.InferenceServerClient.generate_request_body(inputs, outputs, **options)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers[HEADER_LENGTH] = str(json_size)
    path = f"/v2/models/{'nobody' if form == 'unknown_model' else 'jarrn'}/infer"
    through_gate = _answer(*_post(server.http_url, path, body, headers))
    from_triton = _answer(*_post(server.triton_http_url, path, body, headers))
    assert through_gate == from_triton
    assert through_gate[0] == {"unknown_input": 400, "unknown_model": 404, "shared_memory": 404}.get(form, 200)


@pytest.mark.parametrize(("body", "headers", "status", "expected"), [
    (b'{"inputs": [', {}, 400, "the request body is not valid JSON"),
    (b'{"inputs": [{"name": "rgb", "datatype": "FP16", "shape": [1], "data": [1.0]}]}', {}, 400,
     "FP16 data cannot be sent as JSON"),
    (b"\x1f\x8b compressed", {"Content-Encoding": "gzip"}, 415, "Content-Encoding gzip"),
])
def test_a_malformed_http_inference_request_gets_one_clear_error_from_the_gate(server, body, headers, status,
                                                                            expected) -> None:
    answer = _post(server.http_url, "/v2/models/jarrn/infer", body, {"Content-Type": "application/json", **headers})
    assert answer[0] == status and expected in json.loads(answer[2])["error"], answer
    assert server.is_model_ready()


BAD_REQUESTS = {
    "float64_rgb": (CONTRACT.rgb_name, "FP64"),
    "rank_3_rgb": (CONTRACT.rgb_name, "shape"),
    "zero_width": (CONTRACT.rgb_name, "at least 1"),
    "nan_depth": (CONTRACT.sparse_name, "NaN"),
    "negative_depth": (CONTRACT.sparse_name, "negative"),
    "no_valid_point": (CONTRACT.sparse_name, "no valid point"),
    "above_max_pixels": (CONTRACT.rgb_name, f"--max-pixels {MAX_PIXELS}"),
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
    elif case == "no_valid_point":
        sparse[:] = 0.0
    elif case == "above_max_pixels":
        rgb, sparse = _frame(260, 260)
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
    if protocol == "grpc" and case == "above_max_pixels_70_mb":  # over the gate's byte limit: grpc refuses it unread
        assert status == "StatusCode.RESOURCE_EXHAUSTED" and "larger than max" in error.value.message()
    else:
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


def test_model_loading_and_shared_memory_endpoints_are_closed_to_every_client(server) -> None:
    for method, path in (("POST", "/v2/repository/index"), ("POST", "/v2/repository/models/jarrn/load"),
                         ("GET", "/v2/systemsharedmemory/status")):
        request = urllib.request.Request(f"http://{server.http_url}{path}", data=b"{}" if method == "POST" else None,
                                         method=method)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=5)
        assert error.value.code == 403, path


def test_requests_that_outwait_their_timeout_leave_the_queue_and_a_fresh_one_is_served(server) -> None:
    """A burst of 12 requests whose clients allow 0.3 s (Triton's timeout parameter): those still queued when it
    expires are dropped, not computed, so a fresh small request waits for at most the batch already running."""
    client = tritonclient_http.InferenceServerClient(server.http_url, concurrency=13)
    small = _inputs(tritonclient_http, *_frame(32, 48))
    started = time.perf_counter()
    client.infer("jarrn", small)
    solo = time.perf_counter() - started
    burst = [client.async_infer("jarrn", _inputs(tritonclient_http, *_frame(256, 256, seed=s)), timeout=300_000)
             for s in range(12)]
    time.sleep(0.05)
    started = time.perf_counter()
    fresh = client.infer("jarrn", small).as_numpy(CONTRACT.depth_name)
    fresh_s = time.perf_counter() - started
    outcomes = []
    for handle in burst:
        try:
            handle.get_result()
            outcomes.append("ok")
        except InferenceServerException as exc:
            outcomes.append(exc.message())
    client.close()
    dropped = [o for o in outcomes if o != "ok"]
    assert fresh.shape == (1, 1, 32, 48)
    assert dropped and all("timeout" in o.lower() for o in dropped), outcomes
    assert len(dropped) >= 4, outcomes  # at most two batches of 4 ran
    print(f"solo {solo * 1e3:.0f} ms, fresh after the burst {fresh_s * 1e3:.0f} ms, {len(dropped)}/12 dropped")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_work_whose_clients_left_is_dropped_so_a_fresh_request_does_not_wait_for_it(server, protocol: str) -> None:
    """Six clients leave 256x256 requests (run one image at a time here) after 1.5 times the time of one; a fresh
    small request sent 0.1 s later is answered before one such image could have been computed."""
    from jarrn_deploy.benchmarks.serving_abandoned import BurstConfig, measure_burst, request_inputs, timed

    module = tritonclient_http if protocol == "http" else tritonclient_grpc
    url = server.http_url if protocol == "http" else server.grpc_url
    client = module.InferenceServerClient(url)
    one_big = min(timed(client, request_inputs(module, 256, 256)) for _ in range(2))
    client.close()
    after_s = 1.5 * one_big  # a CPU of any speed: one or two answered, four or more left
    row = measure_burst(url, protocol, BurstConfig(clients=6, big=256, small=32, give_up_after_s=after_s))
    fresh = row["fresh_ms"] / 1e3
    assert row["answered"] <= 2, row  # the others left
    assert fresh < one_big, (fresh, one_big, row)  # without dropping their work: several of them
    print(f"{protocol}: one 256x256 {one_big * 1e3:.0f} ms, fresh 32x32 after the burst {fresh * 1e3:.0f} ms")


def _failed_requests(server) -> int:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/jarrn/stats", timeout=5) as response:
        return int(json.load(response)["model_stats"][0]["inference_stats"]["fail"]["count"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_image_over_max_pixels_is_refused_by_the_gate_before_triton_sees_it(server, protocol: str) -> None:
    module = tritonclient_http if protocol == "http" else tritonclient_grpc
    client = module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    failed = _failed_requests(server)
    started = time.perf_counter()
    with pytest.raises(InferenceServerException) as error:
        client.infer("jarrn", _inputs(module, *_frame(260, 260)))  # 1 MB, within the byte limit, over --max-pixels
    assert time.perf_counter() - started < 2
    assert str(error.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")
    assert error.value.message().startswith("rgb: 260x260 is 67,600 pixels") and "--max-pixels 65536" in \
        error.value.message()
    assert _failed_requests(server) == failed  # Triton never received it
    client.close()


def test_a_body_over_the_byte_limit_is_refused_from_its_length_unread_and_the_connection_is_answered(server) -> None:
    import http.client

    from jarrn_deploy.runtime.serving_gate import request_byte_limit

    limit = request_byte_limit(MAX_PIXELS, 4)
    host, port = server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    started = time.perf_counter()
    body = b"{" + b" " * limit + b"}"  # JSON tensors (no binary header): only the length tells
    connection.request("POST", "/v2/models/jarrn/infer", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    message = response.read().decode()
    assert time.perf_counter() - started < 5
    assert response.status == 400 and f"limit of {limit:,} bytes" in message
    assert "--max-pixels 65536 --max-batch-size 4" in message
    connection.close()
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("POST", "/v2/models/jarrn/infer", body=iter([b"{}"]), encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 411 and "Content-Length" in response.read().decode()
    connection.close()
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=5) as ready:
        assert ready.status == 200


@contextlib.contextmanager
def _slot_held_by_another_process(folder: Path):  # noqa: ANN202 - context manager
    """The only run slot of ``folder`` held by a child process until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from jarrn_deploy.runtime.serving_model import RunSlots\n"
        "with RunSlots(Path(sys.argv[1]), 1).held(lambda: False):\n    print('held', flush=True); time.sleep(60)"),
        str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_run_slots_are_shared_by_processes_and_a_request_waiting_for_one_leaves_when_its_client_does(tmp_path) -> None:
    from jarrn_deploy.runtime.serving_model import GIVEN_UP_MESSAGE, RunSlots

    with _slot_held_by_another_process(tmp_path):
        started = time.monotonic()
        leaves_at = started + 0.3
        with pytest.raises(RuntimeError, match=GIVEN_UP_MESSAGE.split(" (")[0]):
            with RunSlots(tmp_path, 1).held(lambda: time.monotonic() >= leaves_at):
                pytest.fail("ran while the other process held the only slot")
        assert 0.3 <= time.monotonic() - started < 1.0
        with RunSlots(tmp_path, 2).held(lambda: True):  # a second slot is free: no wait, whatever the clients do
            pass
    with RunSlots(tmp_path, 1).held(lambda: True):  # the kernel released the dead process's slot
        pass


def test_a_small_run_takes_no_slot_while_a_large_one_waits_for_it(monkeypatch, tmp_path) -> None:
    completer = _RecordingCompleter()
    model = _model(monkeypatch, completer, MAX_PIXELS, tmp_path)  # small: at most MAX_PIXELS / 16 = 64x64 pixels
    with _slot_held_by_another_process(tmp_path):
        started = time.monotonic()
        tensors = dict(zip((CONTRACT.rgb_name, CONTRACT.sparse_name), _frame(32, 48)))
        (small,) = model.execute([_CancelledLater(tensors, 5.0)])  # were it to wait for the slot: given up at 5 s
        assert small.error is None and time.monotonic() - started < 0.2
        large = _CancelledLater(dict(zip((CONTRACT.rgb_name, CONTRACT.sparse_name), _frame(128, 128))), 0.3)
        (response,) = model.execute([large])
    assert response.error.code == "UNAVAILABLE" and "cancelled" in response.error.message
    assert completer.calls == [(1, 32, 48, 3)]  # the large one never ran: its client left while it waited
