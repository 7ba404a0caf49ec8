"""The one `model-factory` CLI: help at every level, the fleet, one model, runs through Airflow, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from model_factory.cli.main import app, main
from model_factory.settings import FactorySettings

from tests.unit.cli.test_cli_habits import OPS
from tests.unit.console.health_fixture import store_health
from tests.unit.monitoring.health_rows import health_row
from tests.unit.pipeline.test_registry import two_versions  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[3]


def _dead_airflow(monkeypatch: pytest.MonkeyPatch) -> str:
    from model_factory_dev.stack import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("FACTORY_AIRFLOW_URL", url)
    return url


def test_help_reads_at_every_level(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    commands = [c.name for c in typer.main.get_command(app).commands.values() if not c.hidden]
    for name in sorted({*OPS, "validate", "serve", "demo"}):
        assert name in commands and name in top, name
    for name in commands:
        if name in ("serve", "demo"):  # their --help is the wrapped program's
            continue
        assert main([name, "--help"]) == 0, name
        assert "Usage: model-factory " + name in capsys.readouterr().out


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty specs folder the CLI reads (FACTORY_SPECS_DIR)."""
    folder = tmp_path / "specs"
    folder.mkdir()
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(folder))
    return folder


def test_status_shows_the_fleet_with_a_broken_spec_and_alerts(
    two_versions,  # noqa: F811 - the fixture imported above
    specs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from model_factory.monitoring.alerts import Alert, deliver

    shutil.copy(REPO / "include" / "models" / "churn.yaml", specs / "churn.yaml")
    (specs / "typo.yaml").write_text("name: typo\nownr: me\n")
    alert = Alert(model="churn", owner="growth", kind="drift", subject="churn: drift on 2026-01-11", body="x")
    deliver(alert, two_versions)

    assert main(["status", "--offline", "--json"]) == 0
    fleet = json.loads(capsys.readouterr().out)
    rows = {row["model"]: row for row in fleet["models"]}
    churn = rows["churn"]
    assert (churn["champion"], churn["challenger"], churn["versions"]) == ("1", "2", 2)
    assert churn["metric"] == "roc_auc" and 0.5 < churn["champion_metric"] <= 1.0
    assert churn["last_training"]["version_decision"] == "blessed"
    assert [a["subject"] for a in churn["alerts"]] == ["churn: drift on 2026-01-11"]
    assert rows["typo"]["status"] == "broken" and "ownr" in rows["typo"]["reason"]
    assert fleet["sources"] == {
        "mlflow": "ok",
        "alerts": "ok",
        "airflow": "not asked",
        "store": "ok",
        "health": "ok",
    }
    assert churn["health"] is None  # no health check yet

    assert main(["status", "--offline"]) == 0
    table = capsys.readouterr().out
    assert "churn" in table and "v1 roc_auc=" in table and "BROKEN" in table

    _record_health(FactorySettings.from_env())
    assert main(["status", "--offline", "--json"]) == 0
    health = {r["model"]: r for r in json.loads(capsys.readouterr().out)["models"]}["churn"]["health"]
    assert (health["live"], health["live_day"]) == (0.74, "2026-03-02")  # outcomes lag: an older day
    assert (health["estimated"], health["estimated_day"]) == (0.71, "2026-03-04")
    assert health["check"]["retrain_by"] == "2026-03-12" and health["check"]["action"] == "alert"
    assert main(["status", "--offline"]) == 0
    table = capsys.readouterr().out
    assert "live metric" in table and "0.7400 (03-02)" in table and "0.7100 (03-04)" in table
    assert "by 2026-03-12 (alert)" in table

    assert main(["show", "churn", "--offline", "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in detail["versions_detail"]] == ["2", "1"]
    assert detail["versions_detail"][0]["aliases"] == ["challenger"]
    assert main(["promote", "churn", "2", "--reason", "looked good", "--actor", "ana"]) == 0
    capsys.readouterr()
    assert main(["show", "churn", "--offline"]) == 0
    shown = capsys.readouterr().out
    assert "promoted by ana via cli: looked good" in shown and "drift on 2026-01-11" in shown

    assert main(["show", "typo", "--offline"]) == 0
    assert "BROKEN" in capsys.readouterr().out


def _record_health(settings: FactorySettings) -> None:
    """Three days of churn v1's health (realized only on the oldest: outcomes arrive late) and
    the last check's expiry forecast, as the churn__health DAG writes them."""
    from datetime import date

    from model_factory.monitoring.health_history import HealthRow

    def row(day: int, realized: float | None, estimated: float) -> HealthRow:
        return health_row(
            version="1",
            day=date(2026, 3, day),
            realized=realized,
            estimated=estimated,
            estimated_low=None,
            estimated_high=None,
            predictions=900,
            outcomes=300 if realized else 0,
            label_delay_days=None,
            output_drift_ks=None,
            error_rate=None,
            p95_ms=None,
        )

    rows = [row(2, 0.74, 0.73), row(3, None, 0.72), row(4, None, 0.71)]
    report = {
        "ds": "2026-03-04",
        "action": "alert",
        "reason": "expiry: ...",
        "expiry": "2026-03-20",
        "retrain_by": "2026-03-12",
        "cadence_days": 20,
        "champion_version": "1",
    }
    store_health(settings, rows, report)


def test_an_unknown_model_is_named_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "nope", "--offline"]) == 1
    assert "no model 'nope'" in capsys.readouterr().err
    assert main(["trigger", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no model 'nope'" in err and "churn" in err


def test_airflow_down_gives_exit_3_naming_what_to_start(
    factory_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _dead_airflow(monkeypatch)
    assert main(["trigger", "churn", "--date", "2026-01-05"]) == 3
    err = capsys.readouterr().err
    assert f"not reachable at {url}" in err and "make ui" in err
    assert main(["runs", "churn"]) == 3
    assert main(["status"]) == 3  # the table still shows what could be read
    captured = capsys.readouterr()
    assert "churn" in captured.out and "airflow unreachable" in captured.err and "--offline" in captured.err
    assert main(["trigger", "churn", "--date", "5 Jan"]) == 1
    assert "--date" in capsys.readouterr().err


def test_mlflow_down_gives_exit_3_and_still_lists_the_specs(
    factory_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_factory_dev.stack import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(["status", "--offline", "--json"]) == 3
    captured = capsys.readouterr()
    assert {row["model"] for row in json.loads(captured.out)["models"]} >= {"churn", "demand"}
    assert "mlflow unreachable" in captured.err and "MLFLOW_TRACKING_URI" in captured.err
    assert FactorySettings.from_env().tracking_uri in captured.err


def test_ops_on_an_unknown_model_or_a_dead_mlflow_say_so(
    factory_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_factory_dev.stack import free_port

    assert main(["promote", "nope", "3", "--reason", "x"]) == 1
    assert "refused: no registered model or version for 'nope'" in capsys.readouterr().err
    assert main(["canary", "nope", "3", "--reason", "x"]) == 1
    assert "refused: " in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(["rollback", "churn", "--reason", "x"]) == 3
    assert "MLflow did not answer" in capsys.readouterr().err


def test_a_wrong_command_line_is_a_usage_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--bogus"]) == 2
    assert "No such option: --bogus" in capsys.readouterr().err


def test_status_pages_and_filters_like_the_view_and_show_reads_one_model(
    two_versions,  # noqa: F811 - the fixture imported above
    specs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from model_factory.io import registry_read
    from model_factory.rollout import fleet as fleet_module

    churn = (REPO / "include" / "models" / "churn.yaml").read_text()
    for name in ("churn", "churn_b", "churn_c", "other_d"):
        text = churn.replace("name: churn\n", f"name: {name}\n")
        if name == "other_d":
            text = text.replace("owner: ", "owner: platform-", 1)
        (specs / f"{name}.yaml").write_text(text)

    assert main(["status", "--offline", "--json", "--per-page", "3"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["matched"], first["total"], first["page"], first["pages"]) == (4, 4, 1, 2)
    assert [r["model"] for r in first["models"]] == ["churn", "churn_b", "churn_c"]
    assert main(["status", "--offline", "--json", "--per-page", "3", "--page", "2"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)["models"]] == ["other_d"]
    assert main(["status", "--offline", "--json", "--match", "churn_", "--state", "no champion"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)["models"]] == ["churn_b", "churn_c"]
    owner = next(line for line in churn.splitlines() if line.startswith("owner: ")).split(": ", 1)[1]
    assert main(["status", "--offline", "--json", "--owner", f"platform-{owner}"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)["models"]] == ["other_d"]
    assert main(["status", "--offline", "--per-page", "2"]) == 0
    table = capsys.readouterr().out
    assert "2 of 4 matching, 4 in all, page 1" in table and "page 1 of 2: --page N" in table
    assert main(["status", "--offline", "--state", "sleeping"]) == 2
    assert "--state 'sleeping': use one of" in capsys.readouterr().err

    # `show` reads its own spec and its own registry entries, never the fleet's.
    searched: list[tuple[str, ...] | None] = []
    read_registry = registry_read.read_registry

    def spy(settings, names):
        searched.append(None if names is None else tuple(names))
        return read_registry(settings, names)

    monkeypatch.setattr(registry_read, "read_registry", spy)

    read_specs = fleet_module.read_specs

    def only_its_own_spec(specs_dir: Path, index: Path, settings, only: set[str] | None = None):
        if only is None or len(only) != 1:
            raise AssertionError(f"show read the specs {only or 'all'}")
        return read_specs(specs_dir, index, settings, only)

    monkeypatch.setattr(fleet_module, "read_specs", only_its_own_spec)
    assert main(["show", "churn", "--offline", "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["model"] == "churn" and [v["version"] for v in detail["versions_detail"]] == ["2", "1"]
    assert searched == [("churn",)]
    assert main(["show", "nope", "--offline"]) != 0
    assert "no model 'nope'" in capsys.readouterr().err
    # a page of `status` reads its page's models from MLflow, not the whole registry
    monkeypatch.setattr(fleet_module, "read_specs", read_specs)
    searched.clear()
    assert main(["status", "--offline", "--json", "--per-page", "2", "--page", "2"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)["models"]] == ["churn_c", "other_d"]
    assert searched == [("churn_c", "other_d")]
