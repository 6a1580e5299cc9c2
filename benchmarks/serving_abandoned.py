"""Abandoned-burst benchmark of ``jarrn serve``: how long a fresh small request waits after clients left large ones.

    python -m jarrn_deploy.benchmarks.serving_abandoned                 # reports/serving/abandoned.{md,json,png}
    python -m jarrn_deploy.benchmarks.serving_abandoned --runs 2 --big 256 --give-up-after 0.3 --out /tmp/abandoned

What it does, per run and per ``--spare-instances`` value (interleaved, a fresh server each time, so every run meets
the server as a first burst does): start ``jarrn serve`` as a child process (bundled model, ``--threads``); time a
small request alone (median of 5 after one warm-up); then ``--clients`` clients each send one ``--big`` x ``--big``
request and leave after ``--give-up-after`` seconds (gRPC: deadline; HTTP: the connection closes); ``--fresh-after``
seconds after the last one left, time one small request. Over HTTP, then over gRPC, on the same server. Issue 21's
target: the fresh request within twice its solo time.

Reported: every run's solo and fresh latency and their ratio, per protocol and spare count; how many runs exceeded
twice the solo time; a chart of the ratios (``abandoned.png``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import numpy as np  # noqa: E402

from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import UnavailableError, UsageError  # noqa: E402
from jarrn_deploy.runtime.backends.registry import BACKEND_NAMES  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "reports" / "serving"
SCHEMA = "jarrn-serving-abandoned/1"
PROTOCOLS = ("http", "grpc")
TARGET_RATIO = 2.0
"""Issue 21: a fresh request after the burst within twice its solo latency."""


@dataclass(frozen=True)
class BurstConfig:
    """One benchmark: runs x spare counts x protocols."""

    runs: int = 5
    """Fresh servers per spare count."""
    spares: tuple[int, ...] = (0, 1)
    """``jarrn serve --spare-instances`` values compared, interleaved run by run."""
    clients: int = 8
    """Clients that send one large request each and leave."""
    big: int = 1024
    """Side of the large requests' square images."""
    small: int = 64
    """Side of the fresh (and solo) request's square image."""
    give_up_after_s: float = 1.0
    """How long each large request's client waits before it leaves."""
    fresh_after_s: float = 0.1
    """Pause between the last client leaving and the fresh request."""
    threads: int = 1
    """Intra-op threads per model process (``jarrn serve --threads``)."""
    backend: str = ""
    """``jarrn serve --backend`` (empty: its default, ONNX Runtime without a GPU)."""

    def __post_init__(self) -> None:
        for name, low in (("runs", 1), ("clients", 1), ("big", 1), ("small", 1), ("threads", 0)):
            if getattr(self, name) < low:
                raise UsageError(f"--{name}: expected at least {low}, got {getattr(self, name)}")
        if not self.spares or min(self.spares) < 0:
            raise UsageError(f"--spare-instances: expected counts >= 0 separated by commas, got {self.spares}")
        if not (self.give_up_after_s > 0 and self.fresh_after_s >= 0):
            raise UsageError("--give-up-after must be > 0 and --fresh-after >= 0 seconds, got "
                             f"{self.give_up_after_s} and {self.fresh_after_s}")


def request_inputs(module: Any, height: int, width: int) -> list:
    """A ``tritonclient`` (``module``: its http or grpc package) request of one grey ``height`` x ``width`` image with a
    point every 8 pixels at 10 m."""
    from jarrn_deploy.model.contract import CONTRACT

    rgb = np.full((1, 3, height, width), 0.5, np.float32)
    sparse = np.zeros((1, 1, height, width), np.float32)
    sparse[0, 0, ::8, ::8] = 10.0
    inputs = [module.InferInput(CONTRACT.rgb_name, list(rgb.shape), "FP32"),
              module.InferInput(CONTRACT.sparse_name, list(sparse.shape), "FP32")]
    inputs[0].set_data_from_numpy(rgb)
    inputs[1].set_data_from_numpy(sparse)
    return inputs


def timed(client: Any, inputs: list) -> float:
    """Seconds until ``client`` has the answer to ``inputs``."""
    started = time.perf_counter()
    client.infer("jarrn", inputs)
    return time.perf_counter() - started


def leave_after(module: Any, url: str, inputs: list, seconds: float, outcomes: list[str]) -> None:
    """One client that waits ``seconds`` for its answer and leaves (gRPC: its deadline; HTTP: it closes the
    connection); appends "answered" or the exception's type name to ``outcomes``."""
    import tritonclient.grpc

    try:
        if module is tritonclient.grpc:
            module.InferenceServerClient(url).infer("jarrn", inputs, client_timeout=seconds)
        else:
            module.InferenceServerClient(url, network_timeout=seconds).infer("jarrn", inputs)
        outcomes.append("answered")
    except Exception as exc:  # noqa: BLE001 - leaving is the point
        outcomes.append(type(exc).__name__)


def measure_burst(url: str, protocol: str, config: BurstConfig) -> dict[str, Any]:
    """One protocol on a running server: solo latency, the burst, the fresh request's latency."""
    import tritonclient.grpc
    import tritonclient.http

    module = tritonclient.http if protocol == "http" else tritonclient.grpc
    client, small = module.InferenceServerClient(url), request_inputs(module, config.small, config.small)
    try:
        client.infer("jarrn", small)
        solo = float(np.median([timed(client, small) for _ in range(5)]))
        outcomes: list[str] = []
        big = [request_inputs(module, config.big, config.big) for _ in range(config.clients)]
        clients = [threading.Thread(target=leave_after, args=(module, url, inputs, config.give_up_after_s, outcomes))
                   for inputs in big]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        time.sleep(config.fresh_after_s)
        fresh = timed(client, small)
    finally:
        client.close()
    return {"protocol": protocol, "solo_ms": solo * 1e3, "fresh_ms": fresh * 1e3, "ratio": fresh / solo,
            "answered": outcomes.count("answered"), "left": len(outcomes) - outcomes.count("answered")}


class ServeProcess:
    """``jarrn serve`` as a child process on free loopback ports (the gate's threads then do not share this process's
    interpreter with the clients); use as a context manager."""

    def __init__(self, arguments: Sequence[str] = ()) -> None:
        """``arguments``: ``jarrn serve`` flags beyond the ports."""
        from jarrn_deploy.runtime.serve import free_port

        self.http_url, self.grpc_url = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        self.command = [sys.executable, "-m", "jarrn_deploy.runtime.serve", "--http-port", self.http_url.split(":")[1],
                        "--grpc-port", self.grpc_url.split(":")[1], "--metrics-port", "0", *arguments]
        self.process: subprocess.Popen | None = None
        self.describe = ""

    def __enter__(self) -> "ServeProcess":
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in self.process.stdout:
            lines.append(line.rstrip())
            if line.startswith("serving "):
                self.describe = line.strip()
                threading.Thread(target=self.process.stdout.read, daemon=True).start()  # keep the pipe drained
                return self
        self.process.wait()
        reason = next((line for line in reversed(lines) if line.strip()), "no output")  # its one error line
        raise UnavailableError(f"jarrn serve did not start (exit {self.process.returncode}): {reason}")

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


def run_benchmark(config: BurstConfig, log=print) -> dict[str, Any]:  # noqa: ANN001
    """Every run; returns the report dictionary (nothing written)."""
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    server_line = {}
    total = config.runs * len(config.spares)
    for run in range(config.runs):
        for spare in config.spares:
            arguments = ["--threads", str(config.threads), "--spare-instances", str(spare),
                         *(["--backend", config.backend] if config.backend else [])]
            with ServeProcess(arguments) as server:
                server_line[spare] = server.describe
                for protocol in PROTOCOLS:
                    row = measure_burst(server.http_url if protocol == "http" else server.grpc_url, protocol, config)
                    rows.append({"run": run, "spare_instances": spare, **row})
            done = len(rows) // len(PROTOCOLS)
            log(f"  {done}/{total}: spare {spare}, " + ", ".join(
                f"{r['protocol']} {r['fresh_ms']:.0f} ms ({r['ratio']:.1f}x solo)" for r in rows[-len(PROTOCOLS):]))
    summary = {}
    for spare in config.spares:
        for protocol in PROTOCOLS:
            ratios = [r["ratio"] for r in rows if r["spare_instances"] == spare and r["protocol"] == protocol]
            summary[f"{protocol} spare {spare}"] = {
                "runs": len(ratios), "min_ratio": min(ratios), "median_ratio": float(np.median(ratios)),
                "max_ratio": max(ratios), "over_target": sum(ratio > TARGET_RATIO for ratio in ratios)}
    return {"schema": SCHEMA, "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": asdict(config), "target_ratio": TARGET_RATIO,
            "servers": {str(spare): line for spare, line in server_line.items()},
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
                       f"{platform.python_version()}",
            "load_average": {"before": load_before, "after": os.getloadavg()[0]}, "summary": summary, "rows": rows}


def render_markdown(report: dict[str, Any]) -> str:
    c = report["config"]
    lines = [
        "# Abandoned burst (`jarrn serve`)", "",
        f"{c['clients']} clients send one {c['big']}x{c['big']} request each and leave after "
        f"{c['give_up_after_s']:g} s; "
        f"{c['fresh_after_s']:g} s after the last one left, a {c['small']}x{c['small']} request is timed against its "
        f"solo time (median of 5). A fresh server per run (`--threads {c['threads']}`), HTTP then gRPC on it; "
        f"`--spare-instances` values interleaved run by run. Target (issue 21): within "
        f"{report['target_ratio']:g}x.", "",
        f"- Machine: {report['machine']}; load average (1 min) {report['load_average']['before']:.1f} before, "
        f"{report['load_average']['after']:.1f} after.",
        *[f"- Server with `--spare-instances {spare}`: {line}" for spare, line in report["servers"].items()],
        f"- Created {report['created_utc']} by `python -m jarrn_deploy.benchmarks.serving_abandoned` "
        f"(`--runs {c['runs']}`).", "",
        "| protocol, spare processes | runs | fresh / solo: min | median | max | over the target |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {name} | {s['runs']} | {s['min_ratio']:.1f}x | {s['median_ratio']:.1f}x | {s['max_ratio']:.1f}x | "
          f"{s['over_target']} |" for name, s in report["summary"].items()], "",
        "Every run:", "",
        "| run | spare | protocol | solo (ms) | fresh (ms) | fresh / solo | clients answered before leaving |",
        "|---:|---:|---|---:|---:|---:|---:|",
        *[f"| {r['run']} | {r['spare_instances']} | {r['protocol']} | {r['solo_ms']:.1f} | {r['fresh_ms']:.1f} | "
          f"{r['ratio']:.1f}x | {r['answered']} |" for r in report["rows"]], "",
        "![fresh / solo per run](abandoned.png)", ""]
    return "\n".join(lines)


def render_chart(report: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jarrn_deploy.model.visualize import figure_png

    names = list(report["summary"])
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    for index, name in enumerate(names):
        protocol, _, spare = name.partition(" spare ")
        ratios = [r["ratio"] for r in report["rows"]
                  if r["protocol"] == protocol and str(r["spare_instances"]) == spare]
        ax.scatter([index] * len(ratios), ratios, alpha=0.7)
    ax.axhline(report["target_ratio"], color="red", linestyle="--", label=f"target {report['target_ratio']:g}x")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("fresh / solo latency")
    ax.set_title("Fresh small request after an abandoned burst, one dot per run")
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """``abandoned.json``, ``abandoned.md`` and ``abandoned.png`` in ``out``, each written atomically."""
    from jarrn_deploy.benchmarks.report_files import atomic_write_bytes, atomic_write_json, atomic_write_text

    return [atomic_write_json(out / "abandoned.json", report),
            atomic_write_text(out / "abandoned.md", render_markdown(report)),
            atomic_write_bytes(out / "abandoned.png", render_chart(report))]


def _counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts separated by commas, e.g. 0,1; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    d = BurstConfig()
    p = argparse.ArgumentParser(prog="python -m jarrn_deploy.benchmarks.serving_abandoned",
                                description=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=d.runs, help="fresh servers per spare count (default %(default)s)")
    p.add_argument("--spare-instances", type=_counts, default=d.spares,
                   help="spare model process counts compared (default 0,1)")
    p.add_argument("--clients", type=int, default=d.clients, help="clients that leave (default %(default)s)")
    p.add_argument("--big", type=int, default=d.big, help="side of their images (default %(default)s)")
    p.add_argument("--small", type=int, default=d.small, help="side of the fresh request's image (default %(default)s)")
    p.add_argument("--give-up-after", type=float, default=d.give_up_after_s,
                   help="seconds each client waits before it leaves (default %(default)s)")
    p.add_argument("--fresh-after", type=float, default=d.fresh_after_s,
                   help="seconds between the last client leaving and the fresh request (default %(default)s)")
    p.add_argument("--threads", type=int, default=d.threads, help="threads per model process (default %(default)s)")
    p.add_argument("--backend", default=d.backend, choices=("", *BACKEND_NAMES),
                   help="jarrn serve --backend (default: jarrn serve's)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default reports/serving)")
    return p


@command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = BurstConfig(runs=args.runs, spares=args.spare_instances, clients=args.clients, big=args.big,
                         small=args.small, give_up_after_s=args.give_up_after, fresh_after_s=args.fresh_after,
                         threads=args.threads, backend=args.backend)
    print(f"abandoned burst: {config.runs} run(s) x spare processes {list(config.spares)} x HTTP and gRPC, a fresh "
          "server each ...", flush=True)
    report = run_benchmark(config, log=lambda message: print(message, flush=True))
    paths = write_report(report, args.out)
    for name, s in report["summary"].items():
        print(f"{name}: fresh / solo {s['min_ratio']:.1f}x..{s['max_ratio']:.1f}x (median {s['median_ratio']:.1f}x), "
              f"{s['over_target']}/{s['runs']} over {TARGET_RATIO:g}x")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
