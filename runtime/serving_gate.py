"""The gate in front of Triton: ``jarrn serve``'s public HTTP and gRPC ports, refusing oversized requests before any
process copies them, forwarding the rest to Triton on internal loopback ports.

Why: this Triton (2.51) has no HTTP input-size limit and an unbounded gRPC receive size, and copies every request into
the Python backend's shared memory before the model sees its shape; one 8000x8000 request cost the server 3.9 GB.

HTTP (aiohttp): the request line and headers are read first. A body larger than :func:`request_byte_limit` (from
``--max-pixels`` and ``--max-batch-size``) gets 400 from its ``Content-Length`` before it is read (what the client
still sends is discarded). A KServe v2 binary request has its JSON header read first (``Inference-Header-Content-Length``
bytes) and an image over ``--max-pixels`` gets 400 naming the input. Bodies without a length (chunked) get 411.
An inference request within the limits goes to Triton as one gRPC ``ModelInfer`` call
(:mod:`jarrn_deploy.runtime.serving_http_infer`), cancelled when its HTTP client leaves, so Triton drops it from its
queue (its own HTTP frontend cannot see a client leave). Everything else streams to Triton's HTTP port and back, chunk
by chunk.

gRPC (grpcio, raw bytes): ``max_receive_message_length`` is the same byte limit, so grpc refuses a larger message
(RESOURCE_EXHAUSTED, "Received message larger than max") from its length prefix, before buffering it. A ``ModelInfer``
within it has its shapes checked (INVALID_ARGUMENT naming the input and ``--max-pixels``) and is forwarded as it came;
a client that cancels cancels the forwarded call, which Triton's Python backend sees (``request.is_cancelled()``).
The other unary methods are forwarded untouched; streaming inference is not offered.
"""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import asynccontextmanager
from concurrent import futures
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

from jarrn_deploy.errors import UnavailableError
from jarrn_deploy.runtime.serving_http_infer import (
    HEADER_LENGTH,
    HttpInferError,
    InferCall,
    NotTranslated,
    http_answer,
    http_status,
    infer_call,
    infer_path,
)
from jarrn_deploy.runtime.serving_model import pixel_limit_message

GRPC_SERVICE = "inference.GRPCInferenceService"
HEADER_SLACK_BYTES = 1 << 20
"""Room for the request's JSON header (or protobuf fields) beside its tensors."""
MAX_JSON_HEADER_BYTES = 1 << 20
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "expect"})
CHUNK_BYTES = 1 << 20
JSON_BODY_TRANSLATED_MAX_BYTES = 16 << 20
"""An inference request whose tensors are all JSON text goes to Triton over gRPC up to this size (the gate parses it);
a larger one streams to Triton's HTTP port as it came (its JSON parsed there, not cancellable)."""
MAX_MESSAGE_BYTES = 2**31 - 1
"""gRPC's largest message: the byte limit (:func:`request_byte_limit`) must stay within it."""
UNREACHABLE_DETAILS = ("failed to connect", "connection refused", "socket closed", "connection reset")
"""grpc's words for a Triton that is not listening (its details name internal ports: not passed on)."""
UNREACHABLE_MESSAGE = "the inference server is not reachable now"
NOT_METADATA = frozenset({"content-length", "content-type", "content-encoding", "accept", "accept-encoding",
                          "user-agent", HEADER_LENGTH.lower()})
"""HTTP headers that describe the HTTP body, not the request: not passed on as gRPC metadata."""


def request_byte_limit(max_pixels: int, max_batch_size: int) -> int:
    """Largest valid request body: ``max_batch_size`` images of ``max_pixels`` pixels, 3 + 1 FP32 channels each, plus
    the header."""
    return max_batch_size * max_pixels * 4 * 4 + HEADER_SLACK_BYTES


@dataclass(frozen=True)
class GateSettings:
    """Where the gate listens, where Triton listens, and the limits it enforces."""

    host: str
    """Public address (``--host``)."""
    http_port: int
    """Public HTTP port."""
    grpc_port: int
    """Public gRPC port."""
    triton_http: str
    """Triton's internal HTTP ``host:port`` (loopback)."""
    triton_grpc: str
    """Triton's internal gRPC ``host:port`` (loopback)."""
    max_pixels: int
    """Largest H*W per image (``--max-pixels``)."""
    max_batch_size: int
    """Largest B (``--max-batch-size``)."""
    workers: int = 64
    """gRPC calls forwarded at once (more wait in grpc's own queue)."""

    @property
    def byte_limit(self) -> int:
        return request_byte_limit(self.max_pixels, self.max_batch_size)

    def bytes_message(self, size: int) -> str:
        return (f"request body of {size:,} bytes is above this server's limit of {self.byte_limit:,} bytes "
                f"({self.max_batch_size} images of at most {self.max_pixels:,} pixels, FP32: jarrn serve --max-pixels "
                f"{self.max_pixels} --max-batch-size {self.max_batch_size}); send tensors as binary data")


def oversized_input(inputs: Iterable[tuple[str, list[int]]], max_pixels: int) -> str | None:
    """The refusal for the first input whose last two dimensions (H, W) hold more than ``max_pixels``, else None."""
    for name, shape in inputs:
        if len(shape) >= 2 and shape[-2] * shape[-1] > max_pixels and shape[-2] > 0 and shape[-1] > 0:
            return pixel_limit_message(name, shape[-2], shape[-1], max_pixels)
    return None


# ---------------------------------------------------------------------------------------------------------------------
# HTTP


class ByteBudget:
    """At most ``limit`` bytes of request bodies held by the gate at once (read, translated, or held by their gRPC
    call until Triton answers); a request waits, unread, for room. Used from one event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._waiters: list[asyncio.Future] = []

    @asynccontextmanager
    async def held(self, size: int) -> AsyncIterator[None]:
        while self.used and self.used + size > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self.used += size
        try:
            yield
        finally:
            self.used -= size
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)


def _grpc_refusal(code_name: str, details: str) -> tuple[int, str]:
    """``(HTTP status, message)`` for a gRPC error of the forwarded call."""
    if code_name == "UNAVAILABLE" and any(words in details.lower() for words in UNREACHABLE_DETAILS):
        return 503, UNREACHABLE_MESSAGE
    return http_status(code_name), details or code_name


def _metadata(headers: Any) -> list[tuple[str, str]]:
    """The HTTP request's own headers (tracing, custom ones) as gRPC metadata; those grpc would refuse are left out."""
    return [(key.lower(), value) for key, value in headers.items()
            if key.lower() not in HOP_BY_HOP and key.lower() not in NOT_METADATA and not key.lower().startswith("grpc-")
            and key.isascii() and value.isascii() and value.isprintable()
            and all(c.isalnum() or c in "-_." for c in key)]


class HttpGate:
    """The HTTP side: an aiohttp server on its own event loop (a daemon thread)."""

    def __init__(self, settings: GateSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jarrn-http-gate", daemon=True)
        self._runner: Any = None
        self._session: Any = None
        self._channel: Any = None
        self._model_infer: Any = None
        self._budget = ByteBudget(settings.byte_limit)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        import grpc
        from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

        self._channel = grpc.aio.insecure_channel(self.settings.triton_grpc, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        self._model_infer = self._channel.unary_unary(f"/{GRPC_SERVICE}/ModelInfer")
        self._session = ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None),
                                      auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent"))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.settings.host, self.settings.http_port, reuse_address=True).start()
        except OSError as exc:
            raise UnavailableError(f"--http-port: cannot listen on {self.settings.host}:{self.settings.http_port} "
                                   f"({exc.strerror}); choose another port (0 = any free one)") from None

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        if self._channel is not None:
            await self._channel.close()

    @staticmethod
    def _refuse(status: int, message: str):  # noqa: ANN205 - aiohttp Response
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    async def _handle(self, request):  # noqa: ANN001, ANN202 - aiohttp Request -> StreamResponse
        head, document = b"", None
        target = infer_path(request.path) if request.method == "POST" else None
        if request.body_exists:
            size = request.content_length
            if size is None:
                return self._refuse(411, "a request body needs a Content-Length header")
            encoding = request.headers.get("Content-Encoding", "identity").lower()
            if target and encoding != "identity":
                return self._refuse(415, f"Content-Encoding {encoding}: this server takes inference requests "
                                         "uncompressed (its size limits count the bytes it receives)")
            header_size = request.headers.get(HEADER_LENGTH)
            if header_size is not None and target:
                refusal, head, document = await self._check_binary_header(request, header_size, size)
                if refusal:
                    return self._refuse(400, refusal)
            if size > self.settings.byte_limit:
                return self._refuse(400, self.settings.bytes_message(size))
            if target and (document is not None or size <= JSON_BODY_TRANSLATED_MAX_BYTES):
                async with self._budget.held(size):
                    return await self._infer(request, target, head, document, size)
        return await self._forward(request, head)

    async def _infer(self, request, target: tuple[str, str], head: bytes, document: Any,  # noqa: ANN001
                     size: int) -> Any:
        """An inference request as one gRPC call to Triton, cancelled if its client leaves before the answer."""
        import grpc
        from aiohttp import web

        rest = await request.content.readexactly(size - len(head))
        try:  # in a thread: a large body must not stall the other requests on this loop
            call_spec, message = await asyncio.to_thread(self._translate, target, document, rest)
        except HttpInferError as exc:
            return self._refuse(400, str(exc))
        except NotTranslated:
            return await self._forward(request, head + rest)
        del rest  # from here the gRPC call holds the only copy of the tensors
        call = self._model_infer(message, metadata=_metadata(request.headers))
        del message
        try:
            raw = await call
        except grpc.aio.AioRpcError as exc:
            return self._refuse(*_grpc_refusal(exc.code().name, exc.details() or ""))
        except grpc.aio.BaseError as exc:  # the channel is closing: the server is stopping
            return self._refuse(503, f"{UNREACHABLE_MESSAGE} ({type(exc).__name__})")
        except asyncio.CancelledError:  # the client left before the answer (aiohttp's handler cancellation)
            call.cancel()  # Triton drops the request from its queue, or the model sees it cancelled
            raise
        try:
            headers, body = await asyncio.to_thread(http_answer, raw, call_spec)
        except HttpInferError as exc:
            return self._refuse(400, str(exc))
        return web.Response(body=body, headers=headers)

    def _translate(self, target: tuple[str, str], document: Any, rest: bytes) -> tuple[InferCall, bytes]:
        """``(the call, its serialized request)`` for an HTTP inference request (``document``: its JSON header, or
        None when ``rest`` is a whole JSON body)."""
        if document is None:
            try:
                document = json.loads(rest)
            except (ValueError, RecursionError) as exc:
                raise HttpInferError(f"the request body is not valid JSON: {exc}") from None
            refusal = self._shape_refusal(document)
            if refusal:
                raise HttpInferError(refusal)
            rest = b""
        call = infer_call(*target, document, len(rest))
        return call, call.message(rest)

    async def _forward(self, request, head: bytes):  # noqa: ANN001, ANN202 - aiohttp Request -> StreamResponse
        """Any other request, streamed to Triton's HTTP port and back (``head``: body bytes already read)."""
        from aiohttp import ClientError, web

        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}

        async def body():  # noqa: ANN202
            if head:
                yield head
            async for chunk in request.content.iter_chunked(CHUNK_BYTES):
                yield chunk

        url = f"http://{self.settings.triton_http}{request.rel_url}"
        try:
            upstream = await self._session.request(request.method, url, headers=headers,
                                                   data=body() if request.body_exists else None)
        except ClientError as exc:
            return self._refuse(503, f"{UNREACHABLE_MESSAGE} ({type(exc).__name__})")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _check_binary_header(self, request, header_size: str,  # noqa: ANN001 - aiohttp Request
                                   size: int) -> tuple[str | None, bytes, dict]:
        """``(refusal or None, the header bytes read, the header)`` of a KServe v2 binary request, read before its
        tensors."""
        if not header_size.isdigit() or not 0 < int(header_size) <= min(size, MAX_JSON_HEADER_BYTES):
            return (f"{HEADER_LENGTH}: expected 1..{min(size, MAX_JSON_HEADER_BYTES)}, got "
                    f"{header_size!r}"), b"", {}
        head = await request.content.readexactly(int(header_size))
        try:
            document = json.loads(head)
        except ValueError as exc:
            return f"the request's JSON header is not valid: {exc!r}", head, {}
        return self._shape_refusal(document), head, document

    def _shape_refusal(self, document: Any) -> str | None:
        """The refusal of an inference request's JSON whose inputs are malformed or an image over ``--max-pixels``."""
        try:
            shapes = [(str(i.get("name", "")), [int(d) for d in i.get("shape", [])]) for i in document["inputs"]]
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            return f"the request's JSON header is not valid: {exc!r}"
        return oversized_input(shapes, self.settings.max_pixels)


# ---------------------------------------------------------------------------------------------------------------------
# gRPC


class _Forward:
    """One unary method: raw bytes in, checked (ModelInfer), forwarded to Triton, raw bytes back."""

    def __init__(self, gate: "GrpcGate", method: str) -> None:
        self.gate, self.method = gate, method
        self.call = gate.channel.unary_unary(f"/{GRPC_SERVICE}/{method}")

    def __call__(self, raw: bytes, context: Any) -> bytes:
        import grpc

        if self.method == "ModelInfer":
            refusal = self.gate.check_infer(raw)
            if refusal:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
        metadata = [(k, v) for k, v in context.invocation_metadata()
                    if not k.startswith((":", "grpc-")) and k not in ("user-agent", "content-type", "te")]
        remaining = context.time_remaining()  # about 9e18 without a client deadline
        future = self.call.future(raw, metadata=metadata,
                                  timeout=remaining if remaining is not None and remaining < 1e9 else None)
        context.add_callback(future.cancel)  # the client cancelled or left: so does the forwarded call
        try:
            return future.result()
        except grpc.FutureCancelledError:
            context.abort(grpc.StatusCode.CANCELLED, "cancelled by the client")
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")
        raise AssertionError("unreachable")  # context.abort raises


class GrpcGate:
    """The gRPC side: a grpcio server of raw-bytes unary handlers with a receive limit."""

    def __init__(self, settings: GateSettings) -> None:
        import grpc

        self.settings = settings
        self.channel = grpc.insecure_channel(settings.triton_grpc, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        self._handlers: dict[str, Any] = {}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="gate"),
                                  options=[("grpc.max_receive_message_length", settings.byte_limit),
                                           ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
        self.server.add_generic_rpc_handlers([_Handlers(self)])
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        try:
            bound = self.server.add_insecure_port(f"{host}:{settings.grpc_port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise UnavailableError(f"--grpc-port: cannot listen on {host}:{settings.grpc_port}; choose another port "
                                   "(0 = any free one)")

    def handler(self, method: str) -> Any:
        import grpc

        if method not in self._handlers:
            self._handlers[method] = grpc.unary_unary_rpc_method_handler(_Forward(self, method))
        return self._handlers[method]

    def check_infer(self, raw: bytes) -> str | None:
        from google.protobuf.message import DecodeError
        from tritonclient.grpc import service_pb2

        try:
            request = service_pb2.ModelInferRequest.FromString(raw)
        except DecodeError:
            return "ModelInfer: the request is not a valid ModelInferRequest"
        return oversized_input(((i.name, list(i.shape)) for i in request.inputs), self.settings.max_pixels)

    def start(self) -> None:
        self.server.start()

    def stop(self, grace_s: float = 1.0) -> None:
        self.server.stop(grace_s).wait()
        self.channel.close()


class _Handlers:
    """grpc's generic handler: every unary method of Triton's service; streaming and unknown ones are not offered."""

    STREAMING = frozenset({"ModelStreamInfer"})

    def __init__(self, gate: GrpcGate) -> None:
        self.gate = gate

    def service(self, details: Any) -> Any:
        service, _, method = details.method.lstrip("/").partition("/")
        if service != GRPC_SERVICE or method in self.STREAMING or not method:
            return None
        return self.gate.handler(method)


class Gate:
    """Both sides; use as a context manager."""

    def __init__(self, settings: GateSettings) -> None:
        self.settings = settings
        self.http = HttpGate(settings)
        self.grpc = GrpcGate(settings)

    def start(self) -> "Gate":
        try:
            self.http.start()
            self.grpc.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for stop in (self.grpc.stop, self.http.stop):
            _quietly(stop)

    def __enter__(self) -> "Gate":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - stopping: the process is going anyway
        pass
