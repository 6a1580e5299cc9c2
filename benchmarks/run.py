"""Latency and accuracy of JARRN on every backend and precision this machine has, against the PyTorch reference and
ground truth; writes ``reports/<machine-tag>/report.md``, ``report.json`` and PNG charts.

    python benchmarks/run.py                       # everything available, default model, 320x320 and 375x1242, b1+b4
    python benchmarks/run.py --quick               # a short run (about 3 minutes on a shared 2-core CPU)
    python benchmarks/run.py --model my.safetensors --out reports/mine --threads 4
    python benchmarks/run.py --device cuda --backends torch,torch-compile,tensorrt --precisions fp16

Rows: PyTorch eager FP32 (the baseline every speed-up is stated against; always measured), ONNX Runtime FP32 / FP16 /
INT8 (the exported graphs, export/onnx_graph.py), TensorRT FP32 / FP16 / INT8 engines (GPU with the tensorrt package)
and, on a GPU, PyTorch FP16 autocast and torch.compile(mode="reduce-overhead") (CUDA graphs). Rows this machine cannot
run are listed in the report with the reason.

Each row runs in its own process (peak host memory per row, no cross-talk between thread pools). Latency: warm-up
calls, then an adaptive number of timed calls (enough for --seconds, within --min-iterations..--iterations); p50, p90,
p99, mean and images/s, both end to end (``DepthCompleter.complete`` on uint8 RGB + float sparse depth, what users run)
and for the graph alone on pre-converted NCHW inputs. Accuracy: every row on the bundled real frames (KITTI LiDAR,
TUM RGB-D, Kinect v2) against the PyTorch FP32 reference (max / mean |difference| in metres) and against ground truth
(RMSE, MAE, AbsRel, delta1), with nearest and linear interpolation of the sparse points as baselines.

Exported ONNX graphs are cached under artifacts/benchmarks/ (keyed by the model's sha256 and the export code), so only
the first run pays for exporting (FP16 and INT8 take about a minute each on a 2-core CPU); ``--quick`` uses FP16 and
INT8 graphs only if they are cached already.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import InputError, OutputError  # noqa: E402
from jarrn_deploy.options import repeated_options  # noqa: E402
from jarrn_deploy.progress import progress_logger  # noqa: E402
from jarrn_deploy.benchmarks.arguments import ArgumentError, parse_choice_list, parse_int_list, parse_sizes  # noqa: E402
from jarrn_deploy.benchmarks.machine import describe_machine, load_average, physical_cores  # noqa: E402
from jarrn_deploy.benchmarks.rows import BACKENDS, DEFAULT_BATCHES, DEFAULT_SIZES, PRECISIONS, Row, applicable_rows, config_key
from jarrn_deploy.benchmarks.settings import BenchmarkSettings  # noqa: E402
from jarrn_deploy.durations import about, on_this_machine  # noqa: E402
from jarrn_deploy.model.atomic import file_sha256  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT / "artifacts" / "benchmarks"
QUICK = {"sizes": ((320, 320),), "batches": (1,), "warmup": 2, "min_iterations": 3, "iterations": 10, "seconds": 3.0,
         "cases": ("kitti_02", "tum_desk@500"), "quiet_wait_s": 0.0}
FULL = {"sizes": DEFAULT_SIZES, "batches": DEFAULT_BATCHES, "warmup": 3, "min_iterations": 10, "iterations": 100,
        "seconds": 10.0, "cases": None, "quiet_wait_s": 120.0}
QUICK_S = 165.0
"""Wall seconds of a first ``jarrn bench --quick`` (FP32 export included) on the shared 2-core CPU machine, load
average 2 to 4."""
FULL_S = 881.0
"""Wall seconds of a full ``python benchmarks/run.py`` on the same machine, FP16 and INT8 exports included
(reports/cpu-amd-epyc-2c/report.json, ``duration_seconds``)."""
# Source files whose change makes a cached export stale.


log = progress_logger("bench", elapsed=True)


# ---------------------------------------------------------------------------------------------------------------------
# command line


HELP_DESCRIPTION = """\
Measure how fast and how accurate the model is on this machine, on every backend and precision it can
run (PyTorch, ONNX Runtime, TensorRT; fp32, fp16, int8), and write a report: report.md, report.json and
PNG charts in reports/<machine>/. Speed-ups are stated against PyTorch fp32, which is always measured;
accuracy is measured on the bundled real frames against PyTorch and the true depth. Rows this machine
cannot run are listed in the report with the reason."""

HELP_EPILOG = """\
how long it takes (the first line printed says it too):
  --quick: about 3 minutes on a shared 2-core CPU. A full run: about 15 minutes there; the first run
  also exports the fp16 and int8 files (about 4 minutes each) and keeps them in artifacts/benchmarks/
  for later runs. Each row runs in its own process, with a progress line.

examples:
  python benchmarks/run.py --quick                # a short run
  python benchmarks/run.py                        # everything this machine can run
  python benchmarks/run.py --model my.safetensors --out reports/mine --threads 4
  python benchmarks/run.py --device cuda --backends torch,torch-compile,tensorrt --precisions fp16
  jarrn bench --quick
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jarrn bench",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="short run: 320x320 batch 1 only, few iterations, accuracy on kitti_02 and tum_desk@500, "
                             "FP16/INT8 only if their exports are cached")
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint to benchmark (official .pth, bare state dict or .safetensors; default: the "
                             "bundled default model)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: reports/<machine-tag>/)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for every backend (default: the machine's physical cores)")
    parser.add_argument("--device", default="auto",
                        help="'auto' (the first CUDA GPU when PyTorch sees one, else the CPU; default), 'cpu', 'cuda' "
                             "(= cuda:0) or 'cuda:N'")
    parser.add_argument("--backends", default="all",
                        help=f"comma-separated subset of {', '.join(BACKENDS)} (default: all; PyTorch eager FP32 is "
                             "always measured as the baseline)")
    parser.add_argument("--precisions", default="all", help=f"comma-separated subset of {', '.join(PRECISIONS)}")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated HEIGHTxWIDTH (default 320x320,375x1242; KITTI 375x1242 is padded to "
                             "384x1280 inside the graph)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,4)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per configuration (default 3)")
    parser.add_argument("--iterations", type=int, default=None, help="at most this many timed calls (default 100)")
    parser.add_argument("--min-iterations", type=int, default=None, help="at least this many timed calls (default 10)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="time budget per configuration that sets the number of timed calls (default 10)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before timing each configuration, wait up to this many seconds for other processes to "
                             "use < 10%% of the CPU (default 120; 0 in --quick and to disable)")
    parser.add_argument("--modes", default="e2e,graph",
                        help="e2e (DepthCompleter.complete on user inputs) and/or graph (the network on NCHW inputs)")
    parser.add_argument("--cases", default=None,
                        help="real-frame cases for accuracy (default: all six; 'none' skips accuracy)")
    parser.add_argument("--onnx", type=Path, action="append", default=[],
                        help="an exported graph of the same model to use instead of exporting one (its precision is "
                             "read from the graph's jarrn.precision metadata); repeatable")
    parser.add_argument("--engine", type=Path, action="append", default=[],
                        help="a TensorRT engine to benchmark (with its export/build_engine.py manifest); repeatable. "
                             "Without it, engines are built from the exported graphs when tensorrt and a GPU exist")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where exported graphs and engines are cached (default {DEFAULT_CACHE.relative_to(REPO_ROOT)})")
    parser.add_argument("--rebuild", action="store_true", help="re-export (and rebuild engines) even when cached")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def resolve_args(args: argparse.Namespace) -> BenchmarkSettings:
    """Validate and fill in defaults; raises ArgumentError with a message naming the option."""
    preset = QUICK if args.quick else FULL
    settings: dict = {"quick": bool(args.quick)}
    from jarrn_deploy.devices import parse_device
    from jarrn_deploy.errors import UsageError

    try:
        parse_device(args.device)  # the form only; whether the GPU exists is checked after the arguments
    except UsageError as exc:
        raise ArgumentError(str(exc)) from None
    settings["backends"] = parse_choice_list(args.backends, "--backends", BACKENDS)
    settings["precisions"] = parse_choice_list(args.precisions, "--precisions", PRECISIONS)
    settings["sizes"] = parse_sizes(args.sizes) if args.sizes is not None else preset["sizes"]
    settings["batches"] = parse_int_list(args.batches, "--batches") if args.batches is not None else preset["batches"]
    settings["modes"] = parse_choice_list(args.modes, "--modes", ("e2e", "graph"))
    for name in ("warmup", "iterations", "min_iterations"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            raise ArgumentError(f"--{name.replace('_', '-')}: expected a {'non-negative' if name == 'warmup' else 'positive'} "
                                f"integer, got {value}")
        settings[name] = value if value is not None else preset[name]
    if settings["min_iterations"] > settings["iterations"]:
        if args.min_iterations is not None:
            raise ArgumentError(f"--min-iterations: {settings['min_iterations']} is above --iterations "
                                f"({settings['iterations']}); give at most as many as --iterations")
        settings["min_iterations"] = settings["iterations"]
    if args.seconds is not None and not args.seconds > 0:
        raise ArgumentError(f"--seconds: expected a positive number, got {args.seconds}")
    settings["seconds"] = args.seconds if args.seconds is not None else preset["seconds"]
    if args.quiet_wait is not None and args.quiet_wait < 0:
        raise ArgumentError(f"--quiet-wait: expected seconds >= 0, got {args.quiet_wait}")
    settings["quiet_wait_s"] = args.quiet_wait if args.quiet_wait is not None else preset["quiet_wait_s"]
    if args.threads is not None and args.threads < 1:
        raise ArgumentError(f"--threads: expected a positive integer, got {args.threads}")
    settings["threads"] = args.threads or physical_cores()
    for flag, paths in (("--model", [args.model] if args.model is not None else []), ("--engine", args.engine),
                        ("--onnx", args.onnx)):
        for path in paths:
            if path.is_dir():
                raise InputError(f"{flag}: {path} is a folder, expected a file")
            if not path.is_file():
                raise InputError(f"{flag}: no such file {path}")
    settings["engines"] = [str(e) for e in args.engine]
    if args.cases is None:
        settings["cases"] = preset["cases"]
    elif args.cases.strip().lower() == "none":
        settings["cases"] = ()
    else:
        settings["cases"] = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    settings["engines"] = tuple(settings["engines"])
    return BenchmarkSettings(**settings)


def plan_line(settings: BenchmarkSettings) -> str:
    """The line printed before the work starts: what is measured, about how long it takes, how to measure less."""
    sizes = ", ".join(f"{h}x{w}" for h, w in settings.sizes)
    batches = ",".join(map(str, settings.batches))
    cases = "all" if settings.cases is None else len(settings.cases)
    accuracy = f"accuracy on {cases} real-frame cases" if cases else "no accuracy"
    what = (f"benchmarking {','.join(settings.backends)} x {','.join(settings.precisions)} where this machine runs "
            f"them ({sizes}, batch {batches}, {accuracy})")
    if settings.quick:
        return (f"{what}: about {about(QUICK_S)} {on_this_machine()}, a first run's FP32 export included (FP16/INT8 "
                "only if their exports are cached)")
    return (f"{what}: about {about(FULL_S)} {on_this_machine()} for the defaults, the first run's FP16 and INT8 exports "
            f"included (--quick takes about {about(QUICK_S)}; --backends, --precisions, --sizes, --batches and "
            "--cases none measure less)")


# ---------------------------------------------------------------------------------------------------------------------
# model, exports and engines


def export_code_digest() -> str:
    from jarrn_deploy.export.source_digest import export_source_digest

    return export_source_digest()


def model_summary(model_path: Path) -> dict:
    from jarrn_deploy.model import CheckpointError, load_model

    try:
        network = load_model(model_path)
    except (CheckpointError, FileNotFoundError) as exc:
        raise InputError(f"--model: {exc}") from None
    return {
        "path": str(model_path),
        "sha256": file_sha256(model_path),
        "config": network.config.to_dict(),
        "parameters": int(sum(p.numel() for p in network.parameters())),
    }


def ensure_onnx(model_path: Path, precision: str, cache: Path, *, rebuild: bool, allow_export: bool,
                model_sha: str) -> tuple[Path | None, str | None, dict]:
    """The exported graph for ``precision`` (cached), or ``(None, reason, {})`` when it cannot be had."""
    folder = cache / f"{model_sha[:16]}-{export_code_digest()[:10]}"
    path = folder / f"jarrn_{precision}.onnx"
    if path.is_file() and not rebuild:
        return path, None, {"cached": True}
    if not allow_export:
        return None, (f"skipped: no cached {precision.upper()} export yet and --quick does not export FP16/INT8 "
                      "(about a minute each on a 2-core CPU); run once without --quick"), {}
    from jarrn_deploy.export.known_warnings import quiet_known_warnings
    from jarrn_deploy.export.onnx_graph import ExportError, ExportOptions, ExportStats, export_onnx
    from jarrn_deploy.model import load_model

    network = load_model(model_path)
    stats = ExportStats()
    log(f"exporting {precision.upper()} ONNX to {path} (cached for later runs)")
    start = time.perf_counter()
    try:
        with quiet_known_warnings():
            export_onnx(network, path, ExportOptions(precision=precision),
                        log=lambda m: print(f"[export] {m}", file=sys.stderr, flush=True), stats=stats)
    except ExportError as exc:
        return None, f"unavailable: export failed ({exc})", {}
    except Exception as exc:  # noqa: BLE001 - a library problem in one precision must not stop the run
        return None, f"unavailable: export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", {}
    info = {"cached": False, "export_seconds": round(time.perf_counter() - start, 1), "nodes": stats.nodes,
            "precision_info": stats.precision_info, "file_bytes": stats.file_bytes}
    return path, None, info


def ensure_engine(onnx_path: Path, precision: str, cache: Path, profile: tuple[str, str, str], *,
                  rebuild: bool) -> tuple[Path | None, str | None]:
    engine = onnx_path.with_suffix(".engine")
    cmd = [sys.executable, "-m", "jarrn_deploy.export.build_engine", "--onnx", str(onnx_path), "--out", str(engine),
           "--min", profile[0], "--opt", profile[1], "--max", profile[2]]
    if rebuild:
        cmd.append("--force")
    log(f"building / reusing TensorRT engine: {shlex.join(cmd)}")
    proc = subprocess.run(cmd, cwd=REPO_ROOT)
    if proc.returncode != 0 or not engine.is_file():
        return None, f"unavailable: python -m jarrn_deploy.export.build_engine exited with code {proc.returncode} for {precision}"
    return engine, None


def engine_precision(path: str) -> str:
    import json

    sidecar = Path(path).with_suffix(Path(path).suffix + ".json")
    for candidate in (sidecar, Path(path).with_suffix(".json")):
        if candidate.is_file():
            try:
                return str(json.loads(candidate.read_text()).get("precision", "fp32"))
            except (OSError, ValueError):
                pass
    return "fp32"


def tensorrt_status(device: str) -> str | None:
    """None when TensorRT rows can run, else the reason."""
    if device != "cuda":
        return "unavailable: TensorRT needs an NVIDIA GPU (run with --device cuda on a GPU machine)"
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"unavailable: the tensorrt package is not installed ({type(exc).__name__}); see docker/ or pip install tensorrt"
    return None


# ---------------------------------------------------------------------------------------------------------------------
# orchestration


def plan_rows(settings: BenchmarkSettings, device: str) -> tuple[list[Row], dict[str, str]]:
    """The rows to measure (baseline first) and the reasons for the rows that cannot be measured here."""
    rows = applicable_rows(settings.backends, settings.precisions)
    if Row("torch", "fp32") not in rows:
        rows.insert(0, Row("torch", "fp32"))
    else:
        rows.remove(Row("torch", "fp32"))
        rows.insert(0, Row("torch", "fp32"))
    reasons: dict[str, str] = {}
    ort_reason = None
    try:
        import onnxruntime

        if device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            ort_reason = ("unavailable: this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu); "
                          "run with --device cpu for the CPU rows")
    except ImportError:
        ort_reason = "unavailable: onnxruntime is not installed (pip install onnxruntime)"
    trt_reason = tensorrt_status(device)
    for row in rows:
        if row.backend == "torch-compile" and device != "cuda":
            reasons[row.key] = ("not measured on CPU: torch.compile reduce-overhead uses CUDA graphs (GPU only); "
                                "run with --device cuda")
        elif row.backend == "torch" and row.precision == "fp16" and device != "cuda":
            reasons[row.key] = "not measured on CPU: FP16 autocast is a CUDA feature (CPU autocast is bfloat16)"
        elif row.backend == "onnxruntime" and ort_reason:
            reasons[row.key] = ort_reason
        elif row.backend == "tensorrt" and trt_reason and not settings.engines:
            reasons[row.key] = trt_reason
    return rows, reasons


def run_worker_process(spec: dict, workdir: Path, threads: int) -> dict:
    import json

    name = spec["row"]["backend"].replace("-", "_") + "_" + spec["row"]["precision"]
    spec_path = workdir / f"{name}.spec.json"
    spec["result_out"] = str(workdir / f"{name}.result.json")
    spec["predictions_out"] = str(workdir / f"{name}.predictions.npz")
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jarrn_deploy.benchmarks.run", "--worker", str(spec_path)], env=env, cwd=REPO_ROOT)
    wall = time.perf_counter() - start
    result_path = Path(spec["result_out"])
    if result_path.is_file():
        result = json.loads(result_path.read_text())
    else:
        result = {"row": spec["row"], "status": "failed",
                  "error": f"worker process exited with code {proc.returncode} without a result "
                           f"({'killed: out of memory?' if proc.returncode in (-9, 137) else 'see the log above'})"}
    result["worker_wall_seconds"] = round(wall, 1)
    if Path(spec["predictions_out"]).is_file():
        result["predictions_file"] = spec["predictions_out"]
    return result


def combine_paired(runs: list[dict]) -> dict:
    """The paired runs (one per process) summarised: the run with the median target ratio, plus every run's ratios."""
    good = [r for r in runs if r.get("status") == "ok"]
    if not good:
        return runs[0] if runs else {"status": "failed", "error": "no paired run"}
    key = "speedup_ort_e2e_vs_torch_forward"
    ordered = sorted(good, key=lambda r: r[key])
    median = dict(ordered[len(ordered) // 2])
    median["processes"] = len(good)
    median["per_process"] = [
        {k: r[k] for k in (key, "speedup_graph_vs_graph", "speedup_e2e_vs_e2e", "basis", "rounds")}
        | {"torch_forward_p50_ms": (r["latency_quiet"].get("torch_forward") or r["latency"]["torch_forward"])["p50_ms"]
           if r.get("latency_quiet") else r["latency"]["torch_forward"]["p50_ms"],
           "ort_e2e_p50_ms": (r["latency_quiet"].get("ort_e2e") or r["latency"]["ort_e2e"])["p50_ms"]
           if r.get("latency_quiet") else r["latency"]["ort_e2e"]["p50_ms"]}
        for r in good
    ]
    return median


def resolve_device(requested: str | None) -> str:
    """'cpu' or 'cuda:N' for ``--device`` (auto, cpu, cuda, cuda:N); a bad form is a UsageError, a GPU that is not
    there an UnavailableError (exit 5), as in every command."""
    from jarrn_deploy.devices import resolve_device as resolve

    return resolve(requested or "auto")


def trt_profile(settings: BenchmarkSettings, cases) -> tuple[str, str, str]:  # noqa: ANN001
    heights = [h for h, _ in settings.sizes] + [c.rgb.shape[0] for c in cases]
    widths = [w for _, w in settings.sizes] + [c.rgb.shape[1] for c in cases]
    opt = settings.sizes[0]
    return ("1x64x64", f"1x{opt[0]}x{opt[1]}", f"{max(settings.batches)}x{max(heights)}x{max(widths)}")


@command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.worker:
        repeated_options(parser, argv)
    if args.worker:
        from jarrn_deploy.benchmarks.bench_worker import worker_main

        return worker_main(args.worker)
    try:
        settings = resolve_args(args)
    except ArgumentError as exc:
        parser.error(str(exc))
    started = time.time()
    load_start = load_average()
    log(plan_line(settings))
    log("loading PyTorch and the model ...")
    resolved = resolve_device(args.device)  # a GPU that is not there: UnavailableError, exit 5
    device, _, index = resolved.partition(":")  # the rows compare the kind; the workers see only the chosen GPU
    cuda_device_name = None
    if device == "cuda":
        import torch

        from jarrn_deploy.devices import cuda_visible_devices

        cuda_device_name = torch.cuda.get_device_name(int(index))
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(int(index))  # inherited: 'cuda' is that GPU there
    settings = replace(settings, device=device)
    from jarrn_deploy.model.checkpoint import DEFAULT_CHECKPOINT

    model_path = (args.model or DEFAULT_CHECKPOINT).resolve()
    if not model_path.is_file():
        raise InputError(f"--model: no bundled default model at {model_path} yet; pass --model CHECKPOINT "
                         "(or train one: python -m jarrn_deploy.model.train)")
    machine = describe_machine(device)
    if device == "cuda":
        machine["cuda_device_name"] = cuda_device_name
    out_dir = args.out or (REPO_ROOT / "reports" / machine["machine_tag"])
    from jarrn_deploy.model.atomic import check_writable_folder, staged_outputs

    check_writable_folder(out_dir, "--out")  # now, not after the whole benchmark
    log(f"machine {machine['machine_tag']}: {machine['cpu_model']}, {machine['cpu_physical_cores']} cores"
        + (f", {machine['gpus'][0]['name']}" if machine["gpus"] else "") + f"; report -> {out_dir}")
    if load_start and load_start[0] > 0.5 * machine["cpu_usable_cpus"]:
        log(f"warning: load average {load_start[0]} on {machine['cpu_usable_cpus']} CPUs before the run; other work "
            "on this machine will inflate and scatter the latencies")
    model = model_summary(model_path)
    log(f"model {model_path.name} (sha256 {model['sha256'][:12]}, widths {model['config']['widths']}, "
        f"{model['parameters'] / 1e6:.2f} M parameters)")

    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    cases = evaluation_cases(load_real_frames())
    known = [c.name for c in cases]
    if settings.cases is None:
        settings = replace(settings, cases=tuple(known))
    unknown = [c for c in settings.cases if c not in known]
    if unknown:
        parser.error(f"--cases: unknown case {', '.join(map(repr, unknown))}; choose from {', '.join(known)} or 'none'")

    rows, reasons = plan_rows(settings, device)
    exports: dict[str, dict] = {}
    onnx_paths: dict[str, Path] = {}
    needed = sorted({r.precision for r in rows if r.uses_onnx and r.key not in reasons}, key=PRECISIONS.index)
    if settings.engines:
        needed = sorted({r.precision for r in rows if r.backend == "onnxruntime" and r.key not in reasons},
                        key=PRECISIONS.index)
    given: dict[str, Path] = {}
    for graph in args.onnx:
        from jarrn_deploy.export.onnx_graph import read_metadata

        try:
            precision = read_metadata(graph).get("precision", "fp32")
        except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
            raise InputError(f"--onnx: {graph} could not be read as ONNX ({type(exc).__name__}: {exc})") from None
        if precision not in PRECISIONS:
            raise InputError(f"--onnx: {graph} has an unknown precision {precision!r} in its metadata")
        given[precision] = graph.resolve()
    for precision in needed:
        if precision in given:
            onnx_paths[precision] = given[precision]
            exports[precision] = {"path": str(given[precision]), "given": True}
            continue
        path, reason, info = ensure_onnx(model_path, precision, args.cache, rebuild=args.rebuild,
                                         allow_export=precision == "fp32" or not settings.quick,
                                         model_sha=model["sha256"])
        exports[precision] = {"path": str(path) if path else None, "reason": reason, **info}
        if path is None:
            for row in rows:
                if row.uses_onnx and row.precision == precision and row.key not in reasons:
                    reasons[row.key] = reason
        else:
            onnx_paths[precision] = path

    engines: dict[str, str] = {}
    if settings.engines:
        for engine in settings.engines:
            precision = engine_precision(engine)
            engines[precision] = engine
            if Row("tensorrt", precision) not in rows:
                rows.append(Row("tensorrt", precision))
            reasons.pop(f"tensorrt:{precision}", None)
        for row in rows:
            if row.backend == "tensorrt" and row.precision not in engines and row.key not in reasons:
                reasons[row.key] = "skipped: no engine of this precision among --engine"
    else:
        for row in rows:
            if row.backend == "tensorrt" and row.key not in reasons and row.precision in onnx_paths:
                engine, reason = ensure_engine(onnx_paths[row.precision], row.precision, args.cache,
                                               trt_profile(settings, cases), rebuild=args.rebuild)
                if engine is None:
                    reasons[row.key] = reason
                else:
                    engines[row.precision] = str(engine)

    configs = [(h, w, b) for (h, w) in sorted(settings.sizes, key=lambda s: s[0] * s[1])
               for b in sorted(settings.batches)]
    to_run = [r for r in rows if r.key not in reasons]
    log(f"{len(to_run)} rows to measure ({', '.join(r.key for r in to_run)}), {len(configs)} configurations "
        f"({', '.join(config_key((h, w), b) for h, w, b in configs)}), {settings.threads} threads, device {device}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="jarrn_bench_") as tmp:
        workdir = Path(tmp)
        for index, row in enumerate(to_run, 1):
            log(f"[{index}/{len(to_run)}] {row.label} ({row.key}) ...")
            spec = {
                "row": {"backend": row.backend, "precision": row.precision},
                "device": device,
                "threads": settings.threads,
                "model": str(model_path),
                "onnx": str(onnx_paths.get(row.precision)) if row.backend == "onnxruntime" else None,
                "engine": engines.get(row.precision) if row.backend == "tensorrt" else None,
                "configs": configs,
                "warmup": settings.warmup,
                "min_iterations": settings.min_iterations,
                "max_iterations": settings.iterations,
                "seconds": settings.seconds,
                "modes": list(settings.modes),
                "quiet_wait_s": settings.quiet_wait_s,
                "accuracy_cases": list(settings.cases),
            }
            results[row.key] = run_worker_process(spec, workdir, settings.threads)
            if results[row.key].get("status") != "ok":
                log(f"{row.key}: {results[row.key].get('error')}")
        paired = None
        both = all((results.get(k) or {}).get("status") == "ok" for k in ("torch:fp32", "onnxruntime:fp32"))
        target_config = (320, 320) in settings.sizes and 1 in settings.batches
        if device == "cpu" and both and target_config and "e2e" in settings.modes and "graph" in settings.modes:
            log("paired comparison for the speed target: PyTorch eager FP32 and ONNX Runtime FP32 interleaved "
                "in one process at 320x320 batch 1 ...")
            # PyTorch's speed differs from one process to the next on some machines (here by up to 1.4x between
            # otherwise identical processes), so the paired measurement is repeated in fresh processes and the median
            # ratio decides.
            repeats = 1 if settings.quick else 3
            runs = []
            for index in range(repeats):
                spec = {
                    "kind": "paired",
                    "row": {"backend": f"paired{index}", "precision": "fp32"},
                    "size": [320, 320],
                    "threads": settings.threads,
                    "model": str(model_path),
                    "onnx": str(onnx_paths["fp32"]),
                    "warmup": max(1, settings.warmup),
                    "min_iterations": settings.min_iterations,
                    "max_iterations": settings.iterations,
                    "seconds": settings.seconds,
                    "quiet_wait_s": settings.quiet_wait_s,
                }
                runs.append(run_worker_process(spec, workdir, settings.threads))
            paired = combine_paired(runs)
        from jarrn_deploy.benchmarks.bench_report import assemble_report, write_report

        log("computing accuracy against the reference and ground truth, and the interpolation baselines ...")
        report, predictions = assemble_report(
            rows=rows, reasons=reasons, results=results, cases=cases, settings=settings, machine=machine,
            model=model, exports=exports, engines=engines, paired=paired,
            command=shlex.join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
            started=started, load_start=load_start, load_end=load_average(),
        )
        log(f"writing the report to {out_dir} ...")
        try:  # all or nothing: the files appear together, or none of them
            with staged_outputs(out_dir) as stage:
                written = [Path(out_dir) / p.relative_to(stage)
                           for p in write_report(report, stage, cases=cases, predictions=predictions)]
        except OSError as exc:
            raise OutputError(f"--out: could not write the report to {out_dir} ({exc.strerror or exc}); "
                              "nothing was written") from None
    for path in written:
        log(f"wrote {path}")
    log(f"done in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
