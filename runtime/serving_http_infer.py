"""A KServe v2 HTTP inference request as one gRPC ``ModelInfer`` call to Triton, and its answer back as HTTP.

Why: Triton's HTTP frontend cannot see a client that leaves, so a request whose client gave up stays in Triton's queue
and is handed to a model process. Over gRPC, cancelling the call cancels the request: Triton drops it from its queue
and the model sees ``request.is_cancelled()``. The gate therefore sends HTTP inference requests to Triton over gRPC and
cancels the call when its HTTP client leaves.

The translation follows the two protocols' specifications (KServe v2 HTTP/REST with Triton's binary tensor extension;
``inference.GRPCInferenceService``): tensors travel as raw little-endian bytes on both sides (``BYTES`` elements with a
4-byte length prefix); request, input and output parameters map to ``InferParameter`` values; the HTTP-only parameters
(``binary_data_size``, ``binary_data``, ``binary_data_output``) choose the HTTP layout and are not sent. What Triton's
HTTP frontend refuses is refused here too (FP16/BF16 as JSON, an ``id`` that is not a string). Errors keep Triton's
message and the HTTP status its HTTP frontend gives the same error (:func:`http_status`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUEST_HTTP_ONLY = frozenset({"binary_data_output"})
INPUT_HTTP_ONLY = frozenset({"binary_data_size"})
OUTPUT_HTTP_ONLY = frozenset({"binary_data"})
NOT_AS_JSON = frozenset({"FP16", "BF16"})
"""Datatypes Triton's HTTP frontend neither reads nor writes as JSON ``data`` (binary data only)."""
RAW_INPUT_CONTENTS_TAG = b"\x3a"
"""``ModelInferRequest.raw_input_contents`` (field 7, length-delimited): appended by hand, so tensors are copied once."""
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
INT64_RANGE = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1


class HttpInferError(ValueError):
    """An HTTP inference request (or the answer it asks for) that Triton would refuse: 400 with this message."""


class NotTranslated(Exception):
    """A request this module does not translate (the gate forwards it over HTTP as it came)."""


@dataclass(frozen=True)
class InferCall:
    """One HTTP inference request, ready for Triton's gRPC ``ModelInfer``."""

    head: bytes
    """The serialized ``ModelInferRequest`` without its tensors."""
    sizes: tuple[int | None, ...]
    """Per input: the byte count of its binary data in the HTTP body, or None when it came as JSON ``data``."""
    json_tensors: tuple[bytes, ...] = ()
    """The raw bytes of the inputs that came as JSON ``data``, in order."""
    binary_outputs: bool = False
    """Whether outputs not named in the request come back as binary data (``binary_data_output``)."""
    output_binary: dict[str, bool] = field(default_factory=dict)
    """Per requested output: binary data (True) or JSON ``data`` (False)."""

    def message(self, tensors: bytes | memoryview) -> bytes:
        """The whole serialized ``ModelInferRequest``: ``head`` and every input's raw bytes (``tensors``: the HTTP
        body after its JSON header)."""
        parts: list[bytes | memoryview] = [self.head]
        view, offset, from_json = memoryview(tensors), 0, iter(self.json_tensors)
        for size in self.sizes:
            if size is None:
                chunk: bytes | memoryview = next(from_json)
            else:
                chunk, offset = view[offset:offset + size], offset + size
            parts += [RAW_INPUT_CONTENTS_TAG + _varint(len(chunk)), chunk]
        return b"".join(parts)


def infer_path(path: str) -> tuple[str, str] | None:
    """``(model name, version)`` of ``/v2/models/NAME[/versions/VERSION]/infer``, else None."""
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer":
        return parts[2], ""
    if len(parts) == 6 and parts[:2] == ["v2", "models"] and parts[3] == "versions" and parts[5] == "infer":
        return parts[2], parts[4]
    return None


def infer_call(model: str, version: str, document: Any, tensor_bytes: int) -> InferCall:
    """The gRPC request for an HTTP one: its JSON ``document`` followed by ``tensor_bytes`` bytes of binary tensors.

    Raises :class:`HttpInferError` for a request Triton would refuse, :class:`NotTranslated` for a valid form left to
    Triton's HTTP frontend (shared-memory tensors)."""
    from tritonclient.grpc import service_pb2

    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise HttpInferError("the inference request needs a JSON object with an \"inputs\" list")
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    if "id" in document:
        if not isinstance(document["id"], str):
            raise HttpInferError(f"\"id\": expected a string, got {document['id']!r}")
        request.id = document["id"]
    parameters = _object(document, "parameters", "the request")
    binary_outputs = _flag(parameters, "binary_data_output", "the request")
    _set_parameters(request.parameters, parameters, REQUEST_HTTP_ONLY, "the request")
    sizes: list[int | None] = []
    json_tensors: list[bytes] = []
    for index, item in enumerate(document["inputs"]):
        where = f"inputs[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise HttpInferError(f"{where}: expected a JSON object with a name, shape and datatype")
        where = f"{where} ({item['name']!r})"
        datatype, shape = item.get("datatype"), item.get("shape")
        if not isinstance(datatype, str):
            raise HttpInferError(f"{where}: \"datatype\" must be a string, got {datatype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and INT64_RANGE[0] <= d <= INT64_RANGE[1]
                                                  for d in shape):
            raise HttpInferError(f"{where}: \"shape\" must be a list of integers, got {shape!r}")
        item_parameters = _object(item, "parameters", where)
        if any(key.startswith("shared_memory") for key in item_parameters):
            raise NotTranslated(f"{where} is in shared memory")
        tensor = request.inputs.add(name=_text(item["name"], where), datatype=datatype, shape=shape)
        _set_parameters(tensor.parameters, item_parameters, INPUT_HTTP_ONLY, where)
        size = item_parameters.get("binary_data_size")
        if size is not None:
            left = tensor_bytes - sum(s for s in sizes if s is not None)
            if type(size) is not int or not 0 <= size <= left:
                raise HttpInferError(f"{where}: binary_data_size {size!r} does not fit the {left:,} bytes of tensor "
                                     "data left in the request")
            sizes.append(size)
        elif "data" in item:
            sizes.append(None)
            json_tensors.append(_json_tensor(item["data"], datatype, where))
        else:
            raise HttpInferError(f"{where}: expected \"data\" or a binary_data_size parameter")
    claimed = sum(s for s in sizes if s is not None)
    if claimed != tensor_bytes:
        raise HttpInferError(f"the request carries {tensor_bytes - claimed:,} bytes of tensor data that no input "
                             "claims (binary_data_size)")
    output_binary = {}
    for index, item in enumerate(_list(document, "outputs")):
        where = f"outputs[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise HttpInferError(f"{where}: expected a JSON object with a name")
        item_parameters = _object(item, "parameters", where)
        if any(key.startswith("shared_memory") for key in item_parameters):
            raise NotTranslated(f"{where} is in shared memory")
        output = request.outputs.add(name=_text(item["name"], where))
        _set_parameters(output.parameters, item_parameters, OUTPUT_HTTP_ONLY, where)
        output_binary[item["name"]] = _flag(item_parameters, "binary_data", where)
    return InferCall(request.SerializeToString(), tuple(sizes), tuple(json_tensors), binary_outputs, output_binary)


def http_answer(raw_response: bytes, call: InferCall) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of the HTTP answer for Triton's serialized ``ModelInferResponse``; raises
    :class:`HttpInferError` for an output asked as JSON that Triton would not write as JSON."""
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(raw_response)
    document: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = _json_parameters(response.parameters)
    outputs, binary = [], []
    contents = response.raw_output_contents
    for index, tensor in enumerate(response.outputs):
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        parameters = _json_parameters(tensor.parameters)
        data = contents[index] if index < len(contents) else None
        if data is not None and call.output_binary.get(tensor.name, call.binary_outputs):
            parameters["binary_data_size"] = len(data)
            binary.append(data)
        elif data is not None:
            item["data"] = _json_data(data, tensor.datatype, f"output {tensor.name!r}")
        if parameters:
            item["parameters"] = parameters
        outputs.append(item)
    document["outputs"] = outputs
    head = json.dumps(document, separators=(",", ":")).encode()
    if not binary:
        return {"Content-Type": JSON_CONTENT_TYPE}, head
    return ({"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(head))}, b"".join([head, *binary]))


def http_status(code_name: str) -> int:
    """The HTTP status Triton's HTTP frontend gives the error that its gRPC frontend reports as ``code_name``."""
    return {"INTERNAL": 500, "NOT_FOUND": 404, "UNAVAILABLE": 503, "UNIMPLEMENTED": 501}.get(code_name, 400)


def _object(item: dict, key: str, where: str) -> dict:
    value = item.get(key, {})
    if not isinstance(value, dict):
        raise HttpInferError(f"{where}: \"{key}\" must be a JSON object, got {type(value).__name__}")
    return value


def _list(item: dict, key: str) -> list:
    value = item.get(key, [])
    if not isinstance(value, list):
        raise HttpInferError(f"\"{key}\" must be a JSON list, got {type(value).__name__}")
    return value


def _flag(parameters: dict, key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise HttpInferError(f"{where}: parameter {key!r} must be true or false, got {value!r}")
    return value


def _text(value: str, where: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise HttpInferError(f"{where}: {value!r} is not valid UTF-8 text") from None
    return value


def _set_parameters(target: Any, parameters: dict, http_only: frozenset[str], where: str) -> None:
    """JSON scalars as ``InferParameter`` values (bool, int64 or uint64, double, string)."""
    for key, value in parameters.items():
        if key in http_only:
            continue
        slot = target[_text(key, where)]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int) and INT64_RANGE[0] <= value <= INT64_RANGE[1]:
            slot.int64_param = value
        elif isinstance(value, int) and 0 <= value <= UINT64_MAX:
            slot.uint64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        elif isinstance(value, str):
            slot.string_param = _text(value, where)
        else:
            raise HttpInferError(f"{where}: parameter {key!r} must be a string, a number within 64 bits or a "
                                 f"boolean, got {value!r}")


def _json_parameters(parameters: Any) -> dict[str, Any]:
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for key, value in parameters.items()}


def _leaves(data: Any) -> list:
    """The elements of nested JSON lists, row-major."""
    if not isinstance(data, list):
        return [data]
    out: list = []
    for item in data:
        out.extend(_leaves(item))
    return out


def _json_tensor(data: Any, datatype: str, where: str) -> bytes:
    """Raw bytes of a tensor given as JSON ``data`` (nested or flat, row-major)."""
    from tritonclient.utils import serialize_byte_tensor, triton_to_np_dtype

    if not isinstance(data, list):
        raise HttpInferError(f"{where}: \"data\" must be a JSON list, got {type(data).__name__}")
    if datatype in NOT_AS_JSON:
        raise HttpInferError(f"{where}: {datatype} data cannot be sent as JSON; send it as binary data")
    leaves = _leaves(data)
    if datatype == "BYTES":
        if not all(isinstance(leaf, str) for leaf in leaves):
            raise HttpInferError(f"{where}: BYTES \"data\" must hold strings")
        encoded = [_text(leaf, where).encode() for leaf in leaves]
        return serialize_byte_tensor(np.array(encoded, dtype=np.object_)).item() if encoded else b""
    dtype = triton_to_np_dtype(datatype)
    if dtype is None:
        raise HttpInferError(f"{where}: unknown datatype {datatype!r}")
    wanted = bool if datatype == "BOOL" else (bool, int, float)
    if not all(isinstance(leaf, wanted) for leaf in leaves):
        raise HttpInferError(f"{where}: \"data\" must hold {datatype} values only")
    try:
        return np.asarray(leaves, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    except (OverflowError, ValueError, TypeError) as exc:
        raise HttpInferError(f"{where}: \"data\" does not fit {datatype} ({exc})") from None


def _json_data(raw: bytes, datatype: str, where: str) -> list:
    """A raw output tensor as Triton's HTTP ``data``: its elements, flat, row-major."""
    from tritonclient.utils import deserialize_bytes_tensor, triton_to_np_dtype

    if datatype in NOT_AS_JSON:
        raise HttpInferError(f"{where}: {datatype} data cannot be returned as JSON; request it as binary data")
    if datatype == "BYTES":
        return [item.decode("utf-8", "replace") for item in deserialize_bytes_tensor(raw)] if raw else []
    dtype = triton_to_np_dtype(datatype)
    if dtype is None:
        raise HttpInferError(f"{where}: datatype {datatype!r} cannot be returned as JSON; request it as binary data")
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).tolist()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
