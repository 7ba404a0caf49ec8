"""Model card core: sections, importance, slices, data budget, checklist, rendering (no MLflow)."""

from __future__ import annotations

from datetime import date

import pytest
from model_factory.pipeline.features import prepare_features, target_values
from model_factory.pipeline.training import build_pipeline, split_holdout
from model_factory.review.budget import recommend, run_data_budget
from model_factory.review.card import evaluate_sections, render_card
from model_factory.review.checklist import Facts, Item, evaluate_checklist
from model_factory.review.importance import permutation_importance_sampled
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec, SpecError, load_spec
from model_factory_dev import demo_data

from tests.conftest import REPO

DAY = date(2026, 2, 2)


def spec_for(model: str, **sections) -> ModelSpec:
    data = load_spec(REPO / "include" / "models" / f"{model}.yaml", FactorySettings.from_env()).model_dump(
        by_alias=True
    )
    data.update(sections)
    return ModelSpec.model_validate(data)


def fitted(spec: ModelSpec, rows: int = 600):
    df = demo_data.generate_batch(spec.name, DAY, rows=rows)
    train, holdout = split_holdout(df, spec)
    model = build_pipeline(spec).fit(prepare_features(train, spec), target_values(train, spec))
    return model, train, holdout


@pytest.fixture(scope="module")
def churn():
    spec = spec_for("churn", evaluation={"slices": ["region", "plan"], "importance_max_rows": 100})
    return (spec, *fitted(spec))


def test_sections_have_metrics_plots_slices_and_sampled_importance(churn):
    spec, model, _, holdout = churn
    sections = evaluate_sections(spec, model, holdout, champion=model)
    assert set(sections["metrics"]) == {"candidate", "champion"}
    assert sections["metrics"]["candidate"] == sections["metrics"]["champion"]
    assert {"roc", "precision_recall", "calibration", "confusion_matrix", "importance"} <= set(
        sections["figures"]
    )
    assert all(src.startswith("data:image/png;base64,") for src in sections["figures"].values())
    imp = sections["importance"]
    assert imp["sampled"] and imp["rows_used"] == 100 and imp["rows_total"] == len(holdout)
    assert "sample of 100 of the 150 holdout rows" in imp["note"]
    assert {f["feature"] for f in imp["features"]} == set(spec.features.all)
    regions = [r for r in sections["slices"]["rows"] if r["column"] == "region"]
    assert sorted(r["value"] for r in regions) == ["east", "north", "south", "west"]
    assert sum(r["rows"] for r in regions) == len(holdout)


def test_absent_and_single_valued_slice_columns_are_named(churn):
    spec, model, _, holdout = churn
    spec = spec_for("churn", evaluation={"slices": ["nope", "region"]})
    one = holdout.assign(region="north")
    sections = evaluate_sections(spec, model, one)
    problems = sections["slices"]["problems"]
    assert "slice column 'nope' (evaluation.slices) is not in the holdout data" in problems[0]
    assert "slice column 'region' has a single value ('north')" in problems[1]
    items = {i.item: i for i in evaluate_checklist(spec, Facts(slices=sections["slices"]))}
    assert not items["slices_within_tolerance"].passed
    assert "'nope'" in items["slices_within_tolerance"].reason


def test_a_much_worse_slice_is_flagged(churn):
    spec, model, _, holdout = churn
    spec = spec_for("churn", evaluation={"slices": ["region"], "min_slice_rows": 5})
    broken = holdout.copy()
    north = broken["region"] == "north"
    broken.loc[north, "churned"] = 1 - broken.loc[north, "churned"]  # labels flipped: AUC inverts
    sections = evaluate_sections(spec, model, broken)
    flagged = [r["value"] for r in sections["slices"]["rows"] if r["flagged"]]
    assert flagged == ["north"]


def test_regression_card_plots_and_data_budget():
    spec = spec_for("demand", evaluation={"data_budget": {"shares": [0.2, 0.5, 1.0], "tolerance": 0.5}})
    model, train, holdout = fitted(spec, rows=500)
    sections = evaluate_sections(spec, model, holdout)
    assert {"residuals", "error_distribution", "importance"} <= set(sections["figures"])
    budget = run_data_budget(spec, train, holdout)
    assert [p["share"] for p in budget["points"]] == [0.2, 0.5, 1.0]
    assert [p["rows"] for p in budget["points"]] == [80, 200, 400]
    assert all(p["cpu_seconds"] >= 0 and p["metric"] > 0 for p in budget["points"])
    assert budget["recommended_share"] in (0.2, 0.5, 1.0)
    assert budget["recommendation"]


def test_recommendation_is_the_smallest_share_within_tolerance():
    points = [
        {"share": 0.1, "rows": 10, "metric": 0.80, "cpu_seconds": 1.0},
        {"share": 0.5, "rows": 50, "metric": 0.895, "cpu_seconds": 4.0},
        {"share": 1.0, "rows": 100, "metric": 0.90, "cpu_seconds": 10.0},
    ]
    rec = recommend(points, "roc_auc", 0.01)
    assert rec["recommended_share"] == 0.5 and rec["cpu_saved_seconds"] == 6.0
    assert "50% of the training rows" in rec["recommendation"] and "60%" in rec["recommendation"]
    assert recommend(points, "roc_auc", 0.0)["recommended_share"] == 1.0
    lower = [{**p, "metric": 2 - p["metric"]} for p in points]  # rmse-like: lower is better
    assert recommend(lower, "rmse", 0.01)["recommended_share"] == 0.5


def test_importance_on_a_huge_holdout_is_sampled_and_says_so(churn):
    spec, model, _, _ = churn
    big = demo_data.generate_batch("churn", DAY, rows=30_000)
    imp = permutation_importance_sampled(model, big, spec, max_rows=2000, repeats=1)
    assert imp["rows_used"] == 2000 and imp["sampled"]
    assert "seeded sample of 2,000 of the 30,000 holdout rows" in imp["note"]


def test_checklist_items_pass_and_fail_with_reasons():
    spec = spec_for("churn", review={"max_train_cpu_seconds": 1.0})
    facts = Facts(
        decision="held_for_review",
        decision_reason="too good",
        card_uri=None,
        card_error="TemplateError: boom",
        run_tags={"factory.data.uris": "[]"},
        importance={"features": [{"feature": "x", "mean": 0.1, "std": 0.0}], "note": "ok"},
        train_cpu_seconds=3.0,
    )
    items = {i.item: i for i in evaluate_checklist(spec, facts)}
    assert list(items) == list(spec.review.checklist)
    assert items["owner_and_description"].passed
    assert not items["gates_passed"].passed and "held_for_review: too good" in items["gates_passed"].reason
    assert items["model_card"].reason == "model card missing: TemplateError: boom"
    assert not items["lineage_complete"].passed and "factory.spec_hash" in items["lineage_complete"].reason
    assert items["explanation"].passed
    assert not items["training_cost"].passed and "over the budget of 1" in items["training_cost"].reason


def test_unknown_checklist_item_fails_at_parse_time(tmp_path):
    text = (REPO / "include" / "models" / "churn.yaml").read_text()
    path = tmp_path / "churn.yaml"
    path.write_text(text + "review:\n  checklist: [model_card, docs_reviewed]\n")
    with pytest.raises(SpecError) as err:
        load_spec(path, FactorySettings.from_env())
    assert "review.checklist" in str(err.value) and "docs_reviewed" in str(err.value)


def _card_context(spec, **fields) -> dict:
    """What ``render_card`` is given for churn v3 (run r1, trained in 0.5 s), ``fields`` added."""
    return {
        "spec": spec.model_dump(mode="json", by_alias=True),
        "template": "retrain",
        "model": "churn",
        "version": "3",
        "run_id": "r1",
        "created": 0,
        "primary_metric": "roc_auc",
        "cost": {"train_wall_seconds": 0.5, "train_cpu_seconds": 0.4, "process_peak_rss_mb": 300.0},
        "budget": None,
        **fields,
    }


def test_card_renders_every_section(churn):
    spec, model, _, holdout = churn
    sections = evaluate_sections(spec, model, holdout, champion=model)
    context = _card_context(
        spec,
        champion_version="2",
        lineage={
            "inputs": [{"uri": "file:///x/data.parquet", "rows": 600, "sha256": "ab" * 32}],
            "tags": {"factory.git_revision": "abc123"},
        },
        validation=[
            {"uri": "file:///x/data.parquet", "rows": 600, "success": True, "evaluated": 9, "successful": 9}
        ],
        params={"rows.train": "450", "rows.holdout": "150"},
        decision={
            "status": "blessed",
            "reason": "meets the bar",
            "interval": [0.01, -0.02, 0.04],
            "review": {},
        },
        checklist=[Item("model_card", True, "file:///card")],
        **sections,
    )
    html = render_card(context)
    for heading in (
        "Purpose",
        "Lineage",
        "Holdout metrics",
        "Evaluation plots",
        "Metrics per slice",
        "Feature importance",
        "Validation of the training batches",
        "Training cost",
        "Data budget",
        "Lifecycle checklist",
        "Decision",
    ):
        assert f">{heading}</h2>" in html, heading
    assert "champion v2" in html and "growth-data-science" in html
    assert html.count("data:image/png;base64,") == len(sections["figures"])
    assert "http://" not in html and "https://" not in html  # opens offline
    assert "Not served yet" in html  # a card rendered before its version served


def test_a_card_that_served_shows_its_post_deployment_performance(churn):
    from datetime import date

    from model_factory.review.card import after_deployment

    assert after_deployment([], 0.8) is None
    rows = [
        {
            "day": date(2026, 1, 5),
            "metric": "roc_auc",
            "predictions": 1000,
            "outcomes": 300,
            "realized": 0.80,
            "realized_low": 0.76,
            "realized_high": 0.84,
            "estimated": 0.81,
            "estimated_low": 0.79,
            "estimated_high": 0.83,
            "label_coverage": 0.9,
            "p95_ms": 12.5,
        },
        {
            "day": date(2026, 1, 6),
            "metric": "roc_auc",
            "predictions": 1000,
            "outcomes": 100,
            "realized": 0.70,
            "realized_low": 0.62,
            "realized_high": 0.78,
            "estimated": 0.78,
            "estimated_low": 0.76,
            "estimated_high": 0.80,
            "label_coverage": 0.3,
            "p95_ms": 13.0,
        },
        {
            "day": date(2026, 1, 7),
            "metric": "roc_auc",
            "predictions": 900,
            "outcomes": 0,
            "realized": None,
            "realized_low": None,
            "realized_high": None,
            "estimated": 0.76,
            "estimated_low": 0.74,
            "estimated_high": 0.78,
            "label_coverage": None,
            "p95_ms": 12.0,
        },
    ]
    section = after_deployment(rows, 0.82)
    assert section["realized"] == pytest.approx(0.775)  # outcome-weighted: (0.8*300 + 0.7*100) / 400
    assert (section["predictions"], section["outcomes"]) == (2900, 400)
    assert (section["latest_estimate"], section["latest_estimate_day"]) == (0.76, "2026-01-07")
    assert [d["day"] for d in section["days"]] == ["2026-01-07", "2026-01-06", "2026-01-05"]

    spec, model, _, holdout = churn
    context = _card_context(
        spec,
        champion_version=None,
        lineage={"inputs": [], "tags": {}},
        validation=[],
        params={},
        decision={"status": "blessed", "reason": "ok", "interval": None, "review": {}},
        checklist=[],
        after_deployment=section,
        **evaluate_sections(spec, model, holdout, champion=None),
    )
    html = render_card(context)
    after = html.split('id="after-deployment"')[1]
    assert "Realized roc_auc <b>0.7750</b> (holdout 0.8200)" in after and "2026-01-07" in after
    assert "0.6200 to 0.7800" in after and "Latest estimate 0.7600 (2026-01-07)" in after
