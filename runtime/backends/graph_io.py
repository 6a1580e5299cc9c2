"""Checks shared by the backends that run the exported graph (ONNX Runtime, OpenVINO): a fixed-size graph's size,
and the output's shape."""

from __future__ import annotations

from typing import Any

import numpy as np

from jarrn_deploy.errors import InputError
from jarrn_deploy.export.graph_check import GraphError
from jarrn_deploy.model.contract import CONTRACT


def check_fixed_size(static_dims: dict[str, list[int | None]], source: str, rgb_nchw: np.ndarray) -> None:
    """A graph exported with ``--static``/``--batch`` takes only that size: say so (InputError) instead of the
    runtime's own error."""
    fixed = static_dims.get(CONTRACT.rgb_name, [None] * 4)
    wrong = [(label, want, got) for label, want, got in zip(("batch", "", "height", "width"), fixed, rgb_nchw.shape)
             if want is not None and label and want != got]
    if wrong:
        size = "x".join(str(d) if d is not None else "any" for d in fixed[2:])
        batch = fixed[0] if fixed[0] is not None else "any"
        raise InputError(
            f"rgb and sparse_depth: this graph ({source}) was exported for a fixed size {size} (batch "
            f"{batch}); got {rgb_nchw.shape[2]}x{rgb_nchw.shape[3]} (batch {rgb_nchw.shape[0]}): resize the "
            "inputs or export with dynamic shapes (export/to_onnx.py without --static/--batch)"
        )


def checked_depth(depth: Any, rgb_nchw: np.ndarray, source: str) -> np.ndarray:
    """The graph's ``depth`` output as float32 ``[B,1,H,W]``; :class:`GraphError` when its shape does not follow the
    inputs (not this contract's graph)."""
    depth = np.asarray(depth, dtype=np.float32)
    expected = (rgb_nchw.shape[0], 1, rgb_nchw.shape[2], rgb_nchw.shape[3])
    if depth.shape != expected:
        raise GraphError(f"{source}: graph output 'depth' has shape {list(depth.shape)} for inputs "
                         f"{list(rgb_nchw.shape)}, expected {list(expected)}: not this contract's graph")
    return depth
