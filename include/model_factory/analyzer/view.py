"""The Analyzer's page in the "Model factory" view: the latest report, as HTML and JSON.

The page shows the newest report the weekly ``model_factory_analyzer`` DAG (or ``model-factory
analyze --write``) wrote to the store; with none yet, it analyzes the stored events on the spot
(no collection: a page view never calls Airflow or MLflow) and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model_factory.settings import FactorySettings


def latest_report(settings: FactorySettings) -> tuple[dict[str, Any], str]:
    """The newest report in the store and where it came from; else one computed from stored events."""
    from model_factory.io import storage

    prefix = storage.join(settings.store_uri, "analyzer", "reports")
    try:
        written = sorted(u for u in storage.list_uris(prefix) if u.endswith("/report.json"))
    except Exception:  # an unreadable store: fall back to the events themselves
        written = []
    if written:
        return storage.read_json(written[-1]), written[-1]
    from model_factory.analyzer.report import build_report

    report = build_report(settings, collect=False)
    return report, "computed now from the stored events (no weekly report in the store yet)"


def add_routes(app: Any, page: Callable[..., Any], settings: Callable[[], FactorySettings]) -> None:
    """``GET /analyzer`` (HTML) and ``GET /api/analyzer`` (JSON) on the console's app; the app's own
    login dependency guards them like every other route."""
    from fastapi.responses import HTMLResponse, JSONResponse

    @app.get("/analyzer", response_class=HTMLResponse)
    def analyzer_page() -> HTMLResponse:
        report, source = latest_report(settings())
        return page("analyzer.html.j2", report=report, source=source)

    @app.get("/api/analyzer")
    def analyzer_json() -> JSONResponse:
        report, source = latest_report(settings())
        return JSONResponse({**report, "read_from": source})
