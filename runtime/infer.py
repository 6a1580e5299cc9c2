"""Complete one RGB + sparse depth pair with any backend and write the depth as PNGs (``python -m jarrn_deploy.runtime.infer``,
``jarrn infer``).

Writes, each atomically: ``DIR/depth.png`` (uint16, metres x 256, the KITTI convention: 0 = no depth, up to 255.99 m),
``DIR/depth_color.png`` (turbo colour map, near = blue, with a colour bar in metres and a title naming the backend,
precision and model) and ``DIR/panel.png`` (RGB, sparse input and output side by side, same title, shared colour bar).

The backends, the files each runs and the options each takes come from the registry
(:mod:`jarrn_deploy.runtime.backends.registry`). Backend choice when ``--backend`` is not given (the fastest that can
run ``--model``): an engine runs on TensorRT (or, without TensorRT, on ONNX Runtime with the ONNX its manifest names),
an ONNX file on ONNX Runtime (CUDA when onnxruntime-gpu sees a GPU), a checkpoint or no ``--model`` on PyTorch. With
no ``--model`` every backend runs the bundled default model: those that need a file (ONNX Runtime, OpenVINO,
TensorRT) get it exported (and built) once and cached by content (``runtime/default_model.py``).

Argument parsing comes first and imports nothing heavy, so ``--help`` answers at once; numpy, PyTorch, ONNX Runtime
and TensorRT are imported only when the work starts. Every check that needs no pixels runs before the model loads
(files, folders, a writable ``--out`` that would not replace an input, options the chosen backend ignores), and the
memory guard sees the image size from the file header before any pixel is read. Exit statuses: the one table of
:mod:`jarrn_deploy.errors`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from jarrn_deploy.cli import command
from jarrn_deploy.errors import InputError, JarrnError, OutputError, UnavailableError, UsageError
from jarrn_deploy.options import ignored_option, repeated_options
from jarrn_deploy.progress import progress_logger, warn
from jarrn_deploy.model.atomic import check_input_file
from jarrn_deploy.runtime.backends.registry import BACKEND_NAMES, BACKENDS, backend_spec, backends_for_file, cli_option_owners

KITTI_SCALE = 256.0  # the same value as model.depth_io.KITTI_DEPTH_SCALE, spelled here to keep --help free of numpy
BUNDLED = "bundled default model"


OUTPUT_NAMES = ("depth.png", "depth_color.png", "panel.png")
"""The files infer writes into ``--out``."""


class InferError(UsageError):
    """A bad argument to ``infer``: the message is printed as one line, without a traceback (exit 2)."""


def model_kind(model: str | None) -> str:
    """"engine", "onnx" or "checkpoint" from the file name (None = the bundled checkpoint; a suffix no backend
    claims is left to the checkpoint loader, which names the ones it reads)."""
    specs = backends_for_file(model) if model is not None else ()
    return specs[0].model_kind if specs else "checkpoint"


def _tensorrt_available(engine: str | None = None) -> bool:
    """Whether the library that runs ``engine`` is installed: the flavour its manifest records (TensorRT or
    TensorRT-RTX); standard TensorRT when there is no engine or no readable manifest."""
    from jarrn_deploy.export.engine.flavours import TENSORRT, is_installed

    flavour = TENSORRT
    if engine is not None:
        from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path
        from jarrn_deploy.export.export_errors import EngineFileError

        try:
            flavour = EngineManifest.load(manifest_path(engine)).flavour or TENSORRT
        except EngineFileError:
            pass
    return is_installed(flavour)


def choose_backend(model: str | None, backend: str | None) -> tuple[str, str | None, str]:
    """``(backend, model path to load, why)`` following the rule in the module docstring."""
    kind = model_kind(model)
    if backend is not None and model is None:
        spec = backend_spec(backend)
        if spec.bundled_model is None:
            return backend, None, f"requested with --backend; {BUNDLED}"
        if spec.model_kind == "engine":
            from jarrn_deploy.runtime.default_model import require_tensorrt

            require_tensorrt()  # its own line: the bundled engine is built with standard TensorRT
        spec.require()  # before any work: one line naming the install command
        return backend, None, f"requested with --backend; {BUNDLED}, exported once and cached"
    if backend is not None:
        needs = backend_spec(backend).model_kind
        if kind != needs:
            hints = {
                "engine": "an engine from python export/build_engine.py (.engine)",
                "onnx": "an ONNX file from python export/to_onnx.py (.onnx)",
                "checkpoint": "a checkpoint (.safetensors/.pth/.pt)",
            }
            raise InferError(f"--backend {backend} needs --model to be {hints[needs]} (or no --model for the "
                             f"{BUNDLED}), got {model}")
        return backend, model, "requested with --backend"
    if kind == "engine":
        if _tensorrt_available(model):
            return backends_for_file(model)[0].name, model, "TensorRT engine given and its TensorRT library installed"
        from jarrn_deploy.export.engine.flavours import TENSORRT_INSTALL_HINT
        from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path
        from jarrn_deploy.export.export_errors import EngineFileError

        try:
            onnx_path = EngineManifest.load(manifest_path(model)).onnx_path
        except EngineFileError:
            onnx_path = None
        if onnx_path and Path(onnx_path).is_file():
            return (backends_for_file(onnx_path)[0].name, onnx_path,
                    "TensorRT not installed: ONNX Runtime on the engine's source ONNX")
        raise UnavailableError(TENSORRT_INSTALL_HINT)
    if kind == "onnx":
        return backends_for_file(model)[0].name, model, "ONNX model given"
    if model is None and BACKENDS["torch"].missing() is not None:
        return "onnxruntime", None, f"{BUNDLED}; PyTorch is not installed, so ONNX Runtime on its cached export"
    return "torch", model, "checkpoint given" if model else BUNDLED


def read_sparse(path: Path, scale: float) -> Any:
    """uint16 depth PNG (metres = value / scale) or .npy in metres (a float32 HxW array)."""
    import numpy as np

    from jarrn_deploy.model.depth_io import read_depth_png

    check_input_file(path, "--sparse", "a 16-bit depth PNG or a .npy of metres")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad files
            raise InputError(f"--sparse: {path} could not be read as .npy ({exc})") from None
        array = _as_map(array, path)
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"--sparse: {path} holds {array.dtype}, expected float metres (0 = missing)")
        return array.astype(np.float32)
    try:
        return read_depth_png(path, scale=scale)
    except (ValueError, OSError) as exc:
        raise InputError(f"--sparse: {exc}") from None


def _as_map(array: Any, path: Path) -> Any:
    """An HxW array from a .npy holding HxW, 1xHxW or HxWx1; anything else is refused naming the shape."""
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2:
        raise InputError(f"--sparse: expected an HxW array of metres in {path}, got shape {array.shape}")
    return array


def input_sizes(args: argparse.Namespace) -> tuple[int, int]:
    """``(height, width)`` of ``--rgb`` from its header and the same of ``--sparse`` (PNG header, or the .npy's
    header), without reading a pixel; :class:`InputError` when they differ or a file is no image."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    def header(path: Path, flag: str) -> tuple[int, int]:
        try:
            with Image.open(path) as image:
                return image.size[1], image.size[0]
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{flag}: {path} could not be read as an image ({exc})") from None
        except Image.DecompressionBombError as exc:
            raise InputError(f"{flag}: {path}: {exc}") from None

    rgb_hw = header(args.rgb, "--rgb")
    if args.sparse.suffix.lower() == ".npy":
        try:
            sparse_hw = tuple(_as_map(np.load(args.sparse, mmap_mode="r", allow_pickle=False), args.sparse).shape)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad files
            raise InputError(f"--sparse: {args.sparse} could not be read as .npy ({exc})") from None
    else:
        sparse_hw = header(args.sparse, "--sparse")
    if rgb_hw != sparse_hw:
        raise InputError(
            f"--rgb and --sparse: sizes differ, rgb is {rgb_hw[1]}x{rgb_hw[0]}, sparse is "
            f"{sparse_hw[1]}x{sparse_hw[0]} (width x height)"
        )
    return rgb_hw


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that needs neither pixels nor the model, before any work: input files (not folders), a positive
    ``--sparse-scale``, an ``--out`` that can be written and whose outputs would not replace an input."""
    from jarrn_deploy.memory import guard_disabled
    from jarrn_deploy.model.atomic import check_writable_folder, refuse_overwriting_inputs

    guard_disabled()  # a junk JARRN_MEMORY_GUARD value is a usage error now, not after the model loads
    check_input_file(args.rgb, "--rgb", "an 8-bit PNG or JPEG image")
    check_input_file(args.sparse, "--sparse", "a 16-bit depth PNG or a .npy of metres")
    if args.model is not None:
        check_input_file(Path(args.model), "--model", "a checkpoint, ONNX or engine file")
    if args.sparse_scale is not None and not (args.sparse_scale > 0 and args.sparse_scale < float("inf")):
        raise UsageError(f"--sparse-scale: expected a positive number of PNG units per metre (KITTI 256, TUM 5000, "
                         f"millimetres 1000), got {args.sparse_scale:g}")
    if args.out.exists() and not args.out.is_dir():
        raise OutputError(f"--out: {args.out} exists and is not a folder")
    refuse_overwriting_inputs([args.out / name for name in OUTPUT_NAMES],
                              {"--rgb": args.rgb, "--sparse": args.sparse, "--model": args.model}, "--out")
    check_writable_folder(args.out, "--out", create=False)  # now, not after the inference


def warn_ignored_options(args: argparse.Namespace, backend: str) -> None:
    """One warning line for each option given that the chosen backend or input does not use."""
    warn_ignored_backend_options(args, backend)
    if args.sparse_scale is not None and args.sparse.suffix.lower() == ".npy":
        ignored_option("--sparse-scale", "a .npy sparse map holds metres already")


def warn_ignored_backend_options(args: argparse.Namespace, backend: str) -> None:
    """One warning line for each backend-only option of the registry (``--providers``, ``--device`` ...) given in
    ``args`` that ``backend`` does not use (``jarrn infer``, ``jarrn bag``)."""
    spec = backend_spec(backend)
    for flag, (owners, does) in cli_option_owners().items():
        if flag in spec.cli_options or not getattr(args, flag.lstrip("-").replace("-", "_"), None):
            continue
        if flag == "--device":  # a device given to a backend that chooses its device another way, or has one
            hint = f"; choose its device with {spec.device_flag}" if spec.device_flag else ""
            ignored_option(flag, f"only {owners} {does} ({backend} runs the model{hint})")
        else:
            ignored_option(flag, f"only {owners} {does}, and {backend} runs the model")


def scale_warning(sparse: Any, path: Path, scale: float) -> str | None:
    """One line when the sparse depth looks mis-scaled (see ``jarrn_deploy.model.depth_io.depth_scale_warning``), else None."""
    from jarrn_deploy.model.depth_io import depth_scale_warning

    is_png = path.suffix.lower() != ".npy"
    warning = depth_scale_warning(sparse, scale if is_png else None)
    if warning is None:
        return None
    return f"--sparse: {warning.replace(' scale ', ' --sparse-scale ') if is_png else warning}"


def backend_options(backend: str, *, providers: str | None = None, device: str | None = None,
                    cuda_graphs: bool = False, threads: int = 0) -> Any:
    """The registry's options for ``backend`` from command-line values (``jarrn infer``, ``jarrn bag``, the serving
    model): each backend takes the ones it uses; ``threads`` 0 = the library's default."""
    from jarrn_deploy.runtime.backends.options import CliValues

    options_type = backend_spec(backend).options_type
    if options_type is None:
        return None
    return options_type.from_cli(CliValues(providers=tuple(p.strip() for p in (providers or "").split(",") if p.strip()),
                                           device=device, cuda_graphs=cuda_graphs, threads=threads))


def resolve_model(backend: str, model: str | None, log: Any = None) -> str | None:
    """``model``, or with None the bundled model as a file ``backend`` runs (exported or built once and cached, with
    progress on ``log``, default :func:`progress`); None for a backend that loads the bundled checkpoint itself."""
    spec = backend_spec(backend)
    if model is None and spec.bundled_model is not None:
        return str(spec.bundled_model(log or progress))
    return model


def build_completer(backend: str, model: str | None, options: Any = None):  # noqa: ANN201 - a DepthCompleter
    """The :class:`DepthCompleter` of ``backend`` over ``model`` (from :func:`resolve_model`); ``options``: the
    registry's options type for it (None: its defaults)."""
    from jarrn_deploy.runtime import DepthCompleter

    return DepthCompleter(backend_spec(backend).open(model, options))


def model_precision(backend: str, model: str | None) -> str:
    """The model file's precision as :func:`jarrn_deploy.export.precisions.artifact_precision` reads it (ONNX
    metadata or graph, engine manifest; "unknown" without a record); 'fp32' for PyTorch."""
    if backend == "torch" or model is None:
        return "fp32"
    from jarrn_deploy.export.precisions import artifact_precision

    return artifact_precision(model)


def write_outputs(out_dir: Path, rgb: Any, sparse: Any, depth: Any, caption: str) -> list[Path]:
    """depth.png, depth_color.png (colour bar in metres) and panel.png in ``out_dir``; ``caption`` says what made
    them (backend, precision, model)."""
    from jarrn_deploy.model.depth_io import write_depth_png, write_rgb_png
    from jarrn_deploy.runtime.panel import depth_with_colorbar, display_range, make_panel

    from jarrn_deploy.model.atomic import staged_outputs

    value_range = display_range(depth)
    points = int((sparse > 0).sum())
    titles = (
        f"RGB {rgb.shape[1]}x{rgb.shape[0]}",
        f"sparse input: {points:,} points ({100 * points / sparse.size:.1f}%)",
        "completed depth",
    )
    with staged_outputs(out_dir) as stage:  # all three files or none (a full disk leaves nothing half-done)
        staged = [
            write_depth_png(stage / "depth.png", depth, scale=KITTI_SCALE),
            write_rgb_png(stage / "depth_color.png", depth_with_colorbar(depth, title=caption, value_range=value_range,
                                                                     sparse_m=sparse)),
            write_rgb_png(stage / "panel.png", make_panel(rgb, sparse, depth, titles=titles, caption=caption)),
        ]
    return [out_dir / path.name for path in staged]


HELP_DESCRIPTION = """\
Complete the depth of one image: give a colour image and its sparse depth (LiDAR, depth camera or any
scattered points), get dense depth in metres. Writes three files to --out: depth.png (16-bit, metres x 256),
depth_color.png (colour picture with a scale bar in metres) and panel.png (input, sparse points and result
side by side). Runs the bundled model unless --model names another one."""

HELP_EPILOG = """\
which backend runs:
  Without --backend, the file given with --model decides: an engine (.engine, .plan) runs on TensorRT,
  an ONNX file on ONNX Runtime, a checkpoint (.safetensors, .pth) or no --model on PyTorch. With no
  --model, every backend uses the bundled model; ONNX Runtime, OpenVINO and TensorRT export (and build) it on
  first use, which takes a while once, and keep it in ~/.cache/jarrn-deploy/models for later runs.
  --backend openvino runs an ONNX file on the CPU with OpenVINO (pip install openvino).

sparse depth files:
  A 16-bit PNG stores depth x scale: KITTI uses 256 (the default), TUM RGB-D 5000, most depth cameras
  millimetres (1000). A .npy file holds float metres. 0 means no measurement. A depth that does not look
  like metres (for instance a TUM file read with the KITTI scale) gets a warning suggesting a scale.

examples:
  python -m jarrn_deploy.runtime.infer --rgb image.png --sparse lidar.png --out results/
  python -m jarrn_deploy.runtime.infer --rgb rgb.png --sparse depth.png --sparse-scale 5000 --out results/
  python -m jarrn_deploy.runtime.infer --rgb rgb.png --sparse depth.png --backend onnxruntime --out results/
  python -m jarrn_deploy.runtime.infer --rgb rgb.png --sparse points.npy --model model.engine --out results/
  jarrn infer --rgb data/real/tum_desk/rgb.png --sparse data/real/tum_desk/depth.png --sparse-scale 5000 --out out/
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m jarrn_deploy.runtime.infer`` (building it imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog="jarrn infer",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rgb", required=True, type=Path, help="colour image, 8-bit PNG or JPEG")
    parser.add_argument("--sparse", required=True, type=Path,
                        help="sparse depth: a 16-bit PNG (metres = value / --sparse-scale) or a .npy of float "
                             "metres; 0 = missing")
    parser.add_argument("--out", required=True, type=Path, help="folder for the results (created if needed)")
    parser.add_argument("--model", default=None,
                        help="model to run: a TensorRT engine (.engine, .plan), an ONNX file (.onnx) or a checkpoint "
                             "(.safetensors, .pth); default: the bundled model, on any backend")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                        help="run on this backend (default: the fastest that can run --model; see below)")
    parser.add_argument("--sparse-scale", type=float, default=None,
                        help="PNG units per metre: 256 KITTI (default), 5000 TUM RGB-D, 1000 millimetres")
    parser.add_argument("--providers", default=None,
                        help="ONNX Runtime only: execution providers in order of preference, comma separated: "
                             "cpu, cuda, tensorrt (default: cuda when available, else cpu)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="TensorRT only: record and replay a CUDA graph per input size (faster repeated calls)")
    parser.add_argument("--debug", action="store_true", help="show the full Python traceback on errors")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    repeated_options(parser, argv)
    return args


def run(args: argparse.Namespace) -> int:
    from jarrn_deploy.model.depth_io import read_rgb

    check_arguments(args)
    height, width = input_sizes(args)
    backend, model, why = choose_backend(args.model, args.backend)
    warn_ignored_options(args, backend)
    scale = args.sparse_scale if args.sparse_scale is not None else KITTI_SCALE
    step(f"loading {Path(model).name if model else BUNDLED} on {backend} ...")
    start = time.perf_counter()
    model = resolve_model(backend, model)
    completer = build_completer(backend, model, backend_options(backend, providers=args.providers,
                                                                device=args.device, cuda_graphs=args.cuda_graphs))
    load_s = time.perf_counter() - start
    if completer.memory_guard is not None:
        completer.memory_guard.check((1, 3, height, width))  # from the header: before any pixel is read
    try:
        rgb = read_rgb(args.rgb)
    except (ValueError, OSError) as exc:
        raise InputError(f"--rgb: {exc}") from None
    import warnings

    from jarrn_deploy.model.depth_io import DepthScaleWarning

    with warnings.catch_warnings():  # the reader's own warning names the file; ours names the option to change
        warnings.simplefilter("ignore", DepthScaleWarning)
        sparse = read_sparse(args.sparse, scale)
    args.scale_warning = scale_warning(sparse, args.sparse, scale)
    step(f"completing {width}x{height} ...")
    start = time.perf_counter()
    depth = completer.complete(rgb, sparse)
    run_s = time.perf_counter() - start
    completer.close()
    precision = model_precision(backend, model)
    model_label = Path(args.model).name if args.model else (
        f"{_bundled_name()} (bundled{', exported' if backend_spec(backend).bundled_model else ''})")
    caption = f"{backend} {precision.upper()}, model {model_label}"
    try:
        written = write_outputs(args.out, rgb, sparse, depth, caption)
    except OSError as exc:
        if isinstance(exc, JarrnError):
            raise
        raise OutputError(f"--out: could not write the results to {args.out} ({exc.strerror or exc}); "
                          "nothing was written") from None
    if args.scale_warning:
        warn(args.scale_warning)
    valid = depth[depth > 0]
    print(
        f"{backend} {precision} ({why}{f'; model {model}' if model else ''}): {width}x{height}, "
        f"{int((sparse > 0).sum())} sparse points -> depth {valid.min() if valid.size else 0:.2f}.."
        f"{valid.max() if valid.size else 0:.2f} m; load {load_s:.2f} s, first inference {run_s:.2f} s"
    )
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


_INFER_LOG = progress_logger("infer")


def progress(message: str) -> None:
    """A progress line on stderr (stdout keeps the one result line); for the long first-use steps (export, engine
    build) whatever stderr is."""
    _INFER_LOG(message)


def step(message: str) -> None:
    """A progress line for a step that takes seconds (loading, completing), shown to a person at a terminal only:
    in logs and pipes an error then stays the only line on stderr."""
    if sys.stderr.isatty():
        progress(message)


def _bundled_name() -> str:
    from jarrn_deploy.runtime.default_model import BUNDLED_CHECKPOINT

    return BUNDLED_CHECKPOINT.name


def _with_scale_hint(message: str, args: argparse.Namespace) -> str:
    """The error line, plus the mis-scaling warning when there was one (it is often the cause)."""
    hint = getattr(args, "scale_warning", None)
    return f"{message}; note: {hint}" if hint else message


def main(argv: list[str] | None = None) -> int:
    """``jarrn infer``: the exit status follows the table of :mod:`jarrn_deploy.errors`; ``--debug`` lets errors through
    with their traceback."""
    args = parse_args(argv)
    if args.debug:
        return run(args)
    return _run_one_line(args)


@command
def _run_one_line(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except JarrnError as exc:  # the mis-scaling warning is often the cause: it goes on the error's one line
        hint = getattr(args, "scale_warning", None)
        if hint:
            exc.args = (_with_scale_hint(str(exc), args), *exc.args[1:])
        raise


if __name__ == "__main__":
    sys.exit(main())
