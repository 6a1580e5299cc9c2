"""Complete one RGB + sparse depth pair and write the results.

    python -m runtime.infer --rgb image.png --sparse lidar.png --out results/            # KITTI uint16 PNG (m x 256)
    python -m runtime.infer --rgb rgb.png --sparse depth.png --sparse-scale 5000 --out r/   # TUM RGB-D (m x 5000)
    python -m runtime.infer --rgb rgb.png --sparse points.npy --model jarrn.engine --out r/ # float metres, TensorRT

Writes, each atomically: ``DIR/depth.png`` (uint16, metres x 256, the KITTI convention: 0 = no depth, up to 255.99 m),
``DIR/depth_color.png`` (turbo colour map, near = blue) and ``DIR/panel.png`` (RGB, sparse input and output side by
side with titles and a shared colour bar in metres).

Backend choice when ``--backend`` is not given (the fastest that can run ``--model``):
  - ``.engine`` / ``.plan`` / ``.trt``: TensorRT; if TensorRT is not installed, ONNX Runtime on the ONNX recorded in
    the engine's manifest when that file exists, else an error saying how to get TensorRT;
  - ``.onnx``: ONNX Runtime, CUDA execution provider when onnxruntime-gpu sees a GPU, else CPU (``--providers`` to
    choose, e.g. ``tensorrt,cuda``; the TensorRT provider builds its engine on first use, minutes, then caches it);
  - a checkpoint (``.safetensors``, ``.pth``, ``.pt``) or no ``--model`` (the bundled default model): PyTorch, on the
    GPU when PyTorch sees one (``--device`` to choose).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_SUFFIXES = (".onnx",)
KITTI_SCALE = 256.0


class InferError(Exception):
    """A user error: the message is printed as one line, without a traceback."""


def model_kind(model: str | None) -> str:
    """"engine", "onnx" or "checkpoint" from the file name (None = the bundled checkpoint)."""
    if model is None:
        return "checkpoint"
    suffix = Path(model).suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    return "checkpoint"


def _tensorrt_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def _ort_gpu_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]


def choose_backend(model: str | None, backend: str | None) -> tuple[str, str | None, str]:
    """``(backend, model path to load, why)`` following the rule in the module docstring."""
    kind = model_kind(model)
    if backend is not None:
        needs = {"tensorrt": "engine", "onnxruntime": "onnx", "torch": "checkpoint"}[backend]
        if kind != needs:
            hints = {
                "engine": "an engine from python export/build_engine.py (.engine)",
                "onnx": "an ONNX file from python export/to_onnx.py (.onnx)",
                "checkpoint": "a checkpoint (.safetensors/.pth/.pt) or no --model for the bundled model",
            }
            raise InferError(f"--backend {backend} needs --model to be {hints[needs]}, got {model or 'none'}")
        return backend, model, "requested with --backend"
    if kind == "engine":
        if _tensorrt_available():
            return "tensorrt", model, "TensorRT engine given and TensorRT installed"
        from export.engine_manifest import TENSORRT_INSTALL_HINT, EngineFileError, EngineManifest, manifest_path

        try:
            onnx_path = EngineManifest.load(manifest_path(model)).onnx_path
        except EngineFileError:
            onnx_path = None
        if onnx_path and Path(onnx_path).is_file():
            return "onnxruntime", onnx_path, "TensorRT not installed: ONNX Runtime on the engine's source ONNX"
        raise InferError(TENSORRT_INSTALL_HINT)
    if kind == "onnx":
        return "onnxruntime", model, "ONNX model given"
    return "torch", model, "checkpoint given" if model else "bundled default model"


def read_sparse(path: Path, scale: float) -> np.ndarray:
    """uint16 depth PNG (metres = value / scale) or .npy in metres."""
    from model.depth_io import read_depth_png

    if not path.is_file():
        raise InferError(f"--sparse: no such file {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad files
            raise InferError(f"--sparse: {path} could not be read as .npy ({exc})") from None
        if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
            array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
        if array.ndim != 2:
            raise InferError(f"--sparse: expected an HxW array of metres in {path}, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise InferError(f"--sparse: {path} holds {array.dtype}, expected float metres (0 = missing)")
        return array.astype(np.float32)
    try:
        return read_depth_png(path, scale=scale)
    except ValueError as exc:
        raise InferError(f"--sparse: {exc}") from None


def build_completer(backend: str, model: str | None, args: argparse.Namespace):  # noqa: ANN201
    from runtime import DepthCompleter

    if backend == "tensorrt":
        return DepthCompleter.from_engine(model, cuda_graphs=args.cuda_graphs)
    if backend == "onnxruntime":
        providers = [p.strip() for p in args.providers.split(",")] if args.providers else (_ort_gpu_providers() or ["cpu"])
        return DepthCompleter.from_onnx(model, providers=providers)
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return DepthCompleter.from_checkpoint(model, device=device)


def write_outputs(out_dir: Path, rgb: np.ndarray, sparse: np.ndarray, depth: np.ndarray, backend: str) -> list[Path]:
    from model.depth_io import colorize_depth, write_depth_png, write_rgb_png
    from runtime.panel import display_range, make_panel

    out_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = display_range(depth)
    points = int((sparse > 0).sum())
    titles = (
        f"RGB {rgb.shape[1]}x{rgb.shape[0]}",
        f"sparse input: {points:,} points ({100 * points / sparse.size:.1f}%)",
        f"completed depth ({backend})",
    )
    written = [
        write_depth_png(out_dir / "depth.png", depth, scale=KITTI_SCALE),
        write_rgb_png(out_dir / "depth_color.png", colorize_depth(depth, lo, hi)),
        write_rgb_png(out_dir / "panel.png", make_panel(rgb, sparse, depth, titles=titles)),
    ]
    for path in written:  # the atomic writer's temp files are created 0600; results are meant to be shared
        os.chmod(path, 0o644)
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.infer",
        description="Dense metric depth from an RGB image and sparse depth; writes depth.png, depth_color.png, panel.png.",
        epilog="Backend when --backend is omitted: .engine -> tensorrt, .onnx -> onnxruntime, checkpoint/none -> torch.",
    )
    parser.add_argument("--rgb", required=True, type=Path, help="colour image (PNG/JPEG, 8-bit)")
    parser.add_argument("--sparse", required=True, type=Path,
                        help="sparse depth: uint16 PNG (metres = value / --sparse-scale) or .npy float metres; 0 = missing")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("--model", default=None,
                        help="engine (.engine/.plan), ONNX (.onnx) or checkpoint (.safetensors/.pth); default: bundled model")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default=None,
                        help="force a backend (default: the fastest that can run --model, see above)")
    parser.add_argument("--sparse-scale", type=float, default=KITTI_SCALE,
                        help="PNG units per metre: 256 KITTI (default), 1000 millimetres, 5000 TUM RGB-D")
    parser.add_argument("--providers", default=None,
                        help="onnxruntime providers in priority order, comma separated: cpu, cuda, tensorrt")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--cuda-graphs", action="store_true", help="tensorrt: replay a CUDA graph per input shape")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from model.depth_io import read_rgb

    if not args.rgb.is_file():
        raise InferError(f"--rgb: no such file {args.rgb}")
    if args.model is not None and not Path(args.model).is_file():
        raise InferError(f"--model: no such file {args.model}")
    if args.out.exists() and not args.out.is_dir():
        raise InferError(f"--out: {args.out} exists and is not a folder")
    try:
        rgb = read_rgb(args.rgb)
    except (ValueError, OSError) as exc:
        raise InferError(f"--rgb: {exc}") from None
    sparse = read_sparse(args.sparse, args.sparse_scale)
    if rgb.shape[:2] != sparse.shape:
        raise InferError(
            f"--rgb and --sparse: sizes differ, rgb is {rgb.shape[1]}x{rgb.shape[0]}, sparse is "
            f"{sparse.shape[1]}x{sparse.shape[0]} (width x height)"
        )
    backend, model, why = choose_backend(args.model, args.backend)
    start = time.perf_counter()
    completer = build_completer(backend, model, args)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    depth = completer.complete(rgb, sparse)
    run_s = time.perf_counter() - start
    completer.close()
    written = write_outputs(args.out, rgb, sparse, depth, backend)
    valid = depth[depth > 0]
    print(
        f"{backend} ({why}; model {model or 'bundled default'}): {rgb.shape[1]}x{rgb.shape[0]}, "
        f"{int((sparse > 0).sum())} sparse points -> depth {valid.min() if valid.size else 0:.2f}.."
        f"{valid.max() if valid.size else 0:.2f} m; load {load_s:.2f} s, first inference {run_s:.2f} s"
    )
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.debug:
        return run(args)
    try:
        return run(args)
    except InferError as exc:
        print(f"infer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - library errors (bad checkpoint, engine mismatch...) as one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"infer: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
