"""What a page of the fleet reads: its models' store folders, each model's newest drift report,
and its models' DAGs from Airflow, never the whole fleet's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from model_factory.io import storage
from model_factory.rollout import fleet, summary
from model_factory.rollout.fleet_airflow import RestAirflowSource
from model_factory.settings import FactorySettings


@pytest.fixture
def store(tmp_path: Path) -> FactorySettings:
    root = tmp_path / "store"
    for model in ("a", "b", "c"):
        for ds in ("2026-01-01", "2026-01-03", "2026-01-02"):
            folder = root / "drift" / model / ds
            folder.mkdir(parents=True)
            (folder / "report.json").write_text(f'{{"ds": "{ds}", "status": "no_drift", "reasons": []}}')
            (folder / "report.html").write_text("<html></html>")
            (root / "health" / model / ds).mkdir(parents=True)
            (root / "health" / model / ds / "report.json").write_text(f'{{"ds": "{ds}", "action": "none"}}')
    (root / "quarantine" / "b" / "2026-01-02" / "abc").mkdir(parents=True)
    (root / "quarantine" / "b" / "2026-01-02" / "abc" / "REASON.txt").write_text("- nulls\n")
    return FactorySettings(home=tmp_path, store_uri=root.as_uri())


def _listed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    prefixes: list[str] = []
    original = storage.list_uris

    def spy(prefix: str, s3: Any = None) -> list[str]:
        prefixes.append(prefix)
        return original(prefix, s3)

    monkeypatch.setattr(storage, "list_uris", spy)
    return prefixes


def test_a_page_lists_its_models_folders_and_the_whole_fleet_the_whole_trees(
    store: FactorySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefixes = _listed(monkeypatch)
    page = fleet._store_listing(store, ["b"])
    assert all("/b/" in prefix for prefix in prefixes) and len(prefixes) == 3
    assert {model for _, model in page} == {"b"} and len(page[("drift", "b")]) == 6
    assert len(page[("quarantine", "b")]) == 1
    prefixes.clear()
    whole = fleet._store_listing(store, None)
    assert len(prefixes) == 3 and len(whole[("drift", "a")]) == 6
    assert {model for _, model in whole} == {"a", "b", "c"}


def test_a_fleet_row_reads_only_the_newest_drift_report(
    store: FactorySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    uris = fleet._store_listing(store, ["a"])[("drift", "a")]
    read: list[str] = []
    original = storage.read_json
    monkeypatch.setattr(storage, "read_json", lambda uri, s3=None: read.append(uri) or original(uri, s3))
    newest = summary.latest_drift_check(store, "a", uris)
    assert newest is not None and newest["ds"] == "2026-01-03" and len(read) == 1
    assert newest == summary.drift_checks(store, "a", uris)[-1]
    assert summary.latest_drift_check(store, "nobody", []) is None


class FakeAirflow:
    def __init__(self, dag_ids: list[str]) -> None:
        self.known = dag_ids
        self.calls: list[dict] = []

    def dag(self, dag_id: str) -> dict:
        self.calls.append({"dag": dag_id})
        return {"dag_id": dag_id, "next_dagrun_run_after": None, "is_paused": False}

    def all_dags(self, **params: Any) -> list[dict]:
        self.calls.append(params)
        prefixes = params.get("dag_id_prefix_pattern", "").split("|") if params else [""]
        return [
            {"dag_id": d, "is_paused": True} for d in self.known if any(d.startswith(p) for p in prefixes)
        ]


@pytest.mark.parametrize(("models", "calls"), [(2, 10), (60, 2), (600, 1)])
def test_a_page_asks_airflow_for_its_models_dags_by_prefix(models: int, calls: int) -> None:
    names = [f"m{i:04d}" for i in range(models)]
    page = [dag for name in names for dag in fleet.dag_ids(name).values()]
    airflow = FakeAirflow([*page, "m9999__retrain", "other__retrain"])
    states = RestAirflowSource(airflow).dag_states(page)
    assert set(states) == set(page)  # every DAG of the page, none of the others
    assert len(airflow.calls) == calls
    if models == 60:
        assert airflow.calls[0]["dag_id_prefix_pattern"].split("|")[:2] == ["m0000__", "m0001__"]
