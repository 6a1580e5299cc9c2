"""The real RGB-D frames bundled in data/real and the evaluation cases built from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jarrn_deploy.model.depth_io import read_kitti_depth, read_millimetre_depth, read_rgb, read_tum_depth
from jarrn_deploy.model.sparse import random_points

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "data" / "real"
KITTI_DIR = "kitti_2011_09_26_drive_0001_f5"
TUM_FR1_INTRINSICS = (517.3, 516.5, 318.6, 255.3)
INDOOR_POINT_COUNTS = (500, 100)

Intrinsics = tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class RealFrame:
    """One real RGB-D frame with ground truth."""

    name: str
    """Short identifier, e.g. "kitti_02" or "tum_desk"."""
    rgb: np.ndarray
    """Colour image, uint8 HxWx3."""
    gt: np.ndarray
    """Ground-truth depth, float32 HxW metres, 0 = no data."""
    sparse: np.ndarray | None
    """Real sparse sensor depth (float32 HxW metres, 0 = missing), or None when the sensor gives none."""
    intrinsics: Intrinsics | None
    """Pinhole intrinsics (fx, fy, cx, cy) in pixels, or None when unknown."""


@dataclass(frozen=True, eq=False)
class EvalCase:
    """One evaluation input: an RGB image, a sparse depth input and the ground truth."""

    name: str
    """Frame name, with "@<points>" when the sparse input was sampled from the GT, e.g. "tum_desk@500"."""
    rgb: np.ndarray
    """Colour image, uint8 HxWx3."""
    sparse: np.ndarray
    """Sparse depth input, float32 HxW metres, 0 = missing."""
    gt: np.ndarray
    """Ground-truth depth, float32 HxW metres, 0 = no data."""


def _read_kitti_intrinsics(calib_path: Path, camera: str) -> Intrinsics:
    if not calib_path.is_file():
        raise FileNotFoundError(f"no such file: {calib_path}")
    key = f"P_rect_{camera}:"
    for line in calib_path.read_text().splitlines():
        if line.startswith(key):
            p = [float(v) for v in line[len(key):].split()]
            if len(p) != 12:
                raise ValueError(f"{calib_path}: {key} must have 12 values, found {len(p)}")
            return p[0], p[5], p[2], p[6]
    raise ValueError(f"{calib_path}: no {key} line")


def _kitti_frames(folder: Path) -> list[RealFrame]:
    return [
        RealFrame(
            name=f"kitti_{cam}",
            rgb=read_rgb(folder / f"image_{cam}.png"),
            gt=read_kitti_depth(folder / f"groundtruth_{cam}.png"),
            sparse=read_kitti_depth(folder / f"velodyne_raw_{cam}.png"),
            intrinsics=_read_kitti_intrinsics(folder / "calib_cam_to_cam.txt", cam),
        )
        for cam in ("02", "03")
    ]


def load_real_frames(root: str | Path | None = None) -> list[RealFrame]:
    """Load kitti_02, kitti_03 (real LiDAR + semi-dense GT), tum_desk and kinect2_lounge (GT only)."""
    base = DEFAULT_ROOT if root is None else Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"real-frame folder does not exist: {base}")
    frames = _kitti_frames(base / KITTI_DIR)
    frames.append(
        RealFrame(
            name="tum_desk",
            rgb=read_rgb(base / "tum_desk" / "rgb.png"),
            gt=read_tum_depth(base / "tum_desk" / "depth.png"),
            sparse=None,
            intrinsics=TUM_FR1_INTRINSICS,
        )
    )
    frames.append(
        RealFrame(
            name="kinect2_lounge",
            rgb=read_rgb(base / "kinect2_lounge" / "rgb.png"),
            gt=read_millimetre_depth(base / "kinect2_lounge" / "depth.png"),
            sparse=None,
            intrinsics=None,
        )
    )
    return frames


def evaluation_cases(
    frames: list[RealFrame],
    *,
    seed: int = 0,
    point_counts: tuple[int, ...] = INDOOR_POINT_COUNTS,
) -> list[EvalCase]:
    """One case per frame with real sparse input (named after the frame); for frames without
    one, a case per entry of ``point_counts`` with that many random GT points ("<name>@<count>").

    Each such frame gets its own ``np.random.default_rng(seed)``, drawn from in ``point_counts``
    order, so a frame's cases do not depend on which other frames are in the list. (This is the
    convention that reproduces the published Kinect v2 baseline numbers exactly.)
    """
    cases: list[EvalCase] = []
    for frame in frames:
        if frame.sparse is not None:
            cases.append(EvalCase(frame.name, frame.rgb, frame.sparse, frame.gt))
            continue
        rng = np.random.default_rng(seed)
        for count in point_counts:
            sparse = random_points(frame.gt, count=count, seed=rng)
            cases.append(EvalCase(f"{frame.name}@{count}", frame.rgb, sparse, frame.gt))
    return cases
