"""python -m jarrn_deploy.model.evaluate: the real-frame table of the model against nearest and linear interpolation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jarrn_deploy.model import evaluate
from jarrn_deploy.model.checkpoint import save_model
from jarrn_deploy.model.network import Jarrn, JarrnConfig
from jarrn_deploy.model.training.network_setup import start_as_fill
from tests.support import TINY_WIDTHS


@pytest.fixture(scope="module")
def fill_checkpoint(tmp_path_factory) -> Path:
    """An untrained network set to return its push-pull fill: its row must equal the fill's row."""
    torch.manual_seed(0)
    config = JarrnConfig(TINY_WIDTHS, depth_normalisation="minmax", sparse_fill="pushpull")
    return save_model(start_as_fill(Jarrn(config)), tmp_path_factory.mktemp("ckpt") / "fill.safetensors")


def test_report_has_every_case_and_method_and_the_fill_row_matches_an_identity_network(fill_checkpoint, tmp_path):
    out = tmp_path / "report"
    assert evaluate.main(["--model", str(fill_checkpoint), "--out", str(out), "--no-panels", "--threads", "2"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    names = [c["name"] for c in report["cases"]]
    assert names == ["kitti_02", "kitti_03", "tum_desk@500", "tum_desk@100", "kinect2_lounge@500",
                     "kinect2_lounge@100"]
    for case in report["cases"]:
        metrics = case["metrics"]
        assert set(metrics) == {"model", "pushpull fill", "nearest", "linear"}
        assert metrics["model"]["rmse"] == pytest.approx(metrics["pushpull fill"]["rmse"], rel=0.02)
        assert case["ratio_to_linear"] == pytest.approx(metrics["model"]["rmse"] / metrics["linear"]["rmse"])
    # the published linear-interpolation baselines of the KITTI and Kinect v2 frames (seed 0)
    linear = {c["name"]: c["metrics"]["linear"]["rmse"] for c in report["cases"]}
    assert linear["kitti_02"] == pytest.approx(1.353, abs=1e-3)
    assert linear["kinect2_lounge@500"] == pytest.approx(0.685, abs=1e-3)
    table = (out / "evaluation.md").read_text()
    assert "| tum_desk@100 |" in table and "linear RMSE" in table and "python -m jarrn_deploy.model.evaluate" in table
    assert (out / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*"))


def test_panel_is_a_png(fill_checkpoint):
    from jarrn_deploy.model.real_frames import evaluation_cases, load_real_frames

    case = evaluation_cases(load_real_frames(), seed=0)[2]
    assert evaluate.panel(case, case.gt, case.gt)[:4] == b"\x89PNG"


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert evaluate.main(["--model", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path)]) == 3  # InputError
    assert "--model" in capsys.readouterr().err
