"""One ONNX graph for the whole tensor contract: metric inputs in, metric depth out, rectification fused.

:func:`export_onnx` exports :class:`model.MetricJarrn` (validity mask, per-image normalisation, padding to a multiple
of 64 and cropping back, both U-Nets, the rectification, de-normalisation) with the TorchScript exporter at opset 17
(the TensorRT-safe path), simplifies it with onnxslim (constant folding, shape folding, dead-node and duplicate
removal),
optionally converts it to FP16 mixed precision or INT8 explicit Q/DQ (:mod:`jarrn_deploy.export.precision`), checks it with
``onnx.checker``, records its provenance in ``metadata_props`` and writes it atomically as a single file.

Graph I/O (see :mod:`jarrn_deploy.model.contract`): inputs ``rgb`` float32 ``[B,3,H,W]`` in [0,1] and ``sparse_depth`` float32
``[B,1,H,W]`` metres (0 = missing); output ``depth`` float32 ``[B,1,H,W]`` metres (+ ``coarse``, ``scale``, ``offset``,
``prob`` with ``aux_outputs``). B, H and W are dynamic (named ``batch``, ``height``, ``width``) unless fixed by
:class:`ExportOptions`; every precision keeps float32 graph inputs and outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import torch

from jarrn_deploy.model import CONTRACT, Jarrn, MetricJarrn
from jarrn_deploy.model.contract import CONTRACT_VERSION
from jarrn_deploy.model.atomic import atomic_write_bytes, file_sha256  # noqa: F401 - re-exported for export/ callers
from jarrn_deploy.export.export_errors import ExportError, ExportMemoryError, ExportOutputError  # noqa: F401 - re-exported
from jarrn_deploy.export.precisions import PRECISION_SPECS, PRECISIONS, load_function, precision_spec  # noqa: F401 - PRECISIONS re-exported
from jarrn_deploy.progress import Log, progress_logger, quiet

MIN_STATIC_SIZE = CONTRACT.pad_multiple
METADATA_PREFIX = "jarrn."
# onnx.save refuses single-file protobufs above 2 GiB; the full model is ~145 MB in FP32.
_PROTOBUF_LIMIT = 2**31 - 1



MAX_STATIC_SIDE = 16384
"""Largest static height or width accepted (TensorRT's default max tensor dimension is far above; this is the size
above which the graph's int32 index arithmetic and the export's memory make no sense on any current device)."""
ENV_SKIP_MEMORY_CHECK = "JARRN_MEMORY_GUARD"


def _calibrated_precisions() -> str:
    """The precisions that take calibration data, as the ``calibration`` error names them."""
    always = [f"'{n}'" for n, spec in PRECISION_SPECS.items() if spec.needs_calibration]
    with_modelopt = [f"'{n}'" for n, spec in PRECISION_SPECS.items() if spec.converter and not spec.needs_calibration]
    return " or ".join(always) + (f" (or {' or '.join(with_modelopt)} with Model Optimizer)" if with_modelopt else "")


def check_static_size_fits(options: "ExportOptions", widths: tuple[int, ...] | None = None) -> None:
    """Refuse a static size that cannot be built: above :data:`MAX_STATIC_SIDE`, or whose tracing and validation
    at that size need more memory than this machine has free (override with ``JARRN_MEMORY_GUARD=off``)."""
    if options.static_hw is None:
        return
    from jarrn_deploy.memory import (EXPORT_BYTES_PER_PIXEL_CHANNEL, HEADROOM, available_host_bytes,
                                     estimate_peak_bytes, gib)

    height, width = options.static_hw
    if max(height, width) > MAX_STATIC_SIDE:
        raise ExportError(f"static_hw: {height}x{width} is too large; height and width must be at most "
                          f"{MAX_STATIC_SIDE}")
    if os.environ.get(ENV_SKIP_MEMORY_CHECK, "").strip().lower() in ("off", "0", "false", "no"):
        return
    needed = estimate_peak_bytes(height, width, options.static_batch or 1, widths=widths,
                                 bytes_per_pixel_channel=EXPORT_BYTES_PER_PIXEL_CHANNEL)
    free = available_host_bytes()
    if free is not None and needed > free * HEADROOM:
        raise ExportMemoryError(
            f"static_hw: exporting at {height}x{width} (batch {options.static_batch or 1}) needs about {gib(needed)} "
            f"to trace and validate, {gib(free)} of host memory available; export with dynamic shapes (no --static) "
            f"or on a larger machine, or override with {ENV_SKIP_MEMORY_CHECK}=off"
        )


@dataclass(frozen=True)
class ExportOptions:
    """How to export: opset, outputs, static or dynamic shapes, precision and INT8 calibration."""

    opset: int = 17
    """ONNX opset of the TorchScript exporter (17 is what TensorRT 8.6-11 parse best; 13..20 accepted)."""
    aux_outputs: bool = False
    """Also output ``coarse``, ``scale``, ``offset`` and ``prob`` (network domain) after ``depth``."""
    static_hw: tuple[int, int] | None = None
    """Fix height and width to ``(H, W)`` (each >= 64, any value, padded inside the graph); None keeps them dynamic."""
    static_batch: int | None = None
    """Fix the batch size; None keeps it dynamic (the batch stays dynamic unless set here, even with ``static_hw``)."""
    precision: str = "fp32"
    """One of :data:`jarrn_deploy.export.precisions.PRECISIONS`: 'fp32'; 'fp16' (U-Nets in FP16, contract ops in FP32,
    FP32 I/O); 'int8' (U-Net convs with explicit Q/DQ)."""
    calibration: str | None = None
    """Representative inputs (.npz or a folder of them) for INT8 calibration and AutoCast; None = the built-in set."""
    int8_exclude: tuple[str, ...] | None = None
    """INT8 only: node-name regexes left unquantized; None = measured default (``jarrn_deploy.export.precision.INT8_EXCLUDE``)."""
    simplify: bool = True
    """Run onnxslim (constant folding, shape inference, dead-node and duplicate removal) on the exported graph."""

    def __post_init__(self) -> None:
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not 13 <= self.opset <= 20:
            raise ExportError(f"opset: expected an integer in 13..20 (17 recommended for TensorRT), got {self.opset!r}")
        if self.precision not in PRECISIONS:
            raise ExportError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        spec = precision_spec(self.precision)
        if self.static_hw is not None:
            hw = tuple(self.static_hw)
            if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in hw):
                raise ExportError(f"static_hw: expected (height, width) as two integers, got {self.static_hw!r}")
            if min(hw) < MIN_STATIC_SIZE:
                raise ExportError(
                    f"static_hw: height and width must be at least {MIN_STATIC_SIZE} (the network downsamples by 64), "
                    f"got {hw[0]}x{hw[1]}"
                )
            object.__setattr__(self, "static_hw", hw)
        if self.static_batch is not None and (
            isinstance(self.static_batch, bool) or not isinstance(self.static_batch, int) or self.static_batch < 1
        ):
            raise ExportError(f"static_batch: expected a positive integer or None, got {self.static_batch!r}")
        if self.calibration is not None and spec.converter is None:
            raise ExportError(f"calibration: only used with precision {_calibrated_precisions()}")
        if self.int8_exclude is not None:
            if self.precision != "int8":
                raise ExportError("int8_exclude: only used with precision 'int8'")
            object.__setattr__(self, "int8_exclude", tuple(str(p) for p in self.int8_exclude))
        if self.calibration is not None:
            object.__setattr__(self, "calibration", str(self.calibration))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["static_hw"] = list(self.static_hw) if self.static_hw else None
        data["int8_exclude"] = list(self.int8_exclude) if self.int8_exclude is not None else None
        return data

    @property
    def input_names(self) -> tuple[str, str]:
        return (CONTRACT.rgb_name, CONTRACT.sparse_name)

    @property
    def output_names(self) -> tuple[str, ...]:
        return (CONTRACT.depth_name, *CONTRACT.aux_names) if self.aux_outputs else (CONTRACT.depth_name,)

    def example_hw(self) -> tuple[int, int]:
        """The size traced at export: the static size, else one that is not a multiple of 64 (padding is traced)."""
        return self.static_hw if self.static_hw else (100, 130)


@dataclass
class ExportStats:
    """What one export measured (also recorded in the graph's metadata)."""

    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage."""
    nodes: dict[str, int] = field(default_factory=dict)
    """Node count after each stage ('exported', 'simplified', 'fp16' / 'int8')."""
    precision_info: dict = field(default_factory=dict)
    """What the precision stage did (library, kept-FP32 nodes, Q/DQ counts, calibration set)."""
    file_bytes: int = 0


stderr_log: Log = progress_logger("export")
"""The exporter's progress lines on stderr, ``[export] ...``."""


HEARTBEAT_SECONDS = 15.0
"""Seconds between "still working" lines while a stage runs (FP16 AutoCast is silent for ~110 s on 2 cores)."""


@contextlib.contextmanager
def heartbeat(log: Log, what: str, every_s: float = HEARTBEAT_SECONDS):
    """Log ``<what>: still working (N s)`` every ``every_s`` seconds until the block ends: the libraries print nothing
    for minutes, and silence looks like a hang."""
    if log is quiet:
        yield
        return
    import threading

    stop, start = threading.Event(), time.perf_counter()

    def beat() -> None:
        while not stop.wait(every_s):
            log(f"{what}: still working ({time.perf_counter() - start:.0f} s)")

    thread = threading.Thread(target=beat, name="export-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _stage(name: str, stats: ExportStats, log: Log):
    log(f"{name} ...")
    start = time.perf_counter()
    with heartbeat(log, name):
        yield
    elapsed = time.perf_counter() - start
    stats.seconds[name] = round(elapsed, 3)
    log(f"{name}: done in {elapsed:.1f} s")


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early, with a one-line message, when ``path`` cannot be written (before any slow work is done).

    Creates no directory and leaves nothing behind: the parent must exist (or be creatable) and accept a file.
    """
    path = Path(path)
    if path.is_dir():
        raise ExportOutputError(f"output: {path} is a directory; give a file name such as {path / 'jarrn_fp32.onnx'}")
    if path.suffix != ".onnx":
        raise ExportError(f"output: expected a file name ending in .onnx, got {path}")
    parent = path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ExportOutputError(f"output: cannot create {parent}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportOutputError(f"output: cannot write to {existing} (permission denied)")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(parent, os.W_OK):
        raise ExportOutputError(f"output: cannot replace {path} (permission denied)")
    return path


def write_probe(folder: str | os.PathLike) -> None:
    """Create and remove a small file in ``folder``: catches what permission bits do not (a read-only mount, /proc,
    a full disk). Raises :class:`ExportOutputError`."""
    from jarrn_deploy.errors import OutputError
    from jarrn_deploy.model.atomic import write_probe as probe

    try:
        probe(folder, "output")
    except OutputError as exc:
        raise ExportOutputError(str(exc)) from None


def save_model_atomic(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save ``model`` as one self-contained .onnx file (no external data), atomically."""
    data = model.SerializeToString()
    if len(data) > _PROTOBUF_LIMIT:
        raise ExportError(
            f"output: the graph is {len(data) / 2**30:.1f} GiB, over the 2 GiB limit of a single ONNX file"
        )
    try:
        return atomic_write_bytes(path, data)
    except OSError as exc:  # full disk, read-only filesystem: the temp file is already removed
        raise ExportOutputError(f"output: could not write {path} ({exc.strerror or exc})") from None


def _dynamic_axes(options: ExportOptions) -> dict[str, dict[int, str]]:
    axes: dict[int, str] = {}
    if options.static_batch is None:
        axes[0] = "batch"
    if options.static_hw is None:
        axes.update({2: "height", 3: "width"})
    if not axes:
        return {}
    return {name: dict(axes) for name in (*options.input_names, *options.output_names)}


def _example_inputs(options: ExportOptions) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = options.example_hw()
    batch = options.static_batch or 1
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch, 3, height, width, generator=gen)
    sparse = torch.rand(batch, 1, height, width, generator=gen) * 10.0
    sparse = sparse * (torch.rand(batch, 1, height, width, generator=gen) < 0.05)
    return rgb, sparse


def trace_to_onnx(network: Jarrn, options: ExportOptions) -> onnx.ModelProto:
    """The contract graph from the TorchScript exporter (constant folding on), before simplification."""
    wrapper = MetricJarrn(network, aux_outputs=options.aux_outputs).eval().cpu()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of dynamo, but it is the TensorRT-safe path (docs/REFERENCE.md section 4).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            _example_inputs(options),
            buffer,
            input_names=list(options.input_names),
            output_names=list(options.output_names),
            opset_version=options.opset,
            dynamic_axes=_dynamic_axes(options),
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant and shape folding, dead-node / Identity / duplicate-constant removal, shape inference."""
    import onnxslim

    return onnxslim.slim(model)


def count_nodes(model: onnx.ModelProto) -> int:
    return len(model.graph.node)


def network_sha256(network: Jarrn) -> str:
    """A digest of the weights themselves (for networks that do not come from a file)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _source_info(network: Jarrn) -> dict[str, str]:
    source = network.source_path
    if source and Path(source).is_file():
        return {"checkpoint": str(source), "checkpoint_sha256": file_sha256(source)}
    return {"checkpoint": "", "checkpoint_sha256": "", "weights_sha256": network_sha256(network)}


def build_metadata(network: Jarrn, options: ExportOptions, stats: ExportStats) -> dict[str, str]:
    """The ``metadata_props`` written into every exported graph (all values are strings; JSON where structured)."""
    import onnxruntime
    import onnxslim

    info = {
        **_source_info(network),
        "config": json.dumps(network.config.to_dict()),
        "contract_version": CONTRACT_VERSION,
        "precision": options.precision,
        "export_options": json.dumps(options.to_dict()),
        "inputs": json.dumps(list(options.input_names)),
        "outputs": json.dumps(list(options.output_names)),
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "exporter": f"torch.onnx TorchScript exporter, opset {options.opset}, constant folding",
        "simplifier": f"onnxslim {onnxslim.__version__}" if options.simplify else "none",
        "node_counts": json.dumps(stats.nodes),
    }
    if stats.precision_info:
        info["precision_info"] = json.dumps(stats.precision_info, sort_keys=True)
    return {METADATA_PREFIX + k: v for k, v in info.items()}


def read_metadata(path_or_model: str | os.PathLike | onnx.ModelProto) -> dict[str, str]:
    """The graph's ``jarrn.*`` metadata without the prefix (JSON values left as strings). For its precision use
    :func:`jarrn_deploy.export.precisions.artifact_precision` (or ``onnx_precision``): it has the one default."""
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        model = onnx.load(str(path_or_model), load_external_data=False)
    return {
        p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)
    }


def _set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "jarrn-deploy export"
    model.doc_string = (
        "JARRN depth completion: rgb [B,3,H,W] in [0,1] + sparse_depth [B,1,H,W] metres (0 = missing) -> "
        "depth [B,1,H,W] metres; see metadata_props jarrn.*"
    )


def export_onnx(
    network: Jarrn,
    output_path: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    log: Log | None = None,
    stats: ExportStats | None = None,
) -> Path:
    """Export ``network`` wrapped in the tensor contract to ``output_path`` (one .onnx file, written atomically).

    Returns the path. ``log`` receives stage messages (default: silent; :func:`stderr_log` prints them); pass an
    :class:`ExportStats` to get stage times, node counts and precision details back. Raises :class:`ExportError`
    with a one-line message for bad options, an unwritable path, missing precision libraries or bad calibration data;
    nothing is left at ``output_path`` (or beside it) when it fails.
    """
    options = options or ExportOptions()
    log = log or quiet
    stats = stats if stats is not None else ExportStats()
    output_path = check_output_path(output_path)
    if not isinstance(network, Jarrn):
        raise ExportError(f"network: expected a model.Jarrn, got {type(network).__name__}")
    check_static_size_fits(options, network.config.widths)
    network = network.eval()
    calibration = None
    spec = precision_spec(options.precision, "precision")
    if spec.converter is not None:
        from jarrn_deploy.export import precision as precision_mod
        from jarrn_deploy.export.calibration import load_calibration

        backend = precision_mod.require_backend(options.precision)  # fail before the slow work when no library
        if spec.needs_calibration or backend == "modelopt":  # Model Optimizer's conversions all run calibration data
            with _stage("loading calibration data", stats, log):
                calibration = load_calibration(options.calibration, static_hw=options.static_hw,
                                               static_batch=options.static_batch)

    with _stage(f"tracing MetricJarrn to ONNX (opset {options.opset})", stats, log):
        model = trace_to_onnx(network, options)
    stats.nodes["exported"] = count_nodes(model)
    if options.simplify:
        with _stage("simplifying with onnxslim", stats, log):
            model = simplify(model)
        stats.nodes["simplified"] = count_nodes(model)
        log(f"nodes: {stats.nodes['exported']} exported -> {stats.nodes['simplified']} after onnxslim")

    if spec.converter is not None:
        with _stage(spec.conversion or f"converting to {spec.label}", stats, log):
            model, stats.precision_info = load_function(spec.converter)(model, calibration, options, log)
        stats.nodes[spec.name] = count_nodes(model)

    with _stage("checking the graph", stats, log):
        _set_metadata(model, build_metadata(network, options, stats))
        onnx.checker.check_model(model, full_check=False)
        _check_io(model, options)
    with _stage("writing", stats, log):
        save_model_atomic(model, output_path)
    stats.file_bytes = output_path.stat().st_size
    log(f"graph: {stats.file_bytes / 1e6:.2f} MB, {count_nodes(model)} nodes")
    return output_path


def _check_io(model: onnx.ModelProto, options: ExportOptions) -> None:
    """Graph inputs/outputs are the contract's names, float32, with the requested static and dynamic dims."""
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != list(options.input_names) or outputs != list(options.output_names):
        raise ExportError(f"internal: graph I/O {inputs} -> {outputs} does not match the contract")
    for value in (*model.graph.input, *model.graph.output):
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ExportError(f"internal: graph tensor {value.name!r} is not float32")
