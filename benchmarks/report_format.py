"""Formatting shared by the benchmark report's markdown and charts: numbers with units, tables, the measured rows
and configurations of a report."""

from __future__ import annotations

from typing import Iterable, Sequence

from jarrn_deploy.benchmarks.rows import padded_hw

BASELINE_METHODS = ("nearest", "linear")
"""Interpolation baselines the accuracy is compared with."""


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_m(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def fmt_mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def ok_rows(report: dict) -> list[dict]:
    return [r for r in report["rows"] if r["status"] == "ok"]


def config_keys(report: dict) -> list[str]:
    keys: list[str] = []
    for row in ok_rows(report):
        for key in row.get("configs") or {}:
            if key not in keys:
                keys.append(key)
    return keys


def config_title(cfg: dict) -> str:
    h, w, b = cfg["height"], cfg["width"], cfg["batch"]
    ph, pw = padded_hw((h, w))
    pad = f", padded to {ph}x{pw} in the graph" if (ph, pw) != (h, w) else ""
    return f"{h}x{w}, batch {b}{pad}"
