from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jarrn_deploy.model.datasets import DatasetError, DepthFolder, Diode, KittiDepthCompletion, NyuV2

H, W = 12, 20


def _rgb(path: Path, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def _depth_png(path: Path, metres: np.ndarray, scale: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(metres * scale).astype(np.uint16)).save(path)


def _depth(seed: int = 0, holes: bool = True) -> np.ndarray:
    d = np.random.default_rng(seed).uniform(0.5, 10.0, size=(H, W)).astype(np.float32)
    if holes:
        d[0, :5] = 0.0
    return d


def _check_item(item: dict, with_sparse: bool = False) -> None:
    assert item["rgb"].shape == (3, H, W) and item["rgb"].dtype == torch.float32
    assert 0.0 <= float(item["rgb"].min()) and float(item["rgb"].max()) <= 1.0
    assert item["depth"].shape == (1, H, W) and item["depth"].dtype == torch.float32
    assert ("sparse" in item) == with_sparse


def test_depth_folder_png_and_npy(tmp_path: Path) -> None:
    rgb = _rgb(tmp_path / "rgb" / "a.png")
    _rgb(tmp_path / "rgb" / "b.jpg", seed=1)
    depth = _depth()
    _depth_png(tmp_path / "depth" / "a.png", depth, 1000.0)
    np.save(tmp_path / "depth" / "b.npy", _depth(1, holes=False))
    ds = DepthFolder(tmp_path, depth_scale=1000.0)
    assert len(ds) == 2
    item = ds[0]
    _check_item(item)
    np.testing.assert_allclose(item["depth"][0].numpy(), np.round(depth * 1000) / 1000, atol=1e-6)
    np.testing.assert_allclose(item["rgb"].permute(1, 2, 0).numpy() * 255, rgb, atol=1e-3)
    assert float(item["depth"][0, 0, 0]) == 0.0
    _check_item(ds[1])


def test_depth_folder_missing_depth_names_the_file(tmp_path: Path) -> None:
    _rgb(tmp_path / "rgb" / "lonely.png")
    (tmp_path / "depth").mkdir()
    with pytest.raises(DatasetError, match="lonely"):
        DepthFolder(tmp_path)


def test_depth_folder_corrupt_depth_names_the_file(tmp_path: Path) -> None:
    _rgb(tmp_path / "rgb" / "x.png")
    (tmp_path / "depth").mkdir()
    (tmp_path / "depth" / "x.png").write_bytes(b"not a png")
    ds = DepthFolder(tmp_path)
    with pytest.raises(DatasetError, match=r"depth[/\\]x\.png"):
        ds[0]


def test_depth_folder_size_mismatch(tmp_path: Path) -> None:
    _rgb(tmp_path / "rgb" / "x.png")
    (tmp_path / "depth").mkdir()
    np.save(tmp_path / "depth" / "x.npy", np.ones((H + 1, W)))
    with pytest.raises(DatasetError, match="x.npy"):
        DepthFolder(tmp_path)[0]


def test_nyu_exported_folder(tmp_path: Path) -> None:
    _rgb(tmp_path / "rgb" / "0001.png")
    _depth_png(tmp_path / "depth" / "0001.png", _depth(), 1000.0)
    ds = NyuV2(tmp_path)
    assert len(ds) == 1
    _check_item(ds[0])


def test_nyu_mat_needs_h5py_or_reads_it(tmp_path: Path) -> None:
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    try:
        import h5py
    except ImportError:
        mat.write_bytes(b"placeholder")
        with pytest.raises(ImportError, match="pip install h5py"):
            NyuV2(mat)
        return
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 3, W, H), dtype=np.uint8)
    depth = np.random.default_rng(1).uniform(0.5, 9.0, size=(2, W, H)).astype(np.float32)
    with h5py.File(mat, "w") as f:
        f["images"] = rgb
        f["depths"] = depth
    ds = NyuV2(mat)
    assert len(ds) == 2
    item = ds[1]
    _check_item(item)
    np.testing.assert_allclose(item["depth"][0].numpy(), depth[1].T, rtol=1e-6)


def test_nyu_missing_mat(tmp_path: Path) -> None:
    with pytest.raises((DatasetError, ImportError)):
        NyuV2(tmp_path / "absent.mat")


def test_diode(tmp_path: Path) -> None:
    scan = tmp_path / "val" / "indoors" / "scene_00019" / "scan_00183"
    _rgb(scan / "00019_00183_indoors_000_010.png")
    depth = _depth(holes=False)
    mask = np.ones((H, W), dtype=bool)
    mask[2, 3] = False
    np.save(scan / "00019_00183_indoors_000_010_depth.npy", depth[..., None])
    np.save(scan / "00019_00183_indoors_000_010_depth_mask.npy", mask)
    ds = Diode(tmp_path)
    assert len(ds) == 1
    item = ds[0]
    _check_item(item)
    assert float(item["depth"][0, 2, 3]) == 0.0
    assert float(item["depth"][0, 0, 0]) == pytest.approx(float(depth[0, 0]))


def test_diode_missing_mask_names_the_file(tmp_path: Path) -> None:
    _rgb(tmp_path / "a.png")
    np.save(tmp_path / "a_depth.npy", _depth())
    with pytest.raises(DatasetError, match="a_depth_mask.npy"):
        Diode(tmp_path)[0]


def _kitti_tree(root: Path, rgb_under_raw: bool = True) -> tuple[np.ndarray, np.ndarray]:
    drive = "2011_09_26_drive_0001_sync"
    gt, lidar = _depth(0), _depth(1)
    lidar[np.random.default_rng(2).random((H, W)) > 0.1] = 0.0
    for camera in ("image_02", "image_03"):
        _depth_png(root / "data_depth_annotated" / "train" / drive / "proj_depth" / "groundtruth" / camera
                   / "0000000005.png", gt, 256.0)
        _depth_png(root / "data_depth_velodyne" / "train" / drive / "proj_depth" / "velodyne_raw" / camera
                   / "0000000005.png", lidar, 256.0)
        base = root / "raw" if rgb_under_raw else root
        _rgb(base / "2011_09_26" / drive / camera / "data" / "0000000005.png")
    return gt, lidar


def test_kitti(tmp_path: Path) -> None:
    gt, lidar = _kitti_tree(tmp_path)
    ds = KittiDepthCompletion(tmp_path)
    assert len(ds) == 2
    item = ds[0]
    _check_item(item, with_sparse=True)
    np.testing.assert_allclose(item["depth"][0].numpy(), np.round(gt * 256) / 256, atol=1e-6)
    np.testing.assert_allclose(item["sparse"][0].numpy(), np.round(lidar * 256) / 256, atol=1e-6)


def test_kitti_rgb_directly_under_root(tmp_path: Path) -> None:
    _kitti_tree(tmp_path, rgb_under_raw=False)
    assert len(KittiDepthCompletion(tmp_path)) == 2


def test_kitti_missing_tree_and_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="data_depth_annotated"):
        KittiDepthCompletion(tmp_path)
    _kitti_tree(tmp_path)
    lidar = next((tmp_path / "data_depth_velodyne").rglob("*.png"))
    lidar.write_bytes(b"\x89PNG broken")
    ds = KittiDepthCompletion(tmp_path)
    bad = [i for i, s in enumerate(ds.samples) if s[1] == lidar][0]
    with pytest.raises(DatasetError, match=lidar.name):
        ds[bad]


def test_adapters_feed_the_training_pipeline(tmp_path: Path) -> None:
    from jarrn_deploy.model.training.samples import TrainingSamples

    _kitti_tree(tmp_path)
    samples = TrainingSamples(KittiDepthCompletion(tmp_path), (64, 64), mix="official", normalisation="max",
                              seed=0, real_sparse_probability=1.0)
    item = samples[0]
    assert item["rgb"].shape == (3, 64, 64)
    assert item["sparse"].shape == item["gt"].shape == item["mask"].shape == (1, 64, 64)
    assert float(item["mask"].sum()) > 0


class _Unreadable(torch.utils.data.Dataset):
    def __init__(self, error: type[DatasetError]) -> None:
        self.error = error

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise self.error(f"cannot read depth PNG /data/{index}.png: truncated")


class _FolderError(DatasetError):
    """A subclass: its own name is in the worker's traceback, not DatasetError's."""


@pytest.mark.parametrize("error", [DatasetError, _FolderError])
def test_error_from_a_loader_worker_keeps_its_type_and_one_line_message(error: type[DatasetError]) -> None:
    loader = torch.utils.data.DataLoader(_Unreadable(error), num_workers=1)
    with pytest.raises(DatasetError) as caught:
        next(iter(loader))
    assert "\n" in str(caught.value)  # the worker's traceback, as torch re-raises it
    cleaned = DatasetError.from_loader(caught.value)
    assert type(cleaned) is error and str(cleaned) == "cannot read depth PNG /data/0.png: truncated"
    same = error("one line")
    assert DatasetError.from_loader(same) is same
