"""Parsing and checking of the benchmark's command-line values; errors name the option and what is accepted."""

from __future__ import annotations

import re
from typing import Sequence

from jarrn_deploy.errors import UsageError


class ArgumentError(UsageError):
    """A bad command-line value; the message names the option and what is accepted (a ValueError, exit status 2)."""


def parse_size(text: str) -> tuple[int, int]:
    """``"320x320"`` / ``"375x1242"`` (height x width) or ``"320"`` (square) -> ``(H, W)``; each side >= 1."""
    value = str(text).strip().lower()
    match = re.fullmatch(r"(\d+)(?:\s*[x*,]\s*(\d+))?", value)
    if not match:
        raise ArgumentError(f"--sizes: bad size {text!r}; expected HEIGHTxWIDTH such as 320x320 or 375x1242")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) else height
    if height < 1 or width < 1:
        raise ArgumentError(f"--sizes: bad size {text!r}; height and width must be positive")
    if height > 8192 or width > 8192:
        raise ArgumentError(f"--sizes: size {text!r} is implausibly large (max 8192 per side)")
    return height, width


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    items = [t for t in str(text).split(",") if t.strip()]
    # "375x1242" may also be written "375,1242"? No: commas separate sizes; keep it unambiguous.
    if not items:
        raise ArgumentError("--sizes: expected at least one size such as 320x320")
    return tuple(dict.fromkeys(parse_size(t) for t in items))


def parse_int_list(text: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        if not re.fullmatch(r"\d+", item) or int(item) < minimum:
            raise ArgumentError(f"{option}: bad value {item!r}; expected integers >= {minimum}, comma-separated")
        values.append(int(item))
    if not values:
        raise ArgumentError(f"{option}: expected at least one integer")
    return tuple(dict.fromkeys(values))


def parse_choice_list(text: str, option: str, choices: Sequence[str]) -> tuple[str, ...]:
    items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ArgumentError(f"{option}: expected one or more of {', '.join(choices)}")
    if items == ["all"]:
        return tuple(choices)
    unknown = [t for t in items if t not in choices]
    if unknown:
        raise ArgumentError(
            f"{option}: unknown value{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(choices)} (comma-separated) or 'all'"
        )
    return tuple(dict.fromkeys(items))
