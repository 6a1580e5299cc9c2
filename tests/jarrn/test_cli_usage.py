"""Every verb's own help names it as users call it: ``usage: jarrn <verb>``, whichever form started it."""

from __future__ import annotations

import importlib

import pytest

from jarrn_deploy.cli import VERBS


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_of_every_verb_says_jarrn_and_the_verb(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(VERBS[verb][0])
    with pytest.raises(SystemExit) as finished:
        module.main(["--help"])
    assert finished.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: jarrn {verb} ")
