"""Approve and reject racing on one held version, in real concurrent processes: exactly one wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from model_factory.contracts import Attribution
from model_factory.io import claims
from model_factory.io.tracking import connect
from model_factory.review import approval
from model_factory.settings import FactorySettings

from tests.unit.review.test_registry import retrain, spec_for

PACKAGE_ROOT = Path(approval.__file__).resolve().parents[2]
"""Where the code under test is imported from: the reviewers import the same."""

# Each reviewer imports, connects, says it is ready, waits for the others (a barrier over
# files), then answers the same held version.
REVIEWER = """
import json, sys, time
from pathlib import Path
from model_factory.contracts import Attribution
from model_factory.io.tracking import connect
from model_factory.review import approval
from model_factory.settings import FactorySettings

action, version, actor, barrier, count = sys.argv[1:6]
settings = FactorySettings.from_env()
connect(settings).get_model_version("churn", version)
Path(barrier, actor).touch()
while len(list(Path(barrier).iterdir())) < int(count):
    time.sleep(0.002)
try:
    review = approval.approve_version if action == "approve" else approval.reject_version
    review("churn", version, settings, Attribution(actor, f"{action} in a race"))
    print(json.dumps({"actor": actor, "ok": True}))
except approval.ReviewError as exc:
    print(json.dumps({"actor": actor, "ok": False, "error": str(exc)}))
"""


def _race(version: str, barrier, reviewers: list[tuple[str, str]]) -> list[dict]:
    barrier.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    procs = []
    for action, actor in reviewers:
        argv = [sys.executable, "-c", REVIEWER, action, version, actor, str(barrier), str(len(reviewers))]
        procs.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_approve_and_reject_racing_on_one_held_version_have_exactly_one_winner(factory_home, tmp_path):
    settings = FactorySettings.from_env()
    client = connect(settings)
    held_spec = spec_for(gates={"too_good_score": 0.5, "min_holdout_rows": 10})
    reviewers = [("approve", "alice"), ("reject", "bob"), ("approve", "carol"), ("reject", "dave")]
    for trial, day in enumerate((date(2026, 2, 2), date(2026, 2, 9), date(2026, 2, 16))):
        held = retrain(held_spec, settings, day, carded=False)
        if held["status"] != "held_for_review":  # a champion scoring >= 0.5 too: nothing is held
            continue
        version = held["version"]
        started = time.perf_counter()
        results = _race(version, tmp_path / f"barrier{trial}", reviewers)
        winners = [r["actor"] for r in results if r["ok"]]
        assert len(winners) == 1, f"trial {trial}: {results}"
        winner = winners[0]
        won_action = dict((actor, action) for action, actor in reviewers)[winner]
        for loser in (r for r in results if not r["ok"]):
            assert f"by {winner} at" in loser["error"], loser
        tags = client.get_model_version("churn", version).tags
        expected = ("approved", "blessed") if won_action == "approve" else ("rejected", "rejected")
        assert (tags["factory.review.status"], tags["factory.decision"]) == expected, tags
        assert (
            tags["factory.review.by"] == winner and tags["factory.review.reason"] == f"{won_action} in a race"
        )
        assert winner in tags["factory.decision_reason"]
        assert time.perf_counter() - started < 600


def test_a_review_that_cannot_be_recorded_releases_its_claim(factory_home, monkeypatch):
    """MLflow fails after the claim: the version stays held and the next review may decide."""
    settings = FactorySettings.from_env()
    held = retrain(spec_for(gates={"too_good_score": 0.5, "min_holdout_rows": 10}), settings, carded=False)
    assert held["status"] == "held_for_review"

    def down(*args, **kwargs):
        raise RuntimeError("registry down")

    with monkeypatch.context() as patched:
        patched.setattr(approval, "record_decision", down)
        with pytest.raises(RuntimeError, match="registry down"):
            approval.approve_version("churn", held["version"], settings, Attribution("alice", "looks fine"))
    rejected = approval.reject_version("churn", held["version"], settings, Attribution("bob", "leakage"))
    assert rejected["status"] == "rejected"
    row = claims.claim(
        claims.claims_db_uri(settings), f"review:churn:v{held['version']}:{held['run_id']}", "approved", "eve"
    )
    assert not row.won and row.actor == "bob"
