"""Latency and accuracy of JARRN on every backend and precision this machine has, against the PyTorch reference and
ground truth; writes ``reports/<machine-tag>/report.md``, ``report.json`` and PNG charts.

    python benchmarks/run.py                       # everything available, default model, 320x320 and 375x1242, b1+b4
    python benchmarks/run.py --quick               # a short run (about 3 minutes on a shared 2-core CPU)
    python benchmarks/run.py --model my.safetensors --out reports/mine --threads 4
    python benchmarks/run.py --device cuda --backends torch,torch-compile,tensorrt --precisions fp16

Rows (benchmarks/rows.py, from the backend and precision registries): PyTorch eager FP32 (the baseline every speed-up
is stated against; always measured), every registered backend that runs exported graphs at every precision (ONNX
Runtime and OpenVINO FP32 / FP16 / INT8, export/onnx_graph.py), TensorRT and TensorRT-RTX FP32 / FP16 / INT8 engines
(GPU; built in process by jarrn_deploy.export.engine.build.build_engine) and, on a GPU, PyTorch FP16 autocast and
torch.compile(mode="reduce-overhead") (CUDA graphs; TorchBackendOptions). Rows this machine cannot run are listed in
the report with the reason.

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
from jarrn_deploy.benchmarks.artifacts import ensure_engine, ensure_onnx  # noqa: E402
from jarrn_deploy.benchmarks.arguments import ArgumentError, parse_choice_list, parse_int_list, parse_sizes  # noqa: E402
from jarrn_deploy.benchmarks.machine import describe_machine, load_average, physical_cores  # noqa: E402
from jarrn_deploy.benchmarks.rows import (  # noqa: E402
    BASELINE_KEY,
    DEFAULT_BATCHES,
    DEFAULT_SIZES,
    Row,
    applicable_rows,
    config_key,
    row_backends,
    row_reason,
    variants,
)
from jarrn_deploy.export.precisions import PRECISIONS  # noqa: E402
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
(``duration_seconds`` of the full report of 2026-11-24, before the OpenVINO rows existed)."""
# Source files whose change makes a cached export stale.


log = progress_logger("bench", elapsed=True)


# ---------------------------------------------------------------------------------------------------------------------
# command line


HELP_DESCRIPTION = """\
Measure how fast and how accurate the model is on this machine, on every backend and precision it can
run (PyTorch, ONNX Runtime, OpenVINO, TensorRT; fp32, fp16, int8), and write a report: report.md, report.json and
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
                        help=f"comma-separated subset of {', '.join(row_backends())} (default: all; PyTorch eager FP32 is "
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
    parser.add_argument("--note", action="append", default=[],
                        help="a line to record in the report's notes (e.g. that the machine was shared); repeatable")
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
    settings["backends"] = parse_choice_list(args.backends, "--backends", row_backends())
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


def engine_row(path: Path) -> Row:
    """The row of an engine given with ``--engine``: its precision and flavour from its manifest
    (:func:`jarrn_deploy.export.precisions.artifact_precision`)."""
    from jarrn_deploy.export.engine.manifest import EngineManifest, manifest_path
    from jarrn_deploy.export.precisions import UNKNOWN, artifact_precision

    try:
        precision = artifact_precision(path)
    except InputError as exc:
        raise InputError(f"--engine: {exc}") from None
    if precision == UNKNOWN:
        raise InputError(f"--engine: {path} has no manifest ({manifest_path(path).name}) recording its precision; "
                         "build it with jarrn build-engine")
    flavour = EngineManifest.load(manifest_path(path)).flavour
    families = [v.name for v in variants().values() if Row(v.name, precision).spec.model_kind == "engine"]
    return Row(next((f for f in families if variants()[f].flavour == flavour), families[0]), precision)


def given_graphs(paths: list[Path]) -> dict[str, Path]:
    """The graphs given with ``--onnx`` by precision (:func:`jarrn_deploy.export.precisions.artifact_precision`)."""
    from jarrn_deploy.export.precisions import UNKNOWN, artifact_precision

    given: dict[str, Path] = {}
    for graph in paths:
        try:
            precision = artifact_precision(graph)
        except InputError as exc:
            raise InputError(f"--onnx: {exc}") from None
        if precision == UNKNOWN:
            raise InputError(f"--onnx: {graph} records no precision and its graph shows none the exporter produces")
        given[precision] = graph.resolve()
    return given


def prepare_engines(rows: list[Row], reasons: dict[str, str], onnx_paths: dict[str, Path], given: list[Path],
                    profile: tuple[str, str, str], *, rebuild: bool) -> dict[str, str]:
    """The engine of every engine row by row key: the ones given with ``--engine`` (their rows added), else built from
    the exported graphs with :func:`jarrn_deploy.benchmarks.artifacts.ensure_engine`. Rows without one get a reason."""
    engines: dict[str, str] = {}
    if given:
        for path in given:
            row = engine_row(path)
            engines[row.key] = str(path)
            if row not in rows:
                rows.append(row)
            reasons.pop(row.key, None)
        for row in rows:
            if row.spec.model_kind == "engine" and row.key not in engines and row.key not in reasons:
                reasons[row.key] = "skipped: no engine of this precision among --engine"
        return engines
    for row in rows:
        if row.spec.model_kind == "engine" and row.key not in reasons and row.precision in onnx_paths:
            engine, reason = ensure_engine(onnx_paths[row.precision], row.variant.flavour, profile, rebuild=rebuild,
                                           log=log)
            if engine is None:
                reasons[row.key] = reason
            else:
                engines[row.key] = str(engine)
    return engines


# ---------------------------------------------------------------------------------------------------------------------
# orchestration


def plan_rows(settings: BenchmarkSettings, device: str) -> tuple[list[Row], dict[str, str]]:
    """The rows to measure (baseline first) and the reasons for the rows that cannot be measured here."""
    baseline = Row(*BASELINE_KEY.split(":"))
    rows = [baseline] + [r for r in applicable_rows(settings.backends, settings.precisions) if r != baseline]
    reasons: dict[str, str] = {}
    for row in rows:
        if settings.engines and row.spec.model_kind == "engine":
            continue  # decided by the engines given
        reason = row_reason(row, device)
        if reason:
            reasons[row.key] = reason
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
    given_engines = [Path(e) for e in settings.engines]
    exports: dict[str, dict] = {}
    onnx_paths: dict[str, Path] = {}
    graph_rows = [r for r in rows if r.uses_onnx and r.key not in reasons
                  and not (given_engines and r.spec.model_kind == "engine")]
    given = given_graphs(args.onnx)
    for precision in sorted({r.precision for r in graph_rows}, key=PRECISIONS.index):
        if precision in given:
            onnx_paths[precision] = given[precision]
            exports[precision] = {"path": str(given[precision]), "given": True}
            continue
        path, reason, info = ensure_onnx(model_path, precision, args.cache, rebuild=args.rebuild,
                                         allow_export=precision == "fp32" or not settings.quick,
                                         model_sha=model["sha256"], log=log)
        exports[precision] = {"path": str(path) if path else None, "reason": reason, **info}
        if path is None:
            reasons.update((r.key, reason) for r in graph_rows if r.precision == precision)
        else:
            onnx_paths[precision] = path
    artifacts = {r.key: str(onnx_paths[r.precision]) for r in graph_rows
                 if r.spec.model_kind == "onnx" and r.precision in onnx_paths}
    engines = prepare_engines(rows, reasons, onnx_paths, given_engines, trt_profile(settings, cases),
                              rebuild=args.rebuild)
    artifacts.update(engines)

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
                "artifact": artifacts.get(row.key),
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
            others = {r.key: artifacts[r.key] for r in to_run if r.key != "onnxruntime:fp32"
                      and r.spec.model_kind == "onnx" and (results.get(r.key) or {}).get("status") == "ok"}
            log("paired comparison for the speed target: PyTorch eager FP32 and ONNX Runtime FP32 interleaved "
                "in one process at 320x320 batch 1" + (f", with {', '.join(others)} end to end" if others else "")
                + " ...")
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
                    "others": others,
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
            model=model, exports=exports, engines=engines, paired=paired, notes=args.note,
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
