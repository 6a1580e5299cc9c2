"""Benchmark rows (one backend at one precision) and the sizes / batches a run measures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


BACKENDS = ("torch", "torch-compile", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
BASELINE_KEY = "torch:fp32"
KITTI_HW = (375, 1242)
DEFAULT_SIZES = ((320, 320), KITTI_HW)
DEFAULT_BATCHES = (1, 4)

_LABELS = {
    ("torch", "fp32"): "PyTorch eager FP32",
    ("torch", "fp16"): "PyTorch eager FP16 autocast",
    ("torch-compile", "fp32"): "torch.compile reduce-overhead FP32",
    ("torch-compile", "fp16"): "torch.compile reduce-overhead FP16 autocast",
    ("onnxruntime", "fp32"): "ONNX Runtime FP32",
    ("onnxruntime", "fp16"): "ONNX Runtime FP16",
    ("onnxruntime", "int8"): "ONNX Runtime INT8 (Q/DQ)",
    ("tensorrt", "fp32"): "TensorRT FP32",
    ("tensorrt", "fp16"): "TensorRT FP16",
    ("tensorrt", "int8"): "TensorRT INT8 (Q/DQ)",
}


@dataclass(frozen=True)
class Row:
    """One benchmark row: a backend at a precision."""

    backend: str
    precision: str

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.precision}"

    @property
    def label(self) -> str:
        return _LABELS.get((self.backend, self.precision), f"{self.backend} {self.precision.upper()}")

    @property
    def uses_onnx(self) -> bool:
        return self.backend in ("onnxruntime", "tensorrt")


def applicable_rows(backends: Iterable[str], precisions: Iterable[str]) -> list[Row]:
    """Rows that exist at all (PyTorch has no INT8 path here); availability on this machine is decided later."""
    precisions = list(precisions)
    rows = []
    for backend in backends:
        for precision in precisions:
            if backend in ("torch", "torch-compile") and precision == "int8":
                continue
            rows.append(Row(backend, precision))
    return rows


def size_label(hw: Sequence[int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def config_key(hw: Sequence[int], batch: int) -> str:
    return f"{size_label(hw)}_b{batch}"


def padded_hw(hw: Sequence[int], multiple: int = 64) -> tuple[int, int]:
    return tuple(-(-int(v) // multiple) * multiple for v in hw)  # type: ignore[return-value]
