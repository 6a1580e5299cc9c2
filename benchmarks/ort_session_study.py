"""What makes ONNX Runtime fast (or not) for JARRN on this CPU: session options, graph optimisation levels, a
pre-optimised model file, pre/post-processing, against PyTorch eager (NCHW as users run it, and channels-last).

    python benchmarks/ort_session_study.py [--model CKPT] [--size 320x320] [--threads 2] [--rounds 15]
                                           [--out reports/<machine-tag>/] [--name ort_session_options]

All variants are loaded into one process and timed **interleaved**: every round calls each variant once, in a
shuffled order, with a short pause between calls (so that one runtime's spinning worker threads have gone quiet before
the next starts). A change of machine load during the study therefore affects all variants alike, which makes the
ratios trustworthy even on a shared machine; the absolute numbers are only as good as the machine's quietness.

Writes ``ort_session_options.md`` and ``ort_session_options.json`` (atomically) into the report folder.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import numpy as np  # noqa: E402

from jarrn_deploy.progress import progress_logger  # noqa: E402
from jarrn_deploy.benchmarks.arguments import ArgumentError, parse_size  # noqa: E402
from jarrn_deploy.benchmarks.machine import describe_machine, load_average, physical_cores  # noqa: E402
from jarrn_deploy.benchmarks.report_files import atomic_write_json  # noqa: E402
from jarrn_deploy.benchmarks.timing import CpuInterference, interference_summary, latency_stats, quiet_stats  # noqa: E402
from jarrn_deploy.model.atomic import atomic_write_text  # noqa: E402
from jarrn_deploy.export.ort_session import open_session  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
PAUSE_S = 0.05


log = progress_logger("ort-study")


def _op_histogram(model) -> dict[str, int]:  # noqa: ANN001
    counts = collections.Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in model.graph.node)
    return dict(counts.most_common())


def fold_rezero_alpha(model):  # noqa: ANN001, ANN201
    """A copy of the graph with every ``Mul(scalar, Conv(x))`` folded into the convolution's weights and bias.

    The ReZero bottleneck computes ``alpha * conv(x) + skip``; scaling the last 1x1 convolution's weights and bias by
    ``alpha`` is exact up to float rounding and leaves ``Conv -> Add``, which ONNX Runtime (and TensorRT) can fuse.
    Only a measurement here: the export itself lives in export/.
    """
    import copy

    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, int] = collections.Counter(i for n in graph.node for i in n.input)
    graph_outputs = {o.name for o in graph.output}
    removed, folded = set(), 0
    for node in graph.node:
        if node.op_type != "Mul":
            continue
        for conv_out, scalar in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            value = numpy_helper.to_array(inits[scalar]) if scalar in inits else consts.get(scalar)
            conv = producers.get(conv_out)
            if (value is None or value.size != 1 or conv is None or conv.op_type != "Conv"
                    or consumers[conv_out] != 1 or conv_out in graph_outputs or conv.input[1] not in inits):
                continue
            alpha = float(value.reshape(()))
            for index, suffix in ((1, "w"), (2, "b")):
                if len(conv.input) > index and conv.input[index] in inits:
                    scaled = numpy_helper.to_array(inits[conv.input[index]]) * alpha
                    name = f"{conv.name}_rezero_{suffix}"
                    graph.initializer.append(numpy_helper.from_array(scaled.astype(np.float32), name))
                    conv.input[index] = name
            conv.output[0] = node.output[0]
            removed.add(id(node))
            folded += 1
            break
    kept = [n for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input}
    keep_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    onnx.checker.check_model(model)
    return model, folded


def _session(ort, path: str, threads: int, *, level: str = "ORT_ENABLE_ALL", inter_op: int | None = None,  # noqa: ANN001
             sequential: bool | None = None, arena: bool | None = None, spinning: bool | None = None,
             denormal_as_zero: bool = False, optimized_out: str | None = None):  # noqa: ANN201
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    if inter_op is not None:
        options.inter_op_num_threads = inter_op
    if sequential is not None:
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if sequential else ort.ExecutionMode.ORT_PARALLEL
    if arena is not None:
        options.enable_cpu_mem_arena = arena
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if denormal_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if optimized_out:
        options.optimized_model_filepath = optimized_out
    start = time.perf_counter()
    session = open_session(path, ort=ort, options=options)
    return session, time.perf_counter() - start


def _torch_profile(module, rgb, sparse, torch) -> list[dict]:  # noqa: ANN001
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        module(rgb, sparse)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            module(rgb, sparse)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "calls": int(e.count), "self_ms": e.self_cpu_time_total / 1e3,
             "share": e.self_cpu_time_total / total} for e in events[:10]]


def _ort_profile(ort, path: str, threads: int, feeds: dict) -> list[dict]:  # noqa: ANN001
    import json

    with tempfile.TemporaryDirectory(prefix="jarrn_ort_prof_") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = open_session(path, ort=ort, options=options)
        session.run(["depth"], feeds)
        session.run(["depth"], feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
    # Keep the last run only: node events carry args.op_name; group by op type.
    runs = [e for e in trace if e.get("name") == "model_run"]
    last_start = runs[-1]["ts"] if runs else 0
    per_op: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for event in trace:
        if event.get("cat") != "Node" or event.get("ts", 0) < last_start or not event["name"].endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name", "?")
        per_op[op][0] += 1
        per_op[op][1] += event.get("dur", 0) / 1e3
    total = sum(v[1] for v in per_op.values()) or 1
    ranked = sorted(per_op.items(), key=lambda kv: kv[1][1], reverse=True)
    return [{"op": op, "calls": int(v[0]), "ms": v[1], "share": v[1] / total} for op, v in ranked[:10]]


def run_study(model_path: Path, hw: tuple[int, int], threads: int, rounds: int, onnx_path: Path | None) -> dict:
    import onnx
    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    from jarrn_deploy.model import MetricJarrn, load_model
    from jarrn_deploy.model.contract import prepare_inputs
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames
    from jarrn_deploy.runtime import DepthCompleter

    from jarrn_deploy.benchmarks.measure import latency_inputs

    network = load_model(model_path)
    cases = sorted(evaluation_cases(load_real_frames()), key=lambda c: not c.name.startswith("kitti"))
    rgb, sparse = latency_inputs(cases, hw[0], hw[1], 1)
    rgb, sparse = rgb[0], sparse[0]
    rgb_nchw, sparse_nchw, _ = prepare_inputs(rgb, sparse)
    feeds = {"rgb": rgb_nchw, "sparse_depth": sparse_nchw}

    tmp = tempfile.TemporaryDirectory(prefix="jarrn_ort_study_")
    if onnx_path is None:
        from jarrn_deploy.export.onnx_graph import ExportOptions, export_onnx

        onnx_path = Path(tmp.name) / "jarrn_fp32.onnx"
        log(f"exporting {onnx_path}")
        export_onnx(network, onnx_path, ExportOptions(precision="fp32"))
    path = str(onnx_path)
    exported = onnx.load(path)
    optimized_path = str(Path(tmp.name) / "jarrn_fp32.ort_optimized.onnx")
    basic_path = str(Path(tmp.name) / "jarrn_fp32.ort_basic.onnx")

    variants: dict[str, dict] = {}

    def add(name: str, fn, description: str, **extra) -> None:  # noqa: ANN001
        variants[name] = {"fn": fn, "description": description, **extra}

    module = MetricJarrn(network).eval()
    rgb_t, sparse_t = torch.from_numpy(rgb_nchw), torch.from_numpy(sparse_nchw)

    def torch_eager() -> None:
        with torch.inference_mode():
            module(rgb_t, sparse_t)

    add("torch_eager", torch_eager, "PyTorch eager FP32 forward, NCHW, inference_mode (the baseline, as users run it)")
    module_cl = MetricJarrn(load_model(model_path)).eval().to(memory_format=torch.channels_last)
    rgb_cl, sparse_cl = rgb_t.contiguous(memory_format=torch.channels_last), sparse_t.contiguous(
        memory_format=torch.channels_last)

    def torch_cl() -> None:
        with torch.inference_mode():
            module_cl(rgb_cl, sparse_cl)

    add("torch_eager_channels_last", torch_cl, "PyTorch eager FP32, channels-last weights and inputs (not the baseline)")

    completer_t = DepthCompleter.from_network(load_model(model_path))
    add("torch_e2e", lambda: completer_t.complete(rgb, sparse),
        "PyTorch via DepthCompleter.complete (uint8 HxWx3 in, HxW out)")

    completer = DepthCompleter.from_onnx(path, providers="cpu", intra_op_threads=threads)
    add("ort_runtime_e2e", lambda: completer.complete(rgb, sparse),
        "ONNX Runtime via DepthCompleter.complete (the project's path: runtime session options)")
    add("ort_runtime_graph", lambda: completer.backend.run(rgb_nchw, sparse_nchw),
        "the runtime's session, session.run on NCHW inputs (graph only)")

    sessions = {
        "ort_all_inter1_seq": dict(level="ORT_ENABLE_ALL", inter_op=1, sequential=True),
        "ort_all_no_spinning": dict(level="ORT_ENABLE_ALL", inter_op=1, sequential=True, spinning=False),
        "ort_all_no_arena": dict(level="ORT_ENABLE_ALL", inter_op=1, sequential=True, arena=False),
        "ort_all_denormal_zero": dict(level="ORT_ENABLE_ALL", inter_op=1, sequential=True, denormal_as_zero=True),
        "ort_extended": dict(level="ORT_ENABLE_EXTENDED", inter_op=1, sequential=True),
        "ort_basic": dict(level="ORT_ENABLE_BASIC", inter_op=1, sequential=True),
        "ort_disable_all": dict(level="ORT_DISABLE_ALL", inter_op=1, sequential=True),
    }
    descriptions = {
        "ort_all_inter1_seq": "ORT_ENABLE_ALL + inter_op_num_threads=1 + ORT_SEQUENTIAL (explicit)",
        "ort_all_no_spinning": "as above + session.intra_op.allow_spinning=0",
        "ort_all_no_arena": "as above + enable_cpu_mem_arena=False",
        "ort_all_denormal_zero": "as above + session.set_denormal_as_zero=1",
        "ort_extended": "ORT_ENABLE_EXTENDED (fusions, no NCHWc layout transformation)",
        "ort_basic": "ORT_ENABLE_BASIC (constant folding, redundant-node removal only)",
        "ort_disable_all": "ORT_DISABLE_ALL (the exported graph as is)",
    }
    creation: dict[str, float] = {"ort_runtime": None}  # type: ignore[dict-item]
    for name, kwargs in sessions.items():
        session, seconds = _session(ort, path, threads, **kwargs)
        creation[name] = seconds
        add(name, (lambda s=session: s.run(["depth"], feeds)), descriptions[name], session_create_s=seconds)
    folded_model, folded_count = fold_rezero_alpha(exported)
    folded_path = str(Path(tmp.name) / "jarrn_fp32.rezero_folded.onnx")
    onnx.save(folded_model, folded_path)
    folded_session, folded_s = _session(ort, folded_path, threads, inter_op=1, sequential=True)
    folded_out = folded_session.run(["depth"], feeds)[0]
    reference_out = completer.backend.run(rgb_nchw, sparse_nchw)
    add("ort_rezero_folded", lambda: folded_session.run(["depth"], feeds),
        f"export-side experiment: {folded_count} ReZero Mul(alpha) folded into the preceding 1x1 Conv "
        f"(max |diff| {float(np.abs(folded_out - reference_out).max()):.1e} m), ORT_ENABLE_ALL",
        session_create_s=folded_s)
    # Pre-optimised model files: saved once at ENABLE_ALL (layout specific to this CPU) and at BASIC (portable),
    # then loaded with optimisations disabled.
    _, save_all_s = _session(ort, path, threads, level="ORT_ENABLE_ALL", optimized_out=optimized_path)
    _, save_basic_s = _session(ort, path, threads, level="ORT_ENABLE_BASIC", optimized_out=basic_path)
    pre_all, load_all_s = _session(ort, optimized_path, threads, level="ORT_DISABLE_ALL", inter_op=1, sequential=True)
    pre_basic, load_basic_s = _session(ort, basic_path, threads, level="ORT_ENABLE_ALL", inter_op=1, sequential=True)
    add("ort_preoptimized_all", lambda: pre_all.run(["depth"], feeds),
        "model pre-optimised at ORT_ENABLE_ALL (optimized_model_filepath), loaded with ORT_DISABLE_ALL",
        session_create_s=load_all_s)
    add("ort_preoptimized_basic_then_all", lambda: pre_basic.run(["depth"], feeds),
        "model pre-optimised at ORT_ENABLE_BASIC (portable file), loaded with ORT_ENABLE_ALL",
        session_create_s=load_basic_s)

    # Warm-up every variant, then interleaved rounds.
    log(f"{len(variants)} variants at {hw[0]}x{hw[1]} batch 1, {threads} threads; warm-up ...")
    for item in variants.values():
        for _ in range(2):
            item["fn"]()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    shares: dict[str, list[float | None]] = {name: [] for name in variants}
    cpu = CpuInterference()
    rng = random.Random(0)
    names = list(variants)
    for index in range(rounds):
        rng.shuffle(names)
        for name in names:
            time.sleep(PAUSE_S)
            before = cpu.snapshot()
            start = time.perf_counter()
            variants[name]["fn"]()
            samples[name].append(time.perf_counter() - start)
            shares[name].append(cpu.share(before, cpu.snapshot()))
        base = np.median(samples["torch_eager"])
        log(f"round {index + 1}/{rounds}: torch eager median so far {base * 1e3:.1f} ms, runtime ORT e2e "
            f"{np.median(samples['ort_runtime_e2e']) * 1e3:.1f} ms")

    torch_p50 = float(np.median(samples["torch_eager"]))
    torch_quiet = quiet_stats(samples["torch_eager"], shares["torch_eager"])
    results = {}
    for name, item in variants.items():
        stats = latency_stats(samples[name], 1)
        stats["speedup_vs_torch_eager"] = torch_p50 * 1e3 / stats["p50_ms"]
        quiet = quiet_stats(samples[name], shares[name])
        if quiet and torch_quiet:
            quiet["speedup_vs_torch_eager"] = torch_quiet["p50_ms"] / quiet["p50_ms"]
        stats["quiet"] = quiet
        stats["interference"] = interference_summary(shares[name])
        results[name] = {"description": item["description"], **stats}
        if "session_create_s" in item:
            results[name]["session_create_s"] = item["session_create_s"]

    optimized = onnx.load(optimized_path)
    study = {
        "machine": describe_machine("cpu"),
        "model": str(model_path),
        "onnx": path,
        "size": list(hw),
        "threads": threads,
        "rounds": rounds,
        "pause_between_calls_s": PAUSE_S,
        "load_average": load_average(),
        "results": results,
        # The ORT session options the runtime uses, as read back from its session.
        "runtime_session_options": completer.backend.session_settings["session_options"],
        "preoptimized_save_seconds": {"enable_all": save_all_s, "basic": save_basic_s},
        "graph": {
            "exported_nodes": len(exported.graph.node),
            "exported_ops": _op_histogram(exported),
            "exported_initializers": len(exported.graph.initializer),
            "optimized_enable_all_nodes": len(optimized.graph.node),
            "optimized_enable_all_ops": _op_histogram(optimized),
        },
        "torch_profile_top_ops": _torch_profile(module, rgb_t, sparse_t, torch),
        "ort_profile_top_ops": _ort_profile(ort, path, threads, feeds),
    }
    tmp.cleanup()
    return study


def render(study: dict) -> str:
    res = study["results"]
    h, w = study["size"]
    lines = [f"# ONNX Runtime session options for JARRN: {study['machine']['machine_tag']}", ""]
    lines += [f"{h}x{w}, batch 1, {study['threads']} threads, model `{study['model']}`. All variants timed interleaved "
              f"in one process ({study['rounds']} rounds, shuffled order, {study['pause_between_calls_s'] * 1e3:.0f} ms "
              f"pause between calls); load average at the end {study['load_average']}. Speed-up = PyTorch eager "
              "FP32 forward p50 / variant p50.", ""]
    lines += ["*quiet*: only the calls during which other processes used < 10 % of the machine's CPU (from "
              "/proc/stat), when each variant has at least 3; on a shared machine these are the numbers to compare. "
              "*others' CPU*: median share other processes used during this variant's calls.", ""]
    lines += ["| variant | p50 ms | p90 ms | speed-up vs PyTorch eager | quiet p50 ms (n) | quiet speed-up | "
              "others' CPU | session create s | what |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(res.items(), key=lambda kv: (kv[1]["quiet"] or kv[1])["p50_ms"]):
        create = f"{r['session_create_s']:.2f}" if r.get("session_create_s") is not None else "-"
        quiet = r.get("quiet") or {}
        others = (r.get("interference") or {}).get("median")
        lines.append(f"| `{name}` | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['speedup_vs_torch_eager']:.2f}x | "
                     + (f"{quiet['p50_ms']:.1f} ({quiet['n']})" if quiet else "-") + " | "
                     + (f"{quiet['speedup_vs_torch_eager']:.2f}x" if quiet.get("speedup_vs_torch_eager") else "-")
                     + " | " + ("-" if others is None else f"{others * 100:.0f}%")
                     + f" | {create} | {r['description']} |")
    lines += [""]
    e2e, graph = res["ort_runtime_e2e"]["p50_ms"], res["ort_runtime_graph"]["p50_ms"]
    lines += [f"Pre/post-processing in `DepthCompleter.complete` (ORT): e2e {e2e:.1f} ms vs graph {graph:.1f} ms "
              f"({e2e - graph:+.1f} ms, {100 * (e2e - graph) / graph:+.1f}%). PyTorch: e2e "
              f"{res['torch_e2e']['p50_ms']:.1f} ms vs forward {res['torch_eager']['p50_ms']:.1f} ms.", ""]
    opts = study["runtime_session_options"]
    lines += ["Runtime session options as read back from `DepthCompleter.from_onnx(..., intra_op_threads=N)`: "
              + ", ".join(f"{k}={v}" for k, v in opts.items()) + ".", ""]
    g = study["graph"]
    top_exported = ", ".join(f"{k} {v}" for k, v in list(g["exported_ops"].items())[:10])
    top_optimized = ", ".join(f"{k} {v}" for k, v in list(g["optimized_enable_all_ops"].items())[:12])
    lines += ["## The graph", "",
              f"- Exported (TorchScript exporter with constant folding, then onnxslim): {g['exported_nodes']} nodes "
              f"({top_exported}).",
              f"- After ORT_ENABLE_ALL on this CPU: {g['optimized_enable_all_nodes']} nodes ({top_optimized}).", ""]
    lines += ["## Where the time goes", "", "PyTorch eager (torch.profiler, one forward, self CPU time):", "",
              "| op | calls | ms | share |", "|---|---|---|---|"]
    for e in study["torch_profile_top_ops"]:
        lines.append(f"| {e['op']} | {e['calls']} | {e['self_ms']:.1f} | {e['share'] * 100:.1f}% |")
    lines += ["", "ONNX Runtime ORT_ENABLE_ALL (session profiling, one run, kernel time by op type):", "",
              "| op | calls | ms | share |", "|---|---|---|---|"]
    for e in study["ort_profile_top_ops"]:
        lines.append(f"| {e['op']} | {e['calls']} | {e['ms']:.1f} | {e['share'] * 100:.1f}% |")
    lines += [""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/ort_session_study.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the bundled default model)")
    parser.add_argument("--onnx", type=Path, default=None, help="an exported FP32 graph of that model (default: export)")
    parser.add_argument("--size", default="320x320", help="HEIGHTxWIDTH (default 320x320)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: physical cores)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default reports/<machine-tag>/)")
    parser.add_argument("--name", default="ort_session_options",
                        help="file name stem of the .md / .json (default ort_session_options)")
    args = parser.parse_args(argv)
    try:
        hw = parse_size(args.size)
    except ArgumentError as exc:
        parser.error(str(exc).replace("--sizes", "--size"))
    if args.rounds < 3:
        parser.error("--rounds: expected at least 3")
    from jarrn_deploy.model.checkpoint import DEFAULT_CHECKPOINT

    model_path = (args.model or DEFAULT_CHECKPOINT).resolve()
    if not model_path.is_file():
        parser.error(f"--model: no such file {model_path}")
    threads = args.threads or physical_cores()
    study = run_study(model_path, hw, threads, args.rounds, args.onnx)
    out = args.out or (REPO_ROOT / "reports" / study["machine"]["machine_tag"])
    atomic_write_json(out / f"{args.name}.json", study)
    atomic_write_text(out / f"{args.name}.md", render(study))
    log(f"wrote {out / (args.name + '.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
