"""The precisions an exported graph can have and the accuracy each must keep: one owner for both facts.

Pure Python, so the export, the engine builder, the runtime and the benchmark all import the same tuple and tolerances.
"""

from __future__ import annotations

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
"""Every precision ``export/to_onnx.py --precision`` produces (and the TensorRT engines built from those graphs)."""

FP32_MAX_ABS_M = 1e-3
"""FP32 graphs: largest |ONNX - PyTorch| over every pixel of every validation case, in metres."""

RMSE_TOLERANCE: dict[str, float] = {"fp16": 0.02, "int8": 0.05}
"""Reduced precisions: how much the RMSE against ground truth may exceed PyTorch FP32's, as a fraction, per frame."""
