"""One wording for options that do nothing where they were given: a repeated flag (the last one wins) and an option
the chosen backend or input ignores. Each is one ``warning:`` line on stderr; the command goes on.

Pure Python (argparse only), so a verb can warn before it imports anything heavy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jarrn_deploy.progress import warn


def ignored_option(option: str, reason: str) -> str:
    """Warn that ``option`` has no effect because of ``reason`` (e.g. 'the torch backend runs the model'); returns the
    line, so tests and reports can show it."""
    line = f"{option} has no effect: {reason}; ignored"
    warn(line)
    return line


def repeated_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> list[str]:
    """Warn once for each option given more than once whose action keeps only the last value (repeatable options,
    ``action='append'`` or ``'count'``, are fine); returns the lines."""
    args = list(sys.argv[1:] if argv is None else argv)
    seen: dict[str, int] = {}
    names: dict[str, str] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public list of actions
        if isinstance(action, (argparse._AppendAction, argparse._CountAction, argparse._HelpAction)):  # noqa: SLF001
            continue
        for option in action.option_strings:
            names[option] = "/".join(action.option_strings)
    for token in args:
        if token == "--":
            break
        option = token.split("=", 1)[0]
        if option in names:
            seen[names[option]] = seen.get(names[option], 0) + 1
    lines = []
    for option, count in seen.items():
        if count > 1:
            lines.append(f"{option} given {count} times; only the last one is used")
            warn(lines[-1])
    return lines
