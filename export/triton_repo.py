"""A Triton model repository for NVIDIA's Triton container: ``DIR/jarrn/config.pbtxt`` + ``DIR/jarrn/1/model.plan``
(TensorRT backend) or ``DIR/jarrn/1/model.onnx`` (ONNX Runtime backend, optionally with the TensorRT accelerator).

    python -m jarrn_deploy.export.triton_repo --model artifacts/jarrn_fp16.engine --out triton_repo          # TensorRT plan
    python -m jarrn_deploy.export.triton_repo --model artifacts/jarrn_fp32.onnx --out triton_repo            # ONNX Runtime
    python -m jarrn_deploy.export.triton_repo --model artifacts/jarrn_fp32.onnx --out triton_repo --onnx-tensorrt
    jarrn export --triton-repo triton_repo --instance-kind cpu                                  # export, then this
    docker run --gpus all --rm -p8000:8000 -p8001:8001 -p8002:8002 -v $PWD/triton_repo:/models \\
        nvcr.io/nvidia/tritonserver:26.08-py3 tritonserver --model-repository=/models          # GPU instances
    (CPU instances: the same without ``--gpus all``.)

The model is served as ``jarrn`` with the contract's tensors (``rgb`` FP32 [B,3,H,W], ``sparse_depth`` FP32 [B,1,H,W]
-> ``depth`` FP32 [B,1,H,W]), dynamic batching and an instance group. For a plan, the batch limit and the accepted H and
W come from the engine's optimisation profile recorded in its manifest (``<engine>.json``); Triton's TensorRT backend
refuses requests outside it. A TensorRT plan only loads in a Triton whose TensorRT is the exact version that built it
(the manifest's ``tensorrt_version``; an NGC release carries the same TensorRT in its ``tensorrt`` and
``tritonserver`` images). The engine is checked against its manifest (size, sha256) and written as a plain plan: a
``jarrn build-engine --compress``ed (zstd) file is decompressed, since Triton reads plans only as TensorRT wrote them.
The config is built with Triton's own model-config protobuf (shipped in ``tritonclient``),
so it is schema-valid by construction; the tests parse it back with the same schema.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import argparse  # noqa: E402
import shutil  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from typing import Sequence  # noqa: E402

from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import InputError, OutputError, UsageError  # noqa: E402
from jarrn_deploy.export.engine.flavours import ENGINE_SUFFIXES  # noqa: E402
from jarrn_deploy.export.triton_config import (  # noqa: E402
    INSTANCE_KINDS,
    MODEL_NAME,
    config_text,
    model_config,
    triton_protobuf,
)

TRITON_TAG = "26.08-py3"
"""The NGC Triton release the README recipe names: the same release as docker/Dockerfile's TensorRT base image."""
DOCKER_COMMAND = (
    "docker run {gpus}--rm -p8000:8000 -p8001:8001 -p8002:8002 -v {folder}:/models "
    "nvcr.io/nvidia/tritonserver:{tag} tritonserver --model-repository=/models"
)


def docker_command(repository: str | Path, instance_kind: str = "gpu") -> str:
    """The ``docker run`` line serving ``repository`` (relative paths are taken from the current folder); GPU
    instances need the container to see the GPUs, CPU instances do not."""
    folder = Path(repository)
    return DOCKER_COMMAND.format(gpus="--gpus all " if instance_kind == "gpu" else "",
                                 folder=folder if folder.is_absolute() else f"$PWD/{folder}", tag=TRITON_TAG)


def machine_instance_kind() -> str:
    """"gpu" when ``nvidia-smi`` sees a GPU here, else "cpu": the default of ``--instance-kind``."""
    from jarrn_deploy.export.gpu_probe import visible_gpus

    return "gpu" if visible_gpus() else "cpu"
SERVE_INSTALL_HINT = 'writing a Triton model repository needs tritonclient: pip install -e ".[serve]"'
TRT_WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True)
class RepositoryOptions:
    """How the model is configured in the repository."""

    max_batch_size: int = 0
    """Largest batch the dynamic batcher forms; 0 = the engine profile's max batch (plan) or 8 (ONNX)."""
    max_queue_delay_us: int = 2000
    """How long a request waits for others of the same shape."""
    instances: int = 1
    """Model instances per device (instance group count)."""
    instance_kind: str = ""
    """"gpu" (KIND_GPU), "cpu" (KIND_CPU, ONNX only), or "" for this machine's (:func:`machine_instance_kind`; always
    "gpu" for a TensorRT plan or the TensorRT accelerator)."""
    onnx_tensorrt: bool = False
    """ONNX only: add ONNX Runtime's TensorRT execution accelerator (engine cache in the container's /tmp)."""
    profile_text: tuple[str, str, str] | None = None
    """ONNX with ``onnx_tensorrt``: the TensorRT EP's min/opt/max ``BxHxW`` (default: the project's default profile)."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 0:
            raise UsageError(f"--max-batch-size: expected 0 (automatic) or more, got {self.max_batch_size}")
        if self.max_queue_delay_us < 0:
            raise UsageError(f"--max-queue-delay-us: expected 0 or more, got {self.max_queue_delay_us}")
        if self.instances < 1:
            raise UsageError(f"--instances: expected at least 1, got {self.instances}")
        if self.instance_kind not in ("", *INSTANCE_KINDS):
            raise UsageError(f"--instance-kind: expected one of {INSTANCE_KINDS}, got {self.instance_kind!r}")


def _pb2():  # noqa: ANN202
    """Triton's model-config protobuf, or the install hint of this command (checked early by ``jarrn export``)."""
    return triton_protobuf(SERVE_INSTALL_HINT)


def _config(platform: str, max_batch_size: int, options: RepositoryOptions, **extra):  # noqa: ANN003, ANN202
    """The repository's ``ModelConfig`` from the one builder (:func:`jarrn_deploy.export.triton_config.model_config`)."""
    return model_config(platform=platform, max_batch_size=max_batch_size, max_queue_delay_us=options.max_queue_delay_us,
                        instances=options.instances, instance_kind=options.instance_kind,
                        install_hint=SERVE_INSTALL_HINT, **extra)


# ---------------------------------------------------------------------------------------------------------------------
# plan and ONNX


def _plan_config(engine: Path, options: RepositoryOptions):  # noqa: ANN202
    """``(config, notes, plan)``: the plan bytes checked against the manifest and decompressed when stored zstd."""
    from jarrn_deploy.export.engine.manifest import EngineManifest, check_engine_file, manifest_path
    from jarrn_deploy.export.export_errors import EngineFileError

    if options.instance_kind != "gpu":
        raise UsageError("--instance-kind cpu: a TensorRT plan runs on a GPU only; use an ONNX model for CPU instances")
    try:
        manifest = EngineManifest.load(manifest_path(engine))
    except EngineFileError as exc:
        raise InputError(f"--model: {exc}; the repository takes the engine's optimisation profile from its manifest "
                         "(build the engine with jarrn build-engine)") from None
    flavour = getattr(manifest, "flavour", "tensorrt")
    if flavour != "tensorrt":
        raise InputError(f"--model: {engine} is a {flavour} engine; Triton's TensorRT backend loads TensorRT plans only "
                         "(build one with jarrn build-engine --flavour tensorrt, or serve the ONNX)")
    profile = manifest.profile_obj
    if profile.min.batch != 1:
        raise InputError(f"--model: the engine's profile starts at batch {profile.min.batch}; Triton sends batches of "
                         f"1..max, so rebuild it with --min 1x{profile.min.height}x{profile.min.width}")
    max_batch = options.max_batch_size or profile.max.batch
    if max_batch > profile.max.batch:
        raise UsageError(f"--max-batch-size {max_batch} exceeds the engine profile's max batch {profile.max.batch} "
                         f"(profile {profile.min} .. {profile.max})")
    try:
        plan = check_engine_file(engine, manifest)
    except EngineFileError as exc:
        raise InputError(f"--model: {exc}") from None
    config = _config("tensorrt_plan", max_batch, options, preferred_batch=profile.opt.batch,
                     profile="0")  # the one optimisation profile jarrn build-engine writes
    notes = [f"TensorRT {manifest.tensorrt_version} plan for {manifest.gpu_name} (compute capability "
             f"{manifest.compute_capability}), precision {manifest.precision}: serve it with a Triton whose TensorRT "
             f"is {manifest.tensorrt_version} on that GPU model",
             f"profile (BxHxW) min {profile.min}, opt {profile.opt}, max {profile.max}: requests outside it are refused"]
    if manifest.compression:
        notes.append(f"{engine.name} is {manifest.compression}-compressed: model.plan holds the decompressed plan "
                     f"({len(plan)} bytes, checked against the manifest)")
    return config, notes, plan


def _onnx_accelerator(onnx_path: Path, options: RepositoryOptions, max_batch: int) -> tuple[dict[str, str], str]:
    from jarrn_deploy.export.engine.graph import precision_from_onnx
    from jarrn_deploy.export.precisions import precision_spec
    from jarrn_deploy.export.export_errors import EngineFileError
    from jarrn_deploy.export.engine.profile import DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT, INPUT_CHANNELS, Profile, ProfileError

    try:
        profile = Profile.parse(*(options.profile_text or (DEFAULT_MIN, DEFAULT_OPT, DEFAULT_MAX)))
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    if profile.max.batch < max_batch or profile.min.batch != 1:
        raise UsageError(f"--min/--max: the TensorRT profile must cover batches 1..{max_batch} (--max-batch-size), "
                         f"got {profile.min} .. {profile.max}")
    try:
        precision = precision_from_onnx(onnx_path)
    except EngineFileError as exc:
        raise InputError(f"--model: {exc}") from None
    shapes = {k: ",".join(f"{name}:{'x'.join(map(str, s))}" for name, s in
                          ((n, getattr(profile, k).tensor_shape(n)) for n in INPUT_CHANNELS))
              for k in ("min", "opt", "max")}
    accelerator = {
        "precision_mode": precision_spec(precision).ort_tensorrt_precision_mode,
        "max_workspace_size_bytes": str(TRT_WORKSPACE_BYTES),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/tmp/jarrn_trt_cache",
        "trt_profile_min_shapes": shapes["min"],
        "trt_profile_opt_shapes": shapes["opt"],
        "trt_profile_max_shapes": shapes["max"],
    }
    return accelerator, f"TensorRT accelerator ({precision} graph), profile {profile.min} .. {profile.max}"


def _onnx_input_hw(onnx_path: Path) -> tuple[int, int]:
    """``(H, W)`` of the graph's rgb input, -1 where dynamic; refuses a fixed batch (Triton owns the batch dimension)."""
    import onnx

    from jarrn_deploy.export.engine.profile import INPUT_CHANNELS

    rgb_name = next(iter(INPUT_CHANNELS))
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    tensor = next((t for t in graph.input if t.name == rgb_name), None)
    if tensor is None:
        raise InputError(f"--model: {onnx_path} has no input {rgb_name!r}; is it a JARRN export?")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise InputError(f"--model: input {rgb_name!r} of {onnx_path} has {len(dims)} dimensions, expected [B,3,H,W]")
    if dims[0] > 0:
        raise InputError(f"--model: {onnx_path} fixes the batch to {dims[0]}; Triton batches requests itself, so export "
                         "it with a dynamic batch (jarrn export without --batch)")
    return dims[2], dims[3]


def _onnx_config(onnx_path: Path, options: RepositoryOptions):  # noqa: ANN202
    max_batch = options.max_batch_size or 8
    height, width = _onnx_input_hw(onnx_path)
    accelerator, notes = None, [f"ONNX Runtime backend, {options.instance_kind.upper()} instances"]
    if options.onnx_tensorrt:
        if options.instance_kind != "gpu":
            raise UsageError("--onnx-tensorrt needs --instance-kind gpu (the TensorRT accelerator runs on the GPU)")
        accelerator, note = _onnx_accelerator(onnx_path, options, max_batch)
        notes.append(note)
    if height > 0:
        notes.append(f"static graph: requests must be exactly {height}x{width}")
    config = _config("onnxruntime_onnx", max_batch, options, accelerator=accelerator, height=height, width=width)
    return config, notes


def _onnx_companions(onnx_path: Path) -> list[Path]:
    """External-data files an ONNX model needs next to it (none for this project's exports)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    locations = {entry.value for tensor in model.graph.initializer if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    return [onnx_path.parent / location for location in sorted(locations)]


def write_repository(model: str | Path, out: str | Path, options: RepositoryOptions = RepositoryOptions(),
                     *, log=print) -> Path:  # noqa: ANN001
    """Write ``out/jarrn/{config.pbtxt, 1/model.plan|model.onnx}`` for ``model`` (an engine with its manifest, or an
    ONNX); returns the model folder. Files are written atomically; other models in ``out`` are left alone."""
    from jarrn_deploy.model.atomic import atomic_path, atomic_write_bytes, atomic_write_text

    model, out = Path(model), Path(out)
    if not options.instance_kind:
        gpu_only = model.suffix.lower() in ENGINE_SUFFIXES or options.onnx_tensorrt
        kind = "gpu" if gpu_only else machine_instance_kind()
        options = replace(options, instance_kind=kind)
    if not model.is_file():
        raise InputError(f"--model: no such file {model}")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out: {out} exists and is not a folder")
    suffix = model.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        config, notes, plan = _plan_config(model, options)
        files: list[tuple[Path | bytes, str]] = [(plan, "model.plan")]
    elif suffix == ".onnx":
        config, notes = _onnx_config(model, options)
        files = [(model, "model.onnx"), *((p, p.name) for p in _onnx_companions(model))]
    else:
        raise InputError(f"--model: expected a TensorRT engine ({', '.join(ENGINE_SUFFIXES)}) or an ONNX file, got {model}")
    version_dir = out / MODEL_NAME / "1"
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out: cannot create {version_dir} ({exc.strerror})") from None
    for source, name in files:  # a checked plan (bytes) is written, a file copied
        if isinstance(source, bytes):
            atomic_write_bytes(version_dir / name, source)
            continue
        with atomic_path(version_dir / name) as tmp:
            shutil.copyfile(source, tmp)
    stale = {"model.plan", "model.onnx"} - {name for _, name in files}
    for name in stale:  # a previous export of the other kind would make Triton's choice ambiguous to a reader
        (version_dir / name).unlink(missing_ok=True)
    atomic_write_text(out / MODEL_NAME / "config.pbtxt", config_text(config))
    log(f"wrote Triton model repository {out}: {MODEL_NAME}/config.pbtxt ({config.platform}, max batch "
        f"{config.max_batch_size}, dynamic batching {config.dynamic_batching.max_queue_delay_microseconds} us, "
        f"{options.instances} {options.instance_kind.upper()} instance(s)) + {MODEL_NAME}/1/{files[0][1]}")
    for note in notes:
        log(f"  {note}")
    log("  serve it: " + docker_command(out, options.instance_kind))
    return out / MODEL_NAME


# ---------------------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jarrn_deploy.export.triton_repo",
        description=f"Write a Triton model repository (model '{MODEL_NAME}', dynamic batching) for NVIDIA's Triton "
                    "container from a TensorRT engine (TensorRT backend) or an ONNX file (ONNX Runtime backend).",
        epilog="Serve it: " + docker_command("triton_repo") + " (CPU instances: without --gpus all)",
    )
    p.add_argument("--model", required=True, help="TensorRT engine with its .json manifest, or an ONNX file")
    p.add_argument("--out", required=True, help="repository folder (created; other models in it are kept)")
    add_repository_arguments(p)
    return p


def add_instance_kind_argument(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--instance-kind`` (also an option of ``jarrn export --triton-repo``)."""
    p.add_argument(f"--{prefix}instance-kind", choices=INSTANCE_KINDS, default="",
                   help="gpu or cpu (ONNX only); default: gpu when this machine has one (always for a plan), else "
                        "cpu; the docker command printed at the end fits it")


def add_repository_arguments(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The repository options (shared with ``jarrn export --triton-repo``, which prefixes them ``triton-``)."""
    p.add_argument(f"--{prefix}max-batch-size", type=int, default=0,
                   help="largest batch Triton forms (default: the engine profile's max batch; 8 for ONNX)")
    p.add_argument(f"--{prefix}max-queue-delay-us", type=int, default=2000,
                   help="dynamic batching queue delay in microseconds (default %(default)s)")
    p.add_argument(f"--{prefix}instances", type=int, default=1, help="model instances per device (default 1)")
    add_instance_kind_argument(p, prefix)
    p.add_argument(f"--{prefix}onnx-tensorrt", action="store_true",
                   help="ONNX: add ONNX Runtime's TensorRT execution accelerator")
    p.add_argument(f"--{prefix}profile", nargs=3, metavar=("MIN", "OPT", "MAX"), default=None,
                   help="ONNX with the TensorRT accelerator: BxHxW shapes of its profile (default 1x64x64 1x320x320 "
                        "4x384x1280)")


def options_from_args(args: argparse.Namespace, prefix: str = "") -> RepositoryOptions:
    get = lambda name: getattr(args, prefix + name)  # noqa: E731
    return RepositoryOptions(max_batch_size=get("max_batch_size"), max_queue_delay_us=get("max_queue_delay_us"),
                             instances=get("instances"), instance_kind=get("instance_kind"),
                             onnx_tensorrt=get("onnx_tensorrt"),
                             profile_text=tuple(get("profile")) if get("profile") else None)


@command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    write_repository(args.model, args.out, options_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
