"""Third-party warnings the project is known to trigger and that tell a user nothing: one list, hidden from the
commands unless ``--verbose`` and from the test run (pyproject.toml's ``filterwarnings``, kept equal by a test)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # torch.onnx's TorchScript exporter, for the contract's reversed slices (the padding's edge replication): the
    # slices stay in the graph and are correct; only that exporter's constant folding skips them.
    (r"Constant folding - Only steps=1 can be constant folded", UserWarning),
)
"""(message regular expression, matched at its start; category)."""


@contextlib.contextmanager
def quiet_known_warnings(verbose: bool = False) -> Iterator[None]:
    """Within the block, :data:`KNOWN_WARNINGS` are not shown (all of them are, when ``verbose``)."""
    with warnings.catch_warnings():
        if not verbose:
            for message, category in KNOWN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
        yield
