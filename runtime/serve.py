"""``jarrn serve``: NVIDIA Triton Inference Server over :class:`DepthCompleter`, on HTTP, gRPC and Prometheus metrics.

    jarrn serve                                   # bundled model, ONNX Runtime, 127.0.0.1:8000 (HTTP) :8001 (gRPC)
    jarrn serve --model artifacts/jarrn_fp32.onnx --max-batch-size 8 --max-queue-delay-us 2000 --instances 2
    jarrn serve --model jarrn_fp16.engine --host 0.0.0.0    # TensorRT, reachable from other machines (no auth, no TLS)

Model ``jarrn``: inputs ``rgb`` FP32 ``[B,3,H,W]`` in 0..1 and ``sparse_depth`` FP32 ``[B,1,H,W]`` metres (0 =
missing), output ``depth`` FP32 ``[B,1,H,W]`` metres; B is Triton's batch dimension, H and W are free (Triton's dynamic
batcher only batches requests of equal H and W). Health (``/v2/health/live``, ``/v2/health/ready``), model metadata and
Prometheus metrics (``:8002/metrics``) are Triton's own.

The public HTTP and gRPC ports are the gate's (:mod:`jarrn_deploy.runtime.serving_gate`, threads of this process): it refuses
requests over ``--max-pixels`` (or the bytes that limit implies) before anything copies them, and forwards the rest to
Triton on internal loopback ports (HTTP inference as gRPC calls, cancelled when their client leaves:
:mod:`jarrn_deploy.runtime.serving_http_infer`); metrics are Triton's own.

The server is the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel, installed on first use into a cache and
supervised here (:mod:`jarrn_deploy.runtime.serving_server`); the model runs in Triton's Python backend
(:mod:`jarrn_deploy.runtime.serving_model`, one process per instance) so that each bad request gets its own 400 naming the input while the rest of its batch is
answered. Requests wait in Triton's queue at most ``--queue-timeout`` seconds (a client may ask for less with Triton's
``timeout`` parameter) and at most ``--max-queue-size`` wait at once; the rest get "exceeds maximum queue size".

The Python backend's stub loads ``libpython3.X.so``; the system's copy fails under an interpreter of another patch level
(pytriton issue #51: ``'_thread.RLock' object has no attribute '_recursion_count'``), so the server is started with
this interpreter's own library folder first on ``LD_LIBRARY_PATH`` (:func:`server_environment`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from jarrn_deploy.cli import command
from jarrn_deploy.errors import InputError, UnavailableError, UsageError
from jarrn_deploy.layout import NAMESPACE, package_folder
from jarrn_deploy.runtime.serving_gate import MAX_MESSAGE_BYTES, Gate, GateSettings, request_byte_limit
from jarrn_deploy.export.triton_config import MODEL_NAME, QueuePolicy, config_text, model_config
from jarrn_deploy.runtime.serving_model import (
    DEFAULT_MAX_PIXELS,
    SETTINGS_FILE,
    CompleterSettings,
)
from jarrn_deploy.runtime.serving_server import (
    TEMP_PREFIX,
    ServerProcess,
    exit_reason,
    remove_stale_leftovers,
    server_bundle,
)

SERVE_INSTALL_HINT = 'serving needs the Triton client: pip install -e ".[serve]"'
MODEL_FILE = "jarrn_triton_model.py"
"""The model file's name: Triton's stub puts its folder on ``sys.path``, so a ``model.py`` there would shadow any
``model`` module (the project's own packages are safe under ``jarrn_deploy``; the name stays distinct all the same)."""


def namespace_root() -> Path:
    """The folder that holds the ``jarrn_deploy`` package: what the stub needs on ``PYTHONPATH``."""
    return package_folder(NAMESPACE).parent


MODEL_PY = (
    '"""Written by jarrn serve (runtime/serve.py): the model is '
    'jarrn_deploy.runtime.serving_model.TritonPythonModel."""\n'
    "from jarrn_deploy.runtime.serving_model import TritonPythonModel  # noqa: F401 (jarrn_deploy through PYTHONPATH)\n"
)
"""The Python-backend model file. The stub does not run the editable install's import hook: it finds
``jarrn_deploy`` on ``PYTHONPATH`` (:func:`namespace_root`), which finds its packages in a checkout itself."""


DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_QUEUE_DELAY_US = 2000
DEFAULT_MAX_QUEUE_SIZE = 64
DEFAULT_QUEUE_TIMEOUT_S = 60.0
"""Long enough for a burst of largest images on a CPU; clients that give up sooner say so (gRPC cancel, timeout)."""
DEFAULT_DRAIN_TIMEOUT_S = 10.0
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
    """Batches run at once, each in its own Python-backend process (with its own completer)."""
    spare_instances: int | None = None
    """Model processes beyond ``instances`` taking requests meanwhile (None: :func:`spare_instances`)."""
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    """Requests that may wait in Triton's queue at once; more are refused at once ("exceeds maximum queue size")."""
    queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S
    """Longest wait in the queue before a request is dropped with an error (clients may ask for less)."""
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    """On SIGTERM or Ctrl-C: how long requests in flight may still finish before the server stops."""
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
        for name, low in (("max_batch_size", 1), ("max_queue_delay_us", 0), ("instances", 1), ("max_queue_size", 1),
                          ("drain_timeout_s", 0), ("spare_instances", 0)):
            if getattr(self, name) is not None and getattr(self, name) < low:
                flag = name.removesuffix("_s").replace("_", "-")
                raise UsageError(f"--{flag}: expected at least {low}, got {getattr(self, name)}")
        if not self.queue_timeout_s > 0:
            raise UsageError(f"--queue-timeout: expected a positive number of seconds, got {self.queue_timeout_s}")
        if self.completer.max_pixels < 1:
            raise UsageError(f"--max-pixels: expected a positive pixel count, got {self.completer.max_pixels}")
        largest = request_byte_limit(self.completer.max_pixels, self.max_batch_size)
        if largest > MAX_MESSAGE_BYTES:
            raise UsageError(f"--max-pixels {self.completer.max_pixels} with --max-batch-size {self.max_batch_size}: "
                             f"a request may then take {largest:,} bytes, above gRPC's message limit of "
                             f"{MAX_MESSAGE_BYTES:,}; lower either")


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
    ``LD_LIBRARY_PATH`` (pytriton issue #51) and :func:`namespace_root` on ``PYTHONPATH`` (the stub imports the
    project)."""
    env = dict(environ)
    libdir = interpreter_library_dir()
    if libdir is not None:
        rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != str(libdir)]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir), *rest])
    root = str(namespace_root())
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *rest])
    return env


def python_model_config_text(options: ServeOptions) -> str:
    """``config.pbtxt`` of the Python-backend model ``jarrn`` (dynamic batching, bounded queue, CPU instance group)
    from the one config builder (:mod:`jarrn_deploy.export.triton_config`)."""
    config = model_config(backend="python", default_model_filename=MODEL_FILE, max_batch_size=options.max_batch_size,
                          max_queue_delay_us=options.max_queue_delay_us,
                          instances=options.instances + spare_instances(options),
                          instance_kind="cpu",  # the completer picks its own device
                          queue=QueuePolicy(options.max_queue_size, int(options.queue_timeout_s * 1e6)),
                          install_hint=SERVE_INSTALL_HINT)
    return config_text(config)  # no parameters: clients can read the config, so no server paths in it


def write_python_model_repository(root: Path, options: ServeOptions) -> Path:
    """``root/jarrn/config.pbtxt`` + ``root/jarrn/1/jarrn_triton_model.py`` + the completer's settings (read by the model, not
    shown to clients); returns the model folder."""
    model_dir = root / MODEL_NAME
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(python_model_config_text(options))
    (model_dir / "1" / MODEL_FILE).write_text(MODEL_PY)
    settings = replace(options.completer, run_slots=options.instances)
    (model_dir / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=1) + "\n")
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


def spare_instances(options: "ServeOptions") -> int:
    """``--spare-instances`` as given, else 1 on a machine without a GPU and 0 with one.

    Why a spare: with its only model process busy taking over a batch (whose clients had left), Triton 2.51's dynamic
    batcher left a request that arrived meanwhile waiting 0.5 s after the process was free again (its verbose log:
    "released 7 requests", then "executing 1 requests" 500.3 ms later: the batcher's idle wait). A spare process takes
    such a request at once and waits only for a run slot. It costs one more completer (README, "Run slots and a spare
    model process"); on a GPU that is its own engine and execution memory there, so it is not the default with one.
    The rule looks at the machine, not the backend: ``--backend onnxruntime`` on a GPU machine gets no spare unless
    asked for."""
    if options.spare_instances is not None:
        return options.spare_instances
    from jarrn_deploy.export.gpu_probe import visible_gpus

    return 0 if visible_gpus() else 1


def default_backend() -> str:
    """``jarrn serve``'s backend without --model and --backend: TensorRT when a GPU and TensorRT are there, else ONNX
    Runtime (about 3x faster than PyTorch on a CPU, a third of its memory)."""
    from jarrn_deploy.export.gpu_probe import visible_gpus
    from jarrn_deploy.runtime.infer import _tensorrt_available

    return "tensorrt" if _tensorrt_available() and visible_gpus() else "onnxruntime"


def resolve_completer(settings: CompleterSettings, log=print) -> CompleterSettings:  # noqa: ANN001
    """Check the model file and pick the backend as ``jarrn infer`` does (see :func:`default_backend` for no --model),
    before any server process starts; the bundled model is exported here, once, with progress."""
    from jarrn_deploy.runtime.infer import choose_backend, resolve_model

    if settings.model and not Path(settings.model).is_file():
        raise InputError(f"--model: no such file {settings.model}")
    wanted = settings.backend or (None if settings.model else default_backend())
    backend, model, _ = choose_backend(settings.model or None, wanted)  # InferError: a UsageError
    model = resolve_model(backend, model, log)  # the bundled model as the file this backend runs (None: torch's own)
    model_path = str(Path(model).resolve()) if model else ""
    return replace(settings, backend=backend, model=model_path)


# ---------------------------------------------------------------------------------------------------------------------
# the running server


RESTRICTED_APIS = "model-repository,shared-memory,trace,logging"
"""Endpoints closed to every client: loading models (whose model.py would run code), registering shared memory,
tracing and logging settings. Triton unlocks them with a header value given on its command line; the value set here
holds a line break, which neither HTTP nor gRPC can carry, so there is no secret to leak and no way in."""
RESTRICTION = f"{RESTRICTED_APIS}:jarrn-closed=no\nclient can send this"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_GPU_NOISE = re.compile(r"CudaDriverHelper|NVML|DCGM|pinned memory|cuda", re.IGNORECASE)
"""Log lines of every start without a GPU; they name no cause of anything."""
SHM_DEFAULT_BYTES, SHM_GROWTH_BYTES = 4 << 20, 64 << 20
"""The Python backend's shared memory starts small and grows in 64 MiB steps: with 1 MiB steps Triton took ~0.3 s to
hand seven queued 1024x1024 requests (112 MB) to the model, even when their clients had left (measured with
tests/runtime/test_serve_memory.py::test_work_whose_clients_left_is_dropped)."""


UNLOAD_S_PER_PROCESS = 2
"""Triton unloads the model processes one after another after the drain, about 1.2 s each with ONNX Runtime (its log:
"successfully unloaded" 1.4 s after the drain for one process, 2.5 s for two)."""


def exit_timeout_s(options: "ServeOptions") -> int:
    """Triton's exit timeout: ``--drain-timeout`` for the requests in flight, plus the unloading of every model
    process (otherwise Triton exits with status 1, "Exit timeout expired")."""
    processes = options.instances + spare_instances(options)
    return max(int(round(options.drain_timeout_s)), 0) + UNLOAD_S_PER_PROCESS * processes


def triton_arguments(options: "ServeOptions", repository: Path, backends: Path, shm_prefix: str,
                     internal_ports: tuple[int, int] | None = None) -> list[str]:
    """``tritonserver``'s command line: nothing secret on it (``/proc/PID/cmdline`` is readable by every user). With
    ``internal_ports`` (HTTP, gRPC) Triton listens on loopback there, behind the gate (:mod:`jarrn_deploy.runtime.serving_gate`)."""
    o = options
    inference_host, http_port, grpc_port = (("127.0.0.1", *internal_ports) if internal_ports
                                            else (o.host, o.http_port, o.grpc_port))
    return [
        f"--model-repository={repository}", f"--backend-directory={backends}", "--model-control-mode=none",
        "--strict-readiness=true", "--exit-on-error=true",
        f"--exit-timeout-secs={exit_timeout_s(o)}",
        f"--http-address={inference_host}", f"--http-port={http_port}", f"--grpc-address={inference_host}",
        f"--grpc-port={grpc_port}", f"--metrics-address={o.host}", f"--metrics-port={o.metrics_port}",
        "--allow-gpu-metrics=false",
        f"--http-restricted-api={RESTRICTION}", f"--grpc-restricted-protocol={RESTRICTION}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
        f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
    ]


class RunningServer:
    """A started Triton with the ``jarrn`` model loaded; use as a context manager (``stop()`` on exit).

    Start it from a thread that outlives it (the main thread): the server is told to die with that thread."""

    def __init__(self, options: ServeOptions, *, log=print) -> None:  # noqa: ANN001
        self.requested = options
        self._log = log
        self._server: ServerProcess | None = None
        self._gate: Gate | None = None
        self._internal: tuple[int, int] = (0, 0)
        self._workdir: Path | None = None
        self.options = options
        self.exit_status: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------------
    def start(self) -> "RunningServer":
        options = self.requested
        for stale in remove_stale_leftovers():
            self._log(f"removed {stale} (left by a jarrn serve that is gone)")
        completer = resolve_completer(options.completer, log=self._log)
        bundle = server_bundle(log=self._log)
        ports = {}
        for name in ("http_port", "grpc_port", "metrics_port"):
            if getattr(options, name):
                check_port_free(options.host, getattr(options, name), f"--{name.replace('_', '-')}")
            ports[name] = getattr(options, name) or free_port(options.host)
        spare = spare_instances(options)
        self.options = options = replace(options, completer=completer, spare_instances=spare, **ports)
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        repository = self._workdir / "models"
        write_python_model_repository(repository, options)
        self.log_path = Path(options.log_file) if options.log_file else self._workdir / "triton.log"
        shm_prefix = f"{TEMP_PREFIX}{os.getpid()}-{self._workdir.name.rsplit('-', 1)[-1]}-"
        self._internal = (free_port(), free_port())
        started = time.perf_counter()
        self._log(f"starting Triton: model {MODEL_NAME!r} ({completer.backend}, "
                  f"{Path(completer.model).name if completer.model else 'bundled default model'}), "
                  f"{options.instances} run(s) at once, {options.instances + spare} model process(es) ...")
        try:
            self._server = ServerProcess(
                bundle, triton_arguments(options, repository, bundle.backends, shm_prefix, self._internal),
                server_environment(os.environ), self.log_path)
            self._wait_until_ready(started)
            self._gate = Gate(GateSettings(
                host=options.host, http_port=options.http_port, grpc_port=options.grpc_port,
                triton_http=f"127.0.0.1:{self._internal[0]}", triton_grpc=f"127.0.0.1:{self._internal[1]}",
                max_pixels=completer.max_pixels, max_batch_size=options.max_batch_size,
                workers=options.max_queue_size + 16)).start()
        except BaseException:
            self.stop()
            raise
        self._log(f"ready in {time.perf_counter() - started:.1f} s")
        return self

    def _wait_until_ready(self, started: float) -> None:
        deadline = started + self.options.startup_timeout_s
        while time.perf_counter() < deadline:
            if self.is_model_ready(internal=True):
                return
            if not self._server.is_alive():
                reason = self.load_failure()
                if reason:
                    raise UnavailableError(f"model {MODEL_NAME!r} failed to load in Triton: {reason}")
                raise UnavailableError(f"Triton did not start: {exit_reason(self._server.process.returncode)}: "
                                       f"{self._log_errors()}")
            time.sleep(0.2)
        raise UnavailableError(
            f"model {MODEL_NAME!r} was not ready after {self.options.startup_timeout_s:.0f} s: {self._log_errors()}")

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return []

    def load_failure(self) -> str:
        """The reason Triton gave for failing to load the model ("" when it did not say)."""
        for line in self._log_lines():
            match = re.search(rf"failed to load '{MODEL_NAME}' version \d+: (.*)", line)
            if match:
                return _reason_headline(match.group(1).strip().strip('"'))
        return ""

    def _log_errors(self) -> str:
        """Triton's last error lines, without the ones every start on a machine without a GPU prints."""
        lines = self._log_lines()
        if not lines:
            return "no Triton log"
        errors = [line for line in lines if (line.startswith("E") or "Error" in line or "error" in line)
                  and not NO_GPU_NOISE.search(line)]
        return " | ".join(errors[-3:])[-2000:] if errors else "no error in Triton's log"

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            self.exit_status = server.stop(exit_timeout_s(self.options))
        if self._gate is not None:  # after the drain, so that answers in flight still reach their clients
            gate, self._gate = self._gate, None
            gate.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "RunningServer":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries -------------------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The ``tritonserver`` process id."""
        return self._server.pid if self._server is not None else None

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
    def triton_http_url(self) -> str:
        """Triton's own HTTP ``host:port`` behind the gate (loopback only)."""
        return f"127.0.0.1:{self._internal[0]}"

    def is_alive(self) -> bool:
        return self._server is not None and self._server.is_alive()

    def death_reason(self) -> str:
        """Why the server process ended, with Triton's last error lines."""
        if self._server is None or self._server.is_alive():
            return "tritonserver is running"
        return f"{exit_reason(self._server.process.returncode)}; {self._log_errors()}"

    def is_model_ready(self, internal: bool = False) -> bool:
        """Whether the model answers as ready (through the gate, or Triton's own port with ``internal``)."""
        address = self.triton_http_url if internal else self.http_url
        url = f"http://{address}/v2/models/{MODEL_NAME}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def describe(self) -> str:
        o = self.options
        model = Path(o.completer.model).name if o.completer.model else "bundled default model"
        return (f"serving {MODEL_NAME!r} ({o.completer.backend}, {model}) on HTTP {self.http_url}, gRPC "
                f"{self.grpc_url}, metrics {self.metrics_url}; max batch {o.max_batch_size}, queue delay "
                f"{o.max_queue_delay_us} us, queue at most {o.max_queue_size} requests for {o.queue_timeout_s:g} s, "
                f"{o.instances} run(s) at once (+{spare_instances(o)} spare model process), at most "
                f"{o.completer.max_pixels:,} pixels per image and per run")


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
Backend: without --model and --backend, TensorRT when a GPU and TensorRT are present, else ONNX Runtime (on the
bundled model, exported once and cached); with --model, the file decides as in jarrn infer (an engine runs on
TensorRT, an ONNX file on ONNX Runtime, a checkpoint on PyTorch).

Limits: each image at most --max-pixels pixels (H*W); a batch is run in parts of at most --max-pixels pixels in all,
so its memory stays that of one largest image. At most --max-queue-size requests wait, each at most --queue-timeout s.

Security: HTTP, gRPC and metrics have no authentication and no TLS. Keep the default 127.0.0.1, or put a reverse
proxy with TLS and authentication in front (README, "Serving with Triton"). Model loading, shared-memory
registration, tracing and logging endpoints are closed to all clients.

Ctrl-C or SIGTERM: no new requests; those in flight finish for up to --drain-timeout s; exit status 0.
The first run installs the Triton server (nvidia-pytriton wheel, without its dependencies) into ~/.cache/jarrn-deploy.

examples:
  jarrn serve                                             # the bundled model on 127.0.0.1:8000 (HTTP), :8001 (gRPC)
  jarrn serve --model artifacts/jarrn_fp16.onnx --max-batch-size 8 --instances 2
  jarrn serve --host 0.0.0.0 --http-port 9000             # reachable from other machines: no auth, no TLS
  python examples/triton_client.py                        # a client
"""


def build_parser() -> argparse.ArgumentParser:
    from jarrn_deploy.runtime.backends.registry import BACKEND_NAMES

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
    p.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                   help="force a backend (default: from --model; without it TensorRT on a GPU with TensorRT, else "
                        "onnxruntime)")
    p.add_argument("--providers", default="", help="onnxruntime providers in priority order: cpu, cuda, tensorrt")
    p.add_argument("--device", default="", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads per instance for torch, onnxruntime, openvino (default: the library's)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default %(default)s); 0.0.0.0 serves other machines, with no authentication "
                        "and no TLS: put a reverse proxy in front")
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port (default %(default)s; 0 = any)")
    p.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port (default %(default)s; 0 = any)")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help="Prometheus metrics port (default %(default)s; 0 = any)")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                   help="largest batch the dynamic batcher forms (default %(default)s)")
    p.add_argument("--max-queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US,
                   help="how long a request may wait for others of its size, microseconds (default %(default)s)")
    p.add_argument("--max-queue-size", type=int, default=DEFAULT_MAX_QUEUE_SIZE,
                   help="requests that may wait at once; more are refused at once (default %(default)s)")
    p.add_argument("--queue-timeout", type=float, default=DEFAULT_QUEUE_TIMEOUT_S,
                   help="seconds a request may wait in the queue before it is dropped with an error (default "
                        "%(default)s; a client may ask for less with Triton's timeout parameter)")
    p.add_argument("--instances", type=int, default=1,
                   help="batches run in parallel, each in its own model process (default 1)")
    p.add_argument("--spare-instances", type=int, default=None,
                   help="model processes beyond --instances, taking requests while the others run (default: 1 "
                        "without a GPU, 0 with one, where each holds its own engine in GPU memory)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest accepted H*W per image, and pixels per run of a batch; larger images get HTTP 400 "
                        "(default %(default)s = 2048x2048)")
    p.add_argument("--drain-timeout", type=float, default=DEFAULT_DRAIN_TIMEOUT_S,
                   help="on SIGTERM/Ctrl-C, seconds requests in flight may still finish (default %(default)s); "
                        "Triton then gets 2 s per model process to unload them")
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
                        spare_instances=args.spare_instances,
                        max_queue_size=args.max_queue_size, queue_timeout_s=args.queue_timeout,
                        drain_timeout_s=args.drain_timeout, log_file=args.log_file,
                        startup_timeout_s=args.startup_timeout)


def exposure_warning(host: str) -> str | None:
    """The one-line warning for a --host other than loopback."""
    if host in LOOPBACK_HOSTS:
        return None
    return (f"warning: --host {host}: HTTP, gRPC and metrics are reachable from other machines with no authentication "
            "and no TLS; put a reverse proxy with both in front (see README, Serving with Triton)")


@command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from_args(args)
    warning = exposure_warning(options.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    stop_requested: list[str] = []

    def _on_signal(number: int, _frame: object) -> None:
        stop_requested.append(signal.Signals(number).name)

    previous = {number: signal.signal(number, _on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        with RunningServer(options) as server:
            print(server.describe() + "; Ctrl-C to stop", flush=True)
            while not stop_requested and server.is_alive():
                time.sleep(0.2)
            if not stop_requested:
                raise UnavailableError(f"Triton stopped unexpectedly: {server.death_reason()}")
            print(f"{stop_requested[0]}: refusing new requests, letting those in flight finish (at most "
                  f"{options.drain_timeout_s:g} s) ...", flush=True)
        status = server.exit_status
        if status not in (0, None):
            raise UnavailableError(f"Triton did not stop cleanly: {exit_reason(status)}")
        print("stopped cleanly", flush=True)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
