"""``review.reviewers``: the Airflow users who may answer a held version's review task."""

from __future__ import annotations

import pytest
import yaml
from model_factory.settings import FactorySettings
from model_factory.spec import SpecError, load_spec

from tests.conftest import REPO


def _load(tmp_path, review):
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw["review"] = review
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path, FactorySettings.from_env())


def test_reviewers_are_kept_in_order_and_default_to_nobody_named(tmp_path):
    assert _load(tmp_path, {"reviewers": ["alice", "bob@example.com"]}).review.reviewers == [
        "alice",
        "bob@example.com",
    ]
    assert _load(tmp_path, {}).review.reviewers == []


@pytest.mark.parametrize(
    ("reviewers", "words"),
    [
        (["alice", ""], "items [1]"),
        ([" alice"], "surrounding spaces"),
        (["alice", "alice"], "listed twice: ['alice']"),
        ("alice", "valid list"),
        ([3], "valid string"),
    ],
)
def test_a_bad_reviewer_list_is_refused_naming_the_field(tmp_path, reviewers, words):
    with pytest.raises(SpecError, match=r"review\.reviewers") as caught:
        _load(tmp_path, {"reviewers": reviewers})
    assert words in str(caught.value)
