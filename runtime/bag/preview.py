"""``--preview DIR``: a few panels (camera image | projected LiDAR points | completed depth, colour bar in metres)
drawn by :func:`jarrn_deploy.runtime.panel.make_panel`, written all together once the run has succeeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jarrn_deploy.model.atomic import staged_outputs
from jarrn_deploy.model.depth_io import write_rgb_png
from jarrn_deploy.runtime.panel import make_panel


def write_previews(folder: Path, frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]], caption: str,
                   topic: str) -> list[Path]:
    """``frame_<i>.png`` per ``(rgb, sparse, depth, stamp_s)``; returns the paths written."""
    with staged_outputs(folder) as stage:
        for index, (rgb, sparse, depth, stamp) in enumerate(frames):
            points = int((sparse > 0).sum())
            titles = (f"{topic} at {stamp:.3f} s", f"LiDAR: {points:,} points ({100 * points / sparse.size:.1f}%)",
                      "completed depth (/jarrn/depth)")
            panel = make_panel(rgb, sparse, depth, titles=titles, caption=caption)
            write_rgb_png(stage / f"frame_{index:02d}.png", panel)
    return [folder / f"frame_{index:02d}.png" for index in range(len(frames))]
