"""The factory's tag schema: every ``factory.*`` tag name it reads or writes, in one place.

Three kinds of object carry them:

- the training **run** (lineage, worker, model and holdout addresses),
- the registered **model version** (the evaluation's decision, review, rollout audit trail),
- the **registered model** (the canary's traffic share and progress, a pin).

A name spelt anywhere else is a bug waiting for a rename: import it from here.
"""

from __future__ import annotations

PREFIX = "factory."

# --- run tags (written by training) ---------------------------------------------------------
RUN_KEY = "factory.run_key"
"""The training key (model, date, data, spec); only a factory training writes it."""
MODEL = "factory.model"
OWNER = "factory.owner"
WORKER = "factory.worker"
ABANDONED = "factory.abandoned"
WITHDRAWN_BATCHES = "factory.withdrawn_batches"
DATA_URIS = "factory.data.uris"
DATA_SHA256 = "factory.data.sha256"
DATA_ROWS = "factory.data.rows"
DS = "factory.ds"
SPEC_HASH = "factory.spec_hash"
GIT_REVISION = "factory.git_revision"
REQUIREMENTS_SHA256 = "factory.requirements_sha256"
AIRFLOW_DAG_ID = "factory.airflow.dag_id"
AIRFLOW_RUN_ID = "factory.airflow.run_id"
BASELINE = "factory.baseline"
MODEL_URI = "factory.model_uri"
HOLDOUT_URI = "factory.holdout_uri"
CROSS_VALIDATION = "factory.cross_validation"
CODE_FILE = "factory.code.file"
CODE_SHA256 = "factory.code.sha256"
CODE_MODULE = "factory.code.module"
TRIAL = "factory.trial"
TRIAL_ERROR = "factory.trial_error"
TUNING_BEST_CV = "factory.tuning.best_cv"
TUNING_TRIALS = "factory.tuning.trials"
DUPLICATE_OF_VERSION = "factory.duplicate_of_version"
REPRODUCE_OF = "factory.reproduce_of"
REPRODUCE_OF_RUN = "factory.reproduce_of_run"
REPRODUCED = "factory.reproduced"
REGISTRATION_KEY = "factory.registration_key"
"""On the run and on the version it registered: one version per training key."""

# --- model-version tags ---------------------------------------------------------------------
DECISION = "factory.decision"
"""The evaluation's (or review's) verdict: ``blessed`` | ``rejected`` | ``held_for_review``."""
DECISION_REASON = "factory.decision_reason"
DECISION_EVIDENCE = "factory.decision_evidence"
DECISION_EVIDENCE_ROWS = "factory.decision_evidence_rows"
"""On the run: the rows behind the decision's metric (the holdout, or the cross-validated window);
the concept-drift check weighs the reference metric's noise by it."""
ATTESTATION = "factory.attestation"
"""The factory's keyed signature over (model, version, run, model digest, decision): see
``io.attestation``. A tag anyone can write, but nobody without the factory's key can forge."""
MODEL_DIGEST = "factory.model_digest"
"""sha256 of the version's model file, as the attestation signed it."""
SUPERSEDED_BY = "factory.superseded_by"
KEPT_CHALLENGER = "factory.kept_challenger"
CHECKLIST = "factory.checklist"
CHECKLIST_OVERRIDE_ACTION = "checklist_override"
REVIEW_ACTION = "review"
REVIEW = "factory.review"
REVIEW_STATUS = "factory.review.status"
REVIEW_BY = "factory.review.by"
REVIEW_AT = "factory.review.at"
REVIEW_REASON = "factory.review.reason"
REVIEW_DECISION = "factory.review.decision"
REVIEW_CLAIM = "factory.review.claim"
"""The winning reviewer's claim token (see ``review.approval``)."""

# --- registered-model tags: the canary and a pin --------------------------------------------
CANARY_PREFIX = "factory.canary."
CANARY_VERSION = "factory.canary.version"
"""The version the share applies to (must equal the canary alias)."""
CANARY_SHARE = "factory.canary.share"
"""``"0.10"``: fraction of callers routed to the canary."""
CANARY_STARTED_AT = "factory.canary.started_at"
CANARY_UPDATED_AT = "factory.canary.updated_at"
CANARY_STAGE = "factory.canary.stage"
CANARY_STATUS = "factory.canary.status"
PINNED_VERSION = "factory.pinned.version"

# --- registered-model tags: a shadow (scored beside the champion, never answers) -------------
SHADOW_PREFIX = "factory.shadow."
SHADOW_VERSION = "factory.shadow.version"
"""The version the shadow share applies to (must equal the shadow alias)."""
SHADOW_SHARE = "factory.shadow.share"
"""``"0.50"``: fraction of the champion's requests also scored by the shadow."""
SHADOW_STARTED_AT = "factory.shadow.started_at"
"""ISO time (UTC) the shadow started: the comparison counts from here."""
SHADOW_STATUS = "factory.shadow.status"
"""running | stopped"""


def holdout_metric(metric: str) -> str:
    """The version tag holding the candidate's holdout value of ``metric``."""
    return f"factory.holdout_{metric}"


def action_tag(action: str, key: str) -> str:
    """An audit tag ``factory.<action>.<key>`` (``by``, ``at``, ``reason``, a detail)."""
    return f"factory.{action}.{key}"


def checklist_item(item: str, suffix: str = "") -> str:
    """``factory.checklist.<item>`` (``suffix`` ``"reason"``: its reason)."""
    return f"{CHECKLIST}.{item}" + (f".{suffix}" if suffix else "")
