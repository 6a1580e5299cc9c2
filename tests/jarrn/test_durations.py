"""jarrn/durations.py: measured times written as a person reads them, single figures and quickest-to-slowest spans."""

from __future__ import annotations

from jarrn_deploy.durations import about, total


def test_single_times_round_to_seconds_then_minutes() -> None:
    assert (about(25), about(89.4), about(242.2), about(38900)) == ("25 s", "89 s", "4 min", "11 h")


def test_spans_keep_both_ends_and_widen_minutes_to_half_minutes() -> None:
    assert about((24.1, 85.1)) == "24 to 85 s"
    assert about((39.7, 114.1)) == "40 s to 2 min"
    assert about((63.8, 199.2)) == "1 to 3.5 min"
    assert about((216.5, 216.5)) == "4 min"


def test_steps_in_a_row_add_their_quickest_and_their_slowest() -> None:
    assert total((24.1, 85.1), (39.7, 114.1)) == (24.1 + 39.7, 85.1 + 114.1)
