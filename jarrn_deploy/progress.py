"""The one progress logger of every command: a line per step on stderr, flushed at once (stdout keeps the results).

``log = progress_logger("bench", elapsed=True)`` then ``log("exporting ...")`` prints ``[bench   12.3s] exporting ...``;
without ``elapsed`` the line is ``[bench] exporting ...``. Pure Python, so any command can use it before heavy imports.
"""

from __future__ import annotations

import sys
import time
from typing import Callable


def progress_logger(tool: str, *, elapsed: bool = False) -> Callable[[str], None]:
    """A function that writes ``[tool] message`` (or ``[tool  seconds since this call]``) lines to stderr."""
    started = time.perf_counter()

    def log(message: str) -> None:
        stamp = f" {time.perf_counter() - started:6.1f}s" if elapsed else ""
        print(f"[{tool}{stamp}] {message}", file=sys.stderr, flush=True)

    return log
