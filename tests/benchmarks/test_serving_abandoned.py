"""The abandoned-burst benchmark: fresh servers, clients that leave, a fresh request timed against its solo time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason='needs the serve extra: pip install -e ".[serve]"')

from jarrn_deploy.benchmarks.serving_abandoned import (  # noqa: E402
    BurstConfig,
    ServeProcess,
    main,
    run_benchmark,
    write_report,
)
from jarrn_deploy.errors import UnavailableError  # noqa: E402


@pytest.mark.parametrize(("argv", "flag"), [
    (["--spare-instances", "one"], "--spare-instances"),
    (["--spare-instances", "-1"], "--spare-instances"),
    (["--runs", "0"], "--runs"),
    (["--backend", "nope"], "--backend"),
])
def test_bad_settings_exit_in_one_line_naming_the_flag(argv: list[str], flag: str, capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusal of a value it cannot convert
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert flag in err[-1] and (err[-1].startswith("error: ") or "error: argument" in err[-1])


def test_a_burst_whose_clients_left_is_reported_per_run_protocol_and_spare_count(tmp_path: Path) -> None:
    config = BurstConfig(runs=1, spares=(1,), clients=3, big=256, small=32, give_up_after_s=0.3)
    report = run_benchmark(config, log=lambda message: None)
    paths = write_report(report, tmp_path)
    assert [p.name for p in paths] == ["abandoned.json", "abandoned.md", "abandoned.png"]
    assert [(r["protocol"], r["spare_instances"]) for r in report["rows"]] == [("http", 1), ("grpc", 1)]
    for row in report["rows"]:
        assert row["answered"] + row["left"] == 3, row  # how many left depends on the machine's speed
        assert row["fresh_ms"] > 0 and row["ratio"] == pytest.approx(row["fresh_ms"] / row["solo_ms"])
    assert set(report["summary"]) == {"http spare 1", "grpc spare 1"}
    assert "+1 spare model process" in report["servers"]["1"]
    assert json.loads(paths[0].read_text())["schema"] == "jarrn-serving-abandoned/1"
    assert "| grpc spare 1 | 1 |" in paths[1].read_text()


def test_a_server_that_does_not_start_is_reported_in_one_line_with_its_error() -> None:
    with pytest.raises(UnavailableError, match=r"did not start \(exit 2\): error: --max-pixels: expected a positive"):
        with ServeProcess(["--max-pixels", "0"]):
            pytest.fail("jarrn serve started with --max-pixels 0")
