"""What a TensorRT-RTX engine built on a CPU is made of: the CUDA C++ kernel sources it stores for NVRTC, their size
and share of the file, and what the file compresses to (export/README.md, "Engine size").

    python -m jarrn_deploy.export.engine.sources artifacts/jarrn_fp32.engine artifacts/jarrn_int8.engine

A CPU-only build compiles no GPU code; each generated kernel's source is stored as plain text, starting with a block of
shared helpers that ends in the marker :data:`HELPERS_END`. Sources are found as runs of printable text holding a
``__global__`` function; kernels by their ``extern "C" __global__`` declarations. Pure Python plus ``zstandard``.
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from jarrn_deploy.cli import command
from jarrn_deploy.errors import InputError

HELPERS_END = b"__MYELIN_NVRTC_KGEN_BUILTINS_END__"
"""End marker of the helper block at the top of every stored kernel source (TensorRT-RTX 1.7)."""
_TEXT_RUN = re.compile(rb"[\t\n\r\x20-\x7e]{2048,}")
_KERNEL = re.compile(rb'extern "C" __global__ void (\w+)\(')
_HASH_TAIL = re.compile(r"_0x[0-9a-f]+.*$")


@dataclass(frozen=True)
class EngineSources:
    """The kernel sources found in one engine file."""

    engine_bytes: int
    """Size of the engine file."""
    sources: int
    """Stored kernel sources (text runs holding a ``__global__`` function)."""
    source_bytes: int
    """Their total size."""
    kernels: tuple[str, ...]
    """Names of the kernels they declare, per source in file order."""
    requantise_only: int
    """Sources whose every kernel ends by rounding and casting to INT8 (``...RounCast``): standalone re-quantisation."""
    helper_bytes: int
    """Size of the shared helper block of the first source (0 when no source has the marker)."""

    @property
    def share(self) -> float:
        return self.source_bytes / self.engine_bytes if self.engine_bytes else 0.0


def find_sources(data: bytes) -> EngineSources:
    runs = [m.group() for m in _TEXT_RUN.finditer(data) if b"__global__" in m.group()]
    per_source = [[name.decode() for name in _KERNEL.findall(run)] for run in runs]
    requantise = sum(1 for names in per_source if names and all(_HASH_TAIL.sub("", n).endswith("RounCast")
                                                                 for n in names))
    helpers = next((run.find(HELPERS_END) for run in runs if HELPERS_END in run), 0)
    return EngineSources(len(data), len(runs), sum(len(r) for r in runs), tuple(n for ns in per_source for n in ns),
                         requantise, helpers)


def _mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def describe(path: Path) -> str:
    """One Markdown table row: engine size, sources, their size and share, kernels, re-quantise-only sources, helper
    block, zlib -6 and zstd -19 sizes."""
    from jarrn_deploy.export.engine.compression import compress

    data = path.read_bytes()
    found = find_sources(data)
    return (f"| {path.name} | {_mib(len(data))} | {found.sources} | {_mib(found.source_bytes)} | {found.share:.0%} | "
            f"{len(found.kernels)} | {found.requantise_only} | {found.helper_bytes / 1000:.1f} KB | "
            f"{_mib(len(zlib.compress(data, 6)))} | {_mib(len(compress(data)))} |")


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jarrn_deploy.export.engine.sources", description=__doc__.split("\n\n")[0])
    parser.add_argument("engines", nargs="+", type=Path, help="engine files (uncompressed)")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.engines if not path.is_file()]
    if missing:
        raise InputError(f"engines: no such file {', '.join(missing)}")
    print("| engine | size | sources | source text | share | kernels | re-quantise only | helper block | zlib -6 | "
          "zstd -19 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.engines:
        print(describe(path), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
