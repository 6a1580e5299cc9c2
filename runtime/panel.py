"""The runtime's preview pictures: RGB | sparse input | completed depth with a colour bar in metres, and a single
depth map with its colour bar. Drawn by :mod:`jarrn_deploy.model.visualize`, the one owner of depth pictures (torch-free)."""

from __future__ import annotations

from jarrn_deploy.model.visualize import MAX_TILE_SIDE, depth_with_colorbar, display_range, make_panel

__all__ = ["MAX_TILE_SIDE", "depth_with_colorbar", "display_range", "make_panel"]
