"""The run folder's logs: log.csv and val.csv, history.json and the learning curves (curves.png), all written
atomically (:mod:`jarrn_deploy.model.atomic`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from jarrn_deploy.errors import OutputError
from jarrn_deploy.model.atomic import atomic_path, atomic_write_text


def write_logs(out: Path, history: dict[str, list[dict[str, Any]]]) -> None:
    """log.csv, val.csv, history.json and curves.png in ``out``; a full disk is one :class:`OutputError` line."""
    try:
        write_csv(out / "log.csv", history["train"])
        write_csv(out / "val.csv", history["val"])
        atomic_write_text(out / "history.json", json.dumps(history, indent=1))
        plot_curves(out / "curves.png", history["train"], history["val"])
    except OSError as exc:  # a full disk: one line, last.pt (written before) is intact
        raise OutputError(f"--out: could not write the logs in {out} ({exc.strerror or exc})") from None


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as a CSV file (columns: every key in order of first appearance), written atomically."""
    if not rows:
        return
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:  # pid-tagged temp: see model.atomic
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(path: Path, train_rows: list[dict[str, Any]], val_rows: list[dict[str, Any]]) -> None:
    """Training loss (with its parts) and validation RMSE / linear-interpolation RMSE per case, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if val_rows else 1, figsize=(17 if val_rows else 6, 4.5), squeeze=False)
    ax = axes[0, 0]
    if train_rows:
        steps = [r["step"] for r in train_rows]
        for key in ("loss", "absolute", "relative", "gradient", "dense_absolute"):
            if key in train_rows[0]:
                ax.plot(steps, [r[key] for r in train_rows], label=key, linewidth=1.2 if key == "loss" else 0.8)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if val_rows:
        names = [k[: -len("/ratio")] for k in val_rows[0] if k.endswith("/ratio")]
        vsteps = [r["step"] for r in val_rows]
        ax = axes[0, 1]
        for name in names:
            ax.plot(vsteps, [r[f"{name}/ratio"] for r in val_rows], marker=".", label=name)
        ax.plot(vsteps, [r["score"] for r in val_rows], "k--", linewidth=2, label="score")
        ax.axhline(1.0, color="grey", linewidth=1)
        ax.set_title("validation RMSE / linear interpolation RMSE")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax = axes[0, 2]
        for i, name in enumerate(names):
            line = ax.plot(vsteps, [r[f"{name}/rmse"] for r in val_rows], marker=".", label=name)[0]
            ax.axhline(val_rows[-1][f"{name}/linear_rmse"], color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_title("validation RMSE (m); dotted: linear interpolation")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
