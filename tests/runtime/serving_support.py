"""Clients for the ``jarrn serve`` tests (not a test module): one that gives up, one that times an answer."""

from __future__ import annotations

import time
from typing import Any


def give_up(module: Any, url: str, inputs: list, outcomes: list, after_s: float) -> None:
    """One client that waits ``after_s`` for its answer and leaves (gRPC: its deadline; HTTP: it closes the
    connection); appends "answered" or the exception's type name to ``outcomes``."""
    import tritonclient.grpc

    try:
        if module is tritonclient.grpc:
            module.InferenceServerClient(url).infer("jarrn", inputs, client_timeout=after_s)
        else:
            module.InferenceServerClient(url, network_timeout=after_s).infer("jarrn", inputs)
        outcomes.append("answered")
    except Exception as exc:  # noqa: BLE001 - leaving is the point
        outcomes.append(type(exc).__name__)


def timed(client: Any, inputs: list) -> float:
    """Seconds until ``client`` has the answer to ``inputs``."""
    started = time.perf_counter()
    client.infer("jarrn", inputs)
    return time.perf_counter() - started
