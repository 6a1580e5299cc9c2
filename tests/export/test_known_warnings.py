"""The known third-party warnings: one list, hidden in the commands and in the test run alike."""

from __future__ import annotations

import warnings

import pytest

from jarrn_deploy.export.known_warnings import KNOWN_WARNINGS, quiet_known_warnings


def test_pytest_config_hides_exactly_the_known_warnings(pytestconfig: pytest.Config) -> None:
    configured = [line for line in pytestconfig.getini("filterwarnings") if line.startswith("ignore:")]
    assert configured == [f"ignore:{message}:{category.__name__}" for message, category in KNOWN_WARNINGS]


@pytest.mark.parametrize(("message", "category"), KNOWN_WARNINGS)
def test_known_warning_hidden_unless_verbose_and_others_still_shown(message: str, category: type[Warning]) -> None:
    text = message.replace("\\", "") + " for this op."
    for verbose, expected in ((False, ["another warning"]), (True, [text, "another warning"])):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with quiet_known_warnings(verbose):
                warnings.warn(text, category)
                warnings.warn("another warning", category)
        assert [str(w.message) for w in seen] == expected
