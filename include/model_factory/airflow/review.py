"""Trust and review building blocks: the model card, the data budget, and ``<model>__review``.

In the retrain DAG: ``model_card`` after ``register`` (card, explanation, slices, checklist;
before the challenger is announced, because the checklist gates the canary), ``data_budget``
beside evaluate/register (its own task: it never holds up the decision) and ``announce_held``,
which emits ``<model>__held`` for a version the gates held. That asset starts
``<model>__review``: a human-in-the-loop task (approve/reject in the Airflow UI or the REST
API, with a reason) waits up to ``review.window_hours`` and its answer is recorded; an approved
version becomes challenger and emits ``<model>__challenger``, which starts its canary. A review
that waits runs in its own DAG, so it never blocks the next nightly retrain.
"""

# No `from __future__ import annotations` here: Airflow evaluates each @task's return annotation
# (to infer multiple_outputs) at every parse; a real `dict` takes ~1 us, a string ~12 us.

import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING

from model_factory.airflow.common import (
    announce_task,
    challenger_asset,
    code_dir,
    common_dag_args,
    conf,
    run_ds,
    spec_doc,
    trigger_params,
    triggering_extras,
)
from model_factory.airflow.notify import held_notifier
from model_factory.contracts import Attribution
from model_factory.io import tag_schema
from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec, ModelSpec

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Asset, Param, XComArg, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk.execution_time.hitl import HITLUser

log = logging.getLogger("model_factory.airflow")

APPROVE, REJECT = "Approve", "Reject"
REVIEW_TASK = "review"
FORM_LIMITS = {"reason": 2000, "actor": 200}  # field -> most characters kept
FORM_FIELDS = tuple(FORM_LIMITS)


def review_form() -> dict:
    """The reviewer's form: typed fields, so Airflow's form checks what it can before submitting."""
    shown = {
        "reason": ("Reason", "Why (recorded on the version)"),
        "actor": ("On behalf of", "On whose behalf (optional)"),
    }
    return {
        field: Param("", type="string", maxLength=FORM_LIMITS[field], title=title, description=description)
        for field, (title, description) in shown.items()
    }


def _as_text(value: object) -> str:
    import json

    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def normalise_answer(chosen: object, given: object, options: list[str]) -> tuple[list[str], dict[str, str]]:
    """A reviewer's answer as the form promises it: one known option and text fields. What the
    REST API let through (a number or a list as the reason, a misspelt field, an unknown option)
    is kept in words in the reason, never a failed task that leaves the version held."""
    notes: list[str] = []
    given = given if isinstance(given, dict) else {}
    fields = {key: _as_text(given.get(key)) for key in FORM_FIELDS}
    for key in FORM_FIELDS:
        if key in given and given[key] is not None and not isinstance(given[key], str):
            notes.append(f"the form's {key} was {type(given[key]).__name__}, recorded as text")
    unknown = sorted(str(k) for k in given if k not in FORM_FIELDS)
    if unknown:
        extra = {k: given[k] for k in unknown}
        notes.append(f"unknown form fields {unknown} ({_as_text(extra)[:200]})")
    picked = [o for o in chosen if isinstance(o, str)] if isinstance(chosen, list) else []
    if len(picked) != 1 or picked[0] not in options:
        notes.append(f"answer {_as_text(chosen)[:100]} is not one of {options}: recorded as {REJECT}")
        picked = [REJECT]
    if notes:
        fields["reason"] = (fields["reason"] + " " if fields["reason"] else "") + "[" + "; ".join(notes) + "]"
    for key, limit in FORM_LIMITS.items():
        if len(fields[key]) > limit:
            fields[key] = fields[key][: limit - 16] + " ... (truncated)"
    return picked, fields


class ReviewOperator(HITLOperator):
    """Airflow's HITL operator, but a reviewer's typo never fails the task: the answer is
    normalised (:func:`normalise_answer`) before Airflow's own checks."""

    def execute_complete(self, context, event):
        if "error" not in event:
            chosen, fields = normalise_answer(
                event.get("chosen_options"), event.get("params_input"), list(self.options)
            )
            event = {**event, "chosen_options": chosen, "params_input": fields}
        return super().execute_complete(context, event)


def reviewers(spec: ModelSpec) -> "list[HITLUser] | None":
    """``review.reviewers`` as Airflow's HITL ``assigned_users`` (``HITLUser``: id and name; the
    spec names users by id). None: anyone Airflow lets answer HITL tasks may answer."""
    return [{"id": user, "name": user} for user in spec.review.reviewers] or None


def held_asset(spec: ModelSpec) -> Asset:
    return Asset(name=f"{spec.name}__held", uri=f"x-model-factory://{spec.name}/held")


def model_card(loaded: LoadedSpec, registered: XComArg) -> XComArg:
    """Card, explanation, slices and checklist of the registered version; a card that fails
    leaves the version registered with its checklist failing "model card missing"."""
    spec = loaded.spec

    @task(multiple_outputs=True)
    def model_card(registered: dict) -> dict:
        from model_factory.review.card import produce_card

        if spec.estimator.factory:  # the saved model refers to classes of the code folder
            from model_factory.pipeline.custom_code import install_code_package

            install_code_package(code_dir(loaded))
        made = produce_card(spec, registered, FactorySettings.from_env())
        log.info(
            "model card of %s v%s: %s (%s bytes); checklist %s; timings %s",
            made["model"],
            made["version"],
            made["card_uri"] or f"MISSING: {made['card_error']}",
            made["card_bytes"],
            made["checklist"]["status"],
            made["timings"],
        )
        for item in made["checklist"]["items"]:
            log.info("  %s %s: %s", "pass" if item["passed"] else "FAIL", item["item"], item["reason"])
        return {k: made[k] for k in ("model", "version", "card_uri", "card_bytes", "timings")} | {
            "checklist": made["checklist"]["status"]
        }

    return model_card(registered)  # type: ignore[arg-type]


def data_budget(loaded: LoadedSpec, trained: XComArg) -> XComArg:
    """Refit on growing shares of the training rows; logged with the run, added to its card."""
    spec = loaded.spec

    @task(multiple_outputs=True)
    def data_budget(trained: dict) -> dict:
        from model_factory.review.card import data_budget_for_run

        if not spec.evaluation.data_budget.enabled:
            raise AirflowSkipException(f"evaluation.data_budget.enabled is false in {loaded.path.name}")
        if spec.estimator.factory:
            raise AirflowSkipException(
                "the data budget refits the spec's allow-listed estimator; "
                "a model trained by its own code (estimator.factory) has none"
            )
        # A report beside evaluate and register, not on the way to the decision: refitting the
        # model on its shares must not take their CPU on a busy worker.
        os.nice(10)
        budget = data_budget_for_run(spec, trained["run_id"], FactorySettings.from_env())
        log.info("data budget of run %s: %s", trained["run_id"], budget["recommendation"])
        return {k: budget[k] for k in ("recommended_share", "cpu_saved_seconds", "recommendation", "seconds")}

    return data_budget(trained)  # type: ignore[arg-type]


def announce_held(loaded: LoadedSpec, registered: XComArg) -> XComArg:
    """Emit ``<model>__held`` (which starts the review) only for a version held for review."""

    def not_held(registered: dict) -> str | None:
        if registered["status"] == "held_for_review":
            return None
        return f"v{registered['version']} is {registered['status']}: nothing to review"

    return announce_task("announce_held", held_asset(loaded.spec), registered, not_held)


def prepare_review(loaded: LoadedSpec) -> XComArg:
    """The version to review (the conf's, else the held event's), why it was held, its card and
    checklist; skip when it is no longer waiting for a review."""
    name = loaded.spec.registered_model_name

    @task(multiple_outputs=True)
    def prepare() -> dict:
        from model_factory.io.tracking import connect

        events = [extra["version"] for extra in triggering_extras() if extra.get("version")]
        version = str(conf().get("version") or (events[-1] if events else ""))
        if not version:
            raise AirflowSkipException('no version to review: trigger with conf {"version": "N"}')
        mv = connect(FactorySettings.from_env()).get_model_version(name, version)
        if mv.tags.get(tag_schema.REVIEW_STATUS) or mv.tags.get(tag_schema.DECISION) != "held_for_review":
            raise AirflowSkipException(
                f"{name} v{version} is {mv.tags.get(tag_schema.DECISION)} "
                f"({mv.tags.get(tag_schema.REVIEW_STATUS) or 'not reviewed'}): nothing to review"
            )
        card = (
            (mv.description or "").rsplit("Model card: ", 1)[-1]
            if "Model card:" in (mv.description or "")
            else "(no card)"
        )
        return {
            "version": version,
            "reason": mv.tags.get(tag_schema.DECISION_REASON, ""),
            "card": card,
            "checklist": mv.tags.get(tag_schema.CHECKLIST, "not run"),
        }

    return prepare()


def apply_review(loaded: LoadedSpec, prepared: XComArg, answer: XComArg) -> XComArg:
    """Record the reviewer's answer (or the expiry) on the version; an approved version that became
    challenger emits ``<model>__challenger``, which starts its canary."""
    spec = loaded.spec
    name = spec.registered_model_name
    window = spec.review.window_hours

    @task(multiple_outputs=True, outlets=[challenger_asset(spec)])
    def apply(prepared: dict, answer: dict) -> dict:
        from model_factory.review import approval

        settings = FactorySettings.from_env()
        version = prepared["version"]
        user = answer.get("responded_by_user")
        given = answer.get("params_input") or {}
        try:
            approval.require_held(name, version, settings)
        except approval.ReviewError as exc:  # reviewed meanwhile (CLI without Airflow): keep that
            raise AirflowSkipException(f"nothing to record: {exc}") from exc
        if user is None:
            result = approval.expire_version(name, version, settings, window)
        else:
            who = user.get("name") or user.get("id") if isinstance(user, dict) else str(user)
            if given.get("actor"):
                who = f"{given['actor']} (via {who})"
            who = f"{who} via airflow {name}__review"
            reason = str(given.get("reason") or "").strip() or "(no reason given in the review form)"
            attribution = Attribution(who, reason)
            chosen = answer.get("chosen_options") or [REJECT]
            if chosen[0] == APPROVE:
                result = approval.approve_version(name, version, settings, attribution)
            else:
                result = approval.reject_version(name, version, settings, attribution)
        log.info("%s v%s %s by %s: %s", name, version, result["status"], result["actor"], result["reason"])
        if result["alias"] != "challenger":
            raise AirflowSkipException(
                f"v{version} {result['status']} (alias {result['alias']}): no canary to start"
            )
        extra = {
            "version": version,
            "ds": run_ds(),
            "reason": f"approved by {result['actor']}: {result['reason']}",
        }
        get_current_context()["outlet_events"][challenger_asset(spec)].extra = extra
        return extra

    return apply(prepared, answer)  # type: ignore[arg-type]


def review_dag(loaded: LoadedSpec) -> DAG:
    """``<model>__review``: a person approves or rejects a held version (or it expires)."""
    spec = loaded.spec
    name = spec.registered_model_name
    window = spec.review.window_hours
    with DAG(
        dag_id=f"{spec.name}__review",
        params=trigger_params("review"),
        description=f"Approve or reject a {spec.name} version the gates held for review",
        schedule=[held_asset(spec)],
        max_active_runs=16,  # one per held version; waiting holds no worker slot
        **common_dag_args(spec, "review"),
        doc_md=spec_doc(
            loaded,
            f"Started by `{spec.name}__held` (a retrain held a version for "
            "review). Approve or reject it in the Airflow UI (the `review` task) with a "
            f"reason, or `model-factory approve|reject {spec.name} VERSION --reason ...`. "
            f"Unanswered after {window:g} h (spec `review.window_hours`) it expires as "
            "rejected. Approved: it becomes challenger and its canary starts. Trigger "
            'by hand with conf `{"version": "N"}`.'
            + (
                f" Reviewers (spec `review.reviewers`): {', '.join(spec.review.reviewers)}."
                if spec.review.reviewers
                else ""
            ),
        ),
    ) as built:
        prepared = prepare_review(loaded)
        review = ReviewOperator(
            task_id=REVIEW_TASK,
            subject=f"Review {name} v{{{{ ti.xcom_pull(task_ids='prepare')['version'] }}}}",
            body="Held for review: {{ ti.xcom_pull(task_ids='prepare')['reason'] }}\n\n"
            "Model card: {{ ti.xcom_pull(task_ids='prepare')['card'] }}\n\n"
            "Checklist: {{ ti.xcom_pull(task_ids='prepare')['checklist'] }}\n\n"
            f"Approve: the version becomes challenger and its canary starts. Unanswered after "
            f"{window:g} h it expires as rejected.",
            options=[APPROVE, REJECT],
            defaults=[REJECT],
            params=review_form(),
            response_timeout=timedelta(hours=window),
            notifiers=[held_notifier(spec)],  # the reviewer is told; a failing channel fails nothing
            assigned_users=reviewers(spec),
        )
        prepared >> review
        apply_review(loaded, prepared, review.output)
    return built
