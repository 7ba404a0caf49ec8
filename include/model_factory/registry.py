"""Register every trained version; only a blessed one gets a serving alias.

The MLflow registry is the single source of truth for which version serves: alias
``champion`` (serving) and ``challenger`` (blessed, waiting for its canary).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_factory import tracking
from model_factory.config import FactorySettings
from model_factory.spec import ModelSpec

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CHAMPION, CHALLENGER = "champion", "challenger"


def current_alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def _ensure_registered_model(client: MlflowClient, spec: ModelSpec) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(spec.registered_model_name)
    except MlflowException:
        try:
            client.create_registered_model(
                spec.registered_model_name,
                tags={"factory.owner": spec.owner, **{f"spec.{k}": v for k, v in spec.tags.items()}},
                description=spec.description,
            )
        except MlflowException:
            client.get_registered_model(spec.registered_model_name)  # created concurrently


def register_version(spec: ModelSpec, evaluated: dict, settings: FactorySettings) -> dict:
    """Register the evaluated run's model (once per run), tag the decision, set aliases."""
    client = tracking.connect(settings)
    name = spec.registered_model_name
    run_id = evaluated["run_id"]
    _ensure_registered_model(client, spec)

    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = str(existing[0].version)
    else:
        import mlflow

        version = str(mlflow.register_model(evaluated["model_uri"], name).version)
        client.update_model_version(name, version, description=evaluated["reason"])
    run_tags = client.get_run(run_id).data.tags
    for key in ("factory.ds", "factory.data.sha256", "factory.spec_hash", "factory.git_revision"):
        if key in run_tags:
            client.set_model_version_tag(name, version, key, run_tags[key])
    client.set_model_version_tag(name, version, "factory.decision", evaluated["status"])
    client.set_model_version_tag(name, version, "factory.decision_reason", evaluated["reason"])
    client.set_model_version_tag(
        name, version, f"factory.holdout_{evaluated['metric']}", f"{evaluated['candidate']:.6f}"
    )

    champion = current_alias_version(client, name, CHAMPION)
    alias = None
    if evaluated["status"] == "blessed":
        if champion is None:
            alias = CHAMPION
        elif champion != version:
            alias = CHALLENGER
        if alias:
            client.set_registered_model_alias(name, alias, version)
    return {
        "model": name,
        "version": version,
        "status": evaluated["status"],
        "reason": evaluated["reason"],
        "alias": alias if alias else (CHAMPION if champion == version else None),
        "champion_version": current_alias_version(client, name, CHAMPION),
    }


PREVIOUS_CHAMPION = "previous_champion"


class PromotionError(ValueError):
    """A promote/rollback request that cannot be carried out; the message says why."""


def _record(client: MlflowClient, name: str, version: str, action: str, actor: str, reason: str) -> None:
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in (("by", actor), ("at", stamp), ("reason", reason)):
        client.set_model_version_tag(name, version, f"factory.{action}.{key}", value)


def promote(model: str, version: str, settings: FactorySettings, actor: str, reason: str) -> dict:
    """Make ``version`` the champion; the old champion keeps a ``previous_champion`` alias.

    Only a blessed version may be promoted: the evaluation's decision is the gate.
    """
    client = tracking.connect(settings)
    try:
        target = client.get_model_version(model, version)
    except Exception as exc:
        raise PromotionError(f"model {model!r} has no version {version!r}") from exc
    decision = target.tags.get("factory.decision")
    if decision != "blessed":
        raise PromotionError(
            f"{model} v{version} is {decision or 'not evaluated'} "
            f"({target.tags.get('factory.decision_reason', 'no reason recorded')}); "
            "only blessed versions can be promoted"
        )
    old = current_alias_version(client, model, CHAMPION)
    if old == version:
        return {"model": model, "champion": version, "previous_champion": None, "changed": False}
    client.set_registered_model_alias(model, CHAMPION, version)
    if old is not None:
        client.set_registered_model_alias(model, PREVIOUS_CHAMPION, old)
    if current_alias_version(client, model, CHALLENGER) == version:
        client.delete_registered_model_alias(model, CHALLENGER)
    _record(client, model, version, "promoted", actor, reason)
    return {"model": model, "champion": version, "previous_champion": old, "changed": True}


def rollback(model: str, settings: FactorySettings, actor: str, reason: str) -> dict:
    """Give ``champion`` back to the ``previous_champion`` version in one step."""
    client = tracking.connect(settings)
    previous = current_alias_version(client, model, PREVIOUS_CHAMPION)
    if previous is None:
        raise PromotionError(f"model {model!r} has no previous_champion to roll back to")
    demoted = current_alias_version(client, model, CHAMPION)
    client.set_registered_model_alias(model, CHAMPION, previous)
    client.delete_registered_model_alias(model, PREVIOUS_CHAMPION)
    if demoted is not None:
        _record(client, model, demoted, "rolled_back", actor, reason)
    return {"model": model, "champion": previous, "demoted": demoted}
