"""The "Model factory" view: a FastAPI app of HTML pages and their JSON twins.

Every route depends on ``require_user`` (the plugin passes Airflow's own login dependency, so no
page answers without an Airflow login). A component that is down costs its own columns and a
banner naming it, never a 500: the fleet read model catches per source, and anything else a page
raises is rendered as a message page. Buttons appear only where ``can_run(user, dag_id)`` says
Airflow lets the user trigger that DAG; they call Airflow's own REST API from the browser with
the user's session, so Airflow authorizes the request and records who asked.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from model_factory.analyzer.view import add_routes as add_analyzer_routes
from model_factory.analyzer.view import model_readable
from model_factory.console.fleet_page import STATES, BadFilterError, FleetFilter, FleetPage, read_page
from model_factory.console.health_charts import health_charts
from model_factory.settings import FactorySettings

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
    'stroke-width="2"><path d="M3 21V9l6 4V9l6 4V5h6v16z"/></svg>'
)


ARTIFACT_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)


BODY_TAG = re.compile(r"<body[^>]*>", re.IGNORECASE)


def artifact_page(body: bytes | str, back: tuple[str, str] | None = None) -> HTMLResponse:
    """An HTML artifact a task wrote (model card, drift report), served on Airflow's origin so that
    nothing in it can script that origin: the CSP sandbox gives the page an opaque origin with
    scripts off (no session cookie, no calls to Airflow's API as the user), and it may load nothing
    but its own inline styles and data: images. The artifacts need no more than that.

    ``back`` = (href, label): a plain link put at the top of the body, the page's way back to the
    view (a link navigating its own frame needs no script, so the sandbox keeps it working)."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    if back:
        bar = (
            f'<p style="font:13px system-ui,sans-serif;margin:.4rem 0"><a id="factory-back" '
            f'href="{escape(back[0])}">&larr; {escape(back[1])}</a></p>'
        )
        found = BODY_TAG.search(text)
        text = text[: found.end()] + bar + text[found.end() :] if found else bar + text
    headers = {
        "Content-Security-Policy": ARTIFACT_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(text, headers=headers)


@dataclass
class ConsoleConfig:
    """What the console needs from its host (Airflow's api-server, or a test)."""

    require_user: Callable[..., Any]
    """A FastAPI dependency returning the logged-in user (raises 401/403 otherwise)."""
    settings: Callable[[], FactorySettings]
    """The factory's settings, as the host reads them (the plugin: ``FactorySettings.from_env``)."""
    airflow: Callable[[], Any] = lambda: None
    """Returns an AirflowSource (or None) for last runs and next runs."""
    can_run: Callable[[Any, str], bool] = lambda user, dag_id: False
    """May ``user`` trigger ``dag_id``? Buttons appear only where this says yes."""
    can_unpause: Callable[[Any, str], bool] = lambda user, dag_id: False
    """May ``user`` unpause ``dag_id`` (edit the DAG)? The Unpause button appears only then."""
    user_name: Callable[[Any], str] = str
    readable_dag_ids: Callable[[Any], set[str] | None] = lambda user: None
    """The DAG ids ``user`` may read (None: all): the fleet, a model's page and the Analyzer's
    examples show only models with a readable DAG."""
    sees_people: Callable[[Any], bool] = lambda user: False
    """May ``user`` see per-user detail on the Analyzer page (the platform team)?"""
    root: str = "/"
    """Airflow's URL root path (``[api] base_url``): links to DAG pages and the REST API."""
    mount: str = "/factory"


def mlflow_ui_url(settings: FactorySettings) -> str | None:
    """``FACTORY_MLFLOW_UI_URL``, else the tracking server when it is one (http), else none."""
    explicit = settings.mlflow_ui_url
    if explicit:
        return explicit.rstrip("/")
    return settings.tracking_uri.rstrip("/") if settings.tracking_uri.startswith("http") else None


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["v"] = lambda version: f"v{version}" if version else "-"
    env.filters["when"] = lambda text: str(text)[:16].replace("T", " ") if text else "-"
    env.filters["pct"] = lambda share: f"{share:.0%}" if share is not None else "-"
    env.filters["q"] = lambda text: quote(str(text), safe="")
    return env


class _Pages:
    """The console's templates rendered with what every page links to (``here``: the view's own
    URL; ``root``: Airflow's)."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.env = _env()
        self.here = config.root.rstrip("/") + config.mount

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("here", self.here)
        context.setdefault("root", self.config.root)
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    def message(self, title: str, text: str, status: int) -> HTMLResponse:
        return self.page("message.html.j2", status=status, title=title, text=text)

    def signed_in_page(self, name: str, user: Any, **context: Any) -> HTMLResponse:
        """A page that names who is signed in and links the MLflow UI where there is one."""
        return self.page(
            name, mlflow=mlflow_ui_url(self.config.settings()), user=self.config.user_name(user), **context
        )


def create_app(config: ConsoleConfig) -> FastAPI:
    """The console's app; the plugin mounts it at ``config.mount`` under Airflow's api-server."""
    pages = _Pages(config)
    app = FastAPI(
        title="Model factory",
        dependencies=[Depends(config.require_user)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception) -> Response:
        log.exception("model factory view: %s failed", request.url.path)
        text = f"{type(exc).__name__}: {exc}"
        if request.url.path.startswith(f"{pages.here}/api/") or "/api/" in request.url.path:
            return JSONResponse({"detail": text}, status_code=503)
        return pages.message("Could not build this page", text, 503)

    @app.get("/icon.svg")
    def icon() -> Response:
        return Response(ICON, media_type="image/svg+xml")

    _add_fleet_routes(app, config, pages)
    _add_artifact_routes(app, config, pages)
    _add_mlflow_routes(app, config, pages)
    add_analyzer_routes(  # the Analyzer's page: where data scientists get stuck
        app, pages.page, config.settings, config.require_user, config.sees_people, config.readable_dag_ids
    )
    return app


def _read_fleet(config: ConsoleConfig, user: Any, wanted: FleetFilter) -> tuple[dict, FleetPage]:
    """One page of the fleet: the per-row reads that cost a call each (card listing, permission
    check) are done for the rows of the page only."""
    from model_factory.rollout.fleet import latest_cards

    settings = config.settings()
    dag_ids = config.readable_dag_ids(user)
    summary, shown = read_page(
        settings, config.airflow(), wanted, readable=lambda model: model_readable(model, dag_ids)
    )
    latest_cards(settings, {"models": shown.rows, "sources": summary["sources"]})
    for row in shown.rows:
        row["can_trigger"] = bool(row.get("dags", {}).get("retrain")) and config.can_run(
            user, row["dags"]["retrain"]
        )
    return summary, shown


def _read_model(config: ConsoleConfig, user: Any, model: str) -> dict | None:
    """A model's detail with what ``user`` may do on its page; None for a model ``user`` may not
    read or the factory does not know."""
    from model_factory.rollout.fleet import model_detail

    if not MODEL_NAME.match(model) or not model_readable(model, config.readable_dag_ids(user)):
        return None
    try:
        detail = model_detail(config.settings(), model, config.airflow())
    except KeyError:
        return None
    dags = detail.get("dags", {})
    detail["can_trigger"] = bool(dags.get("retrain")) and config.can_run(user, dags["retrain"])
    detail["can_rollout"] = bool(dags.get("canary")) and config.can_run(user, dags["canary"])
    detail["paused_dags"] = _paused_dags(config, [dags[k] for k in ("retrain", "canary") if dags.get(k)])
    detail["can_unpause"] = {dag: config.can_unpause(user, dag) for dag in detail["paused_dags"]}
    return detail


def _paused_dags(config: ConsoleConfig, dag_ids: list[str]) -> list[str]:
    """Which of ``dag_ids`` are paused: a run triggered there would wait until unpaused."""
    source = config.airflow()
    if source is None or not dag_ids:
        return []
    try:
        states = source.dag_states(dag_ids)
    except Exception:  # the banner already names Airflow as down; buttons then stay as they are
        log.info("model factory view: paused state of %s not read", dag_ids, exc_info=True)
        return []
    return [dag for dag in dag_ids if (states.get(dag) or {}).get("is_paused")]


def _add_fleet_routes(app: FastAPI, config: ConsoleConfig, pages: _Pages) -> None:
    """The fleet and a model's page, each as HTML and as JSON."""
    User = Annotated[Any, Depends(config.require_user)]

    @app.get("/", response_class=HTMLResponse)
    def fleet_page(request: Request, user: User) -> HTMLResponse:
        try:
            wanted = FleetFilter.from_query(request.query_params)
        except BadFilterError as exc:
            return pages.message("Bad filter", str(exc), 400)
        summary, shown = _read_fleet(config, user, wanted)
        columns = {
            "card": any(row.get("card_version") for row in shown.rows),
            "checklist": any(row.get("checklist") for row in shown.rows),
        }
        return pages.signed_in_page(
            "fleet.html.j2", user, fleet=summary, shown=shown, wanted=wanted, columns=columns, states=STATES
        )

    @app.get("/api/fleet")
    def fleet_json(request: Request, user: User) -> JSONResponse:
        try:
            wanted = FleetFilter.from_query(request.query_params)
        except BadFilterError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        summary, shown = _read_fleet(config, user, wanted)
        counts = {"matched": shown.matched, "total": shown.total, "page": shown.page, "pages": shown.pages}
        return JSONResponse(_jsonable({**summary, "models": shown.rows, **counts}))

    @app.get("/models/{model}", response_class=HTMLResponse)
    def model_page(model: str, user: User) -> HTMLResponse:
        detail = _read_model(config, user, model)
        if detail is None:
            return pages.message("No such model", f"There is no model {model!r} in the factory's specs.", 404)
        charts = (
            []
            if detail.get("status") == "broken"
            else health_charts(
                detail.get("health_history", []),
                detail.get("drift_checks", []),
                detail.get("metric", "metric"),
                detail.get("threshold"),
                detail.get("psi_threshold"),
            )
        )
        return pages.signed_in_page("model.html.j2", user, m=detail, charts=charts)

    @app.get("/api/models/{model}")
    def model_json(model: str, user: User) -> JSONResponse:
        detail = _read_model(config, user, model)
        if detail is None:
            return JSONResponse({"detail": f"no model {model!r}"}, status_code=404)
        return JSONResponse(_jsonable(detail))


def _add_artifact_routes(app: FastAPI, config: ConsoleConfig, pages: _Pages) -> None:
    """A drift report and a model card: the raw artifact (:func:`artifact_page`) and the view's page
    around it."""

    def framed_artifact(model: str, title: str, raw: str) -> HTMLResponse:
        """A view page around an artifact: the way back, and the artifact in a nested frame that
        keeps its own sandbox. Inside Airflow's frame a link in the artifact itself cannot bring the
        user back: a navigation started by its opaque origin carries no session cookie
        (SameSite=Lax), so Airflow would answer 401. This page is on the view's own origin."""
        return pages.page("artifact.html.j2", model=model, title=title, raw=raw)

    @app.get("/models/{model}/drift/{ds}/page", response_class=HTMLResponse)
    def drift_report_page(model: str, ds: str) -> Response:
        if not MODEL_NAME.match(model) or not DS.match(ds):
            return pages.message("Bad request", "model or date malformed (date: YYYY-MM-DD)", 400)
        return framed_artifact(
            model,
            f"Drift report of {model} for {ds}",
            f"{pages.here}/models/{quote(model)}/drift/{ds}?embedded=1",
        )

    @app.get("/models/{model}/versions/{version}/card/page", response_class=HTMLResponse)
    def card_page(model: str, version: str) -> Response:
        if not MODEL_NAME.match(model) or not version.isdigit():
            return pages.message("Bad request", "model or version malformed", 400)
        raw = f"{pages.here}/models/{quote(model)}/versions/{version}/card?embedded=1"
        return framed_artifact(model, f"Model card of {model} v{version}", raw)

    def back_to(model: str, embedded: str | None) -> tuple[str, str] | None:
        return None if embedded else (f"{pages.here}/models/{quote(model)}", f"{model} in the Model factory")

    @app.get("/models/{model}/drift/{ds}", response_class=HTMLResponse)
    def drift_report(model: str, ds: str, embedded: str | None = None) -> Response:
        from model_factory.io import storage
        from model_factory.rollout.summary import drift_checks

        if not MODEL_NAME.match(model) or not DS.match(ds):
            return pages.message("Bad request", "model or date malformed (date: YYYY-MM-DD)", 400)
        checks = [c for c in drift_checks(config.settings(), model) if c["ds"] == ds]
        if not checks:
            return pages.message("No drift report", f"{model} has no drift check for {ds}.", 404)
        try:
            body = storage.read_bytes(checks[-1]["report_uri"])
        except Exception as exc:
            return pages.message("Report unreadable", f"{checks[-1]['report_uri']}: {exc}", 503)
        return artifact_page(body, back=back_to(model, embedded))

    @app.get("/models/{model}/versions/{version}/card", response_class=HTMLResponse)
    def card(model: str, version: str, embedded: str | None = None) -> Response:
        from model_factory.review.card_store import read_card

        if not MODEL_NAME.match(model) or not version.isdigit():
            return pages.message("Bad request", "model or version malformed", 400)
        found = read_card(config.settings(), model, version)
        if found is None:
            return pages.message("No model card", f"{model} v{version} has no model_card.html artifact.", 404)
        return artifact_page(found, back=back_to(model, embedded))


def _add_mlflow_routes(app: FastAPI, config: ConsoleConfig, pages: _Pages) -> None:
    """Links into the MLflow UI (a run, a model version); without a UI, a run's own page."""

    @app.get("/mlflow/runs/{run_id}")
    def mlflow_run(run_id: str) -> Response:
        from model_factory.io import tracking

        if not re.fullmatch(r"[0-9a-f]{32}", run_id):
            return pages.message("Bad request", "an MLflow run id is 32 hex digits", 400)
        settings = config.settings()
        run = tracking.connect(settings).get_run(run_id)
        ui = mlflow_ui_url(settings)
        if ui:
            return RedirectResponse(f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run_id}")
        return pages.page("run.html.j2", run=run)

    @app.get("/mlflow/models/{model}")
    def mlflow_model(model: str, version: str | None = None) -> Response:
        ui = mlflow_ui_url(config.settings())
        if not ui:
            return pages.message(
                "No MLflow UI", "set FACTORY_MLFLOW_UI_URL to link the MLflow UI (`make ui`).", 404
            )
        target = f"{ui}/#/models/{quote(model)}" + (f"/versions/{quote(version)}" if version else "")
        return RedirectResponse(target)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
