"""Turn the per-row measurements of ``benchmarks/run.py`` into ``report.json``, ``report.md`` and PNG charts.

:func:`assemble_report` computes what is derived (speed-ups against PyTorch eager FP32, accuracy against the PyTorch
FP32 reference and against ground truth, the interpolation baselines, the targets); :func:`write_report` writes the
files, each atomically (temp file + rename), into the report folder; the markdown is rendered by
:mod:`jarrn_deploy.benchmarks.report_markdown`, the charts by :mod:`jarrn_deploy.benchmarks.report_charts`.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from jarrn_deploy.benchmarks.report_charts import accuracy_chart, latency_chart, panel_chart
from jarrn_deploy.benchmarks.report_files import atomic_write_bytes, atomic_write_json, atomic_write_text
from jarrn_deploy.benchmarks.report_format import BASELINE_METHODS
from jarrn_deploy.benchmarks.report_markdown import render_markdown
from jarrn_deploy.benchmarks.rows import BASELINE_KEY, Row
from jarrn_deploy.benchmarks.settings import BenchmarkSettings, settings_dict
from jarrn_deploy.export.precisions import precision_spec

SCHEMA = "jarrn-benchmark/1"
SPEED_TARGET = {"config": "320x320_b1", "row": "onnxruntime:fp32", "min_speedup": 1.6, "aim_speedup": 2.0}
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
    from jarrn_deploy.model.metrics import depth_metrics

    m = depth_metrics(pred, gt).as_dict()
    return {k: m[k] for k in ("rmse", "mae", "absrel", "delta1", "irmse", "count")}


def baseline_metrics(cases) -> tuple[dict, dict]:  # noqa: ANN001
    """Nearest and linear interpolation of each case's sparse points: metrics and the dense maps."""
    from jarrn_deploy.model.baselines import linear_interpolation, nearest_interpolation

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
    """Every reduced-precision row against its precision's RMSE tolerance (``PrecisionSpec.rmse_rel``: how much the
    RMSE against ground truth may exceed the FP32 reference's), per case."""
    base = next((r for r in rows if r["key"] == BASELINE_KEY and r.get("accuracy")), None)
    out = []
    if base is None:
        return out
    for row in rows:
        tol = precision_spec(row["precision"]).rmse_rel
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


def assemble_report(*, rows: Sequence[Row], reasons: dict, results: dict, cases,  # noqa: ANN001
                    settings: BenchmarkSettings | Mapping[str, Any], machine: dict,
                    model: dict, exports: dict, engines: dict, command: str, started: float,
                    load_start, load_end, paired: dict | None = None,  # noqa: ANN001
                    notes: Sequence[str] = ()) -> tuple[dict, dict]:
    """The report dictionary (what report.json holds) and the predictions ``{row key: {case: HxW metres}}``;
    ``notes``: lines the person running it adds (``--note``), after the computed ones."""
    settings = settings_dict(settings)
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
        "settings": settings,
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
    report["notes"] = _notes(report) + list(notes)
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
