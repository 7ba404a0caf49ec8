"""The Analyzer's weekly DAG: collect the week's events, analyze the last 13 weeks, write the report.

``model_factory_analyzer`` runs Mondays 06:00 UTC (trigger it any time). Its one task reads new
events (Airflow's REST API for runs people triggered, the store, the registry, the decisions
table), analyzes them and writes ``analyzer/reports/<date>/report.json`` and ``report.txt`` to
the store; an unreachable source is named in the report, never a failed run. Thin: the logic is
``model_factory.analyzer.report``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, CronTriggerTimetable, task

log = logging.getLogger("model_factory.airflow")

DAG_ID = "model_factory_analyzer"
WEEKS = 13
"""A quarter: the window each report looks at, ending at the run's logical date."""


def analyzer_dags() -> dict[str, DAG]:
    """The weekly Analyzer DAG (none when ``FACTORY_ANALYZER=off``)."""
    from model_factory.analyzer.store import recording_enabled
    from model_factory.settings import FactorySettings

    if not recording_enabled(FactorySettings.from_env()):
        return {}
    with DAG(
        dag_id=DAG_ID,
        description="The Analyzer: where data scientists get stuck (SoP vs ET), weekly report to the store",
        schedule=CronTriggerTimetable("0 6 * * 1", timezone="UTC"),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["model-factory", "analyzer"],
        default_args={
            "owner": "platform-team",
            "retries": 1,
            "retry_delay": timedelta(minutes=5),
            "execution_timeout": timedelta(minutes=30),
        },
        doc_md=__doc__,
        auto_register=False,
    ) as built:

        @task(multiple_outputs=True)
        def report() -> dict:
            from model_factory.analyzer.report import build_report, format_report, write_report
            from model_factory.settings import FactorySettings

            from airflow.sdk import get_current_context

            context = get_current_context()
            end = (
                (context.get("logical_date") or context["dag_run"].run_after)
                .astimezone(UTC)
                .replace(tzinfo=None)
            )
            settings = FactorySettings.from_env()
            result = build_report(settings, since=end - timedelta(weeks=WEEKS), until=end)
            uri = write_report(result, settings.store_uri)
            log.info("%s\n\nreport: %s", format_report(result), uri)
            return {
                "uri": uri,
                "summary": result["summary"],
                "users": result.get("users", 0),
                "events": result.get("events", {}).get("total", 0),
                "lacks": result["lacks"],
            }

        report()
    return {DAG_ID: built}
