"""One error base for the whole project and one exit-code table for every command.

Pure Python: importable without numpy or torch, so the thinnest runtime can raise and catch these.
A command catches :class:`JarrnError`, prints ``error: <message>`` on one line and exits with the class's ``exit_code``;
anything else is a genuine bug and exits with :data:`EXIT_BUG` after a hint to report it.
"""

from __future__ import annotations

EXIT_OK = 0
"""The command did what was asked."""
EXIT_BUG = 1
"""An unexpected exception: a bug in this project (the traceback is printed, with a hint to report it)."""
EXIT_USAGE = 2
"""A bad command-line argument (argparse's own convention)."""
EXIT_INPUT = 3
"""An input file or array that cannot be used (missing, a folder given as a file, corrupt, wrong format, wrong size, a
sparse map without a single point: jarrn_deploy.model.contract.EmptySparseDepthError)."""
EXIT_OUTPUT = 4
"""An output path that cannot be written (unwritable folder, a file where a folder is expected, disk full, an output
that would replace one of the command's own inputs), checked before the work where it can be."""
EXIT_UNAVAILABLE = 5
"""A dependency or device that is not there (package not installed, no GPU, engine built for another GPU, an input
size whose estimated memory does not fit: jarrn_deploy.memory.MemoryGuardError)."""
EXIT_CHECK_FAILED = 6
"""The work ran but its result failed a check (export validation outside its bounds, a failed build, a model whose
output is NaN or inf: jarrn_deploy.model.contract.NonFiniteDepthError, naming the model file)."""
EXIT_INTERRUPTED = 130
"""Interrupted by the user (Ctrl-C)."""

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_BUG: "unexpected error (a bug: please report it with the traceback)",
    EXIT_USAGE: "bad command-line argument",
    EXIT_INPUT: "unusable input file or array",
    EXIT_OUTPUT: "output cannot be written",
    EXIT_UNAVAILABLE: "missing dependency or device",
    EXIT_CHECK_FAILED: "the result failed its check",
    EXIT_INTERRUPTED: "interrupted",
}
"""Every exit status a ``jarrn`` command may return, with its meaning (printed by ``jarrn --help``)."""


class JarrnError(Exception):
    """Base of every error this project raises on purpose; ``str(error)`` is the one-line message for the user."""

    exit_code: int = EXIT_INPUT


class UsageError(JarrnError, ValueError):
    """A command-line argument or API parameter outside what is accepted."""

    exit_code = EXIT_USAGE


class InputError(JarrnError, ValueError):
    """An input file or array that cannot be used."""

    exit_code = EXIT_INPUT


class OutputError(JarrnError, OSError):
    """An output path that cannot be written."""

    exit_code = EXIT_OUTPUT


class UnavailableError(JarrnError, RuntimeError):
    """A dependency or device that is not there."""

    exit_code = EXIT_UNAVAILABLE


class CheckFailedError(JarrnError, RuntimeError):
    """The work ran but its result failed a check."""

    exit_code = EXIT_CHECK_FAILED
