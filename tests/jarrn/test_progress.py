from __future__ import annotations

import re

from jarrn_deploy.progress import progress_logger


def test_progress_lines_go_to_stderr_with_the_tool_and_elapsed_seconds(capsys) -> None:
    progress_logger("bench", elapsed=True)("exporting")
    progress_logger("ort-study")("profiling")
    captured = capsys.readouterr()
    assert captured.out == ""
    first, second = captured.err.splitlines()
    assert re.fullmatch(r"\[bench +\d+\.\ds\] exporting", first)
    assert second == "[ort-study] profiling"
