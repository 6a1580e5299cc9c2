import dataclasses
import math

import numpy as np
import pytest

from jarrn_deploy.model.metrics import PRED_FLOOR_FOR_INVERSE_M, DepthMetrics, depth_metrics

# Hand-computed case. Valid gt pixels: 1, 2, 4, 2 (the 0 is ignored).
#   errors pred - gt:         0.5, 0, -2, 1.6
#   inverse errors (1/km):    1000*(1/1.5 - 1) = -1000/3, 0, 1000*(1/2 - 1/4) = 250, 1000*(1/3.6 - 1/2) = -2000/9
#   ratios max(p/g, g/p):     1.5, 1, 2, 1.8
HAND_GT = np.array([[1.0, 2.0, 4.0, 2.0, 0.0]], np.float32)
HAND_PRED = np.array([[1.5, 2.0, 2.0, 3.6, 7.0]], np.float32)


def test_metrics_match_hand_computed_values():
    m = depth_metrics(HAND_PRED, HAND_GT)
    assert m.count == 4
    assert m.rmse == pytest.approx(math.sqrt((0.25 + 0 + 4 + 2.56) / 4), rel=1e-6)
    assert m.mae == pytest.approx((0.5 + 0 + 2 + 1.6) / 4, rel=1e-6)
    assert m.absrel == pytest.approx((0.5 + 0 + 0.5 + 0.8) / 4, rel=1e-6)
    inv = [-1000 / 3, 0.0, 250.0, -2000 / 9]
    assert m.irmse == pytest.approx(math.sqrt(sum(v * v for v in inv) / 4), rel=1e-5)
    assert m.imae == pytest.approx(sum(abs(v) for v in inv) / 4, rel=1e-5)
    assert (m.delta1, m.delta2, m.delta3) == (0.25, 0.5, 0.75)


def test_metrics_perfect_prediction_is_zero_error():
    gt = np.random.default_rng(0).uniform(0.5, 80.0, (20, 30)).astype(np.float32)
    m = depth_metrics(gt.copy(), gt)
    assert (m.rmse, m.mae, m.absrel, m.irmse, m.imae) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert (m.delta1, m.delta2, m.delta3) == (1.0, 1.0, 1.0)
    assert m.count == gt.size


def test_metrics_ignore_gt_at_or_below_min_depth():
    gt = np.array([[0.0, 1e-4, 2.0, 0.5]], np.float32)
    pred = np.array([[9.0, 9.0, 3.0, 9.0]], np.float32)
    m = depth_metrics(pred, gt, min_depth=1.0)
    assert m.count == 1
    assert m.rmse == pytest.approx(1.0)


def test_metrics_max_depth_excludes_far_gt():
    gt = np.array([[2.0, 100.0]], np.float32)
    pred = np.array([[3.0, 0.0]], np.float32)
    m = depth_metrics(pred, gt, max_depth=80.0)
    assert m.count == 1
    assert m.mae == pytest.approx(1.0)


def test_metrics_ignore_non_finite_gt():
    gt = np.array([[2.0, np.nan, np.inf]], np.float32)
    pred = np.array([[2.5, 1.0, 1.0]], np.float32)
    m = depth_metrics(pred, gt)
    assert m.count == 1
    assert m.mae == pytest.approx(0.5)


def test_metrics_non_positive_prediction_gives_finite_inverse_errors():
    gt = np.array([[2.0, 4.0]], np.float32)
    pred = np.array([[0.0, -3.0]], np.float32)
    m = depth_metrics(pred, gt)
    assert all(math.isfinite(v) for v in m.as_dict().values())
    expected_imae = ((1 / PRED_FLOOR_FOR_INVERSE_M - 1 / 2) + (1 / PRED_FLOOR_FOR_INVERSE_M - 1 / 4)) * 1000 / 2
    assert m.imae == pytest.approx(expected_imae, rel=1e-6)
    assert m.delta3 == 0.0
    # The linear errors use the raw prediction, not the clamped one.
    assert m.mae == pytest.approx((2.0 + 7.0) / 2)


def test_metrics_batch_pools_all_pixels():
    rng = np.random.default_rng(1)
    gt = rng.uniform(1.0, 10.0, (3, 8, 9)).astype(np.float32)
    gt[0, :4] = 0.0
    pred = gt + rng.normal(0.0, 0.3, gt.shape).astype(np.float32)
    batch = depth_metrics(pred, gt)
    flat = depth_metrics(pred.reshape(1, -1), gt.reshape(1, -1))
    assert batch == flat
    assert batch.count == int((gt > 0).sum())


def test_metrics_reject_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        depth_metrics(np.ones((4, 5)), np.ones((5, 4)))


def test_metrics_reject_no_valid_pixels():
    with pytest.raises(ValueError, match="no valid pixels"):
        depth_metrics(np.ones((4, 5)), np.zeros((4, 5)))


def test_metrics_reject_nan_prediction_on_valid_pixel():
    pred = np.array([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="pred must be finite"):
        depth_metrics(pred, np.ones((1, 2)))


def test_metrics_reject_1d_input():
    with pytest.raises(ValueError, match="HxW or BxHxW"):
        depth_metrics(np.ones(5), np.ones(5))


def test_metrics_reject_max_depth_not_above_min_depth():
    with pytest.raises(ValueError, match="max_depth"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 2)), min_depth=1.0, max_depth=0.5)


def test_metrics_as_dict_lists_all_fields_in_order():
    d = depth_metrics(HAND_PRED, HAND_GT).as_dict()
    assert list(d) == ["rmse", "mae", "absrel", "irmse", "imae", "delta1", "delta2", "delta3", "count"]
    assert d["count"] == 4 and isinstance(d["count"], int)


def test_metrics_result_is_frozen():
    m = depth_metrics(HAND_PRED, HAND_GT)
    assert isinstance(m, DepthMetrics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.rmse = 0.0  # type: ignore[misc]
