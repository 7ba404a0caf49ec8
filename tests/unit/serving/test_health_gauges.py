"""The health check's latest figures on the gateway's /metrics: read on a scrape, cached, and a
table that cannot be read costs only these gauges."""

from datetime import date, datetime

import sqlalchemy as sa
from model_factory.monitoring.health_history import HealthRow, record
from model_factory.serving.health_gauges import HealthGauges
from model_factory.serving.metrics import Metrics

from tests.unit.monitoring.health_rows import health_row


def _row(version: str, estimated: float) -> HealthRow:
    return health_row(
        version=version,
        realized=0.79,
        realized_low=0.77,
        realized_high=0.81,
        estimated=estimated,
        estimated_low=estimated - 0.02,
        estimated_high=estimated + 0.02,
        outcomes=400,
        label_coverage=0.4,
        checked_at=datetime(2026, 3, 2),
    )


def test_health_gauges_show_the_latest_figures_and_are_reread_only_after_their_ttl(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")
    record(engine, [_row("3", 0.8)])
    cached = HealthGauges(engine, ttl_s=3600)
    text = Metrics().render(cached.gauges())
    assert 'factory_model_estimated_metric{model="churn",version="3",metric="roc_auc"} 0.8' in text
    assert 'factory_model_realized_metric{model="churn",version="3",metric="roc_auc"} 0.79' in text
    assert "factory_gateway_health_read_errors 0" in text

    assert "factory_model_label_coverage" in text
    record(engine, [_row("4", 0.7)])
    assert not any(g[2].get("version") == "4" for g in cached.gauges())  # within the ttl: no query
    fresh = HealthGauges(engine, ttl_s=0)
    assert any(g[2].get("version") == "4" and g[3] == 0.7 for g in fresh.gauges())


def test_the_realized_gauge_is_of_the_newest_day_that_has_outcomes(tmp_path) -> None:
    from dataclasses import replace

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")
    assert HealthGauges(engine).gauges()[0][0] == "factory_gateway_health_read_errors"  # no table yet
    later = replace(_row("3", 0.75), day=date(2026, 3, 3), realized=None)  # outcomes not in yet
    record(engine, [_row("3", 0.8), later])
    figures = {g[0]: g[3] for g in HealthGauges(engine).gauges() if g[2].get("version") == "3"}
    assert figures["factory_model_realized_metric"] == 0.79  # the older day's: outcomes lag
    assert figures["factory_model_estimated_metric"] == 0.75


def test_an_unreadable_health_table_costs_only_the_health_gauges(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'predictions.db'}")
    gauges = HealthGauges(engine, ttl_s=0)
    first = gauges.gauges()
    assert [g[0] for g in first] == ["factory_gateway_health_read_errors"] and first[0][3] == 1.0
    assert gauges.gauges()[0][3] == 2.0
