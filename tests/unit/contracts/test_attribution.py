"""Who asked and why: one checked value, built once by the entry point and passed down as is."""

from __future__ import annotations

import pytest
from model_factory.analyzer.classify import exception_kind
from model_factory.cli.main import main
from model_factory.contracts import Attribution
from model_factory.errors import ErrorKind, UnattributedError


def test_an_attribution_needs_an_actor_and_a_reason_as_text():
    assert Attribution("ana via cli", "live AUC holds") == Attribution("ana via cli", "live AUC holds")
    with pytest.raises(UnattributedError, match="needs a reason"):
        Attribution("ana", " ")
    with pytest.raises(UnattributedError, match="needs an actor"):
        Attribution("", "ship it")
    with pytest.raises(UnattributedError, match="reason must be text, not int"):
        Attribution("ana", 42)  # type: ignore[arg-type] - an Airflow conf is JSON: anything comes in
    with pytest.raises(AttributeError):
        Attribution("ana", "why").reason = "another"  # type: ignore[misc] - frozen: recorded as built


def test_the_analyzer_counts_a_missing_reason_by_its_kind():
    assert exception_kind(UnattributedError("any words"), "promote")[0] == ErrorKind.UNATTRIBUTED.value


@pytest.mark.parametrize(
    "command",
    [
        ["promote", "churn", "--reason", " "],
        ["canary", "churn", "2", "--reason", ""],
        ["approve", "churn", "2", "--reason", " "],
        ["override-checklist", "churn", "2", "--reason", ""],
        ["shadow", "stop", "churn", "--reason", " "],
    ],
)
def test_the_cli_refuses_a_request_without_a_reason_before_it_reads_anything(command, monkeypatch, capsys):
    from model_factory.io import tracking

    def unreachable(*args, **kwargs):
        raise AssertionError("the registry was read for a request that is refused")

    monkeypatch.setattr(tracking, "connect", unreachable)
    assert main(command) == 1
    assert "refused: the request needs a reason (why)" in capsys.readouterr().err
