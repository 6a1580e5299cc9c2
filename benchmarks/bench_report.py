"""Turn the per-row measurements of ``benchmarks/run.py`` into ``report.json``, ``report.md`` and PNG charts.

:func:`assemble_report` computes what is derived (speed-ups against PyTorch eager FP32, accuracy against the PyTorch
FP32 reference and against ground truth, the interpolation baselines, the targets); :func:`write_report` writes the
files, each atomically (temp file + rename), into the report folder.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from benchmarks.bench_core import (
    BASELINE_KEY,
    Row,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    padded_hw,
)

SCHEMA = "jarrn-benchmark/1"
SPEED_TARGET = {"config": "320x320_b1", "row": "onnxruntime:fp32", "min_speedup": 1.6, "aim_speedup": 2.0}
PRECISION_TOLERANCE = {"fp16": 0.02, "int8": 0.05}
BASELINE_METHODS = ("nearest", "linear")
METRIC_KEYS = ("rmse", "mae", "absrel", "delta1")


# ---------------------------------------------------------------------------------------------------------------------
# assembling


def _speedups(rows: list[dict]) -> None:
    """Add ``speedup`` (baseline p50 / row p50, per mode) to every configuration of every measured row."""
    base = next((r for r in rows if r["key"] == BASELINE_KEY and r["status"] == "ok"), None)
    for row in rows:
        for key, cfg in (row.get("configs") or {}).items():
            lat = cfg.get("latency") or {}
            ref = ((base or {}).get("configs") or {}).get(key, {}).get("latency") or {}
            cfg["speedup"] = {
                mode: (ref[mode]["p50_ms"] / lat[mode]["p50_ms"]) if mode in ref and lat[mode]["p50_ms"] > 0 else None
                for mode in lat if mode in ("e2e", "graph")
            }


def _vs_reference(pred: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(pred.astype(np.float64) - ref.astype(np.float64))
    return {"max_abs_m": float(diff.max()), "mean_abs_m": float(diff.mean()),
            "p99_abs_m": float(np.percentile(diff, 99))}


def _metrics(pred: np.ndarray, gt: np.ndarray) -> dict:
    from model.metrics import depth_metrics

    m = depth_metrics(pred, gt).as_dict()
    return {k: m[k] for k in ("rmse", "mae", "absrel", "delta1", "irmse", "count")}


def baseline_metrics(cases) -> tuple[dict, dict]:  # noqa: ANN001
    """Nearest and linear interpolation of each case's sparse points: metrics and the dense maps."""
    from model.baselines import linear_interpolation, nearest_interpolation

    metrics: dict[str, dict] = {m: {} for m in BASELINE_METHODS}
    maps: dict[str, dict] = {m: {} for m in BASELINE_METHODS}
    for case in cases:
        for method, fn in (("nearest", nearest_interpolation), ("linear", linear_interpolation)):
            try:
                dense = fn(case.sparse)
            except ValueError as exc:
                metrics[method][case.name] = {"error": str(exc)}
                continue
            maps[method][case.name] = dense
            metrics[method][case.name] = _metrics(dense, case.gt)
    return metrics, maps


def _summary(per_case: dict, key: str) -> dict:
    values = [v[key] for v in per_case.values() if isinstance(v, dict) and key in v]
    return {"mean": float(np.mean(values)), "max": float(np.max(values))} if values else {}


def _precision_targets(rows: list[dict]) -> list[dict]:
    """FP16 within 2 % and INT8 within 5 % of the FP32 reference RMSE against ground truth, per case."""
    base = next((r for r in rows if r["key"] == BASELINE_KEY and r.get("accuracy")), None)
    out = []
    if base is None:
        return out
    for row in rows:
        tol = PRECISION_TOLERANCE.get(row["precision"])
        if tol is None or not row.get("accuracy"):
            continue
        per_case = {}
        for case, acc in row["accuracy"].items():
            ref = base["accuracy"].get(case, {}).get("vs_gt", {}).get("rmse")
            rmse = acc.get("vs_gt", {}).get("rmse")
            if ref is None or rmse is None:
                continue
            per_case[case] = {"rmse": rmse, "fp32_rmse": ref, "relative_change": rmse / ref - 1.0}
        if not per_case:
            continue
        worst = max(per_case.values(), key=lambda v: v["relative_change"])["relative_change"]
        mean_ref = float(np.mean([v["fp32_rmse"] for v in per_case.values()]))
        mean_row = float(np.mean([v["rmse"] for v in per_case.values()]))
        out.append({
            "row": row["key"],
            "label": row["label"],
            "tolerance": tol,
            "worst_case_relative_change": worst,
            "mean_rmse_relative_change": mean_row / mean_ref - 1.0,
            "met": bool(worst <= tol),
            "per_case": per_case,
        })
    return out


def _speed_target(rows: list[dict], device: str, threads: int, paired: dict | None = None) -> dict:
    target = dict(SPEED_TARGET)
    if paired:
        target["paired"] = paired
    target["definition"] = ("ONNX Runtime FP32 through the runtime API (DepthCompleter.complete, end to end) vs the "
                            "PyTorch eager FP32 forward of the same model (graph only), p50 at 320x320 batch 1 on CPU "
                            "with 2 threads")
    by_key = {r["key"]: r for r in rows}
    ort, torch_row = by_key.get(SPEED_TARGET["row"]), by_key.get(BASELINE_KEY)
    cfg_ort = ((ort or {}).get("configs") or {}).get(SPEED_TARGET["config"], {}).get("latency")
    cfg_torch = ((torch_row or {}).get("configs") or {}).get(SPEED_TARGET["config"], {}).get("latency")
    target["applicable"] = device == "cpu"
    target["threads"] = threads
    target["speedup"] = None
    target["met"] = False
    if not cfg_ort or not cfg_torch:
        target["status"] = "not measured (needs onnxruntime:fp32 and torch:fp32 at 320x320 batch 1)"
        return target

    def ratio(a: str, b: str) -> float | None:
        if a in cfg_torch and b in cfg_ort:
            return cfg_torch[a]["p50_ms"] / cfg_ort[b]["p50_ms"]
        return None

    target["speedup_ort_e2e_vs_torch_forward"] = ratio("graph", "e2e")
    target["speedup_graph_vs_graph"] = ratio("graph", "graph")
    target["speedup_e2e_vs_e2e"] = ratio("e2e", "e2e")
    primary = next((v for v in (target["speedup_ort_e2e_vs_torch_forward"], target["speedup_e2e_vs_e2e"],
                                target["speedup_graph_vs_graph"]) if v is not None), None)
    target["source"] = "rows measured in separate processes"
    if paired and paired.get("status") == "ok":
        # Interleaved in one process: robust to load changes between the rows, so it decides the verdict.
        primary = paired["speedup_ort_e2e_vs_torch_forward"]
        target["source"] = "paired interleaved measurement"
    target["speedup"] = primary
    target["met"] = bool(primary is not None and primary >= SPEED_TARGET["min_speedup"])
    target["aim_met"] = bool(primary is not None and primary >= SPEED_TARGET["aim_speedup"])
    if device != "cpu":
        target["status"] = "the target is defined for CPU runs; shown for information"
    elif threads != 2:
        target["status"] = f"measured with {threads} threads (the target is stated for 2)"
    else:
        target["status"] = "measured"
    return target


def _row_entry(row: Row, reasons: dict, results: dict) -> dict:
    entry = {"key": row.key, "backend": row.backend, "precision": row.precision, "label": row.label}
    if row.key in reasons:
        reason = reasons[row.key]
        entry["status"] = "skipped" if reason.startswith("skipped") or reason.startswith("not measured") else "unavailable"
        entry["reason"] = reason
        return entry
    result = results.get(row.key) or {"status": "failed", "error": "no result"}
    entry["status"] = result.get("status", "failed")
    for key in ("error", "setup", "threads", "load_seconds", "rss_after_imports_mib", "rss_after_load_mib",
                "rss_end_mib", "configs", "errors", "accuracy_seconds", "worker_wall_seconds"):
        if key in result:
            entry[key] = result[key]
    if entry["status"] != "ok":
        entry["reason"] = f"failed: {result.get('error', 'unknown error')}"
    return entry


def assemble_report(*, rows: Sequence[Row], reasons: dict, results: dict, cases, settings: dict, machine: dict,  # noqa: ANN001
                    model: dict, exports: dict, engines: dict, command: str, started: float,
                    load_start, load_end, paired: dict | None = None) -> tuple[dict, dict]:  # noqa: ANN001
    """The report dictionary (what report.json holds) and the predictions ``{row key: {case: HxW metres}}``."""
    entries = [_row_entry(r, reasons, results) for r in rows]
    _speedups(entries)
    wanted = [c for c in cases if c.name in set(settings.get("cases") or ())]
    predictions: dict[str, dict[str, np.ndarray]] = {}
    for entry in entries:
        path = (results.get(entry["key"]) or {}).get("predictions_file")
        if entry["status"] == "ok" and path and Path(path).is_file():
            with np.load(path) as data:
                predictions[entry["key"]] = {k: data[k] for k in data.files}
    reference = predictions.get(BASELINE_KEY, {})
    for entry in entries:
        preds = predictions.get(entry["key"])
        if not preds:
            continue
        accuracy = {}
        for case in wanted:
            if case.name not in preds:
                continue
            acc = {"vs_gt": _metrics(preds[case.name], case.gt)}
            if case.name in reference:
                acc["vs_reference"] = _vs_reference(preds[case.name], reference[case.name])
            accuracy[case.name] = acc
        entry["accuracy"] = accuracy
        entry["accuracy_summary"] = {
            "rmse_mean_over_cases": _summary({k: v["vs_gt"] for k, v in accuracy.items()}, "rmse").get("mean"),
            "vs_reference_max_abs_m": _summary({k: v.get("vs_reference", {}) for k, v in accuracy.items()},
                                               "max_abs_m").get("max"),
            "vs_reference_mean_abs_m": _summary({k: v.get("vs_reference", {}) for k, v in accuracy.items()},
                                                "mean_abs_m").get("mean"),
        }
    base_metrics, base_maps = baseline_metrics(wanted) if wanted else ({}, {})
    report = {
        "schema": SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_seconds": round(_dt.datetime.now().timestamp() - started, 1),
        "command": command,
        "machine": machine,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "load_average": {"start": load_start, "end": load_end},
        "model": model,
        "exports": exports,
        "engines": engines,
        "rows": entries,
        "baselines": base_metrics,
        "cases": [{"name": c.name, "height": int(c.rgb.shape[0]), "width": int(c.rgb.shape[1]),
                   "sparse_points": int((c.sparse > 0).sum()), "gt_pixels": int((c.gt > 0).sum())} for c in wanted],
        "targets": {
            "speed": _speed_target(entries, settings.get("device", "cpu"), settings.get("threads", 0), paired),
            "precision": _precision_targets(entries),
        },
    }
    report["notes"] = _notes(report)
    predictions["__baselines__"] = base_maps  # type: ignore[assignment]
    return report, predictions


def _notes(report: dict) -> list[str]:
    notes = []
    machine, settings = report["machine"], report["settings"]
    load = (report.get("load_average") or {}).get("start")
    calls = quiet = 0
    medians = []
    for row in report["rows"]:
        for cfg in (row.get("configs") or {}).values():
            for summary in (cfg.get("interference") or {}).values():
                if summary:
                    calls += summary["calls"]
                    quiet += summary["quiet_calls"]
                    medians.append(summary["median"])
    busy_start = bool(load and load[0] > 0.5 * machine.get("cpu_usable_cpus", 1))
    if medians and (busy_start or quiet < calls):
        share = float(np.median(medians))
        verdict = ("latencies are inflated and scattered; re-run on an idle machine, or compare the quiet columns"
                   if share > 0.10 or quiet < 0.8 * calls else
                   "most timed calls were undisturbed; the few disturbed ones show up as long p90/p99 whiskers, and "
                   "the quiet columns leave them out")
        notes.append(f"Other work on the machine: 1-minute load average {load[0] if load else '?'} at the start "
                     f"({machine.get('cpu_usable_cpus')} CPUs); during the timed calls other processes used a median "
                     f"{share * 100:.0f}% of the CPU, and {quiet} of {calls} calls were quiet (< 10%): {verdict}.")
    elif busy_start:
        notes.append(f"The machine was busy when the run started (1-minute load average {load[0]} on "
                     f"{machine.get('cpu_usable_cpus')} CPUs): latencies may be inflated and scattered.")
    if settings.get("quick"):
        notes.append("--quick run: few iterations and configurations; percentiles are rough (p99 of few samples is "
                     "close to the maximum).")
    by_key = {r["key"]: r for r in report["rows"]}
    feats = set(machine.get("cpu_features") or [])
    if settings.get("device") == "cpu":
        if by_key.get("onnxruntime:fp16", {}).get("status") == "ok":
            notes.append("ONNX Runtime FP16 on CPU: the CPU execution provider has few FP16 kernels (no FP16 "
                         "convolution on x86), so the graph runs as FP32 islands joined by Cast nodes; expect it to be "
                         "slower than FP32. The FP16 graph is for GPUs (TensorRT, CUDA EP); its CPU row checks accuracy.")
        if by_key.get("onnxruntime:int8", {}).get("status") == "ok":
            vnni = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in feats]
            notes.append("ONNX Runtime INT8 (Q/DQ) on CPU: ORT fuses DequantizeLinear -> Conv -> QuantizeLinear into "
                         "QLinearConv / integer convolutions, fast only with integer dot-product instructions "
                         f"({', '.join(vnni) + ' present here' if vnni else 'no VNNI/AMX here'}); the Q/DQ placement "
                         "is TensorRT's (explicit quantization, first and last convolutions and the contract in FP32), "
                         "so residual Adds, LeakyReLUs and Resizes around the quantized convolutions still run in FP32 "
                         "with extra quantize/dequantize steps.")
    if settings.get("device") == "cuda":
        base = by_key.get(BASELINE_KEY, {})
        if (base.get("setup") or {}).get("cudnn_allow_tf32"):
            notes.append("PyTorch on CUDA uses its defaults as users run it: cuDNN convolutions may use TF32 "
                         "(torch.backends.cudnn.allow_tf32 = True), so the FP32 reference itself carries TF32 rounding.")
    return notes


# ---------------------------------------------------------------------------------------------------------------------
# formatting helpers


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fmt_m(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _fmt_mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _ok_rows(report: dict) -> list[dict]:
    return [r for r in report["rows"] if r["status"] == "ok"]


def _config_keys(report: dict) -> list[str]:
    keys: list[str] = []
    for row in _ok_rows(report):
        for key in row.get("configs") or {}:
            if key not in keys:
                keys.append(key)
    return keys


def _config_title(cfg: dict) -> str:
    h, w, b = cfg["height"], cfg["width"], cfg["batch"]
    ph, pw = padded_hw((h, w))
    pad = f", padded to {ph}x{pw} in the graph" if (ph, pw) != (h, w) else ""
    return f"{h}x{w}, batch {b}{pad}"


# ---------------------------------------------------------------------------------------------------------------------
# markdown


def render_markdown(report: dict, charts: dict[str, str]) -> str:
    machine, settings, model = report["machine"], report["settings"], report["model"]
    libs = machine.get("libraries") or {}
    lines = [f"# JARRN benchmark: {machine['machine_tag']}", ""]
    lines += [f"Generated {report['created_utc']} by `{report['command']}` in {report['duration_seconds']:.0f} s.", ""]
    speed = report["targets"]["speed"]
    summary = []
    if speed.get("speedup") is not None:
        summary.append(f"ONNX Runtime FP32 vs PyTorch eager FP32 at 320x320 batch 1: **{speed['speedup']:.2f}x** "
                       f"(target {speed['min_speedup']}x: {'met' if speed['met'] else 'NOT met'}"
                       f"{'' if speed.get('applicable') else ', CPU target shown for information'})")
    for t in report["targets"]["precision"]:
        summary.append(f"{t['label']}: worst-case RMSE change {t['worst_case_relative_change'] * 100:+.2f}% vs FP32 "
                       f"(tolerance {t['tolerance'] * 100:.0f}%: {'met' if t['met'] else 'NOT met'})")
    if summary:
        lines += ["**Summary.** " + "; ".join(summary) + ".", ""]

    lines += ["## Machine", ""]
    gpu = "; ".join(f"{g['name']} (driver {g.get('driver', '?')}, {g.get('memory_mib', '?')} MiB)"
                    for g in machine.get("gpus") or []) or "none"
    facts = [
        ("CPU", f"{machine['cpu_model']}, {machine['cpu_physical_cores']} physical cores, "
                f"{machine['cpu_logical_cores']} logical ({machine.get('cpu_usable_cpus')} usable)"),
        ("CPU features", ", ".join(machine.get("cpu_features") or []) or "-"),
        ("Memory", f"{machine.get('memory_gib')} GiB"),
        ("GPU", gpu),
        ("OS", f"{machine['os']} (kernel {machine['kernel']}, {machine.get('architecture', '')})"),
        ("Python", machine["python"]),
        ("torch", f"{libs.get('torch')}" + (f" (CUDA {libs['torch_cuda']})" if libs.get("torch_cuda") else "")),
        ("onnxruntime", f"{libs.get('onnxruntime') or libs.get('onnxruntime_gpu')} "
                        f"(providers: {', '.join(libs.get('onnxruntime_providers') or [])})"),
        ("onnx / onnxslim / modelopt", f"{libs.get('onnx')} / {libs.get('onnxslim')} / {libs.get('nvidia_modelopt')}"),
        ("tensorrt", libs.get("tensorrt") or "not installed"),
        ("numpy", libs.get("numpy")),
    ]
    lines += _table(("", ""), facts) + [""]

    lines += ["## Model and settings", ""]
    lines += [f"- Model: `{model['path']}` (sha256 `{model['sha256'][:16]}`), widths {model['config']['widths']}, "
              f"{model['parameters'] / 1e6:.2f} M parameters, probability {model['config']['prob_activation']}, "
              f"normalisation {model['config']['depth_normalisation']}."]
    lines += [f"- Device **{settings['device']}**, **{settings['threads']} CPU threads** for every backend "
              "(torch.set_num_threads / OMP_NUM_THREADS; ONNX Runtime intra_op_num_threads; inter-op 1)."]
    lines += [f"- Per configuration: {settings['warmup']} warm-up calls (the first reported separately), then "
              f"{settings['min_iterations']}..{settings['iterations']} timed calls (as many as fit in "
              f"{settings['seconds']:g} s). Each row runs in its own process."]
    lines += ["- **e2e** = `DepthCompleter.complete(rgb uint8 HxWx3, sparse float32 HxW)` -> float32 HxW, what users run "
              "(validation, layout conversion, graph, copy back); batches as BxHxWx3. **graph** = the network alone on "
              "pre-converted NCHW float32 inputs (PyTorch: `MetricJarrn` on tensors; ONNX Runtime: `session.run`; "
              "on GPU: CUDA events for PyTorch, host clock incl. copies for ONNX Runtime / TensorRT)."]
    lines += ["- Speed-ups are p50 of PyTorch eager FP32 / p50 of the row, same configuration and same mode."]
    lines += ["- *others' CPU*: median share of the machine's CPU time that other processes used during the timed e2e "
              "calls (from /proc/stat); *quiet e2e p50*: p50 over the calls during which they used < 10 % (n calls), "
              "when at least 3 were quiet. On a busy machine the quiet column is the one to compare; rows marked "
              "*(disturbed)* ran while other processes used more than 10 % of the CPU, and their speed-ups are not "
              "trustworthy. "
              + (f"Before timing each configuration the run waited up to {settings['quiet_wait_s']:g} s for other "
                 "processes to go quiet." if settings.get("quiet_wait_s") else "")]
    load = report.get("load_average") or {}
    if load.get("start"):
        lines += [f"- Load average (1/5/15 min) at start {load['start']}, at end {load.get('end')}."]
    lines += [""]
    for note in report.get("notes") or []:
        if note.startswith(("The machine was busy", "Other work on the machine", "--quick")):
            lines += [f"> **Note.** {note}", ""]

    lines += ["## Latency", ""]
    if "latency" in charts:
        lines += [f"![latency]({charts['latency']})", ""]
    for key in _config_keys(report):
        cfg0 = next(r["configs"][key] for r in _ok_rows(report) if key in (r.get("configs") or {}))
        lines += [f"### {_config_title(cfg0)}", ""]
        table = []
        for row in _ok_rows(report):
            cfg = (row.get("configs") or {}).get(key)
            if not cfg:
                continue
            if "error" in cfg:
                table.append((row["label"], f"failed: {cfg['error']}", *["-"] * 13))
                continue
            e2e, graph = cfg["latency"].get("e2e", {}), cfg["latency"].get("graph", {})
            speedup = cfg.get("speedup") or {}
            quiet = (cfg.get("latency_quiet") or {}).get("e2e") or {}
            others = ((cfg.get("interference") or {}).get("e2e") or {}).get("median")
            disturbed = others is not None and others > 0.10
            table.append((
                row["label"] + (" **(disturbed)**" if disturbed else ""), _fmt_ms(e2e.get("p50_ms")), _fmt_ms(e2e.get("p90_ms")), _fmt_ms(e2e.get("p99_ms")),
                _fmt_ms(e2e.get("mean_ms")), f"{e2e['throughput_ips']:.2f}" if e2e else "-",
                _fmt_x(speedup.get("e2e")), _fmt_ms(graph.get("p50_ms")), _fmt_x(speedup.get("graph")),
                _fmt_ms(cfg.get("first_call_ms")), _fmt_mib(cfg.get("peak_rss_mib")),
                _fmt_mib(cfg.get("peak_device_mib")) if cfg.get("peak_device_mib") is not None else "-",
                str((e2e or graph).get("n", "-")),
                "-" if others is None else f"{others * 100:.0f}%",
                f"{_fmt_ms(quiet['p50_ms'])} ({quiet['n']})" if quiet else "-",
            ))
        lines += _table(("row", "e2e p50 ms", "p90", "p99", "mean", "img/s", "speed-up e2e", "graph p50 ms",
                         "speed-up graph", "first call ms", "peak RSS MiB", "peak device MiB", "n",
                         "others' CPU", "quiet e2e p50 (n)"), table) + [""]
    mem_rows = []
    for row in _ok_rows(report):
        mem_rows.append((row["label"], f"{row.get('load_seconds', 0):.2f}", _fmt_mib(row.get("rss_after_imports_mib")),
                         _fmt_mib(row.get("rss_after_load_mib")),
                         _fmt_mib(max((c.get("peak_rss_mib") or 0) for c in (row.get("configs") or {}).values())
                                  if row.get("configs") else None)))
    lines += ["Host memory per row (its own process): RSS after importing the libraries, after loading the model / "
              "session, and the highest per-configuration peak (RSS high-water mark, reset before each "
              "configuration; it includes the interpreter, the libraries and memory retained from earlier "
              "configurations).", ""]
    lines += _table(("row", "load s", "RSS after imports MiB", "RSS after load MiB", "peak RSS MiB"), mem_rows) + [""]

    lines += ["## Targets", ""]
    if speed.get("speedup") is not None:
        lines += [f"**Speed (CPU, 320x320, batch 1, 2 threads): ONNX Runtime FP32 >= {speed['min_speedup']}x PyTorch "
                  f"eager FP32 (aim {speed['aim_speedup']}x).** {speed['definition']}.", ""]
        paired = speed.get("paired") if (speed.get("paired") or {}).get("status") == "ok" else None
        header = ["comparison", "rows (separate processes)"] + (["paired (interleaved, one process)"] if paired else [])
        table = []
        for label, key in (
            ("ORT FP32 e2e (DepthCompleter) vs PyTorch eager forward (graph): **the target's measure**",
             "speedup_ort_e2e_vs_torch_forward"),
            ("ORT FP32 graph vs PyTorch eager graph", "speedup_graph_vs_graph"),
            ("ORT FP32 e2e vs PyTorch eager e2e (both DepthCompleter)", "speedup_e2e_vs_e2e"),
        ):
            table.append([label, _fmt_x(speed.get(key))] + ([_fmt_x(paired.get(key))] if paired else []))
        lines += _table(header, table) + [""]
        if paired:
            lat = paired["latency_quiet"] if paired.get("basis", "").startswith("quiet") else paired["latency"]
            share = (paired.get("interference") or {}).get("torch_forward") or {}
            lines += [f"Paired measurement: {paired['rounds']} rounds at {paired['size'][0]}x{paired['size'][1]}, each "
                      f"variant once per round in shuffled order; basis: {paired.get('basis', 'all calls')}"
                      + (f" ({share['quiet_calls']} of {share['calls']} PyTorch calls quiet; other processes' median "
                         f"CPU share {share['median'] * 100:.0f}%)" if share else "") + "; p50 PyTorch forward "
                      f"{_fmt_ms(lat['torch_forward']['p50_ms'])} ms, PyTorch e2e {_fmt_ms(lat['torch_e2e']['p50_ms'])} "
                      f"ms, ORT e2e {_fmt_ms(lat['ort_e2e']['p50_ms'])} ms, ORT graph "
                      f"{_fmt_ms(lat['ort_graph']['p50_ms'])} ms. It decides the verdict because machine load that "
                      "changes between rows measured minutes apart cancels out.", ""]
        if paired and len(paired.get("per_process") or []) > 1:
            per = paired["per_process"]
            lines += [f"The paired measurement ran in {len(per)} fresh processes (PyTorch's speed varies from process "
                      "to process on this kind of machine); the median one is shown above. Per process (target ratio; "
                      "PyTorch forward / ORT e2e p50): " + "; ".join(
                          f"{_fmt_x(p['speedup_ort_e2e_vs_torch_forward'])} ({_fmt_ms(p['torch_forward_p50_ms'])} / "
                          f"{_fmt_ms(p['ort_e2e_p50_ms'])} ms)" for p in per) + ".", ""]
        lines += [f"Result: **{'met' if speed['met'] else 'NOT met'}** at {_fmt_x(speed['speedup'])} "
                  f"({speed['source']}; {speed['status']}; aim {speed['aim_speedup']}x "
                  f"{'met' if speed['aim_met'] else 'not met'}).", ""]
    else:
        lines += [f"Speed target: {speed.get('status')}.", ""]
    if report["targets"]["precision"]:
        lines += ["**Accuracy of reduced precision vs ground truth:** FP16 within 2 % and INT8 within 5 % of the FP32 "
                  "reference RMSE (PyTorch eager FP32), on every case.", ""]
        table = []
        for t in report["targets"]["precision"]:
            worst_case = max(t["per_case"], key=lambda c: t["per_case"][c]["relative_change"])
            table.append((t["label"], f"{t['tolerance'] * 100:.0f}%",
                          f"{t['worst_case_relative_change'] * 100:+.2f}% ({worst_case})",
                          f"{t['mean_rmse_relative_change'] * 100:+.2f}%", "met" if t["met"] else "**NOT met**"))
        lines += _table(("row", "tolerance", "worst case RMSE change", "mean RMSE change", "result"), table) + [""]

    lines += ["## Accuracy", ""]
    acc_rows = [r for r in _ok_rows(report) if r.get("accuracy")]
    if acc_rows:
        lines += ["### Against the PyTorch FP32 reference (metres, all pixels)", ""]
        cases = [c["name"] for c in report["cases"]]
        table = []
        for row in acc_rows:
            worst = [row["accuracy"][c]["vs_reference"]["max_abs_m"] for c in cases
                     if c in row["accuracy"] and "vs_reference" in row["accuracy"][c]]
            means = [row["accuracy"][c]["vs_reference"]["mean_abs_m"] for c in cases
                     if c in row["accuracy"] and "vs_reference" in row["accuracy"][c]]
            p99 = [row["accuracy"][c]["vs_reference"]["p99_abs_m"] for c in cases
                   if c in row["accuracy"] and "vs_reference" in row["accuracy"][c]]
            table.append((row["label"], _fmt_m(max(worst) if worst else None, 4),
                          _fmt_m(float(np.mean(means)) if means else None, 4),
                          _fmt_m(max(p99) if p99 else None, 4)))
        lines += _table(("row", "max abs (worst case)", "mean abs (mean over cases)", "p99 abs (worst case)"), table)
        lines += [""]
        lines += ["### Against ground truth (valid GT pixels; RMSE / MAE in metres)", ""]
        if "accuracy" in charts:
            lines += [f"![accuracy]({charts['accuracy']})", ""]
        for case in report["cases"]:
            name = case["name"]
            lines += [f"**{name}** ({case['height']}x{case['width']}, {case['sparse_points']} sparse points, "
                      f"{case['gt_pixels']} GT pixels)", ""]
            table = []
            for method in BASELINE_METHODS:
                m = (report["baselines"].get(method) or {}).get(name)
                if m and "rmse" in m:
                    table.append((f"{method} interpolation (baseline)", _fmt_m(m["rmse"]), _fmt_m(m["mae"]),
                                  _fmt_m(m["absrel"], 4), _fmt_m(m["delta1"], 4)))
            for row in acc_rows:
                m = (row["accuracy"].get(name) or {}).get("vs_gt")
                if m:
                    table.append((row["label"], _fmt_m(m["rmse"]), _fmt_m(m["mae"]), _fmt_m(m["absrel"], 4),
                                  _fmt_m(m["delta1"], 4)))
            lines += _table(("method", "RMSE", "MAE", "AbsRel", "delta1"), table) + [""]
            if f"panel_{name}" in charts:
                lines += [f"![{name}]({charts[f'panel_{name}']})", ""]

    others = [r for r in report["rows"] if r["status"] != "ok"]
    if others:
        lines += ["## Rows not measured", ""]
        lines += _table(("row", "status", "reason"), [(r["label"], r["status"], r.get("reason", "")) for r in others])
        lines += [""]
    errors = [(r["label"], e) for r in _ok_rows(report) for e in r.get("errors") or []]
    if errors:
        lines += ["Partial failures:", ""] + [f"- {label}: {e}" for label, e in errors] + [""]

    setup_lines = []
    for row in _ok_rows(report):
        setup = row.get("setup") or {}
        bits = [f"{k}={v}" for k, v in setup.items() if k not in ("onnx", "engine") and v is not None]
        setup_lines.append(f"- {row['label']}: " + "; ".join(bits))
    if setup_lines:
        lines += ["## Row setup", ""] + setup_lines + [""]
    exports = report.get("exports") or {}
    if exports:
        lines += ["Exported graphs: " + "; ".join(
            f"{p}: `{Path(e['path']).name}`" + (" (given with --onnx)" if e.get("given") else " (cached)"
                                                if e.get("cached") else f" (exported in {e.get('export_seconds')} s)")
            for p, e in exports.items() if e.get("path")) + ".", ""]
    other_notes = [n for n in report.get("notes") or []
                   if not n.startswith(("The machine was busy", "Other work on the machine", "--quick"))]
    if other_notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in other_notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# charts


def _figure_png(fig, palette: bool = False) -> bytes:  # noqa: ANN001
    """PNG bytes of ``fig``; ``palette`` quantises to 256 colours (depth panels: a third of the size, same look)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    if not palette:
        return buffer.getvalue()
    from PIL import Image

    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def latency_chart(report: dict) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = _config_keys(report)
    rows = [r for r in _ok_rows(report) if r.get("configs")]
    if not keys or not rows:
        return None
    ncols = 1 if len(keys) == 1 else 2
    nrows = math.ceil(len(keys) / ncols)
    height = 0.45 * len(rows) + 1.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, height * nrows), dpi=100, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, key in zip(axes.flat, keys):
        labels, y = [], 0
        xmax = 0.0
        any_cut = False
        title = None
        for i, row in enumerate(rows):
            cfg = row["configs"].get(key)
            if not cfg or "latency" not in cfg:
                continue
            title = title or _config_title(cfg)
            lat = cfg["latency"].get("e2e") or cfg["latency"].get("graph")
            mode = "e2e" if "e2e" in cfg["latency"] else "graph"
            p50, p90, p99 = lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]
            # A few disturbed calls must not squash the other bars: whiskers beyond 2.5x the largest p50 are cut
            # (arrow head) and their value written out.
            limit = 2.5 * max(r["configs"][key]["latency"].get(mode, {}).get("p50_ms", 0) for r in rows
                              if "latency" in r["configs"].get(key, {}))
            ax.barh(y, p50, color=colours(i % 10), alpha=0.85, height=0.6)
            cut = p99 > limit
            end = min(p99, limit)
            ax.errorbar(p50, y, xerr=[[0], [max(end - p50, 0)]], fmt="none", ecolor="black", capsize=0 if cut else 4,
                        lw=1)
            if cut:
                ax.plot([end], [y], marker=">", color="black", markersize=5)
            if p90 <= limit:
                ax.plot([p90], [y], marker="|", color="black", markersize=10)
            graph = cfg["latency"].get("graph")
            if graph and mode == "e2e":
                ax.plot([graph["p50_ms"]], [y], marker="D", color="black", markersize=4)
            speed = (cfg.get("speedup") or {}).get(mode)
            text = f" {p50:.1f} ms" + (f"  ({speed:.2f}x)" if speed is not None else "")
            if cut:
                text += f"  [p90 {p90:.0f}, p99 {p99:.0f} ms]"
                any_cut = True
            ax.text(end, y, text, va="center", fontsize=8)
            xmax = max(xmax, end)
            labels.append(row["label"])
            y += 1
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, xmax * (1.9 if any_cut else 1.45) if xmax > 0 else 1)
        ax.set_xlabel("latency per call (ms)")
        ax.set_title(title or key, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"JARRN latency on {report['machine']['machine_tag']} ({report['settings']['threads']} threads): "
                 "bar = e2e p50, | = p90, whisker = p99, diamond = graph-only p50; (speed-up vs PyTorch eager FP32)",
                 fontsize=9)
    fig.tight_layout()
    return _figure_png(fig)


def accuracy_chart(report: dict) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cases = [c["name"] for c in report["cases"]]
    rows = [r for r in _ok_rows(report) if r.get("accuracy")]
    if not cases or not rows:
        return None
    ncols = min(3, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    n_bars = len(BASELINE_METHODS) + len(rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, (0.32 * n_bars + 1.2) * nrows), dpi=100,
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, name in zip(axes.flat, cases):
        labels, values, cols = [], [], []
        for method in BASELINE_METHODS:
            m = (report["baselines"].get(method) or {}).get(name) or {}
            if "rmse" in m:
                labels.append(f"{method} interp.")
                values.append(m["rmse"])
                cols.append("0.65")
        for i, row in enumerate(rows):
            m = (row["accuracy"].get(name) or {}).get("vs_gt")
            if m:
                labels.append(row["label"])
                values.append(m["rmse"])
                cols.append(colours(i % 10))
        ax.barh(range(len(values)), values, color=cols, height=0.65)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(values) * 1.3 if values else 1)
        ax.set_xlabel("RMSE vs ground truth (m)")
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    fig.suptitle("RMSE per case: interpolation baselines (grey) and each backend / precision", fontsize=10)
    fig.tight_layout()
    return _figure_png(fig)


def _dilate(sparse: np.ndarray, size: int) -> np.ndarray:
    if size <= 1:
        return sparse
    from scipy.ndimage import minimum_filter

    far = np.where(sparse > 0, sparse, np.inf)
    grown = minimum_filter(far, size=size, mode="constant", cval=np.inf)
    return np.where(np.isfinite(grown), grown, 0.0)


def _dot_size(sparse: np.ndarray) -> int:
    """Display size of a sparse point: big for a few hundred random points, small for dense LiDAR scan lines."""
    width, points = sparse.shape[1], int((sparse > 0).sum())
    return max(3, width // 110) if points < 2000 else max(1, width // 400)


def panel_chart(case, reference: np.ndarray, others: dict[str, np.ndarray], labels: dict[str, str],  # noqa: ANN001
                reference_label: str) -> bytes:
    """RGB | sparse | GT | prediction | |prediction - GT|, then |row - reference| for the other rows."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    height, width = case.gt.shape
    valid = case.gt > 0
    depths = case.gt[valid]
    lo, hi = (float(v) for v in np.percentile(depths, [1, 99])) if depths.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-3
    cmap = _bad_black("turbo")
    err = np.where(valid, np.abs(reference - case.gt), np.nan)
    err_max = float(np.nanpercentile(err, 99)) if valid.any() else 1.0
    rmse = float(np.sqrt(np.nanmean(err**2))) if valid.any() else float("nan")
    tiles = [
        ("RGB", case.rgb, None, None),
        (f"sparse input ({int((case.sparse > 0).sum())} points, dilated for display)",
         np.ma.masked_less_equal(_dilate(case.sparse, _dot_size(case.sparse)), 0), cmap, (lo, hi, "depth (m)")),
        ("ground truth", np.ma.masked_less_equal(case.gt, 0), cmap, (lo, hi, "depth (m)")),
        (f"prediction: {reference_label}", reference, cmap, (lo, hi, "depth (m)")),
        (f"|prediction - GT| on GT pixels (RMSE {rmse:.3f} m)", np.ma.masked_invalid(err),
         _bad_black("magma"), (0.0, max(err_max, 1e-6), "|error| (m)")),
    ]
    for key, pred in others.items():
        diff = np.abs(pred.astype(np.float64) - reference.astype(np.float64))
        vmax = float(np.percentile(diff, 99.9)) or float(diff.max()) or 1e-6
        tiles.append((f"|{labels.get(key, key)} - reference| (max {diff.max():.2g} m, mean {diff.mean():.2g} m)",
                      diff, _bad_black("viridis"), (0.0, vmax, "|difference| (m)")))
    wide = width / height > 1.8
    ncols = 2 if wide else 3
    nrows = math.ceil(len(tiles) / ncols)
    tile_w = 6.5 if wide else 4.6
    tile_h = tile_w * height / width + 1.2
    fig, axes = plt.subplots(nrows, ncols, figsize=(tile_w * ncols, tile_h * nrows), dpi=80, squeeze=False)
    for ax, (title, image, cm, scale) in zip(axes.flat, tiles):
        if cm is None:
            ax.imshow(image)
        else:
            im = ax.imshow(image, cmap=cm, vmin=scale[0], vmax=scale[1], interpolation="nearest")
            bar = fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.03, aspect=40)
            bar.set_label(scale[2], fontsize=8, labelpad=1)
            bar.ax.tick_params(labelsize=7)
            bar.ax.xaxis.set_major_locator(MaxNLocator(5))
            if scale[1] < 0.01:
                bar.formatter.set_powerlimits((-2, 2))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(tiles):]:
        ax.axis("off")
    fig.suptitle(f"{case.name} ({height}x{width})", fontsize=11)
    fig.tight_layout()
    return _figure_png(fig, palette=True)


def _bad_black(name: str):  # noqa: ANN202
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap(name)
    if hasattr(cmap, "with_extremes"):
        return cmap.with_extremes(bad="black")
    cmap = cmap.copy()
    cmap.set_bad("black")
    return cmap


# ---------------------------------------------------------------------------------------------------------------------
# writing


def write_report(report: dict, out_dir: str | Path, *, cases=(), predictions: dict | None = None,  # noqa: ANN001
                 charts: bool = True) -> list[Path]:
    """Write report.json, the PNG charts and report.md into ``out_dir`` (each file atomically); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictions = predictions or {}
    written: list[Path] = []
    names: dict[str, str] = {}
    if charts:
        for name, render in (("latency", latency_chart), ("accuracy", accuracy_chart)):
            data = render(report)
            if data:
                written.append(atomic_write_bytes(out / f"{name}.png", data))
                names[name] = f"{name}.png"
        reference = predictions.get(BASELINE_KEY) or {}
        labels = {r["key"]: r["label"] for r in report["rows"]}
        wanted = {c["name"] for c in report.get("cases") or []}
        for case in cases:
            if case.name not in wanted or case.name not in reference:
                continue
            others = {k: v[case.name] for k, v in predictions.items()
                      if k not in (BASELINE_KEY, "__baselines__") and case.name in v}
            data = panel_chart(case, reference[case.name], others, labels, labels.get(BASELINE_KEY, BASELINE_KEY))
            file = f"panel_{_safe(case.name)}.png"
            written.append(atomic_write_bytes(out / file, data))
            names[f"panel_{case.name}"] = file
        produced = {p.name for p in written}
        for stale in out.glob("panel_*.png"):
            if stale.name not in produced:
                stale.unlink()
    report["charts"] = names
    written.insert(0, atomic_write_json(out / "report.json", report))
    written.append(atomic_write_text(out / "report.md", render_markdown(report, names)))
    return written


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
