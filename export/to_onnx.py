"""Export JARRN to one ONNX graph (tensor contract and rectification inside), validate it, report it.

    jarrn export                                            # bundled default model -> artifacts/jarrn_fp32.onnx
    python export/to_onnx.py                                # the same
    python export/to_onnx.py --precision fp16               # FP16 mixed precision (U-Nets FP16, contract FP32)
    python export/to_onnx.py --precision int8               # INT8 explicit Q/DQ, calibrated on the built-in set
    python export/to_onnx.py --checkpoint run/last.pt --static 384x1280 --output artifacts/kitti.onnx

The command first prints one line: what it will do, how long that takes on a CPU like this one and how to skip the
optional parts. Every export is validated (export/validate.py, the ``quick`` real-frame cases unless ``--validation
full``) unless ``--no-validate``: the graph is first written next to the
output under a hidden temporary name (``.<name>.pid<PID>.<random>.staging.onnx``; a later export removes those of
killed runs), validated, and only then moved to ``--output``; a graph that fails validation is kept as
``<name>.rejected.onnx`` with its report, and the exit status is 6. Errors exit with one ``error:`` line and the
status of ``jarrn --help`` (2 bad argument, 3 unusable checkpoint, 4 output not writable, 5 missing library or not
enough memory for a static size) and leave no file behind.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import TYPE_CHECKING, Sequence  # noqa: E402

from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import EXIT_CHECK_FAILED, InputError  # noqa: E402
from jarrn_deploy.export.estimates import MEASURED_S, about, on_this_machine, total  # noqa: E402
from jarrn_deploy.export.known_warnings import quiet_known_warnings  # noqa: E402
from jarrn_deploy.export.precisions import PRECISION_SPECS, PRECISIONS  # noqa: E402
from jarrn_deploy.model.atomic import remove_stale_temp_files, temp_prefix  # noqa: E402

if TYPE_CHECKING:  # torch-heavy: imported only where an export runs
    from jarrn_deploy.export.onnx_graph import ExportOptions, ExportStats

DEFAULT_OUTPUT = "artifacts/jarrn_{precision}.onnx"
PRECISION_CHOICES = PRECISIONS
"""The choices of ``--precision`` (the registry ``jarrn_deploy.export.precisions`` is pure Python, so ``--help`` imports
neither torch nor onnx)."""
VALIDATION_CHOICES = ("quick", "full")
"""The choices of ``--validation``: ``jarrn_deploy.export.validate.CASE_SETS`` (which imports torch, so they are spelled here)."""


def parse_static(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. 384x1280), each at least 64."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 384x1280, got {text!r}")
    from jarrn_deploy.export.onnx_graph import MAX_STATIC_SIDE, MIN_STATIC_SIZE

    height, width = int(match.group(1)), int(match.group(2))
    if min(height, width) < MIN_STATIC_SIZE:
        raise argparse.ArgumentTypeError(
            f"{height}x{width} is too small: height and width must be at least {MIN_STATIC_SIZE} "
            "(the network downsamples by 64)"
        )
    if max(height, width) > MAX_STATIC_SIDE:
        raise argparse.ArgumentTypeError(
            f"{height}x{width} is too large: height and width must be at most {MAX_STATIC_SIDE}"
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


HELP_DESCRIPTION = """\
Export the depth-completion model to one ONNX file that ONNX Runtime and TensorRT can run. The file takes
an RGB image (values 0..1) and sparse depth in metres (0 = no measurement) and returns dense depth in
metres; everything between (scaling, padding, both network branches) is inside the file, so any image
size and batch size work unless --static or --batch fix them. After the export the file is checked
against the PyTorch model on real frames; a file that fails the check is kept as NAME.rejected.onnx
and the command exits with status 6."""

HELP_EPILOG = """\
precisions:
""" + "".join(f"  {spec.name}: {spec.summary}\n" for spec in PRECISION_SPECS.values()) + """\
  The converted precisions use the optional packages of pip install -e ".[quant]" when present (one whose
  library is missing says what to install); each takes minutes on a CPU (the first line printed says about
  how long), with a progress line at least every 15 seconds.

examples:
  python export/to_onnx.py                                 # bundled model -> artifacts/jarrn_fp32.onnx
  python export/to_onnx.py --precision fp16                # half precision -> artifacts/jarrn_fp16.onnx
  python export/to_onnx.py --precision int8                # 8-bit -> artifacts/jarrn_int8.onnx
  python export/to_onnx.py --checkpoint runs/kitti/best.safetensors --static 384x1280 --output kitti.onnx
  jarrn export --precision fp16
"""


def _tolerance_prose() -> str:
    """The validation bounds of every precision, as ``--help`` words them (``%`` doubled for argparse)."""
    parts = [f"{n} must agree within {s.max_abs_m * 1000:g} mm" for n, s in PRECISION_SPECS.items() if s.max_abs_m]
    parts += [f"{n} must stay within {s.rmse_rel * 100:g}%% of fp32's error" for n, s in PRECISION_SPECS.items()
              if s.rmse_rel]
    return ", ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jarrn export",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", default=None,
                   help="weights to export: the project's .safetensors, an official training checkpoint "
                        "(.pt/.pth) or a bare state dict (default: the bundled model)")
    p.add_argument("--prob-activation", choices=("softmax_height", "sigmoid"), default=None,
                   help="override how the model turns scores into probabilities; official checkpoints use "
                        "softmax_height (the paper's softmax over image rows), this project's files record their own")
    p.add_argument("--output", type=Path, default=None,
                   help=f"the .onnx file to write (default {DEFAULT_OUTPUT.format(precision='<precision>')}); "
                        "written atomically; the validation report goes next to it")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                   help="number format inside the file: "
                        + ", ".join(f"{s.name} ({'default, ' if s.name == 'fp32' else ''}{s.summary})"
                                    for s in PRECISION_SPECS.values())
                        + "; inputs and outputs stay float32 in every case")
    p.add_argument("--aux-outputs", action="store_true",
                   help="also output the model's intermediate maps (coarse, scale, offset, prob) after depth, for "
                        "debugging")
    p.add_argument("--static", type=parse_static, default=None, metavar="HxW",
                   help="fix the input height and width (e.g. 384x1280; each at least 64); default: any size")
    p.add_argument("--batch", type=_positive_int, default=None, metavar="N",
                   help="fix the batch size to N (default: any batch size)")
    p.add_argument("--opset", type=int, default=17,
                   help="ONNX opset version, 13..20 (default %(default)s, what TensorRT parses best); int8 files made "
                        "with NVIDIA Model Optimizer come out at opset 19, the lowest its quantization supports; the "
                        "summary states the opset actually written")
    p.add_argument("--calibration", default=None, metavar="PATH",
                   help="sample inputs for int8 calibration (and the fp16 check): a .npz file, or a folder of them, "
                        "with arrays 'rgb' [N,3,H,W] (float 0..1 or uint8) and 'sparse_depth' [N,1,H,W] in metres. "
                        "Default: crops of the bundled real frames and 8 synthetic scenes")
    p.add_argument("--int8-exclude", action="append", default=None, metavar="REGEX",
                   help="int8 only: keep the layers whose name matches this regular expression in fp32 (repeatable; "
                        "replaces the default, which keeps the image branch and the first and last layer of the "
                        "depth branch in fp32)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the check against PyTorch (by default: on the bundled real frames and random inputs, "
                        f"{_tolerance_prose()})")
    p.add_argument("--validation", choices=VALIDATION_CHOICES, default="quick",
                   help="which real frames the check uses: quick (default: one KITTI, TUM and Kinect v2 frame, each "
                        "at most 375x1242 pixels) or full (both KITTI cameras, the indoor frames with 500 and 100 "
                        "points, full size; about three times as long)")
    p.add_argument("--no-simplify", action="store_true",
                   help="skip the graph clean-up step (onnxslim: folds constants and removes unused nodes)")
    p.add_argument("--quiet", action="store_true", help="print only the result and errors")
    p.add_argument("--verbose", action="store_true",
                   help="also show the libraries' warnings that are known to be harmless here (e.g. torch's "
                        "exporter notes on constant folding)")
    p.add_argument("--triton-repo", type=Path, default=None, metavar="DIR",
                   help="also write a Triton model repository with the exported graph (DIR/jarrn/config.pbtxt + "
                        "1/model.onnx, ONNX Runtime backend; see python -m jarrn_deploy.export.triton_repo for plans and options)")
    from jarrn_deploy.export.triton_repo import add_instance_kind_argument

    add_instance_kind_argument(p)
    return p


def _load_network(args: argparse.Namespace):
    from jarrn_deploy.model import CheckpointError, load_model

    try:
        return load_model(args.checkpoint, prob_activation=args.prob_activation)
    except (CheckpointError, FileNotFoundError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(message if message.startswith("checkpoint:") else f"checkpoint: {message}") from None


def _staging_path(output: Path) -> Path:
    """A hidden, unique .onnx name next to ``output`` (same filesystem, so the final move is atomic), tagged with
    this process's id so that a later export removes it if this one is killed (:func:`remove_stale_exports`)."""
    from jarrn_deploy.export.onnx_graph import ExportOutputError

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=temp_prefix(output), suffix=STAGING_SUFFIX, dir=output.parent)
    except OSError as exc:
        raise ExportOutputError(f"output: cannot write in {output.parent} ({exc.strerror or exc})") from None
    os.close(handle)
    return Path(name)


STAGING_SUFFIX = ".staging.onnx"


def remove_stale_exports(output: Path) -> list[Path]:
    """Staging and temp files that killed exports to ``output`` left beside it (their process no longer lives);
    also the untagged ``.<stem>.XXXX.staging.onnx`` of older versions once a day old."""
    removed = remove_stale_temp_files(output, suffixes=(".tmp", STAGING_SUFFIX))
    # the atomic writer's own temp file for the staging graph: "." + the staging file's (hidden) name
    removed += remove_stale_temp_files(output.with_name("." + output.name), suffixes=(".tmp",))
    removed += remove_stale_temp_files(output.with_name(output.stem), suffixes=(STAGING_SUFFIX,))
    return removed


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
    from jarrn_deploy.export.onnx_graph import (
        ExportOptions,
        ExportOutputError,
        ExportStats,
        check_output_path,
        check_static_size_fits,
        export_onnx,
        stderr_log,
        write_probe,
    )

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
    from jarrn_deploy.model.atomic import refuse_overwriting_inputs

    refuse_overwriting_inputs([output], {"--checkpoint": args.checkpoint, "--calibration": args.calibration},
                              "--output")
    if args.triton_repo is not None:  # before the minutes of export, not after them
        from jarrn_deploy.export.triton_repo import _pb2

        _pb2()
    check_static_size_fits(options)  # the size limit now; the memory estimate again with the model's widths
    existing = output.parent
    while not existing.exists():
        existing = existing.parent
    write_probe(existing)  # permission bits say nothing about /proc, a read-only mount or a full disk
    for stale in remove_stale_exports(output):
        log(f"removed {stale.name}, left by an export that was killed")
    new_dirs = _created_dirs(output)
    network = _load_network(args)  # before the plan line, so that a bad checkpoint gets one line and nothing else
    log(plan_line(args, output))
    log(f"model: {network.source_path or 'in memory'} widths {list(network.config.widths)}, "
        f"{network.config.prob_activation}, normalisation {network.config.depth_normalisation}")
    start = time.perf_counter()
    staging = None
    try:
        staging = _staging_path(output)
        stats = ExportStats()
        with quiet_known_warnings(args.verbose):
            export_onnx(network, staging, options, log=log, stats=stats)
        export_seconds = time.perf_counter() - start
        passed, reports = True, []
        if not args.no_validate:
            from jarrn_deploy.export.validate import validate_onnx

            log("validating with ONNX Runtime against PyTorch ...")
            with quiet_known_warnings(args.verbose):
                report = validate_onnx(staging, network, case_set=args.validation,
                                       log=log if not args.quiet else None)
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
    _print_summary(final, options, stats, export_seconds, total_seconds, validated=not args.no_validate)
    if reports:
        from jarrn_deploy.export.validate import markdown_table, write_reports

        reports[0].onnx_path = str(final)
        print(markdown_table(reports))
        try:
            md_path, json_path = write_reports(reports, final)
        except OSError as exc:
            raise ExportOutputError(f"output: wrote {final} but not its validation report ({exc.strerror or exc})") \
                from None
        print(f"validation report: {md_path} and {json_path}")
        if not passed:
            print(f"FAILED: validation bounds exceeded; the graph was kept as {final} for inspection", file=sys.stderr)
            return EXIT_CHECK_FAILED
    if args.triton_repo is not None:
        from jarrn_deploy.export.triton_repo import RepositoryOptions, write_repository

        write_repository(final, args.triton_repo, RepositoryOptions(instance_kind=args.instance_kind))
    return 0


def plan_line(args: argparse.Namespace, output: Path) -> str:
    """The line printed before the work starts: what will happen, about how long it takes, how to skip parts."""
    model = args.checkpoint or "the bundled model"
    seconds = total(MEASURED_S[args.precision], *(() if args.no_validate else (MEASURED_S[args.validation],)))
    size = "" if args.checkpoint is None else " for the bundled model; larger models take longer"
    check = ("" if args.no_validate else
             f", then a check against PyTorch ({args.validation}: "
             + ("3 real frames" if args.validation == "quick" else "6 real-frame cases") + " + random inputs)")
    skip = [] if args.no_validate else ["--no-validate skips the check"]
    if not args.no_validate and args.validation == "full":
        skip.append(f"--validation quick takes {about(MEASURED_S['quick'])}")
    return (f"exporting {model} to {output} ({args.precision}){check}: {about(seconds)} {on_this_machine()}{size}"
            + (f" ({'; '.join(skip)})" if skip else ""))


def written_graph_facts(path: Path) -> tuple[int, str, int]:
    """``(opset, precision, bytes)`` read back from the written file: the precision stage may raise the opset (Model
    Optimizer's INT8 Q/DQ needs 19), so the options alone do not say what was written."""
    import onnx

    from jarrn_deploy.export.precisions import onnx_precision

    model = onnx.load(str(path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    precision = onnx_precision(model, str(path))
    return opset, precision, path.stat().st_size


def _print_summary(path: Path, options: ExportOptions, stats: ExportStats, export_s: float, total_s: float, *,
                   validated: bool = True) -> None:
    nodes = " -> ".join(f"{k} {v}" for k, v in stats.nodes.items())
    opset, precision, size = written_graph_facts(path)
    print(f"wrote {path}")
    print(f"  precision {precision}, opset {opset}, "
          f"{'static ' + 'x'.join(map(str, options.static_hw)) if options.static_hw else 'dynamic H/W'}, "
          f"{'batch ' + str(options.static_batch) if options.static_batch else 'dynamic batch'}, "
          f"outputs {', '.join(options.output_names)}")
    print(f"  size {size / 1e6:.2f} MB; nodes: {nodes}")
    print(f"  export {export_s:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in stats.seconds.items())
          + f"); total {'with validation ' if validated else '(not validated) '}{total_s:.1f} s")
    if stats.precision_info:
        print("  " + json.dumps({k: v for k, v in stats.precision_info.items() if k != "fp32_convs"}))


@command
def main(argv: Sequence[str] | None = None) -> int:
    from jarrn_deploy.options import ignored_option, repeated_options

    parser = build_parser()
    args = parser.parse_args(argv)
    repeated_options(parser, argv)
    if args.instance_kind and args.triton_repo is None:
        ignored_option("--instance-kind", "no --triton-repo is written")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
