"""Validation bounds come from the precision registry: defaults, one command-line option per tolerance, the report's
wording and the JSON keys the reports have always written."""

from __future__ import annotations

from jarrn_deploy.export.precisions import PRECISION_SPECS
from jarrn_deploy.export.validate import Bounds, _parser, bounds_from_args


def test_default_bounds_are_the_registry_tolerances() -> None:
    bounds = Bounds()
    assert bounds.max_abs_m == {n: s.max_abs_m for n, s in PRECISION_SPECS.items() if s.max_abs_m is not None}
    assert bounds.rmse_rel == {n: s.rmse_rel for n, s in PRECISION_SPECS.items() if s.rmse_rel is not None}
    # the keys and values the JSON reports have always written
    assert {k: bounds.to_dict()[k] for k in ("fp32_max_abs_m", "fp16_rmse_rel", "int8_rmse_rel")} == \
        {"fp32_max_abs_m": 1e-3, "fp16_rmse_rel": 0.02, "int8_rmse_rel": 0.05}


def test_each_tolerance_has_its_option_and_an_option_changes_only_its_bound() -> None:
    assert bounds_from_args(_parser().parse_args(["g.onnx"])) == Bounds()
    bounds = bounds_from_args(_parser().parse_args(["g.onnx", "--int8-rmse-rel", "0.1", "--fp32-max-abs", "2e-3"]))
    assert bounds.to_dict() == {**Bounds().to_dict(), "fp32_max_abs_m": 2e-3, "int8_rmse_rel": 0.1}


def test_the_report_states_each_precision_s_bound_and_none_for_an_unknown_one() -> None:
    bounds = Bounds()
    assert bounds.text("fp32") == "max abs <= 0.001 m"
    assert bounds.text("int8") == "RMSE <= +5% per frame"
    assert bounds.text("unknown") == "not checked"
