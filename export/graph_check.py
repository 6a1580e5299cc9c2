"""Is this ONNX file a jarrn-deploy graph of this contract? Checked before any backend trusts it.

Pure Python over an ONNX Runtime session (or anything with ``get_inputs``/``get_outputs``/``get_modelmeta``): no torch,
no onnx package, so the runtime can use it on a device that has only onnxruntime. What is checked: the input names,
float32, rank 4 and channel counts of ``rgb`` [B,3,H,W] and ``sparse_depth`` [B,1,H,W]; a ``depth`` output of rank 4
with one channel; and the ``jarrn.*`` metadata that ``export/to_onnx.py`` writes (present, this contract version,
inputs and outputs that match the graph, a config with widths).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from jarrn_deploy.errors import InputError

from jarrn_deploy.model.contract import CONTRACT, CONTRACT_VERSION  # noqa: F401 - CONTRACT_VERSION re-exported for the runtime

CONTRACT_INPUTS = CONTRACT.input_channels
"""Graph input name -> channel count; both float32 [B,C,H,W]."""
CONTRACT_OUTPUT = CONTRACT.depth_name
"""The graph output every backend returns: float32 [B,1,H,W] metres."""
METADATA_PREFIX = "jarrn."
"""Prefix of the graph's metadata_props written by export/onnx_graph.py."""


class GraphError(InputError):
    """An ONNX file that is not a jarrn-deploy graph of this contract: not ONNX at all, other input/output names,
    ranks, dtypes or channel counts, an output that is not ``[B,1,H,W]``, or ``jarrn.*`` metadata that is missing or
    names another contract version (a ValueError, exit status 3)."""


def _static_dims(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def check_graph(session: Any, path: str | os.PathLike, *, check_metadata: bool = True) -> dict[str, list[int | None]]:
    """See :func:`_check_graph`; a graph whose names or shapes cannot even be read (corrupt strings: ONNX Runtime
    raises UnicodeDecodeError and the like) is a :class:`GraphError` too."""
    try:
        return _check_graph(session, path, check_metadata=check_metadata)
    except GraphError:
        raise
    except (UnicodeError, RuntimeError, ValueError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise GraphError(f"{path}: the graph's inputs, outputs or metadata cannot be read "
                         f"({type(exc).__name__}: {reason}); the file is corrupt") from None


def _check_graph(session: Any, path: str | os.PathLike, *, check_metadata: bool = True) -> dict[str, list[int | None]]:
    """Refuse, with :class:`GraphError`, an ONNX file that is not this contract's graph: input names, float32,
    rank 4 and channel counts; a ``depth`` output of rank 4 with one channel; and (``check_metadata``) the
    ``jarrn.*`` metadata written by ``export/to_onnx.py``: present, this contract version, inputs/outputs that match
    the graph. Returns the static dims of each input (None where dynamic)."""
    inputs = {i.name: i for i in session.get_inputs()}
    if sorted(inputs) != sorted(CONTRACT_INPUTS):
        raise GraphError(f"{path}: expected graph inputs {sorted(CONTRACT_INPUTS)}, found {sorted(inputs)}")
    static: dict[str, list[int | None]] = {}
    for name, channels in CONTRACT_INPUTS.items():
        value = inputs[name]
        if value.type != "tensor(float)":
            raise GraphError(f"{path}: graph input {name!r} is {value.type}, expected tensor(float) (float32)")
        dims = _static_dims(value.shape or [])
        if len(value.shape or []) != 4 or dims[1] not in (None, channels):
            raise GraphError(f"{path}: graph input {name!r} has shape {value.shape}, expected [B,{channels},H,W]")
        static[name] = dims
    outputs = {o.name: o for o in session.get_outputs()}
    if CONTRACT_OUTPUT not in outputs:
        raise GraphError(f"{path}: expected a graph output {CONTRACT_OUTPUT!r}, found {sorted(outputs)}")
    depth = outputs[CONTRACT_OUTPUT]
    if depth.type != "tensor(float)":
        raise GraphError(f"{path}: graph output 'depth' is {depth.type}, expected tensor(float) (float32)")
    depth_dims = _static_dims(depth.shape or [])
    if len(depth.shape or []) != 4 or depth_dims[1] not in (None, 1):
        raise GraphError(f"{path}: graph output 'depth' has shape {depth.shape}, expected [B,1,H,W]")
    if check_metadata:
        _check_metadata(session, path, sorted(inputs), list(outputs))
    return static


def recorded_widths(session: Any) -> tuple[int, ...] | None:
    """The U-Net widths the graph's ``jarrn.config`` records (for the memory guard), None when absent."""
    try:
        config = json.loads(dict(session.get_modelmeta().custom_metadata_map).get(METADATA_PREFIX + "config", ""))
        widths = tuple(int(w) for w in config["widths"])
    except Exception:  # noqa: BLE001 - no or odd metadata: unknown widths
        return None
    return widths if len(widths) == 7 else None


def _check_metadata(session: Any, path: str | os.PathLike, inputs: list[str], outputs: list[str]) -> None:
    metadata = dict(session.get_modelmeta().custom_metadata_map)  # unreadable: a GraphError from check_graph
    ours = {k[len(METADATA_PREFIX):]: v for k, v in metadata.items() if k.startswith(METADATA_PREFIX)}
    hint = "re-export it with export/to_onnx.py, or pass check_metadata=False to trust it anyway"
    if "contract_version" not in ours:
        raise GraphError(f"{path}: no jarrn.contract_version metadata, so not a graph from export/to_onnx.py; {hint}")
    if ours["contract_version"] != CONTRACT_VERSION:
        raise GraphError(f"{path}: exported for tensor contract version {ours['contract_version']!r}, this runtime "
                         f"implements {CONTRACT_VERSION!r}; {hint}")
    for key, actual in (("inputs", inputs), ("outputs", outputs)):
        if key not in ours:
            continue
        try:
            recorded = json.loads(ours[key])
        except ValueError:
            raise GraphError(f"{path}: metadata jarrn.{key} is not JSON ({ours[key][:60]!r}); {hint}") from None
        if not isinstance(recorded, list) or sorted(map(str, recorded)) != sorted(actual):
            raise GraphError(f"{path}: metadata jarrn.{key} says {recorded!r} but the graph has {actual}; {hint}")
    if "config" in ours:
        try:
            config = json.loads(ours["config"])
        except ValueError:
            config = None
        if not isinstance(config, dict) or "widths" not in config:
            raise GraphError(f"{path}: metadata jarrn.config is not a JARRN config ({ours['config'][:60]!r}); {hint}")


