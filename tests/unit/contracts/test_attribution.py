"""Who asked and why: one checked value, built once by the entry point and passed down as is."""

from __future__ import annotations

import pytest
from model_factory.analyzer.classify import exception_kind
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
