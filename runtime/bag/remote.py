"""``--server HOST:PORT``: complete frames on a running ``jarrn serve`` over gRPC (Triton's client), so many bags can
share one GPU server. Same call as :meth:`DepthCompleter.complete` for one frame; the tensors are laid out by
:func:`jarrn_deploy.model.contract.prepare_inputs` and named by :data:`jarrn_deploy.model.contract.CONTRACT`, the model by
:data:`jarrn_deploy.export.triton_config.MODEL_NAME`."""

from __future__ import annotations

from typing import Any

import numpy as np

from jarrn_deploy.errors import InputError, UnavailableError, UsageError
from jarrn_deploy.model.contract import CONTRACT, depth_to_user, prepare_inputs
from jarrn_deploy.runtime.bag.source import first_line
from jarrn_deploy.export.triton_config import MODEL_NAME

SERVER_INSTALL_HINT = '--server needs the Triton client: pip install -e ".[serve]"'
TIMEOUT_S = 60.0
"""Per-request limit: a frame that takes longer means a stuck server."""


def parse_server(address: str) -> str:
    """``HOST:PORT`` checked (the port a number)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--server {address}: expected HOST:PORT of a running jarrn serve's gRPC port, e.g. "
                         "127.0.0.1:8001")
    return address


class RemoteCompleter:
    """Sends each frame to ``jarrn serve`` at ``address`` (its gRPC port) and returns the depth."""

    backend_name = "jarrn serve (gRPC)"

    def __init__(self, address: str, client: Any = None) -> None:
        """``client``: a ``tritonclient.grpc.InferenceServerClient`` (default: one for ``address``)."""
        try:
            import tritonclient.grpc as grpc_client
        except ImportError:
            raise UnavailableError(SERVER_INSTALL_HINT) from None
        self._module = grpc_client
        self.address = parse_server(address)
        self._client = client or grpc_client.InferenceServerClient(self.address)
        try:
            ready = self._client.is_model_ready(MODEL_NAME)
        except Exception as exc:  # noqa: BLE001 - InferenceServerException or a gRPC error: no server there
            raise UnavailableError(f"--server {address}: no jarrn serve answers there ({first_line(exc)})") from None
        if not ready:
            raise UnavailableError(f"--server {address}: the server answers but model '{MODEL_NAME}' is not ready")

    def complete(self, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
        rgb_nchw, sparse_nchw, was_batched = prepare_inputs(rgb, sparse_depth)
        inputs = []
        for name, array in ((CONTRACT.rgb_name, rgb_nchw), (CONTRACT.sparse_name, sparse_nchw)):
            tensor = self._module.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            inputs.append(tensor)
        outputs = [self._module.InferRequestedOutput(CONTRACT.depth_name)]
        try:
            result = self._client.infer(MODEL_NAME, inputs, outputs=outputs, client_timeout=TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the server's refusal (INVALID_ARGUMENT) or a lost connection
            status = str(getattr(exc, "status", lambda: "")() or "")
            if "INVALID_ARGUMENT" in status:
                raise InputError(f"--server {self.address} refused the frame: {first_line(exc)}") from None
            raise UnavailableError(f"--server {self.address}: request failed ({first_line(exc)})") from None
        return depth_to_user(result.as_numpy(CONTRACT.depth_name), was_batched)

    def close(self) -> None:
        self._client.close()
