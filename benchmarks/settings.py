"""The settings of one benchmark run, typed: what ``benchmarks/run.py`` measures and for how long."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class BenchmarkSettings:
    """One run's settings, from the command line over the ``--quick`` or full preset."""

    quick: bool
    """``--quick``: the short preset (fewer sizes, iterations and cases; no FP16/INT8 export)."""
    backends: tuple[str, ...]
    """Backends to measure (``--backends``)."""
    precisions: tuple[str, ...]
    """Precisions to measure (``--precisions``)."""
    sizes: tuple[tuple[int, int], ...]
    """Input sizes (height, width) to time."""
    batches: tuple[int, ...]
    """Batch sizes to time."""
    modes: tuple[str, ...]
    """"e2e" (DepthCompleter.complete on user arrays) and/or "graph" (the backend alone)."""
    warmup: int
    """Untimed calls before each configuration (the first is reported separately)."""
    iterations: int
    """Most timed calls per configuration."""
    min_iterations: int
    """Fewest timed calls per configuration (never above ``iterations``)."""
    seconds: float
    """Time budget per configuration: as many calls as fit, within the two bounds above."""
    quiet_wait_s: float
    """How long to wait for other processes to go quiet before timing a configuration (0: do not wait)."""
    threads: int
    """CPU threads for every backend."""
    engines: tuple[str, ...]
    """TensorRT engine files given with ``--engine``."""
    cases: tuple[str, ...] | None
    """Real frames whose accuracy is measured; None (full preset): all of them, resolved once they are loaded."""
    device: str = "cpu"
    """"cpu" or "cuda" (the kind; the workers see only the chosen GPU)."""

    def as_dict(self) -> dict[str, Any]:
        """The settings as the report records them (JSON-ready: tuples become lists)."""
        return {f.name: _listed(getattr(self, f.name)) for f in fields(self)}


def settings_dict(settings: BenchmarkSettings | Mapping[str, Any]) -> dict[str, Any]:
    """A report's settings from :class:`BenchmarkSettings` or a plain mapping (device checks build their own)."""
    if isinstance(settings, BenchmarkSettings):
        return settings.as_dict()
    return {k: _listed(v) for k, v in settings.items()}


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
