"""The one way the factory loads a model: only what the factory itself wrote, never a payload.

Whoever can write to the MLflow registry could register a version whose model file runs code
when unpickled. Every load in the factory (the gateway, evaluation against the champion, the
drift watch) goes through this module, which refuses, with a reason, before deserialising:

- a registered version the factory did not bless (version tag ``factory.decision`` is not
  ``blessed``) or did not train (its run has no ``factory.run_key`` tag), when asked to check;
- (the same check) a version whose ``factory.attestation`` is not the factory's keyed signature
  of (model, version, run, the model file's sha256, ``blessed``) (:mod:`model_factory.io.attestation`):
  tags can be written by anyone with registry access, the signature only by the factory;
- a model that is not the MLflow ``sklearn`` flavor saved as ``skops`` (``serialization_format``
  in the MLmodel file is read as data first: pickle and cloudpickle files are never opened);
- a skops file holding a type beyond skops' own safe defaults that is not both recorded for
  this version (the MLmodel's ``skops_trusted_types``, written at training time) and trusted by
  the factory's code (:func:`io.trust.factory_trusts`: its base types, scikit-learn classes, and
  the classes the data scientists' code folder defines for a model with ``estimator.factory``).
  The recorded list alone is not enough: it is part of the artifact, so a crafted model could
  list anything there.

The tags alone are policy, not the security boundary: someone with registry write access can
write tags too. The boundaries are the attestation (what serves is what the factory registered
and blessed) and the format and type check (nothing deserialised can run code).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import skops.io
from model_factory.errors import PermanentError
from model_factory.io import attestation, tag_schema
from model_factory.io.code_folder import CODE_PACKAGE, defined_types, install_code_package
from model_factory.io.trust import factory_trusts

if TYPE_CHECKING:
    from mlflow.models import Model
    from mlflow.tracking import MlflowClient

FLAVOR = "sklearn"
FORMAT = "skops"
BLESSED = "blessed"
RUN_KEY_TAG = tag_schema.RUN_KEY
CODE_MODULE_TAG = tag_schema.CODE_MODULE


class ModelRefusedError(PermanentError):
    """A model the factory will not load; the message says which and why (nothing was run).
    Permanent: the same version is refused on every retry."""


class ModelUnavailableError(RuntimeError):
    """A model that could not be fetched (registry or artifact store down): a retry may work."""


@dataclass(frozen=True)
class TrustedModel:
    estimator: Any
    path: Path
    """The local copy of the model directory (MLmodel, model.skops, ...)."""
    mlmodel: Model
    run_id: str | None = None
    trusted_types: tuple[str, ...] = ()
    version_tags: dict[str, str] = field(default_factory=dict)


def code_folder_types(module_name: str, code_dir: Path | None) -> set[str]:
    """The classes one module of the data scientists' code folder defines (and only those)."""
    if code_dir is None:
        return set()
    prefix = f"{CODE_PACKAGE}."
    if not module_name.startswith(prefix) or "." in module_name[len(prefix) :]:
        raise ModelRefusedError(f"its code module {module_name!r} is not a module of the code folder")
    install_code_package(code_dir)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelRefusedError(
            f"its code module {module_name!r} cannot be imported from {code_dir}: {type(exc).__name__}: {exc}"
        ) from exc
    return set(defined_types(module))


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class _Checked:
    mlmodel: Model
    data: Path
    """The skops file."""
    untrusted: list[str]


def _check_local(path: Path, extra_trusted: Iterable[str], where: str) -> _Checked:
    """Everything that can be checked without deserialising: flavor, format, file, types."""
    from mlflow.models import Model

    try:
        mlmodel = Model.load(path)
    except Exception as exc:
        raise ModelRefusedError(f"{where}: no readable MLmodel file ({_short(exc)})") from exc
    flavors = mlmodel.flavors or {}
    conf = flavors.get(FLAVOR)
    if not isinstance(conf, dict):
        raise ModelRefusedError(
            f"{where} is not an MLflow sklearn model (flavors: {sorted(flavors)}); the factory "
            "loads only the models it saves"
        )
    found = conf.get("serialization_format", "pickle")
    if found != FORMAT:
        raise ModelRefusedError(
            f"{where} is saved as {found!r}; the factory loads only {FORMAT!r} models (a "
            f"{found} file can run code when loaded, so it was not opened)"
        )
    data = (path / str(conf.get("pickled_model", ""))).resolve()
    if not data.is_file() or not data.is_relative_to(path.resolve()):
        raise ModelRefusedError(f"{where}: its model file {conf.get('pickled_model')!r} is missing")
    recorded = conf.get("skops_trusted_types") or []
    if not isinstance(recorded, list) or not all(isinstance(t, str) for t in recorded):
        raise ModelRefusedError(f"{where}: skops_trusted_types in its MLmodel is not a list of type names")
    extra = frozenset(extra_trusted)
    try:
        untrusted = skops.io.get_untrusted_types(file=data)
    except Exception as exc:
        raise ModelRefusedError(f"{where}: its skops file cannot be read ({_short(exc)})") from exc
    refused = sorted(t for t in untrusted if t not in recorded or not factory_trusts(t, extra))
    if refused:
        raise ModelRefusedError(
            f"{where} holds types the factory does not trust: {refused[:10]} (trusted: what the "
            "factory's training records and its code allows; nothing was loaded)"
        )
    return _Checked(mlmodel, data, list(untrusted))


def _deserialise(path: Path, checked: _Checked, where: str) -> TrustedModel:
    try:
        estimator = skops.io.load(checked.data, trusted=sorted(checked.untrusted))
    except Exception as exc:
        raise ModelRefusedError(f"{where}: skops could not load it ({_short(exc)})") from exc
    mlmodel = checked.mlmodel
    return TrustedModel(estimator, path, mlmodel, mlmodel.run_id, tuple(sorted(checked.untrusted)))


def load_local(path: Path | str, extra_trusted: Iterable[str] = (), where: str = "model") -> TrustedModel:
    """Check a downloaded model directory and load it with skops, or raise ModelRefusedError."""
    path = Path(path)
    return _deserialise(path, _check_local(path, extra_trusted, where), where)


def model_file_digest(path: Path | str) -> str:
    """sha256 of the model file of a downloaded model directory (what the attestation signs);
    ModelRefusedError when it has none. Reads the MLmodel file as data, opens nothing else."""
    from mlflow.models import Model

    path = Path(path)
    try:
        conf = (Model.load(path).flavors or {}).get(FLAVOR) or {}
    except Exception as exc:
        raise ModelRefusedError(f"{path}: no readable MLmodel file ({_short(exc)})") from exc
    data = (path / str(conf.get("pickled_model", ""))).resolve()
    if not data.is_file() or not data.is_relative_to(path.resolve()):
        raise ModelRefusedError(f"{path}: its model file {conf.get('pickled_model')!r} is missing")
    return attestation.file_digest(data)


def _check_attestation(
    tags: dict[str, str], model: str, version: str, run_id: str | None, data: Path, key: bytes, where: str
) -> None:
    signed = tags.get(tag_schema.ATTESTATION)
    if not signed:
        raise ModelRefusedError(
            f"{where} carries no attestation: the factory did not register it (tags alone, "
            f"{tag_schema.DECISION}=blessed included, can be written by anyone with registry access); "
            "nothing was loaded"
        )
    digest = attestation.file_digest(data)
    if not attestation.verify(key, signed, model, version, run_id, digest, "blessed"):
        raise ModelRefusedError(
            f"{where}: its attestation does not match a blessed version {version} of run {run_id} "
            "with this model file: its decision, run, version or model file changed after the factory "
            "registered it; nothing was loaded"
        )


def _extra_trusted(run_tags: dict[str, str], code_dir: Path | None, where: str) -> set[str]:
    module = run_tags.get(CODE_MODULE_TAG)
    if not module:
        return set()
    try:
        return code_folder_types(module, code_dir)
    except ModelRefusedError as exc:
        raise ModelRefusedError(f"{where}: {exc}") from None


def load_registered(
    client: MlflowClient,
    model: str,
    version: str,
    *,
    code_dir: Path | None = None,
    require_blessed: bool = True,
    key: bytes | None,
) -> TrustedModel:
    """Load registered ``model`` v``version`` (by number, never by alias) or raise ModelRefusedError.

    ``require_blessed``: refuse a version without the factory's blessing (what serves or is
    compared as the champion must have passed the gates), checked by its tags and by its
    attestation signed with ``key`` (the caller's ``io.attestation.signing_key(settings)``;
    None only with ``require_blessed=False``).
    """
    import mlflow.artifacts

    where = f"{model} v{version}"
    try:
        registered = client.get_model_version(model, str(version))
    except Exception as exc:
        raise ModelUnavailableError(f"{where}: not readable from the registry ({_short(exc)})") from exc
    tags = dict(registered.tags or {})
    if require_blessed and tags.get(tag_schema.DECISION) != BLESSED:
        decision = tags.get(tag_schema.DECISION)
        raise ModelRefusedError(
            f"{where} is {'not evaluated by the factory' if decision is None else decision!r}"
            f"{'' if decision is None else ' (' + tags.get(tag_schema.DECISION_REASON, 'no reason') + ')'}"
            "; only versions the factory blessed are loaded"
        )
    run_tags: dict[str, str] = {}
    if registered.run_id:
        try:
            run_tags = dict(client.get_run(registered.run_id).data.tags)
        except Exception as exc:
            raise ModelUnavailableError(
                f"{where}: its run {registered.run_id} cannot be read ({_short(exc)})"
            ) from exc
    if require_blessed and RUN_KEY_TAG not in run_tags:
        raise ModelRefusedError(f"{where} was not trained by the factory (its run has no {RUN_KEY_TAG} tag)")
    extra = _extra_trusted(run_tags, code_dir, where)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model}/{version}")
    except Exception as exc:
        raise ModelUnavailableError(f"{where}: its artifacts cannot be downloaded ({_short(exc)})") from exc
    path = Path(local)
    checked = _check_local(path, extra, where)
    if require_blessed:
        if key is None:
            raise ValueError(f"{where}: checking the blessing needs the signing key")
        _check_attestation(tags, model, str(version), registered.run_id, checked.data, key, where)
    loaded = _deserialise(path, checked, where)
    return TrustedModel(
        loaded.estimator, loaded.path, loaded.mlmodel, registered.run_id, loaded.trusted_types, tags
    )


def load_uri(
    model_uri: str, *, run_tags: dict[str, str] | None = None, code_dir: Path | None = None
) -> TrustedModel:
    """Load a model the factory just logged (``models:/m-...`` or ``runs:/...``), same checks
    except the blessing (it has not been evaluated yet)."""
    import mlflow.artifacts

    extra = _extra_trusted(run_tags or {}, code_dir, model_uri)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
    except Exception as exc:
        raise ModelUnavailableError(
            f"{model_uri}: its artifacts cannot be downloaded ({_short(exc)})"
        ) from exc
    return load_local(local, extra, model_uri)
