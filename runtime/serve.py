"""``jarrn serve``: NVIDIA Triton Inference Server over :class:`DepthCompleter`, on HTTP, gRPC and Prometheus metrics.

    jarrn serve                                   # bundled model, PyTorch, 127.0.0.1:8000 (HTTP) :8001 (gRPC) :8002 (metrics)
    jarrn serve --model artifacts/jarrn_fp32.onnx --max-batch-size 8 --max-queue-delay-us 2000 --instances 2
    jarrn serve --model jarrn_fp16.engine --host 0.0.0.0    # TensorRT, reachable from other machines

Model ``jarrn``: inputs ``rgb`` FP32 ``[B,3,H,W]`` in 0..1 and ``sparse_depth`` FP32 ``[B,1,H,W]`` metres (0 =
missing), output ``depth`` FP32 ``[B,1,H,W]`` metres; B is Triton's batch dimension, H and W are free (Triton's dynamic
batcher only batches requests of equal H and W). Health (``/v2/health/live``, ``/v2/health/ready``), model metadata and
Prometheus metrics (``:8002/metrics``) are Triton's own.

The server is the Triton binary shipped in the ``nvidia-pytriton`` wheel, started and supervised by PyTriton; the model
runs in Triton's Python backend (:mod:`runtime.serving_model`, one process per instance) so that each bad request gets
its own 400 naming the input while the rest of its batch is answered (see that module for why not ``Triton.bind``).

The Python backend's stub loads ``libpython3.X.so``; the system's copy fails under an interpreter of another patch level
(pytriton issue #51: ``'_thread.RLock' object has no attribute '_recursion_count'``), so the server is started with
this interpreter's own library folder first on ``LD_LIBRARY_PATH`` (:func:`server_environment`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from jarrn.cli import command
from jarrn.errors import InputError, UnavailableError, UsageError
from runtime.serving_model import DEFAULT_MAX_PIXELS, MODEL_NAME, CompleterSettings

SERVE_INSTALL_HINT = 'serving needs PyTriton and the Triton client: pip install -e ".[serve]"'
REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_PY = (
    '"""Written by jarrn serve (runtime/serve.py): the model is runtime.serving_model.TritonPythonModel."""\n'
    "from runtime.serving_model import TritonPythonModel  # noqa: F401\n"
)
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_QUEUE_DELAY_US = 2000
DEFAULT_STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``jarrn serve`` can be told; ports of 0 mean "pick a free one"."""

    completer: CompleterSettings = field(default_factory=CompleterSettings)
    """Backend, model file and per-instance settings of the completer (and the largest accepted H*W)."""
    host: str = "127.0.0.1"
    """Address HTTP, gRPC and metrics bind to; 0.0.0.0 serves other machines too."""
    http_port: int = DEFAULT_HTTP_PORT
    """HTTP/REST (KServe v2) port."""
    grpc_port: int = DEFAULT_GRPC_PORT
    """gRPC (KServe v2) port."""
    metrics_port: int = DEFAULT_METRICS_PORT
    """Prometheus metrics port (``/metrics``)."""
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    """Largest batch Triton's dynamic batcher forms (and the largest B a client may send)."""
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    """How long the dynamic batcher holds a request waiting for others of the same shape."""
    instances: int = 1
    """Model instances (Python-backend processes, each with its own completer) running batches in parallel."""
    log_file: str = ""
    """Triton's log file (empty: a file in the server's temporary folder, shown only when the start fails)."""
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    """How long to wait for the model to load before giving up."""

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise UsageError(f"--{name.replace('_', '-')}: expected a port 0..65535 (0 = any free port), got {value}")
        fixed = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p]
        if len(fixed) != len(set(fixed)):
            raise UsageError(f"--http-port, --grpc-port and --metrics-port must differ, got {fixed}")
        for name, low in (("max_batch_size", 1), ("max_queue_delay_us", 0), ("instances", 1)):
            if getattr(self, name) < low:
                raise UsageError(f"--{name.replace('_', '-')}: expected at least {low}, got {getattr(self, name)}")
        if self.completer.max_pixels < 1:
            raise UsageError(f"--max-pixels: expected a positive pixel count, got {self.completer.max_pixels}")


# ---------------------------------------------------------------------------------------------------------------------
# environment and model repository


def interpreter_library_dir() -> Path | None:
    """This interpreter's folder holding ``libpython3.X.so``, or None for a statically linked interpreter."""
    libdir = sysconfig.get_config_var("LIBDIR")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if libdir and any(Path(libdir).glob(f"libpython{version}*.so*")):
        return Path(libdir)
    return None


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus what Triton's Python-backend stub needs: this interpreter's libpython first on
    ``LD_LIBRARY_PATH`` (pytriton issue #51) and this repository on ``PYTHONPATH`` (the stub imports :mod:`runtime`)."""
    env = dict(environ)
    libdir = interpreter_library_dir()
    if libdir is not None:
        rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != str(libdir)]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir), *rest])
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *rest])
    return env


@contextlib.contextmanager
def _process_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Temporarily replace ``os.environ`` (PyTriton copies it when it starts the server process)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _model_config_pb2():  # noqa: ANN202
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise UnavailableError(SERVE_INSTALL_HINT) from exc
    return model_config_pb2


def add_contract_io(config, model_config_pb2) -> None:  # noqa: ANN001
    """The contract's tensors as Triton model-config inputs/outputs (batch dimension implicit, H and W free)."""
    from model.contract import CONTRACT

    for name, channels in ((CONTRACT.rgb_name, 3), (CONTRACT.sparse_name, 1)):
        tensor = config.input.add()
        tensor.name, tensor.data_type = name, model_config_pb2.TYPE_FP32
        tensor.dims.extend([channels, -1, -1])
    output = config.output.add()
    output.name, output.data_type = CONTRACT.depth_name, model_config_pb2.TYPE_FP32
    output.dims.extend([1, -1, -1])


def python_model_config_text(options: ServeOptions) -> str:
    """``config.pbtxt`` of the Python-backend model ``jarrn`` (dynamic batching, CPU instance group, settings)."""
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    config = pb2.ModelConfig(name=MODEL_NAME, backend="python", max_batch_size=options.max_batch_size)
    add_contract_io(config, pb2)
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    group = config.instance_group.add()
    group.count, group.kind = options.instances, pb2.ModelInstanceGroup.KIND_CPU  # the completer picks its own device
    for key, value in options.completer.to_parameters().items():
        config.parameters[key].string_value = value
    return text_format.MessageToString(config)


def write_python_model_repository(root: Path, options: ServeOptions) -> Path:
    """``root/jarrn/config.pbtxt`` + ``root/jarrn/1/model.py``; returns the model folder."""
    model_dir = root / MODEL_NAME
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(python_model_config_text(options))
    (model_dir / "1" / "model.py").write_text(MODEL_PY)
    return model_dir


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host != "0.0.0.0" else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int, option: str) -> None:
    """Refuse a port something already listens on (Triton would exit, and PyTriton wait two minutes to notice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UnavailableError(f"{option}: cannot listen on {host}:{port} ({exc.strerror}); another server is "
                                   f"there, choose another port (0 = any free one)") from None


def resolve_completer(settings: CompleterSettings) -> CompleterSettings:
    """Check the model file and pick the backend as ``jarrn infer`` does, before any server process starts."""
    from runtime.infer import choose_backend

    if settings.model and not Path(settings.model).is_file():
        raise InputError(f"--model: no such file {settings.model}")
    backend, model, _ = choose_backend(settings.model or None, settings.backend or None)  # InferError: a UsageError
    model_path = str(Path(model).resolve()) if model else ""
    return CompleterSettings(backend=backend, model=model_path, providers=settings.providers, device=settings.device,
                             threads=settings.threads, max_pixels=settings.max_pixels)


# ---------------------------------------------------------------------------------------------------------------------
# the running server


class RunningServer:
    """A started Triton with the ``jarrn`` model loaded; use as a context manager (``stop()`` on exit)."""

    def __init__(self, options: ServeOptions, *, log=print) -> None:  # noqa: ANN001
        self.requested = options
        self._log = log
        self._triton = None
        self._workdir: Path | None = None
        self.options = options

    # -- lifecycle -----------------------------------------------------------------------------------------------------
    def start(self) -> "RunningServer":
        try:
            from pytriton.triton import Triton, TritonConfig
        except ImportError as exc:
            raise UnavailableError(SERVE_INSTALL_HINT) from exc
        options = self.requested
        completer = resolve_completer(options.completer)
        ports = {}
        for name in ("http_port", "grpc_port", "metrics_port"):
            if getattr(options, name):
                check_port_free(options.host, getattr(options, name), f"--{name.replace('_', '-')}")
            ports[name] = getattr(options, name) or free_port(options.host)
        self.options = options = ServeOptions(
            completer=completer, host=options.host, max_batch_size=options.max_batch_size,
            max_queue_delay_us=options.max_queue_delay_us, instances=options.instances, log_file=options.log_file,
            startup_timeout_s=options.startup_timeout_s, **ports)
        self._workdir = Path(tempfile.mkdtemp(prefix="jarrn-serve-"))
        repository = self._workdir / "models"
        write_python_model_repository(repository, options)
        self.log_path = Path(options.log_file) if options.log_file else self._workdir / "triton.log"
        config = TritonConfig(
            model_repository=repository, http_address=options.host, grpc_address=options.host,
            metrics_address=options.host, http_port=options.http_port, grpc_port=options.grpc_port,
            metrics_port=options.metrics_port, log_file=self.log_path, exit_timeout_secs=3, allow_gpu_metrics=False,
            # Up without waiting for the model, and still up when it fails to load: PyTriton's start-up wait would
            # otherwise sit out its 120 s timeout; the model's state and error are read below instead.
            strict_readiness=False, exit_on_error=False,
        )
        started = time.perf_counter()
        self._log(f"starting Triton: model {MODEL_NAME!r} ({completer.backend}, "
                  f"{completer.model or 'bundled default model'}), {options.instances} instance(s) ...")
        try:
            with _process_environment(server_environment(os.environ)):
                self._triton = Triton(config=config, workspace=self._workdir / "pytriton")
                self._triton.run()
            self._wait_until_ready(started)
        except BaseException as exc:
            errors = self._log_errors()
            self.stop()
            from_triton = type(exc).__module__.startswith(("pytriton", "tritonclient", "gevent"))
            if isinstance(exc, (TimeoutError, ConnectionError)) or (isinstance(exc, Exception) and from_triton):
                raise UnavailableError(f"Triton did not start ({type(exc).__name__}: {exc}): {errors}") from None
            raise
        self._log(f"ready in {time.perf_counter() - started:.1f} s")
        return self

    def _wait_until_ready(self, started: float) -> None:
        deadline = started + self.options.startup_timeout_s
        while time.perf_counter() < deadline:
            if self.is_model_ready():
                return
            if not self._triton.is_alive():
                raise UnavailableError(f"Triton stopped while loading model {MODEL_NAME!r}: {self._log_errors()}")
            state, reason = self.model_state()
            if state == "UNAVAILABLE":
                raise UnavailableError(f"model {MODEL_NAME!r} failed to load in Triton: {_reason_headline(reason)}")
            time.sleep(0.2)
        raise UnavailableError(
            f"model {MODEL_NAME!r} was not ready after {self.options.startup_timeout_s:.0f} s: {self._log_errors()}")

    def _log_errors(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no Triton log"
        errors = [line for line in lines if line.startswith("E") or "Error" in line or "error" in line]
        return " | ".join((errors or lines)[-3:])[-2000:] or "empty Triton log"

    def stop(self) -> None:
        if self._triton is not None:
            triton, self._triton = self._triton, None
            triton.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "RunningServer":
        return self.start() if self._triton is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries -------------------------------------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.options.host == "0.0.0.0" else self.options.host

    @property
    def http_url(self) -> str:
        """``host:port`` for ``tritonclient.http.InferenceServerClient``."""
        return f"{self._client_host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` for ``tritonclient.grpc.InferenceServerClient``."""
        return f"{self._client_host}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.options.metrics_port}/metrics"

    @property
    def access_token(self) -> str | None:
        """PyTriton's token for the restricted endpoints (statistics, model repository, ...), header
        ``triton-access-token``; inference, health and metadata need none."""
        return self._triton.get_access_token() if self._triton is not None else None

    def is_alive(self) -> bool:
        return self._triton is not None and self._triton.is_alive()

    def is_model_ready(self) -> bool:
        url = f"http://{self.http_url}/v2/models/{MODEL_NAME}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def model_state(self) -> tuple[str, str]:
        """``(state, reason)`` of the model from Triton's repository index ("LOADING", "READY", "UNAVAILABLE")."""
        request = urllib.request.Request(f"http://{self.http_url}/v2/repository/index", data=b"{}", method="POST",
                                         headers={"triton-access-token": self.access_token or ""})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                index = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return "UNKNOWN", ""
        for entry in index:
            if entry.get("name") == MODEL_NAME:
                return str(entry.get("state", "UNKNOWN")), str(entry.get("reason", ""))
        return "UNKNOWN", ""

    def describe(self) -> str:
        o = self.options
        return (f"serving {MODEL_NAME!r} ({o.completer.backend}, {o.completer.model or 'bundled default model'}) on "
                f"HTTP {self.http_url}, gRPC {self.grpc_url}, metrics {self.metrics_url}; max batch {o.max_batch_size}, "
                f"queue delay {o.max_queue_delay_us} us, {o.instances} instance(s), "
                f"at most {o.completer.max_pixels:,} pixels per image")


def _reason_headline(reason: str) -> str:
    """The exception line of a load failure Triton reports ("Internal: ValueError: ...\n\nAt:\n  <frames>")."""
    lines = [line.strip() for line in reason.replace("\\n", "\n").splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    headline = lines[0]
    return headline.split(": ", 1)[1] if headline.startswith(("Internal: ", "Unknown: ")) else headline


def server_process_ids(root_pid: int | None = None) -> list[int]:
    """Process ids of everything ``root_pid`` (default: this process) started, recursively: the Triton server and its
    Python-backend stubs (Linux ``/proc``)."""
    root = os.getpid() if root_pid is None else root_pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def rss_bytes(pids: Sequence[int]) -> int:
    """Sum of the resident set sizes of ``pids`` (processes that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


# ---------------------------------------------------------------------------------------------------------------------
# command line


SERVE_HELP_EPILOG = """\
Without --backend, the model file decides as in jarrn infer: an engine runs on TensorRT, an ONNX file on
ONNX Runtime, a checkpoint or no --model on PyTorch. Ctrl-C or SIGTERM stops the server.

examples:
  jarrn serve                                             # the bundled model on 127.0.0.1:8000 (HTTP), :8001 (gRPC)
  jarrn serve --model artifacts/jarrn_fp16.onnx --max-batch-size 8 --instances 2
  jarrn serve --host 0.0.0.0 --http-port 9000             # reachable from other machines
  python examples/triton_client.py                        # a client
"""


def build_parser() -> argparse.ArgumentParser:
    from runtime.backends import BACKENDS

    p = argparse.ArgumentParser(
        prog="jarrn serve",
        description="Serve the model with NVIDIA Triton (the server inside the nvidia-pytriton wheel): model "
                    f"{MODEL_NAME!r}, inputs rgb FP32 [B,3,H,W] 0..1 and sparse_depth FP32 [B,1,H,W] metres, output "
                    "depth FP32 [B,1,H,W] metres; HTTP, gRPC, Prometheus metrics, dynamic batching.",
        epilog=SERVE_HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None,
                   help="engine (.engine/.plan), ONNX (.onnx) or checkpoint (.safetensors/.pth); default: bundled model")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="force a backend (default: from --model)")
    p.add_argument("--providers", default="", help="onnxruntime providers in priority order: cpu, cuda, tensorrt")
    p.add_argument("--device", default="", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads per instance (default: the library's)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s; 0.0.0.0 for all)")
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port (default %(default)s; 0 = any)")
    p.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port (default %(default)s; 0 = any)")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help="Prometheus metrics port (default %(default)s; 0 = any)")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                   help="largest batch the dynamic batcher forms (default %(default)s)")
    p.add_argument("--max-queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US,
                   help="how long a request may wait for others of its size, microseconds (default %(default)s)")
    p.add_argument("--instances", type=int, default=1, help="model instances running in parallel (default 1)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest accepted H*W per image; larger requests get HTTP 400 (default %(default)s = 2048x2048)")
    p.add_argument("--log-file", default="", help="write Triton's log here (default: a temporary file)")
    p.add_argument("--startup-timeout", type=float, default=DEFAULT_STARTUP_TIMEOUT_S,
                   help="seconds to wait for the model to load (default %(default)s)")
    return p


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    if args.threads < 0:
        raise UsageError(f"--threads: expected 0 (library default) or more, got {args.threads}")
    completer = CompleterSettings(backend=args.backend or "", model=args.model or "", providers=args.providers,
                                  device=args.device, threads=args.threads, max_pixels=args.max_pixels)
    return ServeOptions(completer=completer, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                        metrics_port=args.metrics_port, max_batch_size=args.max_batch_size,
                        max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
                        log_file=args.log_file, startup_timeout_s=args.startup_timeout)


@command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from_args(args)
    stop_requested = False

    def _on_sigterm(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with RunningServer(options) as server:
            print(server.describe() + "; Ctrl-C to stop", flush=True)
            while not stop_requested and server.is_alive():
                time.sleep(0.5)
            if not server.is_alive() and not stop_requested:
                raise UnavailableError(f"Triton stopped unexpectedly: {server._log_errors()}")
            print("stopping", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
