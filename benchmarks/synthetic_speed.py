"""Throughput of the synthetic RGB-D scene generator, and an optional PNG grid of samples.

python benchmarks/synthetic_speed.py --size 320 --samples 50 --grid /tmp/synthetic_grid.png
taskset -c 0 python benchmarks/synthetic_speed.py            # pin to one core
python benchmarks/synthetic_speed.py --torch --device cpu     # torch ray casting path (generate_batch)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import numpy as np  # noqa: E402

from jarrn_deploy.model.synthetic import KINDS, generate_batch, generate_scene  # noqa: E402
from jarrn_deploy.model.visualize import colorize_depth  # noqa: E402


def write_grid(path: Path, seeds: list[int], size: int, kind: str, columns: int = 4) -> None:
    """PNG with, per sample, the RGB image and its colourised depth side by side."""
    from PIL import Image

    tiles = []
    for seed in seeds:
        s = generate_scene(seed, size, size, kind)
        inverse = np.where(s.depth > 0, 1.0 / np.maximum(s.depth, 1e-6), 0.0)  # near objects get more contrast
        tiles.append(np.concatenate([s.rgb, colorize_depth(inverse)], axis=1))
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320, help="image height and width")
    parser.add_argument("--samples", type=int, default=50, help="samples to time")
    parser.add_argument("--kind", choices=KINDS, default="random")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--torch", action="store_true", help="time generate_batch (torch ray casting)")
    parser.add_argument("--device", default="cpu", help="torch device for --torch")
    parser.add_argument("--batch", type=int, default=8, help="batch size for --torch")
    parser.add_argument("--grid", type=Path, help="write a PNG grid of samples (RGB | depth) here")
    parser.add_argument("--grid-samples", type=int, default=16)
    args = parser.parse_args(argv)

    seeds = list(range(args.seed, args.seed + args.samples))
    generate_scene(args.seed, args.size, args.size, args.kind)  # warm-up (imports, caches)
    start = time.perf_counter()
    if args.torch:
        import torch

        for i in range(0, len(seeds), args.batch):
            generate_batch(seeds[i : i + args.batch], args.size, args.size, args.device, args.kind)
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()
        path = f"torch on {args.device}"
    else:
        for seed in seeds:
            generate_scene(seed, args.size, args.size, args.kind)
        path = "numpy"
    elapsed = time.perf_counter() - start
    print(
        f"{path}: {len(seeds) / elapsed:.1f} samples/s at {args.size}x{args.size} ({len(seeds)} samples, "
        f"{1000 * elapsed / len(seeds):.1f} ms each, kind={args.kind})"
    )
    if args.grid is not None:
        write_grid(args.grid, list(range(args.seed, args.seed + args.grid_samples)), args.size, args.kind)
        print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
