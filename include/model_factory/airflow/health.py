"""``<model>__health``: the daily health check (issue 20), built for every retraining template.

Thin wiring around :func:`model_factory.monitoring.health_watch.run_health_check`: the check
writes the ``model_health`` history and report; an alert goes to the owner on an estimated drop
or an expiry inside ``outcomes.warn_days``; a realized drop emits the same retrain asset as the
drift watch (same cooldown, reason "performance"). The decision is logged with its reason.
"""

import logging

from model_factory.airflow.blocks import alert
from model_factory.airflow.common import common_dag_args, drift_asset
from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec

from airflow.sdk import DAG, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

log = logging.getLogger("model_factory.airflow")


def refresh_cards(spec, settings: FactorySettings, db_uri: str) -> dict[str, str]:
    """Re-render the model card of each version in the health history with its "After deployment"
    section; a card that cannot be re-rendered is logged and named, never fails the check."""
    from dataclasses import asdict

    import sqlalchemy as sa
    from model_factory.monitoring.health_history import history
    from model_factory.review.card import add_health_to_card

    engine = sa.create_engine(db_uri)
    try:
        rows = [asdict(row) for row in history(engine, spec.name)]
    finally:
        engine.dispose()
    done: dict[str, str] = {}
    for version in sorted({row["version"] for row in rows}):
        try:
            uri = add_health_to_card(
                spec.registered_model_name, version, [r for r in rows if r["version"] == version], settings
            )
            done[version] = uri or "no stored card data"
        except Exception as exc:  # a card is documentation: the check's decision stands without it
            log.warning("card of %s v%s not re-rendered: %s", spec.name, version, exc)
            done[version] = f"not re-rendered: {type(exc).__name__}: {exc}"
    return done


def health_dag(loaded: LoadedSpec) -> DAG:
    spec = loaded.spec
    retrain_id = f"{spec.name}__retrain"
    with DAG(
        dag_id=f"{spec.name}__health",
        description=f"{spec.name}'s health: realized and estimated performance, expiry forecast",
        schedule=spec.outcomes.schedule,
        max_active_runs=3,
        **common_dag_args(spec, "health"),
        doc_md=f"Joins {spec.name}'s served predictions with their outcomes, estimates performance "
        "before outcomes arrive, forecasts expiry, writes the health history "
        f"(`model-factory health {spec.name}`); a realized drop emits `{spec.name}__drift` "
        f'(runs `{retrain_id}`, reason performance). Conf `{{"ds": "YYYY-MM-DD"}}` checks a date.',
    ) as built:

        @task(multiple_outputs=True)
        def check() -> dict:
            from model_factory.monitoring.health_watch import run_health_check
            from model_factory.pipeline.champion_baseline import NoBaselineError
            from model_factory.serving.settings import prediction_db_uri

            context = get_current_context()
            ds = (context["dag_run"].conf or {}).get("ds") or context["ds"]
            settings = FactorySettings.from_env()
            try:
                summary = run_health_check(spec, ds, settings, prediction_db_uri(settings))
            except NoBaselineError as exc:
                raise AirflowSkipException(str(exc)) from exc
            log.info(
                "health of %s on %s: %s (%s)\nreport: %s",
                spec.name,
                ds,
                summary["action"],
                summary["reason"],
                summary["report_uri"],
            )
            summary["cards"] = refresh_cards(spec, settings, prediction_db_uri(settings))
            if summary["action"] in ("alert", "retrain"):
                alert(
                    spec,
                    f"health_{summary['action']}",
                    f"{spec.name}: health {summary['action']} on {ds}",
                    summary["reason"] + f"\nReport: {summary['report_uri']}",
                    summary,
                )
            return summary

        @task(multiple_outputs=True, outlets=[drift_asset(spec)])
        def fire_retrain(summary: dict) -> dict:
            from model_factory.monitoring.watch import record_retrain_trigger, retrain_gate

            if summary["action"] != "retrain":
                raise AirflowSkipException(f"no retrain: {summary['action']}: {summary['reason']}")
            context = get_current_context()
            settings = FactorySettings.from_env()
            checked = {
                "status": "performance",
                "ds": summary["ds"],
                "reasons": [summary["reason"]],
                "report_uri": summary["report_uri"],
            }
            active = context["ti"].get_dr_count(dag_id=retrain_id, states=["queued", "running"])
            fire, why = retrain_gate(spec, checked, settings, active_retrains=active)
            if not fire:
                raise AirflowSkipException(f"no retrain fired: {why}")
            record_retrain_trigger(spec, checked, settings)
            extra = {
                "ds": summary["ds"],
                "status": "performance",
                "reason": why,
                "report_uri": summary["report_uri"],
                "champion_version": summary["champion_version"],
            }
            context["outlet_events"][drift_asset(spec)].extra = extra
            return extra

        fire_retrain(check())  # type: ignore[arg-type]
    return built
