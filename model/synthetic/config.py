"""Public configuration and per-sample result of the synthetic scene generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("random", "indoor", "outdoor")
MIN_SIZE = 16


@dataclass(frozen=True)
class SceneConfig:
    """Sampling ranges for the procedural scenes."""

    indoor_depth_range: tuple[float, float] = (0.5, 10.0)
    """Valid indoor depth interval in metres; hits outside it are marked invalid (0)."""
    outdoor_depth_range: tuple[float, float] = (2.0, 80.0)
    """Valid outdoor depth interval in metres; hits outside it (and the sky) are marked invalid (0)."""
    hfov_deg_range: tuple[float, float] = (55.0, 85.0)
    """Horizontal field of view in degrees; the focal length is fx = (W / 2) / tan(hfov / 2)."""
    focal_aspect_jitter: float = 0.02
    """Largest relative difference between fy and fx."""
    principal_point_jitter: float = 0.03
    """Largest principal-point offset from the image centre, as a fraction of the width / height."""
    outdoor_probability: float = 0.5
    """Probability that kind="random" gives an outdoor street rather than an indoor room."""
    ambient_range: tuple[float, float] = (0.25, 0.45)
    """Ambient light fraction; the rest comes from one Lambertian directional light."""

    def __post_init__(self) -> None:
        for name in ("indoor_depth_range", "outdoor_depth_range", "hfov_deg_range", "ambient_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo < hi:
                raise ValueError(f"{name} must satisfy 0 < low < high, got {(lo, hi)}")
        if self.hfov_deg_range[1] >= 170:
            raise ValueError(f"hfov_deg_range must stay below 170 degrees, got {self.hfov_deg_range}")
        if self.ambient_range[1] > 1:
            raise ValueError(f"ambient_range must lie in (0, 1], got {self.ambient_range}")
        if not 0 <= self.outdoor_probability <= 1:
            raise ValueError(f"outdoor_probability must lie in [0, 1], got {self.outdoor_probability}")
        for name in ("focal_aspect_jitter", "principal_point_jitter"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must lie in [0, 0.5), got {getattr(self, name)}")


DEFAULT_CONFIG = SceneConfig()


@dataclass(frozen=True, eq=False)
class SyntheticSample:
    """One rendered scene."""

    rgb: np.ndarray
    """uint8 HxWx3 image."""
    depth: np.ndarray
    """float32 HxW z-depth in metres, 0 = invalid (sky or out of range)."""
    intrinsics: tuple[float, float, float, float]
    """Pinhole intrinsics (fx, fy, cx, cy) in pixels; pixel centres at integer coordinates."""
    kind: str
    """"indoor" or "outdoor"."""
