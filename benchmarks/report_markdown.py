"""The benchmark report as markdown (``report.md``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jarrn_deploy.export.precisions import precision_spec
from jarrn_deploy.benchmarks.report_format import (
    BASELINE_METHODS,
    config_keys,
    config_title,
    fmt_m,
    fmt_mib,
    fmt_ms,
    fmt_x,
    markdown_table,
    ok_rows,
)


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
        *((f"backend: {label}", versions) for label, versions in (libs.get("backends") or {}).items()),
    ]
    lines += markdown_table(("", ""), facts) + [""]

    lines += ["## Model and settings", ""]
    lines += [f"- Model: `{model['path']}` (sha256 `{model['sha256'][:16]}`), widths {model['config']['widths']}, "
              f"{model['parameters'] / 1e6:.2f} M parameters, probability {model['config']['prob_activation']}, "
              f"normalisation {model['config']['depth_normalisation']}."]
    lines += [f"- Device **{settings['device']}**, **{settings['threads']} CPU threads** for every backend "
              "(torch.set_num_threads / OMP_NUM_THREADS; ONNX Runtime intra_op_num_threads; inter-op 1)."]
    lines += [f"- Per configuration: {settings['warmup']} warm-up calls (the first reported separately), then "
              f"{settings['min_iterations']}..{settings['iterations']} timed calls (as many as fit in "
              f"{settings['seconds']:g} s). " + (settings.get("process_note") or "Each row runs in its own process.")]
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
    for key in config_keys(report):
        cfg0 = next(r["configs"][key] for r in ok_rows(report) if key in (r.get("configs") or {}))
        lines += [f"### {config_title(cfg0)}", ""]
        table = []
        for row in ok_rows(report):
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
                row["label"] + (" **(disturbed)**" if disturbed else ""), fmt_ms(e2e.get("p50_ms")), fmt_ms(e2e.get("p90_ms")), fmt_ms(e2e.get("p99_ms")),
                fmt_ms(e2e.get("mean_ms")), f"{e2e['throughput_ips']:.2f}" if e2e else "-",
                fmt_x(speedup.get("e2e")), fmt_ms(graph.get("p50_ms")), fmt_x(speedup.get("graph")),
                fmt_ms(cfg.get("first_call_ms")), fmt_mib(cfg.get("peak_rss_mib")),
                fmt_mib(cfg.get("peak_device_mib")) if cfg.get("peak_device_mib") is not None else "-",
                str((e2e or graph).get("n", "-")),
                "-" if others is None else f"{others * 100:.0f}%",
                f"{fmt_ms(quiet['p50_ms'])} ({quiet['n']})" if quiet else "-",
            ))
        lines += markdown_table(("row", "e2e p50 ms", "p90", "p99", "mean", "img/s", "speed-up e2e", "graph p50 ms",
                         "speed-up graph", "first call ms", "peak RSS MiB", "peak device MiB", "n",
                         "others' CPU", "quiet e2e p50 (n)"), table) + [""]
    mem_rows = []
    for row in ok_rows(report):
        mem_rows.append((row["label"], f"{row.get('load_seconds', 0):.2f}", fmt_mib(row.get("rss_after_imports_mib")),
                         fmt_mib(row.get("rss_after_load_mib")),
                         fmt_mib(max((c.get("peak_rss_mib") or 0) for c in (row.get("configs") or {}).values())
                                  if row.get("configs") else None)))
    lines += ["Host memory per row (its own process): RSS after importing the libraries, after loading the model / "
              "session, and the highest per-configuration peak (RSS high-water mark, reset before each "
              "configuration; it includes the interpreter, the libraries and memory retained from earlier "
              "configurations).", ""]
    lines += markdown_table(("row", "load s", "RSS after imports MiB", "RSS after load MiB", "peak RSS MiB"),
                            mem_rows) + [""]

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
            table.append([label, fmt_x(speed.get(key))] + ([fmt_x(paired.get(key))] if paired else []))
        lines += markdown_table(header, table) + [""]
        if paired:
            lat = paired["latency_quiet"] if paired.get("basis", "").startswith("quiet") else paired["latency"]
            share = (paired.get("interference") or {}).get("torch_forward") or {}
            lines += [f"Paired measurement: {paired['rounds']} rounds at {paired['size'][0]}x{paired['size'][1]}, each "
                      f"variant once per round in shuffled order; basis: {paired.get('basis', 'all calls')}"
                      + (f" ({share['quiet_calls']} of {share['calls']} PyTorch calls quiet; other processes' median "
                         f"CPU share {share['median'] * 100:.0f}%)" if share else "") + "; p50 PyTorch forward "
                      f"{fmt_ms(lat['torch_forward']['p50_ms'])} ms, PyTorch e2e {fmt_ms(lat['torch_e2e']['p50_ms'])} "
                      f"ms, ORT e2e {fmt_ms(lat['ort_e2e']['p50_ms'])} ms, ORT graph "
                      f"{fmt_ms(lat['ort_graph']['p50_ms'])} ms. It decides the verdict because machine load that "
                      "changes between rows measured minutes apart cancels out.", ""]
        if paired and paired.get("others"):
            labels = {r["key"]: r["label"] for r in report["rows"]}
            lines += ["The other exported-graph rows ran end to end (`DepthCompleter.complete`) in the same paired "
                      "rounds; speed-up = p50 of the reference / p50 of the row:", ""]
            table = [(labels.get(k, k), fmt_ms(v["e2e_p50_ms"]), fmt_x(v["speedup_e2e_vs_torch_forward"]),
                      fmt_x(v["speedup_e2e_vs_e2e"]), fmt_x(v["speedup_e2e_vs_ort_e2e"]))
                     for k, v in paired["others"].items()]
            lines += markdown_table(("row", "e2e p50 ms", "vs PyTorch eager forward", "vs PyTorch eager e2e",
                                     "vs ONNX Runtime FP32 e2e"), table) + [""]
        if paired and len(paired.get("per_process") or []) > 1:
            per = paired["per_process"]
            lines += [f"The paired measurement ran in {len(per)} fresh processes (PyTorch's speed varies from process "
                      "to process on this kind of machine); the median one is shown above. Per process (target ratio; "
                      "PyTorch forward / ORT e2e p50): " + "; ".join(
                          f"{fmt_x(p['speedup_ort_e2e_vs_torch_forward'])} ({fmt_ms(p['torch_forward_p50_ms'])} / "
                          f"{fmt_ms(p['ort_e2e_p50_ms'])} ms)" for p in per) + ".", ""]
        lines += [f"Result: **{'met' if speed['met'] else 'NOT met'}** at {fmt_x(speed['speedup'])} "
                  f"({speed['source']}; {speed['status']}; aim {speed['aim_speedup']}x "
                  f"{'met' if speed['aim_met'] else 'not met'}).", ""]
    else:
        lines += [f"Speed target: {speed.get('status')}.", ""]
    if report["targets"]["precision"]:
        bounds = {precision_spec(t["row"].partition(":")[2]).label: t["tolerance"]
                  for t in report["targets"]["precision"]}
        lines += ["**Accuracy of reduced precision vs ground truth:** " + " and ".join(
            f"{name} within {tol * 100:g} %" for name, tol in bounds.items()) + " of the FP32 reference RMSE "
                  "(PyTorch eager FP32), on every case.", ""]
        table = []
        for t in report["targets"]["precision"]:
            worst_case = max(t["per_case"], key=lambda c: t["per_case"][c]["relative_change"])
            table.append((t["label"], f"{t['tolerance'] * 100:.0f}%",
                          f"{t['worst_case_relative_change'] * 100:+.2f}% ({worst_case})",
                          f"{t['mean_rmse_relative_change'] * 100:+.2f}%", "met" if t["met"] else "**NOT met**"))
        lines += markdown_table(("row", "tolerance", "worst case RMSE change", "mean RMSE change", "result"),
                                table) + [""]

    lines += ["## Accuracy", ""]
    acc_rows = [r for r in ok_rows(report) if r.get("accuracy")]
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
            table.append((row["label"], fmt_m(max(worst) if worst else None, 4),
                          fmt_m(float(np.mean(means)) if means else None, 4),
                          fmt_m(max(p99) if p99 else None, 4)))
        lines += markdown_table(("row", "max abs (worst case)", "mean abs (mean over cases)", "p99 abs (worst case)"),
                                table)
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
                    table.append((f"{method} interpolation (baseline)", fmt_m(m["rmse"]), fmt_m(m["mae"]),
                                  fmt_m(m["absrel"], 4), fmt_m(m["delta1"], 4)))
            for row in acc_rows:
                m = (row["accuracy"].get(name) or {}).get("vs_gt")
                if m:
                    table.append((row["label"], fmt_m(m["rmse"]), fmt_m(m["mae"]), fmt_m(m["absrel"], 4),
                                  fmt_m(m["delta1"], 4)))
            lines += markdown_table(("method", "RMSE", "MAE", "AbsRel", "delta1"), table) + [""]
            if f"panel_{name}" in charts:
                lines += [f"![{name}]({charts[f'panel_{name}']})", ""]

    others = [r for r in report["rows"] if r["status"] != "ok"]
    if others:
        lines += ["## Rows not measured", ""]
        lines += markdown_table(("row", "status", "reason"),
                                [(r["label"], r["status"], r.get("reason", "")) for r in others])
        lines += [""]
    errors = [(r["label"], e) for r in ok_rows(report) for e in r.get("errors") or []]
    if errors:
        lines += ["Partial failures:", ""] + [f"- {label}: {e}" for label, e in errors] + [""]

    setup_lines = []
    for row in ok_rows(report):
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
