"""Canary analysis (statistics on generated outcomes of known quality) and the canary registry
operations (real MLflow registry on SQLite)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from model_factory.contracts import Attribution
from model_factory.io.tracking import connect
from model_factory.pipeline import registry
from model_factory.pipeline.registry import PromotionError
from model_factory.rollout import canary
from model_factory.rollout import state as rollout_state
from model_factory.rollout.canary import ArmData, analyse_canary, arm_outcomes, auc_delong, metric_with_se
from model_factory.rollout.outcomes import labelled_counts
from model_factory.serving import predlog
from model_factory.spec import CanarySpec
from model_factory_dev.simulator import decision_rates, synthetic_arm

from tests.conftest import factory_env
from tests.unit.serving.test_gateway import build_registry, reset_serving_state

# --- the statistics ---------------------------------------------------------------------------


def test_delong_matches_sklearn_and_the_bootstrap():
    from sklearn.metrics import roc_auc_score

    arm = synthetic_arm("x", 800, task="classification", quality=0.8, seed=3)
    auc, se = auc_delong(arm.outcomes, arm.scores)
    assert auc == pytest.approx(roc_auc_score(arm.outcomes, arm.scores))
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(400):
        idx = rng.integers(0, 800, 800)
        draws.append(roc_auc_score(arm.outcomes[idx], arm.scores[idx]))
    assert se == pytest.approx(np.std(draws, ddof=1), rel=0.15)


@pytest.mark.parametrize(
    ("task", "metric", "quality", "truth"),
    [
        ("classification", "roc_auc", 0.8, 0.8),
        ("regression", "rmse", 10.0, 10.0),
        ("regression", "mae", 10.0, 10.0 * math.sqrt(2 / math.pi)),
    ],
)
def test_confidence_intervals_cover_the_truth_95_percent_of_the_time(task, metric, quality, truth):
    seeds, covered = 400, 0
    for seed in range(seeds):
        arm = synthetic_arm("x", 300, task=task, quality=quality, seed=seed)
        value, se = metric_with_se(metric, arm, task)
        covered += abs(value - truth) <= 1.96 * se
    # binomial sd at 0.95 over 400 runs is 0.011: 3 sd either side
    assert 0.917 <= covered / seeds <= 0.983, covered / seeds


ANALYSIS = {"min_samples": 500, "max_relative_drop": 0.02, "alpha": 0.05}


@pytest.mark.parametrize(
    ("task", "metric", "champion", "canary_quality", "decision", "at_most", "at_least"),
    [
        # Noise: the same quality must (almost) never roll back. Measured over 2000 seeds at n=500:
        # 1.4% (auc), 1.95% (rmse), 1.8% (accuracy).
        ("classification", "roc_auc", 0.80, 0.80, "rollback", 0.04, 0.0),
        ("regression", "rmse", 10.0, 10.0, "rollback", 0.05, 0.0),
        ("classification", "accuracy", 0.80, 0.80, "rollback", 0.05, 0.0),
        # Exactly the allowed 2% drop: the test's size is alpha. Measured: 5.1% (auc), 4.9% (rmse).
        ("classification", "roc_auc", 0.80, 0.784, "rollback", 0.095, 0.015),
        ("regression", "rmse", 10.0, 10.2, "rollback", 0.095, 0.015),
        # A real drop must be caught. Measured over 2000 seeds at n=500: AUC 0.80 -> 0.68 (15% worse)
        # 93.9%; RMSE 10 -> 12 (20% worse) 97.75%; 10 -> 13 (30% worse) 100%.
        ("classification", "roc_auc", 0.80, 0.68, "rollback", 1.0, 0.88),
        ("regression", "rmse", 10.0, 12.0, "rollback", 1.0, 0.92),
        ("regression", "rmse", 10.0, 13.0, "rollback", 1.0, 0.99),
        # A better canary (AUC 0.78 -> 0.82) is promoted, every time.
        ("classification", "roc_auc", 0.78, 0.82, "promote", 1.0, 1.0),
    ],
)
def test_decision_rates_on_noise_a_real_drop_and_a_real_gain(
    task, metric, champion, canary_quality, decision, at_most, at_least
):
    rates = decision_rates(
        task=task,
        metric=metric,
        champion_quality=champion,
        canary_quality=canary_quality,
        n=500,
        seeds=400,
        **ANALYSIS,
    )
    assert at_least <= rates[decision] <= at_most, rates
    assert rates["wait"] == 0.0


def arms(n: int = 600, canary_quality: float = 0.8, **canary_kwargs) -> tuple[ArmData, ArmData]:
    champion = synthetic_arm("champion", n, task="classification", quality=0.8, seed=1)
    candidate = synthetic_arm(
        "canary", n, task="classification", quality=canary_quality, seed=2, **canary_kwargs
    )
    return champion, candidate


def test_the_analysis_judges_by_the_specs_policy_never_by_defaults_of_its_own():
    """Issue 19: analyse_canary once defaulted to min_samples=200 while CanarySpec says 500."""
    champion, candidate = arms(n=300)
    policy = CanarySpec()
    result = analyse_canary(champion, candidate, policy, task="classification", metric="roc_auc")
    assert result.decision == "wait" and "canary has 300/500 labelled outcomes" in result.reasons[0]
    recorded = result.to_dict()
    assert (recorded["min_samples"], recorded["alpha"]) == (policy.min_samples, policy.alpha)
    assert recorded["guardrails"]["error_rate"] == policy.max_error_rate
    assert recorded["guardrails"]["p95_latency_ms"] == policy.max_p95_latency_ms
    lenient = analyse_canary(
        champion, candidate, CanarySpec(min_samples=300), task="classification", metric="roc_auc"
    )
    assert lenient.decision == "promote" and lenient.relative_change is not None


def test_not_enough_samples_waits_and_says_how_many():
    champion, candidate = arms(n=120)
    result = analyse_canary(
        champion, candidate, CanarySpec(min_samples=200), task="classification", metric="roc_auc"
    )
    assert result.decision == "wait"
    assert "champion has 120/200 labelled outcomes, canary has 120/200" in result.reasons[0]


def test_healthy_canary_continues_until_the_last_stage():
    champion, candidate = arms()
    common = {"task": "classification", "metric": "roc_auc"}
    middle = analyse_canary(champion, candidate, CanarySpec(min_samples=500), final_stage=False, **common)
    last = analyse_canary(champion, candidate, CanarySpec(min_samples=500), **common)
    assert (middle.decision, last.decision) == ("continue", "promote")
    assert last.arms["canary"].ci[0] < last.arms["canary"].value < last.arms["canary"].ci[1]
    assert 0.02 < last.detectable_drop < 0.2
    assert "no significant drop" in last.reasons[0]


def test_a_clear_drop_rolls_back_with_the_numbers_in_the_reason():
    champion, candidate = arms(canary_quality=0.62)
    result = analyse_canary(
        champion, candidate, CanarySpec(min_samples=500), task="classification", metric="roc_auc"
    )
    assert result.decision == "rollback"
    assert result.p_value < 0.05 and result.relative_change_upper < -0.02
    assert "worse, significantly more than the allowed 2.0%" in result.reasons[0]


def test_guardrails_roll_back_even_before_enough_labels():
    champion, candidate = arms(n=100, errors=10)
    result = analyse_canary(
        champion, candidate, CanarySpec(min_samples=500), task="classification", metric="roc_auc"
    )
    assert result.decision == "rollback"
    assert "error rate 9.09% (10/110) is above the 2.00% guardrail" in result.reasons[0]

    champion, slow = arms(n=100, latency_ms=400.0)
    result = analyse_canary(
        champion, slow, CanarySpec(min_samples=500), task="classification", metric="roc_auc"
    )
    assert result.decision == "rollback" and "p95 latency" in result.reasons[0]

    # Too few requests to judge a guardrail: 3 errors in 23 requests is not yet a verdict.
    champion, early = arms(n=20, errors=3)
    assert (
        analyse_canary(champion, early, CanarySpec(), task="classification", metric="roc_auc").decision
        == "wait"
    )


def test_a_canary_the_gateway_could_not_load_is_rolled_back():
    champion, _ = arms()
    missing = ArmData("canary", load_errors=["v3: no such file"])
    result = analyse_canary(champion, missing, CanarySpec(), task="classification", metric="roc_auc")
    assert result.decision == "rollback" and "failed to load" in result.reasons[0]


def test_one_class_only_cannot_be_judged():
    champion, candidate = arms()
    candidate.outcomes = np.zeros_like(candidate.outcomes)
    result = analyse_canary(
        champion, candidate, CanarySpec(min_samples=100), task="classification", metric="roc_auc"
    )
    assert result.decision == "wait" and "could not be estimated" in result.reasons[0]


def test_lower_is_better_direction_for_rmse():
    champion = synthetic_arm("champion", 800, task="regression", quality=10.0, seed=1)
    worse = synthetic_arm("canary", 800, task="regression", quality=14.0, seed=2)
    better = synthetic_arm("canary", 800, task="regression", quality=7.0, seed=3)
    down = analyse_canary(champion, worse, CanarySpec(min_samples=500), task="regression", metric="rmse")
    up = analyse_canary(champion, better, CanarySpec(min_samples=500), task="regression", metric="rmse")
    assert down.decision == "rollback" and down.relative_change < -0.3
    assert up.decision == "promote" and up.relative_change > 0.2


def test_unknown_metric_is_refused():
    champion, candidate = arms()
    with pytest.raises(ValueError, match="not supported for live classification"):
        analyse_canary(
            champion, candidate, CanarySpec(), task="classification", metric="brier", higher_is_better=False
        )


# --- outcomes per arm from the prediction DB ------------------------------------------------------


def _row(i, arm, version, *, status="ok", at, score=0.7, label=1):
    return {
        "request_id": f"r{i}",
        "entity_id": f"e{i}",
        "model": "churn",
        "version": version,
        "arm": arm,
        "status": status,
        "error": None if status == "ok" else "boom",
        "latency_ms": 4.0 + i % 3,
        "prediction": predlog.dumps({"label": label, "score": score}) if status == "ok" else None,
        "score": score if status == "ok" else None,
        "inputs": None,
        "inputs_hash": "h",
        "created_at": at,
    }


def test_arm_outcomes_reads_labelled_rows_per_arm_and_version(tmp_path):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    log = predlog.PredictionLog(db).start()
    started = datetime.now(UTC)
    before, during = predlog.utcnow() - timedelta(hours=1), predlog.utcnow() + timedelta(seconds=1)
    log.log([_row(0, "champion", "1", at=before)])  # before the canary: not counted
    log.log([_row(i, "champion", "1", at=during) for i in range(1, 5)])
    log.log([_row(i, "canary", "2", at=during, score=0.2, label=0) for i in range(5, 8)])
    log.log([_row(8, "canary", "2", status="error", at=during)])
    log.log([_row(9, "canary", "9", at=during)])  # an older canary's row
    assert log.flush()
    for rid, outcome in (("r1", 1), ("r2", 0), ("r5", 0), ("r6", 1), ("r9", 1)):
        log.record_feedback(rid, outcome)
    log.close()
    predlog.write_decision(
        db,
        {
            "model": "churn",
            "version": "2",
            "action": "load_failed",
            "actor": "gateway",
            "reason": "missing file",
            "at": datetime.now(UTC).isoformat(),
        },
    )

    out = arm_outcomes(db, "churn", started.isoformat(), versions={"canary": "2"})
    champion, candidate = out["champion"], out["canary"]
    assert (champion.requests, champion.errors, champion.labelled, champion.versions) == (4, 0, 2, ["1"])
    assert list(champion.outcomes) == [1.0, 0.0] and list(champion.predictions) == [1.0, 1.0]
    assert list(champion.scores) == [0.7, 0.7] and len(champion.latencies_ms) == 4
    assert (candidate.requests, candidate.errors, candidate.labelled) == (4, 1, 2)
    assert candidate.error_rate == 0.25
    assert candidate.load_errors == ["v2: missing file"]
    assert arm_outcomes(db, "churn", started, versions={"canary": "9"})["canary"].labelled == 1


def test_labelled_counts_count_what_the_analysis_reads_per_arm_version_and_stage(tmp_path):
    """The trigger's one COUNT agrees with arm_outcomes' labelled rows: served rows of each arm's
    version since the canary started, labelled; the canary's also since its stage began."""
    db = f"sqlite:///{tmp_path / 'p.db'}"
    log = predlog.PredictionLog(db).start()
    started = predlog.utcnow()
    stage = started + timedelta(seconds=10)
    log.log([_row(0, "champion", "1", at=started - timedelta(hours=1))])  # before the canary
    log.log([_row(i, "champion", "1", at=started + timedelta(seconds=1)) for i in range(1, 6)])
    log.log([_row(i, "canary", "2", at=started + timedelta(seconds=1)) for i in range(6, 9)])  # stage 1
    log.log([_row(i, "canary", "2", at=stage + timedelta(seconds=1)) for i in range(9, 12)])  # stage 2
    log.log([_row(12, "canary", "2", status="error", at=stage + timedelta(seconds=1))])
    log.log([_row(13, "canary", "9", at=stage + timedelta(seconds=1))])  # an older canary's row
    assert log.flush()
    for i in (0, 1, 2, 3, 6, 7, 9, 10, 13):
        log.record_feedback(f"r{i}", i % 2)
    log.close()
    versions = {"champion": "1", "canary": "2"}

    counts = labelled_counts(db, "churn", started.isoformat(), stage.isoformat(), versions)
    arms = arm_outcomes(db, "churn", started.isoformat(), versions=versions)
    in_stage = arm_outcomes(db, "churn", stage.isoformat(), versions=versions)["canary"].labelled
    assert (counts.champion, counts.canary, counts.canary_in_stage) == (3, 4, 2)
    assert (arms["champion"].labelled, arms["canary"].labelled, in_stage) == (3, 4, 2)
    assert counts.enough(2) and not counts.enough(3)
    nobody = labelled_counts(db, "churn", started, stage, {"champion": "", "canary": "2"})
    assert nobody.champion == 0 and not nobody.enough(1)  # no champion version: no champion rows


# --- registry operations ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def canary_registry(tmp_path_factory):
    home = tmp_path_factory.mktemp("canary") / "factory"
    with factory_env(home) as settings:
        build_registry(settings, demand=False)
        client = connect(settings)
        rejected = client.create_model_version("churn", (home / "nothing").as_uri())
        client.set_model_version_tag("churn", rejected.version, "factory.decision", "rejected")
        yield settings


@pytest.fixture
def settings(canary_registry):
    reset_serving_state(canary_registry)
    return canary_registry


def aliases(settings) -> dict[str, str]:
    return {k: str(v) for k, v in connect(settings).get_registered_model("churn").aliases.items()}


def version_tags(settings, version: str) -> dict[str, str]:
    return connect(settings).get_model_version("churn", version).tags


def test_start_ramp_and_promote_a_canary(settings):
    started = canary.start_canary("churn", "2", 0.1, settings, Attribution("alice", "blessed challenger"))
    assert started["changed"] and started["action"] == "canary_started" and started["details"]["share"] == 0.1
    state = canary.read_serving_state("churn", settings)
    assert (state.champion, state.canary, state.share, state.stage, state.status) == (
        "1",
        "2",
        0.1,
        1,
        "running",
    )
    assert state.started_at == started["at"]
    tags = version_tags(settings, "2")
    assert tags["factory.canary_started.by"] == "alice"
    assert tags["factory.canary_started.reason"] == "blessed challenger"
    assert tags["factory.canary_started.share"] == "0.1"

    again = canary.start_canary("churn", "2", 0.1, settings, Attribution("airflow", "retried task"))
    assert again["changed"] is False and again["at"] == started["at"]

    ramped = canary.set_canary_share(
        "churn", 0.5, settings, Attribution("airflow", "stage 1 healthy"), version="2"
    )
    assert ramped["details"] == {"share": 0.5, "previous_share": 0.1, "stage": 2}
    assert canary.read_serving_state("churn", settings).share == 0.5
    with pytest.raises(PromotionError, match="the running canary is v2, not v3"):
        canary.set_canary_share("churn", 1.0, settings, Attribution("airflow", "x"), version="3")

    promoted = canary.promote_canary(
        "churn", settings, Attribution("airflow", "live AUC holds"), version="2", details={"p_value": 0.4}
    )
    assert promoted["champion"] == "2" and promoted["previous_champion"] == "1"
    assert aliases(settings) == {"champion": "2", "previous_champion": "1"}  # canary and challenger gone
    state = canary.read_serving_state("churn", settings)
    assert (state.canary, state.share, state.status) == (None, 0.0, "promoted")
    tags = version_tags(settings, "2")
    assert tags["factory.promoted.by"] == "airflow"  # through registry.promote
    assert tags["factory.canary_promoted.reason"] == "live AUC holds"
    assert tags["factory.canary_promoted.p_value"] == "0.4"
    retry = canary.promote_canary("churn", settings, Attribution("airflow", "retried"), version="2")
    assert retry["changed"] is False

    back = registry.rollback("churn", settings, Attribution("bob", "one-command rollback still works"))
    assert back == {"model": "churn", "champion": "1", "demoted": "2"}


def test_roll_back_and_abort_leave_the_champion_alone(settings):
    canary.start_canary("churn", "2", 0.1, settings, Attribution("airflow", "try"))
    rolled = canary.rollback_canary(
        "churn",
        settings,
        Attribution("airflow", "live AUC dropped 12%"),
        version="2",
        details={"decision": "rollback"},
    )
    assert rolled["action"] == "canary_rolled_back" and rolled["details"]["final_share"] == 0.1
    assert aliases(settings) == {"champion": "1"}  # the rolled-back version is no challenger any more
    state = canary.read_serving_state("churn", settings)
    assert (state.canary, state.share, state.status) == (None, 0.0, "rolled_back")
    assert version_tags(settings, "2")["factory.canary_rolled_back.reason"] == "live AUC dropped 12%"
    retried = canary.rollback_canary("churn", settings, Attribution("airflow", "retry"), version="2")
    assert retried["changed"] is False
    with pytest.raises(PromotionError, match="has no canary running"):
        canary.rollback_canary("churn", settings, Attribution("airflow", "nothing to roll back"))

    connect(settings).set_registered_model_alias("churn", "challenger", "2")
    canary.start_canary("churn", "2", 0.2, settings, Attribution("ops", "again"))
    aborted = canary.abort_canary("churn", settings, Attribution("carol", "maintenance window"))
    assert aborted["action"] == "canary_aborted"
    assert aliases(settings) == {"champion": "1", "challenger": "2"}  # abort keeps the challenger
    assert version_tags(settings, "2")["factory.canary_aborted.by"] == "carol"


def test_start_is_refused_with_the_reason(settings):
    asked = Attribution("a", "r")
    with pytest.raises(PromotionError, match="already the champion"):
        canary.start_canary("churn", "1", 0.1, settings, asked)
    with pytest.raises(PromotionError, match=r"v4 is rejected .*only blessed"):
        canary.start_canary("churn", "4", 0.1, settings, asked)
    with pytest.raises(PromotionError, match="no version '99'"):
        canary.start_canary("churn", "99", 0.1, settings, asked)
    with pytest.raises(PromotionError, match=r"share must be in \(0, 1\]"):
        canary.start_canary("churn", "2", 1.5, settings, asked)
    with pytest.raises(PromotionError, match="not registered"):
        canary.start_canary("nope", "2", 0.1, settings, asked)
    canary.start_canary("churn", "2", 0.1, settings, asked)
    with pytest.raises(PromotionError, match="already has canary v2 running"):
        canary.start_canary("churn", "3", 0.1, settings, asked)


def test_pin_aborts_the_canary_and_blocks_new_ones_until_unpinned(settings):
    canary.start_canary("churn", "2", 0.1, settings, Attribution("airflow", "try"))
    pinned = canary.pin_version("churn", "2", settings, Attribution("dave", "incident 42: hold v2"))
    assert pinned["details"] == {"previous_champion": "1", "aborted_canary": "2"}
    state = canary.read_serving_state("churn", settings)
    assert (state.champion, state.canary, state.pinned, state.status) == ("2", None, "2", "aborted")
    assert version_tags(settings, "2")["factory.pinned.by"] == "dave"
    with pytest.raises(PromotionError, match="pinned to v2; unpin it"):
        canary.start_canary("churn", "1", 0.1, settings, Attribution("airflow", "new challenger"))
    canary.unpin_version("churn", settings, Attribution("dave", "incident closed"))
    assert canary.read_serving_state("churn", settings).pinned is None
    back_to_v1 = canary.start_canary(
        "churn", "1", 0.1, settings, Attribution("airflow", "back to v1 as a canary")
    )
    assert back_to_v1["changed"]


def test_share_applies_only_to_the_version_it_was_set_for(settings):
    client = connect(settings)
    canary.start_canary("churn", "2", 0.3, settings, Attribution("airflow", "x"))
    client.set_registered_model_alias("churn", "canary", "3")  # someone moved the alias by hand
    assert canary.read_serving_state("churn", settings).share == 0.0


def test_decisions_go_to_the_prediction_db_too(settings, tmp_path):
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    for decision in (
        canary.start_canary("churn", "2", 0.1, settings, Attribution("airflow", "start")),
        canary.rollback_canary(
            "churn", settings, Attribution("airflow", "worse"), details={"p_value": 0.001}
        ),
    ):
        predlog.write_decision(db, decision)
    rows = predlog.decisions(db, "churn")
    assert [(r["action"], r["version"], r["actor"], r["reason"]) for r in rows] == [
        ("canary_started", "2", "airflow", "start"),
        ("canary_rolled_back", "2", "airflow", "worse"),
    ]
    assert rows[1]["details"]["p_value"] == 0.001 and rows[1]["details"]["changed"] is True


# --- issue 10 item 4 and issue 9 labels: a stage always ends in a decision; multiclass --------------


def test_outcomes_the_metric_cannot_use_end_in_a_rollback_not_an_exception():
    """A "yes" fed back on a binary canary (before the gateway checked feedback) made the
    analysis raise, the stage sensor fail and the canary stay at its share forever."""
    champion, candidate = arms()
    candidate.outcomes = np.asarray(["yes"] * len(candidate.outcomes), dtype=object)
    result = analyse_canary(
        champion, candidate, CanarySpec(min_samples=100), task="classification", metric="roc_auc"
    )
    assert result.decision == "rollback"
    assert "the stage cannot be judged: live roc_auc on the canary arm failed" in result.reasons[0]
    assert "binary 0/1 outcomes" in result.reasons[0]


CLASSES = ("setosa", "versicolor", "virginica")


def multiclass_arm(name: str, n: int, quality: float, seed: int) -> ArmData:
    """String class names, three classes; the true class gets ``quality`` of the probability
    mass on average (0.34: a coin; 0.9: sharp)."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(CLASSES, size=n)
    probabilities, predictions = [], []
    for t in truth:
        alpha = np.full(3, 1.0)
        alpha[CLASSES.index(t)] = 1.0 + 6.0 * quality
        p = rng.dirichlet(alpha)
        probabilities.append({c: float(v) for c, v in zip(CLASSES, p, strict=True)})
        predictions.append(CLASSES[int(p.argmax())])
    return ArmData(
        name,
        versions=["1" if name == "champion" else "2"],
        requests=n,
        latencies_ms=np.full(n, 5.0),
        scores=np.asarray([max(p.values()) for p in probabilities]),
        predictions=np.asarray(predictions, dtype=object),
        outcomes=np.asarray(truth, dtype=object),
        probabilities=probabilities,
    )


@pytest.mark.parametrize("metric", ["f1", "log_loss", "roc_auc", "accuracy"])
def test_multiclass_string_labels_get_a_live_metric_with_its_interval(metric):
    champion = multiclass_arm("champion", 800, 0.7, seed=1)
    same = multiclass_arm("canary", 800, 0.7, seed=2)
    worse = multiclass_arm("canary", 800, 0.1, seed=3)
    kept = analyse_canary(champion, same, CanarySpec(min_samples=500), task="classification", metric=metric)
    dropped = analyse_canary(
        champion, worse, CanarySpec(min_samples=500), task="classification", metric=metric
    )
    assert kept.decision == "promote", kept.reasons
    assert dropped.decision == "rollback", dropped.reasons
    low, high = kept.arms["canary"].ci
    assert low < kept.arms["canary"].value < high and high - low < 0.2


def test_arm_outcomes_read_class_names_and_probabilities_and_skip_garbage(tmp_path):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    log = predlog.PredictionLog(db).start()
    started, during = datetime.now(UTC), predlog.utcnow() + timedelta(seconds=1)
    rows = []
    for i, label in enumerate(["setosa", "virginica", "versicolor"]):
        row = _row(i, "canary", "2", at=during)
        probabilities = {c: (0.8 if c == label else 0.1) for c in CLASSES}
        row["prediction"] = predlog.dumps({"label": label, "probabilities": probabilities, "score": 0.8})
        rows.append(row)
    log.log(rows)
    assert log.flush()
    for rid, outcome in (("r0", "setosa"), ("r1", "versicolor")):
        log.record_feedback(rid, outcome)
    log.close()
    with predlog.engine_for(db).begin() as conn:  # a row written around the gateway
        conn.execute(
            predlog.FEEDBACK.insert().values(
                request_id="r2", outcome="{not json", received_at=predlog.utcnow()
            )
        )
    candidate = arm_outcomes(db, "churn", started.isoformat())["canary"]
    assert list(candidate.outcomes) == ["setosa", "versicolor"] and candidate.invalid_outcomes == 1
    loss, se = metric_with_se("log_loss", candidate, "classification")
    assert math.isclose(loss, (-math.log(0.8) - math.log(0.1)) / 2) and se > 0


def test_a_stage_that_cannot_be_read_waits_then_rolls_back_at_its_deadline(settings):
    from tests.unit.serving.test_gateway import CHURN

    canary.start_canary("churn", "2", 0.5, settings, Attribution("test", "unreadable prediction DB"))
    down = "postgresql+psycopg2://nobody:nothing@127.0.0.1:1/predictions"
    waiting = canary.analyse_running_canary(CHURN, settings, db=down)
    assert waiting.decision == "wait" and "cannot be judged now" in waiting.reasons[0]
    late = canary.analyse_running_canary(CHURN, settings, db=down, deadline_passed=True)
    assert late.decision == "rollback" and "without a verdict" in late.reasons[0]


def _clock_at(moment: datetime) -> type[datetime]:
    """A ``datetime`` whose ``now()`` is ``moment``: the canary module's clock, frozen."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return moment.astimezone(tz) if tz else moment.astimezone(UTC).replace(tzinfo=None)

    return Frozen


def _log_labelled(db: str, first_id: int, per_arm: int, at: datetime) -> None:
    """``per_arm`` labelled predictions on each arm (champion v1, canary v2), equally good."""
    rng = np.random.default_rng(first_id)
    log = predlog.PredictionLog(db).start()
    rows, labels = [], {}
    for arm, version in (("champion", "1"), ("canary", "2")):
        for _ in range(per_arm):
            i, label = first_id + len(rows), len(rows) % 2
            score = float(np.clip(0.3 + 0.4 * label + rng.normal(0, 0.2), 0, 1))
            rows.append(_row(i, arm, version, at=at, score=score, label=int(score > 0.5)))
            labels[f"r{i}"] = label
    log.log(rows)
    assert log.flush()
    for request_id, label in labels.items():
        log.record_feedback(request_id, label)
    log.close()


def test_a_stage_judges_only_outcomes_after_its_ramp_even_in_the_same_second(settings, tmp_path, monkeypatch):
    """Stage-1 outcomes logged in the same second as the ramp, but before it, are not the new
    stage's: the stage start is recorded to the microsecond (to the second, stage 2 counted them
    and promoted without one outcome of its own)."""
    from tests.unit.pipeline.test_training_evaluation import spec_for

    spec = spec_for("churn", **{"canary.ramp": [0.5, 1.0], "canary.min_samples": 40})
    db = f"sqlite:///{tmp_path / 'p.db'}"
    second = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(rollout_state, "datetime", _clock_at(second + timedelta(milliseconds=100)))
    canary.start_canary("churn", "2", 0.5, settings, Attribution("test", "same-second stages"))
    _log_labelled(db, 0, 60, at=(second + timedelta(milliseconds=500)).replace(tzinfo=None))
    first = canary.analyse_running_canary(spec, settings, db)
    assert first.decision == "continue", first.reasons

    monkeypatch.setattr(rollout_state, "datetime", _clock_at(second + timedelta(milliseconds=900)))
    canary.set_canary_share("churn", 1.0, settings, Attribution("test", "stage 1 ok"), version="2")
    stalled = canary.analyse_running_canary(spec, settings, db)
    assert stalled.decision == "wait" and stalled.stage_labelled == 0, stalled.reasons
    assert "0/40 labelled outcomes since the stage began" in stalled.reasons[0]
    older_tag = canary.arm_outcomes(db, "churn", "2030-01-01T12:00:00+00:00", versions={"canary": "2"})
    assert older_tag["canary"].labelled == 60  # a stage start written to the second still reads

    _log_labelled(db, 1000, 50, at=(second + timedelta(milliseconds=950)).replace(tzinfo=None))
    last = canary.analyse_running_canary(spec, settings, db)
    assert last.decision == "promote" and last.stage_labelled == 50, last.reasons
