"""export/engine/sources.py finds the kernel sources a CPU-built TensorRT-RTX engine stores, and tells standalone
re-quantisation kernels from the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jarrn_deploy.export.engine.sources import HELPERS_END, find_sources


def _source(*kernels: str) -> bytes:
    helpers = b"template <typename T> __device__ T helper(T x) { return x; }\n" * 40 + b"/*" + HELPERS_END + b"*/\n"
    body = b"".join(b'extern "C" __global__ void ' + name.encode() + b"(float* x)\n{\n  x[0] = 1.0f;\n}\n"
                    for name in kernels)
    return helpers + body


def test_sources_kernels_and_requantise_only_sources_are_counted():
    weights = bytes(range(128, 256)) * 80  # binary: not a source
    sources = [_source("__myl_MulAddMulMaxMulMinMaxRounCast_0xab12"),
               _source("__myl_ConvAddRelu", "__myl_MulMaxMulMinMaxRounCast_0xcd"),
               _source("__myl_CastMulMulAddAddMulMinMaxRounCast_0xef_com")]
    data = b"".join([weights, sources[0], b"\0" * 8, sources[1], b"\0", sources[2], weights])
    found = find_sources(data)
    assert found.sources == 3 and len(found.kernels) == 4
    assert found.requantise_only == 2  # the mixed source is not standalone re-quantisation
    assert found.helper_bytes == _source("x").index(HELPERS_END) and 0 < found.share < 1
    assert found.source_bytes == sum(len(s) for s in sources)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt_rtx not installed")
def test_a_cpu_built_tensorrt_rtx_engine_stores_kernel_sources(tmp_path: Path):
    from tests.export.test_engine_preflight import _build

    found = find_sources(_build(tmp_path, "m").read_bytes())
    assert found.sources >= 1 and found.kernels and found.helper_bytes > 0 and found.requantise_only == 0
