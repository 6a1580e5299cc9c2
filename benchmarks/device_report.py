"""The device check's reports (``benchmarks/device_check.py``): ``device_check.md`` / ``.json`` / ``.png`` in
``reports/<gpu-tag>/``, and one ``benchmarks/bench_report.py`` report per model (``bundled-model/``, ``full-size/``) built
from the latency rows. Every file is written atomically."""

from __future__ import annotations

import datetime as _dt
import io
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from jarrn_deploy.benchmarks import device_session as dc
from jarrn_deploy.benchmarks.report_files import atomic_write_json
from jarrn_deploy.benchmarks.rows import Row
from jarrn_deploy.model.atomic import atomic_write_bytes, atomic_write_text

def write_benchmark_reports(session: dc.Session) -> list[Path]:
    """One benchmarks/run.py-style report per model through :mod:`jarrn_deploy.benchmarks.bench_report`."""
    from jarrn_deploy.benchmarks.bench_report import assemble_report, write_report
    from jarrn_deploy.benchmarks.measure import TimingSettings
    from jarrn_deploy.benchmarks.run import model_summary

    timing = TimingSettings()
    if not session.machine:
        from jarrn_deploy.benchmarks.machine import describe_machine

        session.machine = describe_machine("cuda")
    written: list[Path] = []
    for model, folder in dc.MODELS.items():
        keys = session.rows[model]
        if not keys or not any((session.results[model].get(k) or {}).get("status") == "ok" for k in keys):
            continue
        if "torch:fp32" not in keys:
            session.reasons[model]["torch:fp32"] = "skipped: not measured in this run"
            keys = ["torch:fp32", *keys]
        rows = [Row.from_key(k) for k in keys]
        cases = session.accuracy_cases(model)
        settings = {"quick": False, "device": "cuda", "threads": session.machine.get("cpu_physical_cores", 1),
                    "sizes": [list(s) for s in dc.LATENCY_SIZES], "batches": list(dc.LATENCY_BATCHES),
                    "modes": list(timing.modes), "warmup": timing.warmup, "min_iterations": timing.min_iterations,
                    "iterations": timing.max_iterations, "seconds": timing.seconds, "quiet_wait_s": 0.0,
                    "cases": [c.name for c in cases], "engines": [], "runner": "benchmarks/device_check.py",
                    "process_note": "All rows run one after another in the device check's process (a fresh process "
                                    "per row would cost seconds of CUDA set-up each)."}
        report, predictions = assemble_report(
            rows=rows, reasons=session.reasons[model], results=session.results[model], cases=cases, settings=settings,
            machine=session.machine, model=model_summary(session.model_path(model)), exports=session.exports[model],
            engines=session.engines[model], command=session.command, started=session.started_wall,
            load_start=None, load_end=None)
        if model == "full":
            report["model"]["path"] = "JarrnConfig.full() with random weights (latency only)"
        written += write_report(report, session.out / folder, cases=cases, predictions=predictions)
    return written


def summary_dict(session: dc.Session, plan: Sequence[dc.Step]) -> dict:
    latency: dict[str, dict] = {}
    for model in dc.MODELS:
        for row, result in session.results[model].items():
            for key, cfg in (result.get("configs") or {}).items():
                lat = cfg.get("latency") or {}
                latency.setdefault(model, {}).setdefault(row, {})[key] = {
                    "graph_p50_ms": (lat.get("graph") or {}).get("p50_ms"),
                    "graph_p90_ms": (lat.get("graph") or {}).get("p90_ms"),
                    "e2e_p50_ms": (lat.get("e2e") or {}).get("p50_ms"),
                    "e2e_p90_ms": (lat.get("e2e") or {}).get("p90_ms"),
                    "first_call_s": (cfg.get("first_call_ms") or 0) / 1e3 if "first_call_ms" in cfg else None,
                    "peak_device_mib": cfg.get("peak_device_mib"),
                    "error": cfg.get("error"),
                }
    return {
        "schema": dc.SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": session.command,
        "duration_seconds": round(time.perf_counter() - session.started, 1),
        "total_budget_seconds": session.total_budget_s,
        "environment": asdict(session.env),
        "machine": session.machine,
        "plan": [asdict(s) for s in plan],
        "steps": [asdict(o) for o in session.outcomes],
        "latency": latency,
        "training": session.training,
        "python": platform.python_version(),
    }


def render_markdown(summary: dict) -> str:
    from jarrn_deploy.benchmarks.device_train import THROUGHPUT_TARGET

    machine = summary.get("machine") or {}
    gpu = machine.get("cuda_device") or {}
    env = summary["environment"]
    tag = machine.get("machine_tag", "gpu")
    lines = [f"# Device check: {tag}", "",
             f"Generated {summary['created_utc']} by `{summary['command']}` in {summary['duration_seconds']:.0f} s "
             f"(budget {summary['total_budget_seconds']:.0f} s).", ""]
    if gpu:
        libs = machine.get("libraries") or {}
        lines += [f"GPU: **{gpu.get('name')}** (compute capability {gpu.get('compute_capability')}, "
                  f"{gpu.get('memory_gib')} GiB, {gpu.get('multiprocessors')} SMs); driver "
                  f"{((machine.get('gpus') or [{}])[0]).get('driver', '?')}; torch {libs.get('torch')} (CUDA "
                  f"{libs.get('torch_cuda')}, cuDNN {libs.get('cudnn')}), triton {libs.get('triton')}, onnxruntime "
                  f"{libs.get('onnxruntime') or libs.get('onnxruntime_gpu')} (providers "
                  f"{', '.join(libs.get('onnxruntime_providers') or []) or '-'}), tensorrt "
                  f"{libs.get('tensorrt') or 'not installed'}, tensorrt-rtx {libs.get('tensorrt_rtx') or 'not installed'}"
                  f"; {machine.get('cpu_model')}, {machine.get('cpu_logical_cores')} CPUs.", ""]
    lines += ["## Steps", "", "| # | step | budget s | took s | status | result |", "|---|---|---|---|---|---|"]
    for index, step in enumerate(summary["steps"], 1):
        text = str(step["summary"]).replace("|", "\\|")
        lines.append(f"| {index} | {step['key']} | {step['budget_s']:.0f} | {step['seconds']:.1f} | {step['status']} "
                     f"| {text} |")
    lines.append("")
    tests = next((s for s in summary["steps"] if s["key"] == "tests"), None)
    if tests and tests["details"].get("failures"):
        lines += ["GPU test failures:", ""] + [f"- `{f['test']}`: {' '.join(f['message'])}"
                                               for f in tests["details"]["failures"]] + [""]
    for model, folder in dc.MODELS.items():
        rows = summary["latency"].get(model)
        if not rows:
            continue
        title = "bundled model" if model == "bundled" else "full-size config (JarrnConfig.full(), random weights)"
        keys = list(dict.fromkeys(k for r in rows.values() for k in r))
        lines += [f"## Latency, {title}", "",
                  f"p50 in ms, graph (CUDA events around the network on inputs already on the GPU) / e2e "
                  f"(`DepthCompleter.complete` on numpy arrays, copies included). Full report: "
                  f"[{folder}/report.md]({folder}/report.md).", "",
                  "| row | " + " | ".join(keys) + " | first call s (max) |", "|---" * (len(keys) + 2) + "|"]
        for row, configs in rows.items():
            cells = []
            for key in keys:
                cfg = configs.get(key)
                if not cfg or cfg.get("graph_p50_ms") is None:
                    cells.append("failed" if cfg and cfg.get("error") else "-")
                else:
                    cells.append(f"{cfg['graph_p50_ms']:.2f} / {cfg['e2e_p50_ms']:.2f}")
            first = max((c.get("first_call_s") or 0) for c in configs.values())
            lines.append(f"| {Row.from_key(row).label} | " + " | ".join(cells) + f" | {first:.1f} |")
        lines.append("")
    training = summary.get("training") or {}
    if training:
        lines += ["## Training throughput (full config, 320x320, batch 16, AMP)", "",
                  "| measure | samples/s | notes |", "|---|---|---|"]
        step = training.get("step")
        if step:
            lines.append(f"| training step alone (batch on the GPU) | {step['samples_per_s']:.0f} | "
                         f"{step['ms_per_step']:.1f} ms per step; channels-last {step['channels_last']}: the GPU's "
                         "ceiling for this step |")
        smoke = training.get("smoke")
        if smoke and smoke.get("status") == "ok":
            lines.append(f"| `jarrn_deploy.model.train` on synthetic scenes | {smoke['steady_samples_per_s']:.0f} | median of the "
                         f"10-step windows after the first; {smoke['samples_per_s']:.0f} overall, {smoke['steps']} "
                         f"steps, {smoke.get('data_path', str(smoke['workers']) + ' data-loader workers')} |")
        elif smoke:
            lines.append(f"| `jarrn_deploy.model.train` on synthetic scenes | - | {smoke.get('error')} |")
        lines.append("")
        if step and smoke and smoke.get("status") == "ok":
            ratio = smoke["steady_samples_per_s"] / max(step["samples_per_s"], 1e-9)
            verdict = ("the data pipeline (scene rendering and augmentation) sets the pace"
                       if ratio < 0.7 else "the GPU step itself sets the pace")
            lines += [f"Training reaches {ratio * 100:.0f}% of the step-alone rate: {verdict}. Target "
                      f"{THROUGHPUT_TARGET:.0f} samples/s: "
                      f"**{'met' if smoke['steady_samples_per_s'] >= THROUGHPUT_TARGET else 'NOT met'}**.", ""]
    not_run = [s for s in summary["steps"] if s["status"] in ("skipped", "unavailable")]
    if not_run:
        lines += ["## Not run", ""] + [f"- {s['key']}: {s['summary']}" for s in not_run] + [""]
    lines += ["![device check](device_check.png)", "",
              f"Environment as planned: {json.dumps({k: v for k, v in env.items() if v is not None})}", ""]
    return "\n".join(lines)


def render_chart(summary: dict) -> bytes | None:
    """Graph p50 latency per row and configuration (both models) and training samples/s against the target."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from jarrn_deploy.benchmarks.device_train import THROUGHPUT_TARGET

    latency = summary.get("latency") or {}
    training = summary.get("training") or {}
    panels = [m for m in dc.MODELS if latency.get(m)] + (["training"] if training else [])
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), dpi=100, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, panel in zip(axes[0], panels):
        if panel == "training":
            bars = []
            if training.get("step"):
                bars.append(("step alone\n(batch on GPU)", training["step"]["samples_per_s"]))
            if (training.get("smoke") or {}).get("status") == "ok":
                bars.append(("jarrn_deploy.model.train\n(synthetic data)", training["smoke"]["steady_samples_per_s"]))
            ax.bar(range(len(bars)), [v for _, v in bars], color=[colours(0), colours(1)][: len(bars)])
            for x, (_, v) in enumerate(bars):
                ax.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=9)
            ax.axhline(THROUGHPUT_TARGET, color="red", linestyle="--", linewidth=1,
                       label=f"target {THROUGHPUT_TARGET:.0f}")
            ax.set_xticks(range(len(bars)), [n for n, _ in bars], fontsize=8)
            ax.set_ylabel("samples/s")
            ax.set_title("training, full config, 320x320, batch 16, AMP", fontsize=10)
            ax.legend(fontsize=8)
            continue
        rows = latency[panel]
        keys = list(dict.fromkeys(k for r in rows.values() for k in r))
        width = 0.8 / max(len(rows), 1)
        for i, (row, configs) in enumerate(rows.items()):
            values = [(configs.get(k) or {}).get("graph_p50_ms") or 0.0 for k in keys]
            positions = [x + (i - (len(rows) - 1) / 2) * width for x in range(len(keys))]
            ax.bar(positions, values, width, label=Row.from_key(row).label, color=colours(i % 10))
            for x, v in zip(positions, values):
                if v > 0:
                    ax.text(x, v, f"{v:.3g}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(keys)), [k.replace("_b", "\nbatch ") for k in keys], fontsize=8)
        ax.set_yscale("log")
        positive = [v for configs in rows.values() for c in configs.values() if (v := c.get("graph_p50_ms"))]
        if positive:
            ax.set_ylim(min(positive) / 3, max(positive) * 3)
        ax.set_ylabel("graph p50 latency (ms, log scale)")
        ax.set_title(f"{'bundled model' if panel == 'bundled' else 'full-size config'}: latency per call", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"JARRN device check on {(summary.get('machine') or {}).get('machine_tag', 'gpu')}", fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_summary(session: dc.Session, plan: Sequence[dc.Step], chart: bool = False) -> list[Path]:
    summary = summary_dict(session, plan)
    written = [atomic_write_json(session.out / "device_check.json", summary),
               atomic_write_text(session.out / "device_check.md", render_markdown(summary))]
    if chart:
        data = render_chart(summary)
        if data:
            written.append(atomic_write_bytes(session.out / "device_check.png", data))
    return written
