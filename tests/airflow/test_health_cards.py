"""The health DAG re-renders the card of each version that served with its post-deployment
performance; a version without stored card data is named, never fails the check."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from model_factory.io import tracking
from model_factory.monitoring.health_history import HealthRow, record
from model_factory.spec import load_spec

from tests.unit.monitoring.health_rows import health_row
from tests.unit.pipeline.test_registry import two_versions  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]


def _row(version: str, day: int, realized: float | None) -> HealthRow:
    return health_row(
        version=version,
        day=date(2026, 1, day),
        realized=realized,
        realized_low=realized and realized - 0.03,
        realized_high=realized and realized + 0.03,
        estimated=0.79,
        estimated_low=0.77,
        estimated_high=0.81,
        outcomes=400 if realized else 0,
        label_coverage=0.8 if realized else None,
        p95_ms=14.0,
        checked_at=datetime(2026, 1, 20),
    )


def test_the_card_of_a_version_that_served_shows_after_deployment(two_versions) -> None:  # noqa: F811
    from model_factory.airflow.health import refresh_cards
    from model_factory.review.card import produce_card

    settings = two_versions
    spec = load_spec(REPO / "include" / "models" / "churn.yaml")
    produce_card(spec, {"model": "churn", "version": "1"}, settings)
    db = f"sqlite:///{settings.home / 'health-test.db'}"
    engine = sa.create_engine(db)
    record(engine, [_row("1", 10, 0.81), _row("1", 11, None), _row("9", 11, 0.7)])
    engine.dispose()

    done = refresh_cards(spec, settings, db)
    assert done["1"].endswith("/model_card.html")
    assert done["9"].startswith("not re-rendered")  # no such version: named, the check goes on
    client = tracking.connect(settings)
    html = client.download_artifacts(client.get_model_version("churn", "1").run_id, "model_card.html")
    after = Path(html).read_text().split('id="after-deployment"')[1]
    assert "Served 2026-01-10 to 2026-01-11: 2000 predictions, 400 with a matured outcome" in after
    assert "Realized roc_auc <b>0.8100</b>" in after and "Latest estimate 0.7900 (2026-01-11)" in after
