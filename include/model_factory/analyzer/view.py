"""The Analyzer's page in the "Model factory" view: the latest report, as HTML and JSON.

The page shows the newest report the weekly ``model_factory_analyzer`` DAG (or ``model-factory
analyze --write``) wrote to the store; with none yet, it analyzes the stored events on the spot
(no collection: a page view never calls Airflow or MLflow) and says so.

Who sees what (the host decides through two callables of ``ConsoleConfig``; under Airflow the
plugin asks Airflow's auth manager, see ``model_factory.airflow.plugin``):

- everyone logged in: the aggregate report (counts, segment sizes and centroids, findings with
  their shares and suggested actions);
- per-user detail (each user's signals and segment, the examples of a finding with their user and
  message, names in notes) only to the platform team: ``sees_people(user)``, under Airflow the
  users its auth manager lets create connections (the Op and Admin roles);
- an example's model only when the user may read one of that model's DAGs (``readable_dag_ids``,
  under Airflow its auth manager's ``get_authorized_dag_ids(method="GET")``); the fleet page lists
  only those models too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model_factory.settings import FactorySettings

REDACTED = "per-user detail is shown to the platform team only (Airflow users who may edit connections)"


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


def model_readable(model: str | None, dag_ids: set[str] | None) -> bool:
    """May a viewer who can read ``dag_ids`` (None: every DAG) see ``model``? Yes when one of the
    model's DAGs (``<model>__…`` or ``invalid_spec__<model>``) is among them."""
    if dag_ids is None:
        return True
    if not model:
        return False
    return f"invalid_spec__{model}" in dag_ids or any(d.startswith(f"{model}__") for d in dag_ids)


def for_viewer(
    report: dict[str, Any], sees_people: bool, can_read_model: Callable[[str], bool]
) -> dict[str, Any]:
    """The report as this viewer may see it: without per-user detail unless ``sees_people``, and
    without the models the viewer may not read."""
    out = dict(report)
    findings = []
    for finding in report.get("findings") or []:
        examples = []
        for example in finding.get("examples") or []:
            model = example.get("model")
            shown = {**example, "model": model if model and can_read_model(model) else None}
            if not sees_people:
                shown = {"at": example.get("at"), "action": example.get("action"), "model": shown["model"]}
            examples.append(shown)
        findings.append({**finding, "examples": examples})
    out["findings"] = findings
    if sees_people:
        return out
    users = {row.get("user") for row in report.get("user_signals") or []}
    users |= set((report.get("segmentation") or {}).get("segments") or {})
    users |= set(report.get("excluded_users") or {}) | set(report.get("not_segmented") or {})
    users.discard(None)
    out.pop("user_signals", None)
    for named in ("excluded_users", "not_segmented"):  # who they are: per-user detail; how many: not
        if named in out:
            out[named] = {"count": len(out[named])}
    if "segmentation" in out:
        out["segmentation"] = {k: v for k, v in out["segmentation"].items() if k != "segments"}

    def scrub(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        for user in sorted(users, key=len, reverse=True):
            if len(user) >= 2:
                text = text.replace(user, "<user>")
        return text

    out["messages"] = [scrub(m) for m in report.get("messages") or []]
    if isinstance(out.get("segmentation"), dict) and "reason" in out["segmentation"]:
        out["segmentation"]["reason"] = scrub(out["segmentation"]["reason"])
    out["redacted"] = REDACTED
    return out


def add_routes(
    app: Any,
    page: Callable[..., Any],
    settings: Callable[[], FactorySettings],
    require_user: Callable[..., Any] | None = None,
    sees_people: Callable[[Any], bool] = lambda user: False,
    readable_dag_ids: Callable[[Any], set[str] | None] = lambda user: None,
) -> None:
    """``GET /analyzer`` (HTML) and ``GET /api/analyzer`` (JSON) on the console's app; the app's own
    login dependency guards them like every other route, and each viewer gets ``for_viewer``."""
    from fastapi import Depends
    from fastapi.responses import HTMLResponse, JSONResponse

    # a default, not an Annotated alias: this module's annotations are strings (``__future__``)
    # that FastAPI resolves in the module's globals, where a local alias is not
    login = Depends(require_user or (lambda: None))

    def shown(user: Any) -> tuple[dict[str, Any], str]:
        report, source = latest_report(settings())
        dag_ids = readable_dag_ids(user)
        shown = for_viewer(report, bool(sees_people(user)), lambda model: model_readable(model, dag_ids))
        return shown, source

    @app.get("/analyzer", response_class=HTMLResponse)
    def analyzer_page(user: Any = login) -> HTMLResponse:
        report, source = shown(user)
        return page("analyzer.html.j2", report=report, source=source)

    @app.get("/api/analyzer")
    def analyzer_json(user: Any = login) -> JSONResponse:
        report, source = shown(user)
        return JSONResponse({**report, "read_from": source})
