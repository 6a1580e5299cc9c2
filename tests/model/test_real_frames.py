
import numpy as np
import pytest

from jarrn_deploy.model.baselines import linear_interpolation
from jarrn_deploy.model.metrics import depth_metrics
from jarrn_deploy.model.real_frames import DEFAULT_ROOT, EvalCase, RealFrame, evaluation_cases, load_real_frames

from tests.support import REPO as REPO_ROOT


@pytest.fixture(scope="module")
def frames() -> list[RealFrame]:
    return load_real_frames()


@pytest.fixture(scope="module")
def cases(frames) -> dict[str, EvalCase]:
    return {c.name: c for c in evaluation_cases(frames, seed=0)}


def test_default_root_is_repo_data_real():
    assert DEFAULT_ROOT == REPO_ROOT / "data" / "real"


def test_bundled_data_ships_readme_and_apache_licence():
    readme = (DEFAULT_ROOT / "README.md").read_text()
    assert "CC BY-NC-SA 3.0" in readme and "CC BY 4.0" in readme and "Apache" in readme
    assert "Apache License" in (DEFAULT_ROOT / "kinect2_lounge" / "LICENSE-Apache-2.0.txt").read_text()


def test_load_real_frames_gives_four_named_frames_in_order(frames):
    assert [f.name for f in frames] == ["kitti_02", "kitti_03", "tum_desk", "kinect2_lounge"]


@pytest.mark.parametrize(
    "index, shape", [(0, (375, 1242)), (1, (375, 1242)), (2, (480, 640)), (3, (1080, 1440))]
)
def test_real_frames_have_matching_rgb_and_depth_shapes(frames, index, shape):
    f = frames[index]
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == shape + (3,)
    assert f.gt.dtype == np.float32 and f.gt.shape == shape
    if f.sparse is not None:
        assert f.sparse.dtype == np.float32 and f.sparse.shape == shape


def test_kitti_frames_have_real_lidar_and_semi_dense_gt(frames):
    for f in frames[:2]:
        assert f.sparse is not None
        assert 0.035 < (f.sparse > 0).mean() < 0.05
        assert 0.15 < (f.gt > 0).mean() < 0.25
        assert 1.0 < f.gt[f.gt > 0].min() and f.gt.max() < 90.0


def test_kitti_intrinsics_come_from_calib_file(frames):
    assert frames[0].intrinsics == pytest.approx((721.5377, 721.5377, 609.5593, 172.854))
    assert frames[1].intrinsics == pytest.approx((721.5377, 721.5377, 609.5593, 172.854))


def test_indoor_frames_have_no_sparse_input_and_metric_gt(frames):
    tum, kinect = frames[2], frames[3]
    assert tum.sparse is None and kinect.sparse is None
    assert tum.intrinsics == (517.3, 516.5, 318.6, 255.3)
    assert kinect.intrinsics is None
    # TUM is stored /5000 and Kinect v2 in millimetres: both must come out as room-scale metres.
    for f in (tum, kinect):
        valid = f.gt[f.gt > 0]
        assert 1.0 < float(np.median(valid)) < 5.0 and valid.max() < 15.0


def test_load_real_frames_missing_root_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_real_frames(tmp_path / "nowhere")


def test_evaluation_cases_names(cases):
    assert list(cases) == [
        "kitti_02",
        "kitti_03",
        "tum_desk@500",
        "tum_desk@100",
        "kinect2_lounge@500",
        "kinect2_lounge@100",
    ]


def test_evaluation_cases_kitti_uses_real_lidar(frames, cases):
    assert cases["kitti_02"].sparse is frames[0].sparse
    assert cases["kitti_03"].gt is frames[1].gt


@pytest.mark.parametrize("name, count", [("tum_desk@500", 500), ("tum_desk@100", 100), ("kinect2_lounge@100", 100)])
def test_evaluation_cases_indoor_sample_that_many_gt_points(cases, name, count):
    c = cases[name]
    kept = c.sparse > 0
    assert int(kept.sum()) == count
    np.testing.assert_array_equal(c.sparse[kept], c.gt[kept])


def test_evaluation_cases_are_reproducible_and_depend_on_seed(frames):
    indoor = frames[2:3]
    a = evaluation_cases(indoor, seed=0)
    b = evaluation_cases(indoor, seed=0)
    c = evaluation_cases(indoor, seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.sparse, y.sparse)
    assert not np.array_equal(a[0].sparse, c[0].sparse)


def test_evaluation_cases_of_a_frame_do_not_depend_on_other_frames(frames, cases):
    alone = evaluation_cases([frames[3]], seed=0)
    np.testing.assert_array_equal(alone[0].sparse, cases["kinect2_lounge@500"].sparse)


# Published classical-baseline numbers (linear interpolation RMSE in metres).
@pytest.mark.parametrize(
    "name, rmse",
    [("kitti_02", 1.353), ("kitti_03", 1.451), ("kinect2_lounge@500", 0.685), ("kinect2_lounge@100", 0.689)],
)
def test_linear_baseline_reproduces_reference_rmse(cases, name, rmse):
    c = cases[name]
    assert depth_metrics(linear_interpolation(c.sparse), c.gt).rmse == pytest.approx(rmse, abs=0.0015)
