"""Register every trained version; only a blessed one gets a serving alias.

The MLflow registry is the single source of truth for which version serves: alias
``champion`` (serving), ``challenger`` (blessed, waiting for its canary) and ``canary`` (taking a
share of live traffic; the share is a registered-model tag, see ``model_factory.io.registry_state``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from model_factory.contracts import Attribution, RegisteredVersion
from model_factory.io import attestation, tag_schema, tracking
from model_factory.io.model_loading import model_file_digest
from model_factory.io.registry_state import (
    CANARY,
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    current_alias_version,
)
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["CANARY", "CHALLENGER", "CHAMPION", "PREVIOUS_CHAMPION", "current_alias_version"]  # re-exported


def _ensure_registered_model(client: MlflowClient, spec: ModelSpec) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(spec.registered_model_name)
    except MlflowException:
        try:
            client.create_registered_model(
                spec.registered_model_name,
                tags={tag_schema.OWNER: spec.owner, **{f"spec.{k}": v for k, v in spec.tags.items()}},
                description=spec.description,
            )
        except MlflowException:
            client.get_registered_model(spec.registered_model_name)  # created concurrently


REGISTRATION_KEY = tag_schema.REGISTRATION_KEY


def _versions_with_key(client: MlflowClient, name: str, key: str) -> list[str]:
    found = client.search_model_versions(f"name = '{name}' and tags.`{REGISTRATION_KEY}` = '{key}'")
    return sorted((str(v.version) for v in found), key=int)


@contextlib.contextmanager
def _registry_lock(settings: FactorySettings, name: str) -> Iterator[None]:
    """Serialise registrations of one model on a file-backed (SQLite) registry with a file
    lock beside the database; a server-backed registry relies on the re-check after create."""
    if not settings.tracking_uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(settings.tracking_uri.removeprefix("sqlite:///") + f".{name}.register.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _register_once(
    client: MlflowClient, settings: FactorySettings, name: str, evaluated: dict, key: str | None
) -> tuple[str, bool]:
    """One version per training key, even when two runs of the same date race: look for the
    key (under a lock where the registry is a file), create with the key as a tag, then look
    again and keep the lowest version, deleting our own if another got there first.
    Returns (version, created_here)."""
    import mlflow

    with _registry_lock(settings, name):
        prior = _versions_with_key(client, name, key) if key else []
        if prior:
            return prior[0], False
        tags = {REGISTRATION_KEY: key} if key else None
        version = str(mlflow.register_model(evaluated["model_uri"], name, tags=tags).version)
    if key:
        winner = _versions_with_key(client, name, key)[0]
        if winner != version:
            client.delete_model_version(name, version)
            return winner, False
    client.update_model_version(name, version, description=evaluated["reason"])
    return version, True


def register_version(spec: ModelSpec, evaluated: dict, settings: FactorySettings) -> RegisteredVersion:
    """Register the evaluated run's model (once per run, and once per training key: the same
    model, date, data and spec), tag the decision, set aliases."""
    client = tracking.connect(settings)
    name = spec.registered_model_name
    run_id = evaluated["run_id"]
    _ensure_registered_model(client, spec)
    run_tags = client.get_run(run_id).data.tags

    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = str(existing[0].version)
    else:
        version, created = _register_once(client, settings, name, evaluated, run_tags.get(REGISTRATION_KEY))
        if not created:
            # Another run of the same training registered it (a concurrent or earlier run of
            # the same date and data): that version stands, with its own decision and aliases.
            client.set_tag(run_id, tag_schema.DUPLICATE_OF_VERSION, version)
            target = client.get_model_version(name, version)
            return {
                "model": name,
                "version": version,
                "status": target.tags.get(tag_schema.DECISION, "unrecorded"),
                "reason": f"the same training is already registered as v{version}",
                "alias": None,
                "champion_version": current_alias_version(client, name, CHAMPION),
                "duplicate": True,
            }
    for key in (tag_schema.DS, tag_schema.DATA_SHA256, tag_schema.SPEC_HASH, tag_schema.GIT_REVISION):
        if key in run_tags:
            client.set_model_version_tag(name, version, key, run_tags[key])
    client.set_model_version_tag(name, version, tag_schema.DECISION, evaluated["status"])
    digest = _registered_digest(name, version)
    attest_version(client, settings, name, version, run_id, evaluated["status"], digest)
    client.set_model_version_tag(name, version, tag_schema.DECISION_REASON, evaluated["reason"])
    client.set_model_version_tag(
        name, version, tag_schema.holdout_metric(evaluated["metric"]), f"{evaluated['candidate']:.6f}"
    )

    champion = current_alias_version(client, name, CHAMPION)
    alias, reason = None, evaluated["reason"]
    if evaluated["status"] == "blessed":
        if champion is None:
            alias = CHAMPION
        elif champion != version:
            alias = CHALLENGER
            alias, reason = _versus_waiting_challenger(client, name, version, evaluated)
        if alias:
            client.set_registered_model_alias(name, alias, version)
    return {
        "model": name,
        "version": version,
        "status": evaluated["status"],
        "reason": reason,
        "alias": alias if alias else (CHAMPION if champion == version else None),
        "champion_version": current_alias_version(client, name, CHAMPION),
    }


def _registered_digest(name: str, version: str) -> str:
    """sha256 of the registered version's model file, from the artifacts the registry points to."""
    import mlflow.artifacts

    return model_file_digest(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}"))


def attest_version(
    client: MlflowClient,
    settings: FactorySettings,
    name: str,
    version: str,
    run_id: str | None,
    decision: str,
    digest: str,
) -> None:
    """Sign (model, version, run, model file digest, decision) with the factory's key and tag it
    on the version (``io.attestation``): the loader serves only what carries a blessed one."""
    key = attestation.signing_key(settings)
    client.set_model_version_tag(name, version, tag_schema.MODEL_DIGEST, digest)
    signed = attestation.sign(key, name, version, run_id, digest, decision)
    client.set_model_version_tag(name, version, tag_schema.ATTESTATION, signed)


def attested(client: MlflowClient, settings: FactorySettings, name: str, version: str, decision: str) -> bool:
    """Whether the version carries the factory's attestation of ``decision`` (tags only: the digest
    is the one signed at registration; the loader checks it against the model file)."""
    mv = client.get_model_version(name, version)
    tags = mv.tags or {}
    digest = tags.get(tag_schema.MODEL_DIGEST, "")
    key = attestation.signing_key(settings)
    return attestation.verify(
        key, tags.get(tag_schema.ATTESTATION), name, version, mv.run_id, digest, decision
    )


def attest_existing(name: str, version: str, settings: FactorySettings, attribution: Attribution) -> dict:
    """Sign a version registered before attestations existed, with its current decision, after an
    operator has checked it (the factory cannot tell such a version from a forged one). Recorded."""
    client = tracking.connect(settings)
    mv = client.get_model_version(name, version)
    decision = (mv.tags or {}).get(tag_schema.DECISION)
    if not decision:
        raise PromotionError(f"{name} v{version} has no {tag_schema.DECISION} tag: nothing to attest")
    attest_version(client, settings, name, version, mv.run_id, decision, _registered_digest(name, version))
    return record_decision(client, name, version, "attested", attribution, {"decision": decision})


def _versus_waiting_challenger(
    client: MlflowClient, name: str, version: str, evaluated: dict
) -> tuple[str | None, str]:
    """A newer blessed version and a challenger still waiting for its canary were compared on
    the same rows by the evaluation: the waiting one keeps the ``challenger`` alias only when it is
    better beyond noise; otherwise the newer one (fresher data) takes it. Either way, saying so."""
    waiting = evaluated.get("waiting_challenger")
    if waiting is None and "waiting_challenger" not in evaluated:
        import mlflow

        try:
            waiting = mlflow.artifacts.load_dict(f"runs:/{evaluated['run_id']}/decision.json").get(
                "waiting_challenger"
            )
        except Exception:  # no decision artifact (older runs): nothing to compare
            waiting = None
    if not waiting or current_alias_version(client, name, CHALLENGER) != waiting["version"]:
        return CHALLENGER, evaluated["reason"]
    point, low, high = waiting["gain"]
    metric = evaluated["metric"]
    if waiting["candidate_better"]:
        tie = "" if low > 0 else ", no better beyond noise: the fresher data wins and the canary decides"
        note = (
            f"replaces waiting challenger v{waiting['version']}: {metric} gain {point:+.4f} on "
            f"the same rows (interval [{low:+.4f}, {high:+.4f}]){tie}"
        )
        client.set_model_version_tag(name, waiting["version"], tag_schema.SUPERSEDED_BY, version)
        return CHALLENGER, f"{evaluated['reason']}; {note}"
    note = (
        f"blessed, but waiting challenger v{waiting['version']} scores better on the same "
        f"rows ({metric} gain {point:+.4f}, interval [{low:+.4f}, {high:+.4f}]): it stays "
        "challenger"
    )
    client.set_model_version_tag(name, version, tag_schema.KEPT_CHALLENGER, waiting["version"])
    client.set_model_version_tag(name, version, tag_schema.DECISION_REASON, f"{evaluated['reason']}; {note}")
    return None, f"{evaluated['reason']}; {note}"


VIEW_MOUNT = "/factory"
"""Where Airflow serves the factory's view (airflow/plugin.py mounts it there)."""


def card_page_url(settings: FactorySettings, name: str, version: str) -> str:
    """The view's page of the version's model card, under ``FACTORY_AIRFLOW_URL`` (a link a browser
    opens; the artifact's ``file://``/``s3://`` address does not)."""
    return (
        f"{settings.airflow_url.rstrip('/')}{VIEW_MOUNT}/models/{quote(name, safe='')}"
        f"/versions/{quote(str(version), safe='')}/card"
    )


def link_card(
    client: MlflowClient,
    name: str,
    version: str,
    card_uri: str | None,
    note: str,
    page_url: str | None = None,
) -> None:
    """Put a markdown link to the model card (MLflow renders the description as markdown), and
    the artifact's address, or why there is no card, in the version's description."""
    current = client.get_model_version(name, version).description or ""
    head = current.split("\n\nModel card:")[0]
    if not card_uri:
        line = f"Model card: missing ({note})"
    elif page_url:
        line = f"Model card: [{name} v{version}]({page_url}) (artifact `{card_uri}`)"
    else:
        line = f"Model card: {card_uri}"
    client.update_model_version(name, version, description=f"{head}\n\n{line}")


CHECKLIST_TAG = tag_schema.CHECKLIST
CHECKLIST_OVERRIDE = tag_schema.CHECKLIST_OVERRIDE_ACTION


def require_checklist(client: MlflowClient, model: str, version: str, what: str) -> None:
    """Serving a version whose lifecycle checklist failed is refused, naming the failing items,
    unless someone recorded an override with a reason. Versions registered before checklists
    existed (no ``factory.checklist`` tag) are not blocked."""
    tags = client.get_model_version(model, version).tags
    overridden = tags.get(tag_schema.action_tag(CHECKLIST_OVERRIDE, "reason"))
    if tags.get(CHECKLIST_TAG, "passed") == "passed" or overridden:
        return
    prefix = f"{CHECKLIST_TAG}."
    failed = sorted(
        k[len(prefix) :]
        for k, v in tags.items()
        if k.startswith(prefix) and "." not in k[len(prefix) :] and v == "fail"
    )
    reasons = "; ".join(f"{item}: {tags.get(f'{prefix}{item}.reason', '')}" for item in failed)
    raise PromotionError(
        f"{model} v{version} fails its lifecycle checklist ({reasons}); it cannot be {what}. "
        f"Fix it, or record an override: model-factory override-checklist {model} {version} "
        '--reason "..."'
    )


class PromotionError(ValueError):
    """A promote/rollback request that cannot be carried out; the message says why."""


MAX_TAG_CHARS = 5000  # MLflow's limit for a tag value


def record_decision(
    client: MlflowClient,
    name: str,
    version: str,
    action: str,
    attribution: Attribution,
    details: dict | None = None,
) -> dict:
    """Tag who/what/when/why on the version (``factory.<action>.by|at|reason|<detail>``).

    Scalar details are tags; a structured one (a dict or list, such as the canary's analysis)
    would be a JSON blob in MLflow's version table, so the whole decision goes to the version's
    run as ``decisions/<action>.json`` instead (a tag only if that run cannot take it).
    Returns the decision as a dict, so the caller can also write it elsewhere (prediction DB, log).
    """
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    decision = {
        "model": name,
        "version": version,
        "action": action,
        "actor": attribution.actor,
        "reason": attribution.reason,
        "at": stamp,
        "details": dict(details or {}),
    }
    tags = {"by": attribution.actor, "at": stamp, "reason": attribution.reason}
    structured = {}
    for key, value in (details or {}).items():
        if isinstance(value, (dict, list, tuple, set)):
            structured[key] = value
        else:
            tags[key] = value if isinstance(value, str) else json.dumps(value, default=str)
    if structured and not _log_decision_artifact(client, name, version, decision):
        tags |= {k: json.dumps(v, default=str, sort_keys=True) for k, v in structured.items()}
    for key, text in tags.items():
        text = text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 3] + "..."
        client.set_model_version_tag(name, version, tag_schema.action_tag(action, key), text)
    return decision


def decision_artifact(action: str) -> str:
    """Where ``record_decision`` puts a decision with structured details, on the version's run."""
    return f"decisions/{action}.json"


def _log_decision_artifact(client: MlflowClient, name: str, version: str, decision: dict) -> bool:
    try:
        run_id = tracking.version_run_id(client.get_model_version(name, version))
        plain = json.loads(json.dumps(decision, default=str))
        client.log_dict(run_id, plain, decision_artifact(decision["action"]))
    except Exception as exc:  # the decision still happened: keep its details as tags then
        log.warning(
            "%s v%s: decision %s not logged with the run (%s): its details stay tags",
            name,
            version,
            decision["action"],
            exc,
        )
        return False
    return True


def require_blessed(client: MlflowClient, model: str, version: str, what: str) -> None:
    """The evaluation's blessing is the gate for serving: anything else is refused, saying why."""
    try:
        target = client.get_model_version(model, version)
    except Exception as exc:
        raise PromotionError(f"model {model!r} has no version {version!r}") from exc
    decision = target.tags.get(tag_schema.DECISION)
    if decision != "blessed":
        raise PromotionError(
            f"{model} v{version} is {decision or 'not evaluated'} "
            f"({target.tags.get(tag_schema.DECISION_REASON, 'no reason recorded')}); "
            f"only blessed versions can be {what}"
        )
    require_checklist(client, model, version, what)


def promote(model: str, version: str, settings: FactorySettings, attribution: Attribution) -> dict:
    """Make ``version`` the champion; the old champion keeps a ``previous_champion`` alias.

    Only a blessed version may be promoted: the evaluation's decision is the gate.
    """
    client = tracking.connect(settings)
    require_blessed(client, model, version, "promoted")
    old = current_alias_version(client, model, CHAMPION)
    if old == version:
        return {"model": model, "champion": version, "previous_champion": None, "changed": False}
    client.set_registered_model_alias(model, CHAMPION, version)
    if old is not None:
        client.set_registered_model_alias(model, PREVIOUS_CHAMPION, old)
    if current_alias_version(client, model, CHALLENGER) == version:
        client.delete_registered_model_alias(model, CHALLENGER)
    record_decision(client, model, version, "promoted", attribution)
    return {"model": model, "champion": version, "previous_champion": old, "changed": True}


def rollback(model: str, settings: FactorySettings, attribution: Attribution) -> dict:
    """Give ``champion`` back to the ``previous_champion`` version in one step."""
    client = tracking.connect(settings)
    previous = current_alias_version(client, model, PREVIOUS_CHAMPION)
    if previous is None:
        raise PromotionError(f"model {model!r} has no previous_champion to roll back to")
    demoted = current_alias_version(client, model, CHAMPION)
    client.set_registered_model_alias(model, CHAMPION, previous)
    client.delete_registered_model_alias(model, PREVIOUS_CHAMPION)
    if demoted is not None:
        record_decision(client, model, demoted, "rolled_back", attribution)
    return {"model": model, "champion": previous, "demoted": demoted}
