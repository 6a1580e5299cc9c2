from __future__ import annotations

import pytest
import torch

from jarrn_deploy.model.losses import gradient_loss, jarrn_loss, standardise


def _scene(batch: int = 2, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch, 1, size, size, generator=gen) * 0.5 + 0.2
    gt[:, :, :, size // 2:] += 0.3  # a depth edge
    valid = (torch.rand(batch, 1, size, size, generator=gen) > 0.1).float()
    sparse_mask = (torch.rand(batch, 1, size, size, generator=gen) > 0.9).float() * valid
    return gt * valid, valid, sparse_mask


def test_perfect_prediction_gives_zero_loss() -> None:
    gt, valid, sparse = _scene()
    terms = jarrn_loss(gt.clone(), gt, valid, sparse, dense_absolute_weight=1.0)
    for value in terms:
        assert float(value) == pytest.approx(0.0, abs=1e-5)


def test_standardise_is_invariant_to_scale_and_shift() -> None:
    gt, valid, _ = _scene()
    a = standardise(gt, valid)
    b = standardise(gt * 3.7 + 1.25, valid)
    assert torch.allclose(a * valid, b * valid, atol=1e-4)


def test_relative_and_gradient_terms_ignore_scale_and_shift_but_absolute_does_not() -> None:
    gt, valid, sparse = _scene()
    terms = jarrn_loss(gt * 2.0 + 0.5, gt, valid, sparse, dense_absolute_weight=1.0)
    assert float(terms.relative) == pytest.approx(0.0, abs=1e-4)
    assert float(terms.gradient) == pytest.approx(0.0, abs=1e-4)
    assert float(terms.absolute) > 0.5
    assert float(terms.dense_absolute) > 0.5
    assert float(terms.total) == pytest.approx(float(terms.absolute + terms.relative + 0.5 * terms.gradient
                                                     + terms.dense_absolute), rel=1e-5)


def test_gradient_term_responds_to_a_missing_edge() -> None:
    size = 32
    valid = torch.ones(1, 1, size, size)
    gt = torch.ones(1, 1, size, size)
    gt[..., size // 2:] = 2.0
    flat = torch.ones_like(gt) * 1.5
    ramp = torch.linspace(1.0, 2.0, size).expand(1, 1, size, size).contiguous()
    residual_flat = standardise(flat + 1e-3 * torch.rand_like(flat), valid) - standardise(gt, valid)
    residual_ramp = standardise(ramp, valid) - standardise(gt, valid)
    residual_exact = standardise(gt, valid) - standardise(gt, valid)
    assert float(gradient_loss(residual_exact, valid)) == pytest.approx(0.0, abs=1e-6)
    assert float(gradient_loss(residual_ramp, valid)) > 0.05
    assert float(gradient_loss(residual_flat, valid)) > 0.05


def test_absolute_term_only_counts_pixels_with_sparse_input() -> None:
    gt, valid, sparse = _scene()
    pred = gt.clone()
    pred[sparse == 0] += 1.0  # wrong everywhere except at the sparse pixels
    assert float(jarrn_loss(pred, gt, valid, sparse).absolute) == pytest.approx(0.0, abs=1e-6)
    pred = gt.clone()
    pred[sparse > 0] += 0.25
    assert float(jarrn_loss(pred, gt, valid, sparse).absolute) == pytest.approx(0.25, abs=1e-4)


def test_images_without_sparse_input_do_not_dilute_the_absolute_term() -> None:
    gt, valid, sparse = _scene()
    sparse[1] = 0.0  # second image in relative mode
    pred = gt.clone()
    pred[0][sparse[0] > 0] += 0.5
    assert float(jarrn_loss(pred, gt, valid, sparse).absolute) == pytest.approx(0.5, abs=1e-4)


def test_invalid_gt_pixels_are_ignored() -> None:
    gt, valid, sparse = _scene()
    pred = gt.clone()
    pred[valid == 0] = 100.0
    terms = jarrn_loss(pred, gt, valid, sparse, dense_absolute_weight=1.0)
    assert float(terms.total) == pytest.approx(0.0, abs=1e-4)


def test_loss_is_differentiable_and_finite_without_any_valid_pixel() -> None:
    pred = torch.rand(2, 1, 16, 16, requires_grad=True)
    zeros = torch.zeros(2, 1, 16, 16)
    terms = jarrn_loss(pred, zeros, zeros, zeros)
    terms.total.backward()
    assert torch.isfinite(terms.total)
    assert torch.isfinite(pred.grad).all()


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="share one shape"):
        jarrn_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), torch.zeros(1, 1, 8, 9), torch.zeros(1, 1, 8, 9))
