"""The gate's HTTP-to-gRPC translation of inference requests (``runtime/serving_http_infer.py``): requests built by
tritonclient's own HTTP code become the ModelInferRequest tritonclient's gRPC code would send, and gRPC answers become
the HTTP answers tritonclient's HTTP code reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

import tritonclient.http as http_client  # noqa: E402
from tritonclient.grpc import service_pb2  # noqa: E402

from jarrn_deploy.runtime.serving_http_infer import (  # noqa: E402
    HEADER_LENGTH,
    HttpInferError,
    InferCall,
    NotTranslated,
    http_answer,
    http_status,
    infer_call,
    infer_path,
)


def _http_request(inputs: list, outputs: list | None = None, **options) -> tuple[dict, bytes]:
    """``(JSON document, tensor bytes)`` exactly as tritonclient's HTTP client sends them."""
    body, json_size = http_client.InferenceServerClient.generate_request_body(inputs, outputs, **options)
    json_size = len(body) if json_size is None else json_size
    return json.loads(body[:json_size]), body[json_size:]


def _input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> http_client.InferInput:
    tensor = http_client.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _grpc(document: dict, tensors: bytes, version: str = "") -> tuple[service_pb2.ModelInferRequest, InferCall]:
    call = infer_call("jarrn", version, document, len(tensors))
    return service_pb2.ModelInferRequest.FromString(call.message(tensors)), call


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_inputs_become_raw_contents_in_order_whether_sent_as_binary_or_json(binary: bool) -> None:
    rgb = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5) / 7
    counts = np.array([[1, -2, 3]], dtype=np.int64)
    names = np.array([b"a", b"bc", "dé".encode()], dtype=np.object_)
    document, tensors = _http_request([_input("rgb", rgb, "FP32", binary), _input("counts", counts, "INT64", binary),
                                       _input("names", names, "BYTES", binary)])
    request, call = _grpc(document, tensors)
    assert call.binary_outputs  # tritonclient asks every output as binary data when it names none
    assert request.model_name == "jarrn" and request.model_version == ""
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [
        ("rgb", "FP32", [2, 3, 4, 5]), ("counts", "INT64", [1, 3]), ("names", "BYTES", [3])]
    assert all("binary_data_size" not in i.parameters for i in request.inputs)  # HTTP-only: not sent to Triton
    raw = request.raw_input_contents
    np.testing.assert_array_equal(np.frombuffer(raw[0], "<f4").reshape(rgb.shape), rgb)
    np.testing.assert_array_equal(np.frombuffer(raw[1], "<i8"), counts.ravel())
    assert raw[2] == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc\x03\x00\x00\x00d\xc3\xa9"


def test_request_id_and_parameters_keep_their_types_and_the_http_only_ones_are_dropped() -> None:
    document, tensors = _http_request([_input("x", np.zeros(2, np.float32), "FP32")], request_id="r1", priority=2,
                                      timeout=5000, parameters={"flag": True, "ratio": 0.5, "label": "s",
                                                                "big": 2**64 - 1})
    request, _ = _grpc(document, tensors, version="3")
    assert request.id == "r1" and request.model_version == "3"
    values = {key: getattr(value, value.WhichOneof("parameter_choice")) for key, value in request.parameters.items()}
    assert values == {"priority": 2, "timeout": 5000, "flag": True, "ratio": 0.5, "label": "s",
                      "big": 2**64 - 1}  # no binary_data_output
    assert request.parameters["big"].WhichOneof("parameter_choice") == "uint64_param"
    assert request.parameters["flag"].WhichOneof("parameter_choice") == "bool_param"


def test_requested_outputs_are_named_and_their_binary_choice_is_kept_for_the_answer() -> None:
    outputs = [http_client.InferRequestedOutput("depth", binary_data=False),
               http_client.InferRequestedOutput("conf", binary_data=True)]
    document, tensors = _http_request([_input("x", np.zeros(2, np.float32), "FP32")], outputs)
    request, call = _grpc(document, tensors)
    assert [o.name for o in request.outputs] == ["depth", "conf"]
    assert call.output_binary == {"depth": False, "conf": True} and not call.binary_outputs


def _response(outputs: dict[str, tuple[str, np.ndarray]], **fields) -> bytes:
    response = service_pb2.ModelInferResponse(model_name="jarrn", model_version="1", **fields)
    for name, (datatype, array) in outputs.items():
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(array.tobytes())
    return response.SerializeToString()


def test_binary_answers_read_back_with_tritonclients_http_result() -> None:
    depth = np.linspace(0, 80, 2 * 1 * 4 * 5, dtype=np.float32).reshape(2, 1, 4, 5)
    mask = np.array([[True, False]])
    call = InferCall(b"", (), binary_outputs=True)
    headers, body = http_answer(_response({"depth": ("FP32", depth), "mask": ("BOOL", mask)}, id="r1"), call)
    assert headers["Content-Type"] == "application/octet-stream"
    result = http_client.InferResult.from_response_body(body, header_length=int(headers[HEADER_LENGTH]))
    np.testing.assert_array_equal(result.as_numpy("depth"), depth)
    np.testing.assert_array_equal(result.as_numpy("mask"), mask)
    assert result.get_response()["id"] == "r1" and result.get_response()["model_version"] == "1"


def test_outputs_asked_as_json_come_back_as_flat_data_in_a_json_body() -> None:
    depth = np.arange(6, dtype=np.float32).reshape(1, 2, 3) / 4
    words = np.array([b"x", b"yz"], dtype=np.object_)
    raw_words = b"\x01\x00\x00\x00x\x02\x00\x00\x00yz"
    response = service_pb2.ModelInferResponse(model_name="jarrn", model_version="1")
    response.outputs.add(name="depth", datatype="FP32", shape=[1, 2, 3])
    response.outputs.add(name="words", datatype="BYTES", shape=[2])
    response.raw_output_contents.extend([depth.tobytes(), raw_words])
    call = InferCall(b"", (), output_binary={"depth": False, "words": False})
    headers, body = http_answer(response.SerializeToString(), call)
    assert headers == {"Content-Type": "application/json"}
    result = http_client.InferResult.from_response_body(body)
    np.testing.assert_array_equal(result.as_numpy("depth"), depth)
    assert result.as_numpy("words").tolist() == [w.decode() for w in words]


def _tensor(**fields) -> dict:
    return {"name": "a", "datatype": "FP32", "shape": [2], **fields}


MALFORMED = {
    "size past the end": ({"inputs": [_tensor(parameters={"binary_data_size": 8}),
                                      _tensor(name="b", parameters={"binary_data_size": 8})]}, 12,
                          "inputs[1] ('b'): binary_data_size 8 does not fit the 4 bytes"),
    "bytes nobody claims": ({"inputs": [_tensor(parameters={"binary_data_size": 8})]}, 11,
                            "the request carries 3 bytes of tensor data that no input claims"),
    "no data": ({"inputs": [_tensor()]}, 0, "inputs[0] ('a'): expected \"data\" or a binary_data_size parameter"),
    "text in the shape": ({"inputs": [_tensor(shape=["2"], data=[1, 2])]}, 0, "inputs[0] ('a'): \"shape\" must be"),
    "a dimension over 64 bits": ({"inputs": [_tensor(shape=[2**64], data=[1])]}, 0, "inputs[0] ('a'): \"shape\""),
    "text as FP32": ({"inputs": [_tensor(data=["x", "y"])]}, 0, "inputs[0] ('a'): \"data\" must hold FP32 values"),
    "null data": ({"inputs": [_tensor(data=None)]}, 0, "inputs[0] ('a'): \"data\" must be a JSON list"),
    "null element": ({"inputs": [_tensor(data=[1.0, None])]}, 0, "inputs[0] ('a'): \"data\" must hold FP32"),
    "INT8 out of range": ({"inputs": [_tensor(datatype="INT8", data=[300, 1])]}, 0,
                          "inputs[0] ('a'): \"data\" does not fit INT8"),
    "number as BYTES": ({"inputs": [_tensor(datatype="BYTES", data=[3])]}, 0,
                        "inputs[0] ('a'): BYTES \"data\" must hold strings"),
    "FP16 as JSON": ({"inputs": [_tensor(datatype="FP16", data=[1.0, 2.0])]}, 0,
                     "inputs[0] ('a'): FP16 data cannot be sent as JSON"),
    "lone surrogate": ({"inputs": [_tensor(name="\ud800", data=[1.0, 2.0])]}, 0, "inputs[0] ('\\ud800'): "),
    "numeric id": ({"id": 5, "inputs": [_tensor(data=[1.0, 2.0])]}, 0, "\"id\": expected a string"),
    "text flag": ({"inputs": [_tensor(data=[1.0, 2.0])], "parameters": {"binary_data_output": "false"}}, 0,
                  "the request: parameter 'binary_data_output' must be true or false"),
    "parameter over 64 bits": ({"inputs": [_tensor(data=[1.0, 2.0])], "parameters": {"n": 2**64}}, 0,
                               "the request: parameter 'n' must be a string, a number within 64 bits"),
    "not an object": ([_tensor()], 0, "the inference request needs a JSON object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_gets_a_message_naming_the_input_and_what_was_expected(case: str) -> None:
    document, tensor_bytes, expected = MALFORMED[case]
    with pytest.raises(HttpInferError) as caught:
        infer_call("jarrn", "", document, tensor_bytes)
    assert str(caught.value).startswith(expected), str(caught.value)


def test_an_fp16_output_asked_as_json_is_refused_as_tritons_http_frontend_does() -> None:
    half = np.ones((1, 2), np.float16)
    with pytest.raises(HttpInferError, match="FP16 data cannot be returned as JSON"):
        http_answer(_response({"depth": ("FP16", half)}), InferCall(b"", ()))
    headers, body = http_answer(_response({"depth": ("FP16", half)}), InferCall(b"", (), binary_outputs=True))
    result = http_client.InferResult.from_response_body(body, header_length=int(headers[HEADER_LENGTH]))
    np.testing.assert_array_equal(result.as_numpy("depth"), half)


def test_shared_memory_tensors_are_left_to_tritons_http_frontend() -> None:
    document = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [2],
                            "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 8}}]}
    with pytest.raises(NotTranslated):
        infer_call("jarrn", "", document, 0)


def test_infer_paths_name_the_model_and_version_and_nothing_else_matches() -> None:
    assert infer_path("/v2/models/jarrn/infer") == ("jarrn", "")
    assert infer_path("/v2/models/jarrn/versions/2/infer") == ("jarrn", "2")
    assert infer_path("/v2/models/jarrn/ready") is None and infer_path("/v2/models/jarrn/versions/2/ready") is None


def test_grpc_errors_get_the_status_tritons_http_frontend_gives_the_same_error() -> None:
    assert [http_status(name) for name in ("INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE", "INTERNAL",
                                           "UNIMPLEMENTED", "CANCELLED", "UNKNOWN", "ALREADY_EXISTS")] == [
        400, 404, 503, 500, 501, 400, 400, 400]
