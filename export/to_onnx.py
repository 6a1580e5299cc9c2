"""Export JARRN to one ONNX graph (tensor contract and rectification inside), validate it, report it.

    python export/to_onnx.py                                # bundled default model -> artifacts/jarrn_fp32.onnx
    python export/to_onnx.py --precision fp16               # FP16 mixed precision (U-Nets FP16, contract FP32)
    python export/to_onnx.py --precision int8               # INT8 explicit Q/DQ, calibrated on the built-in set
    python export/to_onnx.py --checkpoint run/last.pt --static 384x1280 --output artifacts/kitti.onnx

Every export is validated (export/validate.py) unless ``--no-validate``: the graph is first written next to the
output under a hidden temporary name, validated, and only then moved to ``--output``; a graph that fails validation is
kept as ``<name>.rejected.onnx`` with its report, and the exit status is 1. Errors in the arguments or inputs exit
with a one-line message (status 2 for argument errors, 1 otherwise) and leave no file behind.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python export/to_onnx.py` without `pip install -e .`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import re
import tempfile
import time
from typing import Sequence

from export.onnx_graph import (
    MIN_STATIC_SIZE,
    PRECISIONS,
    ExportError,
    ExportOptions,
    ExportStats,
    check_output_path,
    export_onnx,
    stderr_log,
)

DEFAULT_OUTPUT = "artifacts/jarrn_{precision}.onnx"


def parse_static(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. 384x1280), each at least 64."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 384x1280, got {text!r}")
    height, width = int(match.group(1)), int(match.group(2))
    if min(height, width) < MIN_STATIC_SIZE:
        raise argparse.ArgumentTypeError(
            f"{height}x{width} is too small: height and width must be at least {MIN_STATIC_SIZE} "
            "(the network downsamples by 64)"
        )
    return height, width


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python export/to_onnx.py",
        description=(
            "Export JARRN to a single ONNX graph: inputs rgb [B,3,H,W] (0..1) and sparse_depth [B,1,H,W] (metres, "
            "0 = missing), output depth [B,1,H,W] (metres), with the validity mask, normalisation, padding to a "
            "multiple of 64, both branches, the rectification and de-normalisation inside. Dynamic batch, height "
            "and width unless --static/--batch. Validated against PyTorch with ONNX Runtime after the export."
        ),
        epilog="See export/README.md for the precision choices, the calibration set and the validation bounds.",
    )
    p.add_argument("--checkpoint", default=None,
                   help="weights to export: the project's .safetensors, an official training checkpoint "
                        "(.pt/.pth with network_state_dict) or a bare state dict (default: the bundled default model)")
    p.add_argument("--prob-activation", choices=("softmax_height", "sigmoid"), default=None,
                   help="override the probability activation; official checkpoints default to softmax_height (the "
                        "paper's softmax over image rows), project files to the one they record")
    p.add_argument("--output", type=Path, default=None,
                   help=f"the .onnx file to write (default {DEFAULT_OUTPUT.format(precision='<precision>')}); "
                        "written atomically; the validation report goes next to it")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32; fp16 = the U-Nets in FP16 with normalisation, reductions, softmax, rectification and "
                        "de-normalisation in FP32 (NVIDIA Model Optimizer AutoCast, else onnxconverter-common); "
                        "int8 = explicit Q/DQ on the U-Nets' convolutions, calibrated (Model Optimizer PTQ, else "
                        "ONNX Runtime quantize_static). Graph inputs and outputs stay float32. Default %(default)s")
    p.add_argument("--aux-outputs", action="store_true",
                   help="also output coarse, scale, offset and prob (network domain) after depth")
    p.add_argument("--static", type=parse_static, default=None, metavar="HxW",
                   help="fix the input height and width (e.g. 384x1280; each >= 64; any value, padded inside the "
                        "graph); default: dynamic")
    p.add_argument("--batch", type=_positive_int, default=None, metavar="N",
                   help="fix the batch size to N (default: dynamic)")
    p.add_argument("--opset", type=int, default=17,
                   help="ONNX opset (default %(default)s, the TensorRT-safe choice; 13..20 accepted; INT8 graphs from "
                        "Model Optimizer come out at opset 19, the minimum for its Q/DQ)")
    p.add_argument("--calibration", default=None, metavar="PATH",
                   help="representative inputs for INT8 calibration (and FP16 AutoCast's reference run): a .npz file "
                        "or a directory of them with arrays 'rgb' [N,3,H,W] (float 0..1 or uint8) and 'sparse_depth' "
                        "[N,1,H,W] metres. Default: the built-in set of the bundled real frames (flipped crops) and 8 "
                        "synthetic scenes, see export/calibration.py")
    p.add_argument("--int8-exclude", action="append", default=None, metavar="REGEX",
                   help="node-name regex to keep out of INT8 (repeatable; replaces the default, which keeps the visual "
                        "branch and the refine branch's first and last convolution in FP32; the contract part is "
                        "never quantized)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the validation against PyTorch (ONNX Runtime on the bundled real frames and random "
                        "inputs; bounds: FP32 max abs <= 1e-3 m; FP16/INT8 RMSE vs ground truth within +2%%/+5%% of "
                        "FP32)")
    p.add_argument("--no-simplify", action="store_true",
                   help="skip onnxslim (constant folding, shape folding, cleanup)")
    p.add_argument("--quiet", action="store_true", help="print only the result and errors")
    return p


def _load_network(args: argparse.Namespace):
    from model import CheckpointError, load_model

    try:
        return load_model(args.checkpoint, prob_activation=args.prob_activation)
    except (CheckpointError, FileNotFoundError, ValueError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(message if message.startswith("checkpoint:") else f"checkpoint: {message}") from None


def _staging_path(output: Path) -> Path:
    """A hidden, unique .onnx name next to ``output`` (same filesystem, so the final move is atomic)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".staging.onnx", dir=output.parent)
    os.close(handle)
    return Path(name)


def _created_dirs(path: Path) -> list[Path]:
    """Directories that writing ``path`` would create (to remove them again when the export fails)."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    for directory in dirs:  # innermost first
        try:
            directory.rmdir()
        except OSError:
            pass


def run(args: argparse.Namespace) -> int:
    log = (lambda message: None) if args.quiet else stderr_log
    output = args.output or Path(DEFAULT_OUTPUT.format(precision=args.precision))
    options = ExportOptions(
        opset=args.opset,
        aux_outputs=args.aux_outputs,
        static_hw=args.static,
        static_batch=args.batch,
        precision=args.precision,
        calibration=args.calibration,
        int8_exclude=tuple(args.int8_exclude) if args.int8_exclude else None,
        simplify=not args.no_simplify,
    )
    check_output_path(output)
    new_dirs = _created_dirs(output)
    network = _load_network(args)
    log(f"model: {getattr(network, 'source_path', '?')} widths {list(network.config.widths)}, "
        f"{network.config.prob_activation}, normalisation {network.config.depth_normalisation}")
    start = time.perf_counter()
    staging = None
    try:
        staging = _staging_path(output)
        stats = ExportStats()
        export_onnx(network, staging, options, log=log, stats=stats)
        export_seconds = time.perf_counter() - start
        passed, reports = True, []
        if not args.no_validate:
            from export.validate import validate_onnx

            log("validating with ONNX Runtime against PyTorch ...")
            report = validate_onnx(staging, network, log=log if not args.quiet else None)
            report.onnx_path = str(output)
            reports, passed = [report], report.passed
        final = output if passed else output.with_name(f"{output.stem}.rejected.onnx")
        os.replace(staging, final)
        staging = None
    except BaseException:
        if staging is not None and staging.exists():
            staging.unlink()
        _remove_empty(new_dirs)
        raise
    total_seconds = time.perf_counter() - start
    _print_summary(final, options, stats, export_seconds, total_seconds)
    if reports:
        from export.validate import markdown_table, write_reports

        reports[0].onnx_path = str(final)
        print(markdown_table(reports))
        md_path, json_path = write_reports(reports, final)
        print(f"validation report: {md_path} and {json_path}")
        if not passed:
            print(f"FAILED: validation bounds exceeded; the graph was kept as {final} for inspection", file=sys.stderr)
            return 1
    return 0


def _print_summary(path: Path, options: ExportOptions, stats: ExportStats, export_s: float, total_s: float) -> None:
    nodes = " -> ".join(f"{k} {v}" for k, v in stats.nodes.items())
    print(f"wrote {path}")
    print(f"  precision {options.precision}, opset {options.opset}, "
          f"{'static ' + 'x'.join(map(str, options.static_hw)) if options.static_hw else 'dynamic H/W'}, "
          f"{'batch ' + str(options.static_batch) if options.static_batch else 'dynamic batch'}, "
          f"outputs {', '.join(options.output_names)}")
    print(f"  size {stats.file_bytes / 1e6:.2f} MB; nodes: {nodes}")
    print(f"  export {export_s:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in stats.seconds.items())
          + f"); total with validation {total_s:.1f} s")
    if stats.precision_info:
        print("  " + json.dumps({k: v for k, v in stats.precision_info.items() if k != "fp32_convs"}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
