"""Model card, checklist, approval and reproduce against a real MLflow (SQLite) registry."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import pytest
from model_factory.contracts import Attribution
from model_factory.io import storage
from model_factory.io.tracking import connect
from model_factory.pipeline.evaluation import evaluate_candidate
from model_factory.pipeline.registry import PromotionError, promote, record_decision, register_version
from model_factory.pipeline.training import train_model
from model_factory.review import approval, card
from model_factory.review.reproduce import ReproduceError, reproduce_version
from model_factory.rollout.canary import start_canary
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec, load_spec
from model_factory_dev import demo_data

from tests.conftest import REPO

DAY = date(2026, 2, 2)
ARTIFACTS = REPO / "tests" / "artifacts"


def spec_for(model: str = "churn", **sections) -> ModelSpec:
    data = load_spec(REPO / "include" / "models" / f"{model}.yaml", FactorySettings.from_env()).model_dump(
        by_alias=True
    )
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return ModelSpec.model_validate(data)


def validated(settings: FactorySettings, model: str, day: date, rows: int = 600) -> str:
    df = demo_data.generate_batch(model, day, rows=rows)
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    uri = storage.join(settings.store_uri, "validated", model, str(day), "data.parquet")
    storage.write_json(
        uri.rsplit("/", 1)[0] + "/validation.json",
        {"success": True, "statistics": {"evaluated_expectations": 5, "successful_expectations": 5}},
    )
    return storage.write_bytes(uri, buffer.getvalue())


def retrain(spec: ModelSpec, settings: FactorySettings, day: date = DAY, carded: bool = True) -> dict:
    trained = train_model(spec, str(day), [validated(settings, spec.name, day)], settings, force=True)
    registered = register_version(spec, evaluate_candidate(spec, trained, settings), settings)
    if carded:
        registered["card"] = card.produce_card(spec, registered, settings)
    return {**registered, "run_id": trained["run_id"]}


def test_card_logged_linked_checklist_tagged_and_budget_added(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for(evaluation={"slices": ["region", "plan"], "data_budget": {"shares": [0.25, 0.5, 1.0]}})
    first = retrain(spec, settings)
    second = retrain(spec, settings, date(2026, 2, 3))
    made = second["card"]
    assert made["card_uri"].endswith("/model_card.html") and made["card_error"] is None
    client = connect(settings)
    mv = client.get_model_version("churn", second["version"])
    page = f"{settings.airflow_url}/factory/models/churn/versions/{second['version']}/card"
    link = f"Model card: [churn v{second['version']}]({page}) (artifact `{made['card_uri']}`)"
    assert link in mv.description
    assert mv.tags["factory.checklist"] == made["checklist"]["status"]
    assert mv.tags["factory.checklist.model_card"] == "pass"
    html = storage.read_bytes(made["card_uri"]).decode()
    assert f"champion v{first['version']}" in html and "region" in html

    budget = card.data_budget_for_run(spec, second["run_id"], settings)
    assert [p["share"] for p in budget["points"]] == [0.25, 0.5, 1.0]
    html = storage.read_bytes(made["card_uri"]).decode()
    assert budget["recommendation"].split(" (")[0] in html
    assert html.count("data:image/png;base64,") == 6  # roc, pr, calibration, confusion, importance, budget
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "model_card.html").write_text(html)
    print(f"card bytes: {len(html.encode())}")


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_card_renders_in_headless_chromium(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for(evaluation={"slices": ["region"], "data_budget": {"shares": [0.5, 1.0]}})
    registered = retrain(spec, settings)
    card.data_budget_for_run(spec, registered["run_id"], settings)
    html = storage.read_bytes(registered["card"]["card_uri"]).decode()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, shot = ARTIFACTS / "model_card_chromium.html", ARTIFACTS / "model_card.png"
    page.write_text(html)
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        chromium = [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
        ]
        dumped = subprocess.run(
            [*chromium, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        subprocess.run(
            [*chromium, f"--screenshot={shot}", "--window-size=1300,2400", page.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
    assert "Lifecycle checklist" in dumped.stdout and "Data budget" in dumped.stdout
    assert shot.exists() and shot.stat().st_size > 20_000


def test_a_failing_checklist_item_blocks_canary_promotion_and_pin_until_overridden(factory_home):
    settings = FactorySettings.from_env()
    retrain(spec_for(), settings)  # champion v1
    costly = spec_for(review={"max_train_cpu_seconds": 1e-9})
    registered = retrain(costly, settings, date(2026, 2, 3))
    version = registered["version"]
    assert registered["status"] == "blessed", registered["reason"]
    client = connect(settings)
    assert client.get_model_version("churn", version).tags["factory.checklist.training_cost"] == "fail"
    failing = r"fails its lifecycle checklist \(training_cost: .* over the budget"
    with pytest.raises(PromotionError, match=failing):
        promote("churn", version, settings, Attribution("ops", "ship it"))
    with pytest.raises(PromotionError, match="training_cost"):
        start_canary("churn", version, 0.1, settings, Attribution("ops", "try it"))
    record_decision(
        client, "churn", version, "checklist_override", Attribution("alice", "cost accepted for Q1")
    )
    assert promote("churn", version, settings, Attribution("ops", "ship it"))["champion"] == version


def test_a_card_failing_to_render_leaves_the_version_registered_card_missing(factory_home, monkeypatch):
    settings = FactorySettings.from_env()

    def broken(context):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(card, "render_card", broken)
    registered = retrain(spec_for(), settings)
    made = registered["card"]
    assert made["card_uri"] is None and "template exploded" in made["card_error"]
    mv = connect(settings).get_model_version("churn", registered["version"])
    assert mv.tags["factory.checklist.model_card"] == "fail"
    reason = mv.tags["factory.checklist.model_card.reason"]
    assert reason == "model card missing: RuntimeError: template exploded"
    assert "Model card: missing (RuntimeError: template exploded)" in mv.description


def test_approve_reject_and_expire_held_versions(factory_home):
    settings = FactorySettings.from_env()
    held_spec = spec_for(gates={"too_good_score": 0.5, "min_holdout_rows": 10})
    first = retrain(held_spec, settings)
    assert first["status"] == "held_for_review" and "too-good score 0.5" in first["reason"]
    assert approval.held_versions("churn", settings)[0]["version"] == first["version"]
    approved = approval.approve_version(
        "churn", first["version"], settings, Attribution("alice", "checked: no leakage")
    )
    assert approved["alias"] == "champion"
    mv = connect(settings).get_model_version("churn", first["version"])
    assert mv.tags["factory.review.by"] == "alice" and mv.tags["factory.review.status"] == "approved"
    assert mv.tags["factory.decision"] == "blessed" and mv.tags["factory.checklist.gates_passed"] == "pass"
    with pytest.raises(approval.ReviewError, match="already approved by alice"):
        approval.reject_version("churn", first["version"], settings, Attribution("bob", "no"))

    blessed = retrain(spec_for(), settings, date(2026, 2, 3), carded=False)
    with pytest.raises(approval.ReviewError, match=f"v{blessed['version']} is {blessed['status']}, not held"):
        approval.approve_version("churn", blessed["version"], settings, Attribution("alice", "ok"))

    third = retrain(
        spec_for(gates={"too_good_score": 0.5, "min_holdout_rows": 10}, split={"seed": 3}),
        settings,
        date(2026, 2, 4),
        carded=False,
    )
    if third["status"] == "held_for_review":  # the champion may score >= 0.5 too: then not held
        expired = approval.expire_version("churn", third["version"], settings, 72)
        assert expired["status"] == "expired"
        mv = connect(settings).get_model_version("churn", third["version"])
        assert "within review.window_hours (72 h): expired as rejected" in mv.tags["factory.decision_reason"]


def test_reproduce_a_version_and_refuse_without_data_or_lineage(factory_home, monkeypatch):
    monkeypatch.setenv("FACTORY_CODE_REVISION", "aaa111")
    settings = FactorySettings.from_env()
    registered = retrain(spec_for(), settings, carded=False)
    monkeypatch.setenv("FACTORY_CODE_REVISION", "bbb222")
    with pytest.raises(ReproduceError, match="trained at code revision aaa111; this checkout is bbb222"):
        reproduce_version("churn", registered["version"], FactorySettings.from_env())
    done = reproduce_version("churn", registered["version"], settings)
    assert done["reproduced"], done["verdict"]
    assert {c["metric"] for c in done["comparison"]} >= {"roc_auc", "accuracy"}
    client = connect(settings)
    assert client.get_run(done["scratch_run_id"]).data.tags["factory.reproduce_of"] == "churn/1"

    client.delete_tag(registered["run_id"], "factory.spec_hash")
    with pytest.raises(ReproduceError, match=r"lineage is incomplete.*factory\.spec_hash"):
        reproduce_version("churn", registered["version"], settings)
    client.set_tag(registered["run_id"], "factory.spec_hash", spec_for().spec_hash())
    data = Path(settings.home) / "store" / "validated" / "churn" / str(DAY) / "data.parquet"
    os.remove(data)
    with pytest.raises(ReproduceError, match=r"data .*data\.parquet is gone"):
        reproduce_version("churn", registered["version"], settings)
