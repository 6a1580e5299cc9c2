"""The one way every command talks to a person: lines on stderr, flushed at once (stdout keeps the results).

- progress: ``log = progress_logger("bench", elapsed=True)`` then ``log("exporting ...")`` prints
  ``[bench   12.3s] exporting ...``; without ``elapsed`` the line is ``[bench] exporting ...``;
- warnings: :func:`warn` prints ``warning: ...`` (the command goes on);
- errors: ``error: ...``, printed once by :func:`jarrn_deploy.cli.command` from the exception (the command stops);
- progress bars over many items: tqdm, on stderr.

Library functions take a ``log: Log`` (default :func:`quiet`) and never print themselves, so the command decides what
a person sees. Third-party loggers (TensorRT, Model Optimizer) are routed into these lines or silenced where they are
created. Pure Python, so any command can use it before heavy imports.
"""

from __future__ import annotations

import sys
import time
from typing import Callable


Log = Callable[[str], None]
"""Where a step writes its progress lines: :func:`progress_logger`'s function, :func:`quiet`, or a test's list.append."""


def quiet(message: str) -> None:
    """The default ``log`` of library functions: the message is dropped."""


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def progress_logger(tool: str, *, elapsed: bool = False) -> Callable[[str], None]:
    """A function that writes ``[tool] message`` (or ``[tool  seconds since this call]``) lines to stderr."""
    started = time.perf_counter()

    def log(message: str) -> None:
        stamp = f" {time.perf_counter() - started:6.1f}s" if elapsed else ""
        print(f"[{tool}{stamp}] {message}", file=sys.stderr, flush=True)

    return log
