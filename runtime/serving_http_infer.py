"""A KServe v2 HTTP inference request as one gRPC ``ModelInfer`` call to Triton, and its answer back as HTTP.

Why: Triton's HTTP frontend cannot see a client that leaves, so a request whose client gave up stays in Triton's queue
and is handed to a model process. Over gRPC, cancelling the call cancels the request: Triton drops it from its queue
and the model sees ``request.is_cancelled()``. The gate therefore sends every HTTP inference request to Triton over
gRPC and cancels the call when its HTTP client leaves.

The translation follows the two protocols' specifications (KServe v2 HTTP/REST with Triton's binary tensor extension;
``inference.GRPCInferenceService``): tensors travel as raw little-endian bytes on both sides (``BYTES`` elements with a
4-byte length prefix); request, input and output parameters map to ``InferParameter`` values; the HTTP-only parameters
(``binary_data_size``, ``binary_data``, ``binary_data_output``) choose the HTTP layout and are not sent. Errors keep
Triton's message and its HTTP status for the same error (``http_status``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

REQUEST_HTTP_ONLY = frozenset({"binary_data_output"})
INPUT_HTTP_ONLY = frozenset({"binary_data_size"})
OUTPUT_HTTP_ONLY = frozenset({"binary_data"})
NUMPY_TYPES = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
               "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
"""KServe v2 datatypes as NumPy dtypes (little-endian, as both protocols send raw tensors)."""
RAW_INPUT_CONTENTS_TAG = b"\x3a"
"""``ModelInferRequest.raw_input_contents`` (field 7, length-delimited): appended by hand, so tensors are copied once."""
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"


class HttpInferError(ValueError):
    """An HTTP inference request that cannot be a valid inference request (answered 400 with this message)."""


class NotTranslated(Exception):
    """A request this module does not translate (the gate forwards it over HTTP as it came)."""


@dataclass(frozen=True)
class InferCall:
    """One HTTP inference request, ready for Triton's gRPC ``ModelInfer``."""

    message: bytes
    """The serialized ``ModelInferRequest``."""
    binary_outputs: bool
    """Whether outputs not named in the request come back as binary data (``binary_data_output``)."""
    output_binary: dict[str, bool]
    """Per requested output: binary data (True) or JSON ``data`` (False)."""


def infer_path(path: str) -> tuple[str, str] | None:
    """``(model name, version)`` of ``/v2/models/NAME[/versions/VERSION]/infer``, else None."""
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer":
        return parts[2], ""
    if len(parts) == 6 and parts[:2] == ["v2", "models"] and parts[3] == "versions" and parts[5] == "infer":
        return parts[2], parts[4]
    return None


def infer_call(model: str, version: str, document: Any, tensors: bytes | memoryview) -> InferCall:
    """The gRPC request for an HTTP one: its JSON ``document`` and the ``tensors`` bytes after it (binary extension).

    Raises :class:`HttpInferError` for a request no server could run, :class:`NotTranslated` for a valid form this
    module leaves to Triton's HTTP frontend (shared-memory tensors, parameters that are not scalars)."""
    from tritonclient.grpc import service_pb2

    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise HttpInferError("the inference request needs a JSON object with an \"inputs\" list")
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    if "id" in document:
        request.id = str(document["id"])
    parameters = _object(document, "parameters", "the request")
    _set_parameters(request.parameters, parameters, REQUEST_HTTP_ONLY)
    view, offset, raw = memoryview(tensors), 0, []
    for index, item in enumerate(document["inputs"]):
        where = f"inputs[{index}]"
        if not isinstance(item, dict):
            raise HttpInferError(f"{where}: expected a JSON object with name, shape and datatype")
        tensor = request.inputs.add(name=str(item.get("name", "")), datatype=str(item.get("datatype", "")))
        tensor.shape.extend(_shape(item.get("shape"), where))
        item_parameters = _object(item, "parameters", where)
        if any(key.startswith("shared_memory") for key in item_parameters):
            raise NotTranslated(f"{where} is in shared memory")
        _set_parameters(tensor.parameters, item_parameters, INPUT_HTTP_ONLY)
        size = item_parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(view) - offset:
                raise HttpInferError(f"{where} ({tensor.name!r}): binary_data_size {size!r} does not fit the "
                                     f"{len(view) - offset:,} bytes of tensor data left in the request")
            raw.append(view[offset:offset + size])
            offset += size
        elif "data" in item:
            raw.append(_json_tensor(item["data"], tensor.datatype, f"{where} ({tensor.name!r})"))
        else:
            raise HttpInferError(f"{where} ({tensor.name!r}): expected \"data\" or a binary_data_size parameter")
    if offset != len(view):
        raise HttpInferError(f"the request carries {len(view) - offset:,} bytes of tensor data that no input claims "
                             "(binary_data_size)")
    output_binary = {}
    for index, item in enumerate(_list(document, "outputs")):
        where = f"outputs[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise HttpInferError(f"{where}: expected a JSON object with a name")
        item_parameters = _object(item, "parameters", where)
        if any(key.startswith("shared_memory") for key in item_parameters):
            raise NotTranslated(f"{where} is in shared memory")
        output = request.outputs.add(name=item["name"])
        _set_parameters(output.parameters, item_parameters, OUTPUT_HTTP_ONLY)
        output_binary[item["name"]] = bool(item_parameters.get("binary_data", False))
    parts: list[bytes | memoryview] = [request.SerializeToString()]
    for chunk in raw:
        parts += [RAW_INPUT_CONTENTS_TAG + _varint(len(chunk)), chunk]
    message = b"".join(parts)
    return InferCall(message, bool(parameters.get("binary_data_output", False)), output_binary)


def http_answer(raw_response: bytes, call: InferCall) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of the HTTP answer for Triton's serialized ``ModelInferResponse``."""
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(raw_response)
    document: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = _json_parameters(response.parameters)
    outputs, binary = [], []
    contents = list(response.raw_output_contents)
    for index, tensor in enumerate(response.outputs):
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        parameters = _json_parameters(tensor.parameters)
        data = contents[index] if index < len(contents) else None
        if data is not None and call.output_binary.get(tensor.name, call.binary_outputs):
            parameters["binary_data_size"] = len(data)
            binary.append(data)
        elif data is not None:
            item["data"] = _json_data(data, tensor.datatype)
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
    return {"INTERNAL": 500, "NOT_FOUND": 404, "UNAVAILABLE": 503, "UNIMPLEMENTED": 501,
            "DEADLINE_EXCEEDED": 504, "RESOURCE_EXHAUSTED": 400}.get(code_name, 400)


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


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise HttpInferError(f"{where}: \"shape\" must be a list of integers, got {value!r}")
    return value


def _set_parameters(target: Any, parameters: dict, http_only: frozenset[str]) -> None:
    """JSON scalars as ``InferParameter`` values (bool, int64, double, string)."""
    for key, value in parameters.items():
        if key in http_only:
            continue
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        elif isinstance(value, str):
            target[key].string_param = value
        else:
            raise NotTranslated(f"parameter {key!r} is not a scalar")


def _json_parameters(parameters: Any) -> dict[str, Any]:
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for key, value in parameters.items()}


def _json_tensor(data: Any, datatype: str, where: str) -> bytes:
    """Raw bytes of a tensor given as JSON ``data`` (nested or flat, row-major)."""
    if datatype == "BYTES":
        items = np.asarray(data, dtype=object).reshape(-1)
        encoded = [item.encode() if isinstance(item, str) else bytes(item) for item in items]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    if datatype not in NUMPY_TYPES:
        raise HttpInferError(f"{where}: datatype {datatype!r} cannot be sent as JSON data; expected one of "
                             f"{', '.join(NUMPY_TYPES)} or BYTES, or send it as binary data")
    try:
        return np.asarray(data, dtype=NUMPY_TYPES[datatype]).tobytes()
    except (TypeError, ValueError) as exc:
        raise HttpInferError(f"{where}: \"data\" is not a list of {datatype} values ({exc})") from None


def _json_data(raw: bytes, datatype: str) -> list:
    """A raw output tensor as Triton's HTTP ``data``: its elements, flat, row-major."""
    if datatype == "BYTES":
        items, offset = [], 0
        while offset + 4 <= len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            item = raw[offset + 4:offset + 4 + length]
            offset += 4 + length
            try:
                items.append(item.decode())
            except UnicodeDecodeError:
                items.append(item.decode("latin-1"))
        return items
    if datatype == "BF16":
        return (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4").tolist()
    return np.frombuffer(raw, NUMPY_TYPES.get(datatype, "u1")).tolist()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
