"""The export's errors, owned below every export module (the graph export, calibration and the precision
conversions all raise them; none of them needs another to do so), and the engine files' errors. Pure Python."""

from __future__ import annotations

from jarrn_deploy.errors import EXIT_OUTPUT, EXIT_UNAVAILABLE, InputError, UnavailableError, UsageError


class ExportError(UsageError):
    """An export that cannot be carried out (bad options, inputs or output path); the message is for the user.
    A ValueError; exit status 2 (bad option) unless a subclass says otherwise."""


class ExportOutputError(ExportError, OSError):
    """The output path cannot be written (exit status 4)."""

    exit_code = EXIT_OUTPUT


class ExportMemoryError(ExportError, MemoryError):
    """A static size whose export (tracing and validation at that size) cannot fit in this machine's memory."""

    exit_code = EXIT_UNAVAILABLE


class EngineMismatchError(UnavailableError):
    """The engine was built for another GPU or TensorRT version: it must be rebuilt from the ONNX on this machine."""


class EngineFileError(InputError, RuntimeError):
    """The engine file or its manifest is missing, truncated, corrupt or not an engine."""
