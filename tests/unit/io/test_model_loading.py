"""Issue 10 item 2: whoever can write to the registry cannot run code in the gateway or the workers.

One real registry (SQLite) per module: churn v1 trained by the factory (champion), churn v2 a
cloudpickle "model" whose payload would write a marker file when unpickled, churn v3 a skops
model that needs a type the factory does not trust, churn v4 a factory model rejected by the
gates. Every load path (the gateway, evaluation against the champion, the drift watch) must
refuse v2-v4 with a reason and never create the marker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from model_factory.errors import PermanentError
from model_factory.io.attestation import signing_key
from model_factory.io.model_loading import ModelRefusedError, load_registered
from model_factory.io.tracking import connect
from model_factory.settings import FactorySettings

from tests.conftest import factory_env
from tests.unit.pipeline.test_training_evaluation import DAY, _retrain, _validated, spec_for

pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
CHURN = spec_for("churn")


class Payload:
    """Not a model: unpickling it runs ``exec``, which writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def predict(self, X):  # looks like a model to MLflow's pyfunc flavor
        return X

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def _log_foreign(settings: FactorySettings, model: object, **log_kwargs) -> str:
    """Log ``model`` the way an attacker with registry write access would, tagged to look like a
    factory version (run key, blessed): the tags are policy, the format is the boundary."""
    import mlflow
    import mlflow.sklearn

    client = connect(settings)
    experiment = client.get_experiment_by_name("churn") or client.get_experiment(
        client.create_experiment("churn")
    )
    with mlflow.start_run(experiment_id=experiment.experiment_id, tags={"factory.run_key": "forged"}):
        info = mlflow.sklearn.log_model(model, name="model", **log_kwargs)
    version = str(mlflow.register_model(info.model_uri, "churn").version)
    client.set_model_version_tag("churn", version, "factory.decision", "blessed")
    return version


@pytest.fixture(scope="module")
def hostile_registry(tmp_path_factory):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    home = tmp_path_factory.mktemp("loading") / "factory"
    marker = home.parent / "PAYLOAD_RAN"
    with factory_env(home) as settings:
        _retrain(CHURN, settings, DAY, [_validated(settings, "churn", DAY)])  # v1, champion
        assert _log_foreign(settings, Payload(marker), serialization_format="cloudpickle") == "2"
        sneaky = Pipeline([("f", FunctionTransformer(func=os.system))])
        assert _log_foreign(settings, sneaky, skops_trusted_types=["posix.system"]) == "3"
        client = connect(settings)
        source = client.get_model_version("churn", "1")
        rejected = client.create_model_version("churn", source.source, run_id=source.run_id)
        client.set_model_version_tag("churn", rejected.version, "factory.decision", "rejected")
        client.set_model_version_tag("churn", rejected.version, "factory.decision_reason", "roc_auc too low")
        # v5: the factory's own champion estimator, logged again by hand exactly as the factory
        # saves (skops, its trusted types, its signature), forged run key, tagged blessed.
        genuine = load_registered(client, "churn", "1", key=signing_key(settings))
        assert (
            _log_foreign(
                settings,
                genuine.estimator,
                serialization_format="skops",
                skops_trusted_types=list(genuine.trusted_types),
                signature=genuine.mlmodel.signature,
            )
            == "5"
        )
        # v6: trained and registered by the factory, rejected by its gates, then re-tagged blessed.
        strict = spec_for("churn", **{"gates.threshold": 0.999})
        later = DAY.replace(day=DAY.day + 2)
        _, _, rejected_by_gates = _retrain(strict, settings, later, [_validated(settings, "churn", later)])
        assert (rejected_by_gates["version"], rejected_by_gates["status"]) == ("6", "rejected")
        client.set_model_version_tag("churn", "6", "factory.decision", "blessed")
        client.set_model_version_tag("churn", "6", "factory.decision_reason", "trust me")
        marker.unlink(missing_ok=True)  # MLflow's own log_model unpickles it once (the attacker's side)
        yield settings, marker


def test_a_factory_version_loads(hostile_registry):
    settings, _ = hostile_registry
    loaded = load_registered(connect(settings), "churn", "1", key=signing_key(settings))
    assert hasattr(loaded.estimator, "predict_proba") and loaded.mlmodel.signature is not None
    assert all(t == "numpy.dtype" or t.startswith("sklearn.") for t in loaded.trusted_types)


@pytest.mark.parametrize(
    ("version", "words"),
    [
        ("2", "saved as 'cloudpickle'; the factory loads only 'skops' models"),
        ("3", "holds types the factory does not trust: ['posix.system']"),
        ("4", "v4 is 'rejected' (roc_auc too low); only versions the factory blessed are loaded"),
    ],
)
def test_versions_the_factory_did_not_write_or_bless_are_refused(hostile_registry, version, words):
    settings, marker = hostile_registry
    with pytest.raises(ModelRefusedError, match="churn v" + version) as refused:
        load_registered(connect(settings), "churn", version, key=signing_key(settings))
    assert words in str(refused.value)
    assert isinstance(refused.value, PermanentError)  # the task fails at once, no retries
    assert not marker.exists()


def test_the_gateway_refuses_a_cloudpickle_champion_with_a_health_reason(hostile_registry, tmp_path):
    from dataclasses import replace

    from fastapi.testclient import TestClient
    from model_factory.serving import GatewaySettings, create_app

    settings, marker = hostile_registry
    client = connect(settings)
    client.set_registered_model_alias("churn", "champion", "2")
    try:
        gateway = GatewaySettings(factory=settings, db_uri=f"sqlite:///{tmp_path / 'p.db'}", refresh_s=3600)
        with TestClient(create_app(replace(gateway, models=("churn",)))) as gw:
            health = gw.get("/health").json()
            assert health["models"]["churn"]["servable"] is False
            assert "saved as 'cloudpickle'" in health["models"]["churn"]["why"]
            answer = gw.post("/v1/models/churn/predict", json={"features": {}})
            assert answer.status_code == 503 and "cloudpickle" in answer.json()["detail"]
    finally:
        client.set_registered_model_alias("churn", "champion", "1")
    assert not marker.exists()


def test_evaluation_and_drift_watch_refuse_a_cloudpickle_champion(hostile_registry):
    """The same rule for every worker-side load: evaluation against the champion, drift watch."""
    from model_factory.monitoring import watch
    from model_factory.pipeline.evaluation import evaluate_candidate
    from model_factory.pipeline.training import train_model
    from model_factory_dev import demo_data

    settings, marker = hostile_registry
    client = connect(settings)
    later = DAY.replace(day=DAY.day + 1)
    trained = train_model(CHURN, str(later), [_validated(settings, "churn", later)], settings)
    client.set_registered_model_alias("churn", "champion", "2")
    try:
        with pytest.raises(ModelRefusedError, match="cloudpickle"):
            evaluate_candidate(CHURN, trained, settings)
        champion = watch.ChampionBaseline(
            version="2", run_id=None, baseline={}, contract=None, holdout_metric=0.8
        )
        frame = demo_data.generate_batch("churn", later, rows=CHURN.drift.min_labels + 50)
        with pytest.raises(ModelRefusedError, match="cloudpickle"):
            watch._concept_drift(CHURN, frame, champion, settings)
    finally:
        client.set_registered_model_alias("churn", "champion", "1")
    assert not marker.exists()


def test_the_model_card_never_unpickles_a_forged_model_uri_or_champion(hostile_registry):
    """Issue 18 finding 1: the card step loaded ``factory.model_uri`` (a run tag anyone with
    registry write access can set) and the champion with ``mlflow.sklearn.load_model``. Now it
    loads both by version number through the safe loader: the forged tag is ignored, a cloudpickle
    champion is refused (the card says why), a cloudpickle version's own card is refused."""
    import json

    from model_factory.review import card

    settings, marker = hostile_registry
    client = connect(settings)
    factory_version = client.get_model_version("churn", "1")
    run_id = factory_version.run_id
    run_tags = client.get_run(run_id).data.tags
    forged_uri = client.get_model_version("churn", "2").source
    original_decision = json.loads((Path(client.download_artifacts(run_id, "decision.json"))).read_text())
    try:
        client.set_tag(run_id, "factory.model_uri", forged_uri)
        made = card.produce_card(CHURN, {"model": "churn", "version": "1"}, settings)
        assert made["card_error"] is None and made["card_uri"]

        client.log_text(run_id, json.dumps({**original_decision, "champion_version": "2"}), "decision.json")
        made = card.produce_card(CHURN, {"model": "churn", "version": "1"}, settings)
        assert "saved as 'cloudpickle'" in made["card_error"]

        client.set_tag(
            client.get_model_version("churn", "2").run_id,
            "factory.holdout_uri",
            run_tags["factory.holdout_uri"],
        )
        made = card.produce_card(CHURN, {"model": "churn", "version": "2"}, settings)
        assert "saved as 'cloudpickle'" in made["card_error"]
    finally:
        client.set_tag(run_id, "factory.model_uri", run_tags["factory.model_uri"])
        client.log_text(run_id, json.dumps(original_decision), "decision.json")
    assert not marker.exists()


def test_no_model_is_deserialised_outside_the_safe_loader():
    """Every model load in the product goes through ``io.model_loading`` (grep, kept by this test):
    no other module calls an MLflow flavor's ``load_model``, pickle, cloudpickle, joblib or skops."""
    import re

    from tests.conftest import REPO

    loads = re.compile(
        r"\b(mlflow\.\w+\.load_model|load_model\(|pickle\.loads?\(|cloudpickle|joblib\.load|skops\.io\.loads?\()"
    )
    offenders = []
    for path in sorted((REPO / "include").rglob("*.py")):
        if path.name == "model_loading.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if loads.search(code) and '"cloudpickle"' not in code:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, offenders


FORGED = [
    ("5", "carries no attestation: the factory did not register it"),
    ("6", "its attestation does not match a blessed version 6"),
]


@pytest.mark.parametrize(("version", "words"), FORGED)
def test_a_forged_or_re_tagged_blessed_version_is_refused(hostile_registry, version, words):
    """Issue 18 finding 6: tags alone never decide what loads; the factory's signature does."""
    settings, _ = hostile_registry
    with pytest.raises(ModelRefusedError, match="churn v" + version) as refused:
        load_registered(connect(settings), "churn", version, key=signing_key(settings))
    assert words in str(refused.value) and "nothing was loaded" in str(refused.value)


@pytest.mark.parametrize(("version", "words"), FORGED)
def test_the_gateway_refuses_a_forged_champion_and_says_why_in_health(
    hostile_registry, tmp_path, version, words
):
    from dataclasses import replace

    from fastapi.testclient import TestClient
    from model_factory.serving import GatewaySettings, create_app

    settings, _ = hostile_registry
    client = connect(settings)
    client.set_registered_model_alias("churn", "champion", version)
    try:
        gateway = GatewaySettings(factory=settings, db_uri=f"sqlite:///{tmp_path / 'p.db'}", refresh_s=3600)
        with TestClient(create_app(replace(gateway, models=("churn",)))) as gw:
            health = gw.get("/health").json()
            assert health["models"]["churn"]["servable"] is False
            assert words in health["models"]["churn"]["why"]
            answer = gw.post("/v1/models/churn/predict", json={"features": {}})
            assert answer.status_code == 503
    finally:
        client.set_registered_model_alias("churn", "champion", "1")


def test_an_attestation_copied_to_another_version_or_key_is_refused(hostile_registry):
    """The signature binds the version number and the key: copying v1's tags onto a new version of
    the same model file, or checking with another key, is refused."""
    settings, _ = hostile_registry
    client = connect(settings)
    source = client.get_model_version("churn", "1")
    copy = client.create_model_version("churn", source.source, run_id=source.run_id, tags=source.tags)
    with pytest.raises(ModelRefusedError, match="attestation does not match"):
        load_registered(client, "churn", str(copy.version), key=signing_key(settings))
    with pytest.raises(ModelRefusedError, match="attestation does not match"):
        load_registered(client, "churn", "1", key=b"another factory's key")
    client.delete_model_version("churn", str(copy.version))
