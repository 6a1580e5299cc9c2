"""Dataset adapters for training on real RGB-D data: KITTI depth completion, NYUv2, DIODE and generic folders.

Every adapter is a map-style dataset whose items look like those of the training's synthetic source
(``jarrn_deploy.model.training.samples.SyntheticSource``):
``{"rgb": float32 [3,H,W] in [0,1], "depth": float32 [1,H,W] metres, 0 = invalid}``; KITTI items also carry
``"sparse"`` (float32 [1,H,W] metres, the real projected LiDAR). Frames keep their native size; the training loop
crops them. A missing, unreadable or inconsistent file raises :class:`DatasetError` naming it.

Expected layouts
----------------
KITTI depth completion (``KittiDepthCompletion(root, split="train")``), the official downloads unpacked into ``root``::

    root/
      data_depth_velodyne/{train,val}/<drive>/proj_depth/velodyne_raw/image_0{2,3}/<frame>.png   (LiDAR, uint16 m*256)
      data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_0{2,3}/<frame>.png   (GT, uint16 m*256)
      raw/<date>/<drive>/image_0{2,3}/data/<frame>.png                                            (KITTI raw RGB)

  ``<drive>`` is e.g. ``2011_09_26_drive_0001_sync`` and ``<date>`` its first 10 characters. The RGB may also sit
  directly under ``root/<date>/<drive>/...`` (raw archives unpacked into the root). Samples are the GT files that
  have a LiDAR file and an RGB image.

NYUv2 (``NyuV2(root)``), either exported pairs::

    root/rgb/<name>.png|.jpg      8-bit colour
    root/depth/<name>.png         uint16 depth, ``value / depth_scale`` metres (default 1000: millimetres)

  or the labeled ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5; ``NyuV2(path_to_mat)``, needs ``h5py``:
  ``pip install h5py``); its ``images`` are ``[N,3,W,H]`` uint8 and ``depths`` ``[N,W,H]`` float metres.

DIODE (``Diode(root)``): every ``<name>.png`` under ``root`` (any depth of folders, e.g. ``train/indoors/scene_x/
scan_y/``) with ``<name>_depth.npy`` (``HxW`` or ``HxWx1`` float metres) and ``<name>_depth_mask.npy`` (``HxW``,
non-zero = valid) beside it.

Generic folder (``DepthFolder(root, depth_scale=1000)``)::

    root/rgb/<name>.png|.jpg
    root/depth/<name>.png   (uint16, value / depth_scale metres)   or   root/depth/<name>.npy   (float metres)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from jarrn_deploy.errors import InputError

RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
KITTI_CAMERAS = ("image_02", "image_03")


class DatasetError(InputError):
    """A dataset file that is missing, unreadable or inconsistent with its partner files (the message names it).
    A ValueError; exit status 3."""

    @classmethod
    def from_loader(cls, exc: "DatasetError") -> "DatasetError":
        """The one-line error of ``exc``, of its own type. A DataLoader worker's error comes back as the same type with
        the worker's whole traceback as its message; torch carries only that text, whose error line is
        ``module.Type: message`` as :mod:`traceback` writes it, so the message is cut from there."""
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        if len(lines) <= 1:
            return exc  # raised in this process: already one line
        kind = type(exc)
        head = f"{kind.__module__}.{kind.__qualname__}: "
        for line in reversed(lines):
            if line.startswith(head):
                return kind(line[len(head):].strip())
        return kind(lines[-1].strip())


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DatasetError(f"missing RGB image: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception as exc:  # PIL raises several types for corrupt files
        raise DatasetError(f"cannot read RGB image {path}: {type(exc).__name__}: {exc}") from None


def _read_depth_png(path: Path, scale: float) -> np.ndarray:
    from jarrn_deploy.model.depth_io import read_depth_png

    if not path.is_file():
        raise DatasetError(f"missing depth file: {path}")
    try:
        return read_depth_png(path, scale=scale)
    except Exception as exc:
        raise DatasetError(f"cannot read depth PNG {path}: {type(exc).__name__}: {exc}") from None


def _read_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"missing {what} file: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DatasetError(f"cannot read {what} file {path}: {type(exc).__name__}: {exc}") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise DatasetError(f"{what} file {path}: expected an HxW array, got shape {array.shape}")
    return array


def _clean_depth(depth: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth, dtype=np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0)).astype(np.float32)


def _item(rgb: np.ndarray, depth: np.ndarray, source: Path | str, sparse: np.ndarray | None = None) -> dict[str, Any]:
    if rgb.shape[:2] != depth.shape:
        raise DatasetError(
            f"{source}: RGB is {rgb.shape[0]}x{rgb.shape[1]} but depth is {depth.shape[0]}x{depth.shape[1]}"
        )
    item = {
        "rgb": torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0).contiguous(),
        "depth": torch.from_numpy(_clean_depth(depth))[None],
    }
    if sparse is not None:
        if sparse.shape != depth.shape:
            raise DatasetError(f"{source}: sparse depth is {sparse.shape}, depth is {depth.shape}")
        item["sparse"] = torch.from_numpy(_clean_depth(sparse))[None]
    return item


def _find_rgb(folder: Path, stem: str) -> Path | None:
    for suffix in RGB_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: no such folder {path}")
    return path


# ---------------------------------------------------------------------------------------------------------------------


class KittiDepthCompletion(Dataset):
    """KITTI depth completion: RGB from KITTI raw, real LiDAR (``"sparse"``) and semi-dense GT, metres = value/256."""

    def __init__(self, root: str | os.PathLike, split: str = "train", cameras: Sequence[str] = KITTI_CAMERAS) -> None:
        self.root = _require_dir(Path(root), "KITTI root")
        gt_root = _require_dir(self.root / "data_depth_annotated" / split, "KITTI annotated depth")
        lidar_root = _require_dir(self.root / "data_depth_velodyne" / split, "KITTI velodyne depth")
        self.samples: list[tuple[Path, Path, Path]] = []
        skipped = 0
        for drive_dir in sorted(p for p in gt_root.iterdir() if p.is_dir()):
            drive, date = drive_dir.name, drive_dir.name[:10]
            for camera in cameras:
                gt_dir = drive_dir / "proj_depth" / "groundtruth" / camera
                if not gt_dir.is_dir():
                    continue
                for gt_path in sorted(gt_dir.glob("*.png")):
                    lidar = lidar_root / drive / "proj_depth" / "velodyne_raw" / camera / gt_path.name
                    rgb = self._rgb_path(date, drive, camera, gt_path.stem)
                    if lidar.is_file() and rgb is not None:
                        self.samples.append((rgb, lidar, gt_path))
                    else:
                        skipped += 1
        self.skipped = skipped
        if not self.samples:
            raise DatasetError(
                f"KITTI: no complete sample under {self.root} (split {split!r}): expected "
                "data_depth_annotated/<split>/<drive>/proj_depth/groundtruth/image_0X/*.png with matching "
                "data_depth_velodyne/... LiDAR files and raw/<date>/<drive>/image_0X/data/*.png RGB images"
            )

    def _rgb_path(self, date: str, drive: str, camera: str, stem: str) -> Path | None:
        for base in (self.root / "raw", self.root):
            found = _find_rgb(base / date / drive / camera / "data", stem)
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from jarrn_deploy.model.depth_io import KITTI_DEPTH_SCALE

        rgb_path, lidar_path, gt_path = self.samples[index]
        rgb = _read_rgb(rgb_path)
        gt = _read_depth_png(gt_path, KITTI_DEPTH_SCALE)
        lidar = _read_depth_png(lidar_path, KITTI_DEPTH_SCALE)
        return _item(rgb, gt, gt_path, sparse=lidar)


class DepthFolder(Dataset):
    """Generic pairs ``rgb/<name>.png|.jpg`` + ``depth/<name>.png`` (uint16, value/depth_scale m) or ``.npy`` (m)."""

    def __init__(self, root: str | os.PathLike, depth_scale: float = 1000.0,
                 rgb_dir: str = "rgb", depth_dir: str = "depth") -> None:
        if not (np.isfinite(depth_scale) and depth_scale > 0):
            raise ValueError(f"depth_scale must be a positive number, got {depth_scale!r}")
        self.root = _require_dir(Path(root), "dataset root")
        self.depth_scale = float(depth_scale)
        rgb_root = _require_dir(self.root / rgb_dir, "RGB folder")
        depth_root = _require_dir(self.root / depth_dir, "depth folder")
        self.samples: list[tuple[Path, Path]] = []
        for rgb in sorted(p for p in rgb_root.iterdir() if p.suffix.lower() in RGB_SUFFIXES):
            depth = next((c for c in (depth_root / f"{rgb.stem}.png", depth_root / f"{rgb.stem}.npy") if c.is_file()),
                         None)
            if depth is None:
                raise DatasetError(f"no depth for {rgb}: expected {depth_root / rgb.stem}.png or .npy")
            self.samples.append((rgb, depth))
        if not self.samples:
            raise DatasetError(f"no RGB images ({', '.join(RGB_SUFFIXES)}) in {rgb_root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rgb_path, depth_path = self.samples[index]
        if depth_path.suffix == ".npy":
            depth = _read_npy(depth_path, "depth")
        else:
            depth = _read_depth_png(depth_path, self.depth_scale)
        return _item(_read_rgb(rgb_path), depth, depth_path)


class NyuV2(Dataset):
    """NYUv2: a folder of exported ``rgb/`` + ``depth/`` pairs (see :class:`DepthFolder`) or the labeled ``.mat``."""

    def __init__(self, root: str | os.PathLike, depth_scale: float = 1000.0) -> None:
        self.root = Path(root)
        self._mat = None
        self._folder: DepthFolder | None = None
        if self.root.suffix == ".mat":
            if not self.root.is_file():
                raise DatasetError(f"missing NYUv2 .mat file: {self.root}")
            try:
                import h5py
            except ImportError:
                raise ImportError(
                    "reading the NYUv2 labeled .mat (MATLAB v7.3 / HDF5) needs h5py: pip install h5py "
                    "(or export it to rgb/*.png + depth/*.png and pass the folder)"
                ) from None
            try:
                handle = h5py.File(self.root, "r")
                self._length = int(handle["images"].shape[0])
                if handle["depths"].shape[0] != self._length:
                    raise DatasetError(f"{self.root}: {self._length} images but {handle['depths'].shape[0]} depths")
            except DatasetError:
                raise
            except Exception as exc:
                raise DatasetError(f"cannot read NYUv2 .mat {self.root}: {type(exc).__name__}: {exc}") from None
            handle.close()
            self._mat_path = self.root
        else:
            self._folder = DepthFolder(self.root, depth_scale=depth_scale)
            self._length = len(self._folder)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._folder is not None:
            return self._folder[index]
        if self._mat is None:  # opened lazily, once per (worker) process
            import h5py

            self._mat = h5py.File(self._mat_path, "r")
        rgb = np.asarray(self._mat["images"][index]).transpose(2, 1, 0)  # [3,W,H] -> [H,W,3]
        depth = np.asarray(self._mat["depths"][index], dtype=np.float32).T  # [W,H] -> [H,W]
        return _item(np.ascontiguousarray(rgb, dtype=np.uint8), depth, f"{self._mat_path}[{index}]")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mat"] = None  # h5py handles cannot be pickled into DataLoader workers
        return state


class Diode(Dataset):
    """DIODE: ``<name>.png`` with ``<name>_depth.npy`` (metres) and ``<name>_depth_mask.npy`` beside it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = _require_dir(Path(root), "DIODE root")
        self.samples = sorted(p for p in self.root.rglob("*.png") if not p.name.startswith("."))
        if not self.samples:
            raise DatasetError(f"DIODE: no <name>.png images under {self.root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rgb_path = self.samples[index]
        depth_path = rgb_path.with_name(f"{rgb_path.stem}_depth.npy")
        mask_path = rgb_path.with_name(f"{rgb_path.stem}_depth_mask.npy")
        depth = _read_npy(depth_path, "depth")
        mask = _read_npy(mask_path, "depth mask")
        if mask.shape != depth.shape:
            raise DatasetError(f"{mask_path}: mask is {mask.shape}, depth is {depth.shape}")
        depth = np.where(mask > 0, depth, 0.0)
        return _item(_read_rgb(rgb_path), depth, depth_path)
