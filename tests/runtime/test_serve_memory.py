"""``jarrn serve`` with its default limits: one 8000x8000 request (1 GB on the wire) is refused before the server copies
it, over HTTP and gRPC, and costs the server's process tree little memory (issue 21, item 1)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc")

from tritonclient.utils import InferenceServerException  # noqa: E402

from jarrn_deploy.model.contract import CONTRACT  # noqa: E402
from jarrn_deploy.runtime.serve import free_port, rss_bytes, server_process_ids  # noqa: E402
from jarrn_deploy.runtime.serving_server import TEMP_PREFIX  # noqa: E402
from tests.runtime.serving_support import give_up, timed  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GIB, MIB = 1 << 30, 1 << 20


def tree_bytes(root: int) -> int:
    """Resident memory of ``root`` and everything it started, plus its shared-memory segments."""
    shm = sum(p.stat().st_size for p in Path("/dev/shm").glob(f"{TEMP_PREFIX}{root}-*") if p.is_file())
    return rss_bytes([root, *server_process_ids(root)]) + shm


class PeakSampler:
    """The largest :func:`tree_bytes` seen while in the ``with`` block (sampled every 20 ms)."""

    def __init__(self, root: int) -> None:
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_bytes(self.root))
            time.sleep(0.02)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _inputs(module, height: int, width: int) -> list:
    rgb, sparse = np.full((1, 3, height, width), 0.5, np.float32), np.zeros((1, 1, height, width), np.float32)
    sparse[0, 0, ::8, ::8] = 10.0
    inputs = [module.InferInput(CONTRACT.rgb_name, list(rgb.shape), "FP32"),
              module.InferInput(CONTRACT.sparse_name, list(sparse.shape), "FP32")]
    inputs[0].set_data_from_numpy(rgb)
    inputs[1].set_data_from_numpy(sparse)
    return inputs


@pytest.fixture(scope="module")
def default_server():
    """``jarrn serve`` as a process with its default limits (2048x2048 pixels, batch 8) on free loopback ports."""
    http, grpc = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "jarrn_deploy.runtime.serve", "--http-port", str(http), "--grpc-port",
                                str(grpc), "--metrics-port", "0", "--threads", "1"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("serving 'jarrn'"):
            break
    else:
        pytest.fail("jarrn serve did not start: " + "".join(lines[-5:]))
    yield process, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
    process.terminate()
    process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_8000x8000_request_is_refused_before_the_server_copies_it(default_server, protocol: str) -> None:
    process, http_url, grpc_url = default_server
    module = tritonclient_http if protocol == "http" else tritonclient_grpc
    client = module.InferenceServerClient(http_url if protocol == "http" else grpc_url)
    huge = _inputs(module, 8000, 8000)
    client.infer("jarrn", _inputs(module, 64, 64))
    time.sleep(1)
    baseline = tree_bytes(process.pid)
    with PeakSampler(process.pid) as sampler:
        started = time.perf_counter()
        with pytest.raises(InferenceServerException) as error:
            client.infer("jarrn", huge)
        answer_s = time.perf_counter() - started
        time.sleep(5)
    kept = tree_bytes(process.pid) - baseline
    del huge
    status, message = str(error.value.status()), error.value.message()
    print(f"{protocol}: {status} after {answer_s:.2f} s; baseline {baseline / MIB:.0f} MiB, peak "
          f"{sampler.peak / MIB:.0f} MiB, kept 5 s after the answer {kept / MIB:+.0f} MiB; {message[:160]}")
    if protocol == "http":
        assert status == "400" and "--max-pixels 4194304" in message
    else:
        assert status == "StatusCode.RESOURCE_EXHAUSTED" and "larger than max" in message
    assert sampler.peak < 1.5 * GIB and kept < 300 * MIB
    assert client.infer("jarrn", _inputs(module, 64, 64)).as_numpy(CONTRACT.depth_name).shape == (1, 1, 64, 64)
    client.close()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_work_whose_clients_left_is_dropped(default_server, protocol: str) -> None:
    """Eight clients give up on 1024x1024 requests (2.5 s each on one CPU thread) after 1 s; a fresh 64x64 request
    sent 0.1 s later is answered within twice its solo latency (issue 21's target): the running image is stopped,
    the queued ones are dropped unread, and a spare model process takes the fresh one at once."""
    _, http_url, grpc_url = default_server
    module = tritonclient_http if protocol == "http" else tritonclient_grpc
    url = http_url if protocol == "http" else grpc_url
    client, small = module.InferenceServerClient(url), _inputs(module, 64, 64)
    client.infer("jarrn", small)
    solo = float(np.median([timed(client, small) for _ in range(5)]))
    big = [_inputs(module, 1024, 1024) for _ in range(8)]
    outcomes: list[str] = []
    clients = [threading.Thread(target=give_up, args=(module, url, inputs, outcomes, 1.0)) for inputs in big]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    time.sleep(0.1)
    fresh = timed(client, small)
    print(f"{protocol}: solo 64x64 {solo * 1e3:.0f} ms (median of 5), after 8 abandoned 1024x1024 "
          f"{fresh * 1e3:.0f} ms ({fresh / solo:.1f}x); clients: {sorted(set(outcomes))}")
    assert "answered" not in outcomes
    assert fresh < 2 * solo, (fresh, solo)
    client.close()
