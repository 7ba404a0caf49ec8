"""A synthetic fleet: one trained, blessed version registered under many model names.

Training a thousand models would take the better part of an hour; serving does not care whether
they differ. Each fleet member is a real registered model with a real version (the trained one's
artifacts), blessed and attested with the factory's key, with a champion alias: the gateway loads
it through the same safe loader as any other. Used by the gateway's fleet test and
``bench/gateway_fleet.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_factory.io import attestation, tag_schema, tracking
from model_factory.io.model_loading import model_file_digest
from model_factory.io.registry_state import CHAMPION
from model_factory.pipeline.registry import attest_version
from model_factory.settings import FactorySettings


@dataclass(frozen=True)
class Fleet:
    names: tuple[str, ...]
    source: str
    """``<model> v<version>`` whose artifacts every member serves."""


def fleet_name(prefix: str, i: int) -> str:
    return f"{prefix}-{i:05d}"


def register_fleet(
    settings: FactorySettings, model: str, version: str, count: int, prefix: str = "fleet"
) -> Fleet:
    """Register ``count`` models ``<prefix>-00000``... each with v1 = ``model`` v``version``'s
    artifacts and run, blessed, attested and champion.

    The first member goes through the MLflow client; on a SQL registry (SQLite, PostgreSQL) the
    others are copies of its rows in MLflow's own tables, written in one transaction (the client
    makes six round trips per model: minutes for a thousand on a busy machine), each with its own
    attestation. Any other registry: the client for every member.
    """
    import mlflow.artifacts

    client = tracking.connect(settings)
    source = client.get_model_version(model, version)
    digest = model_file_digest(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model}/{version}"))
    names = tuple(fleet_name(prefix, i) for i in range(count))
    existing = {m.name for m in _all_registered(client)}
    missing = [name for name in names if name not in existing]
    sql = settings.tracking_uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql")
    for name in missing[:1] if sql else missing:
        client.create_registered_model(name)
        created = client.create_model_version(name, source.source, run_id=source.run_id)
        client.set_model_version_tag(name, created.version, tag_schema.DECISION, "blessed")
        attest_version(client, settings, name, str(created.version), source.run_id, "blessed", digest)
        client.set_registered_model_alias(name, CHAMPION, created.version)
    if sql and len(missing) > 1:
        _copy_rows(settings, missing[0], missing[1:], source.run_id, digest)
    return Fleet(names, f"{model} v{version}")


def _copy_rows(
    settings: FactorySettings, template: str, names: list[str], run_id: str | None, digest: str
) -> None:
    """Copy the registry rows of ``template`` (registered model, v1, its tags and alias) to each
    of ``names``, the attestation signed for each name."""
    import sqlalchemy as sa

    key = attestation.signing_key(settings)
    engine = sa.create_engine(settings.tracking_uri)
    meta = sa.MetaData()
    tables = (
        "registered_models",
        "model_versions",
        "model_version_tags",
        "registered_model_aliases",
        "registered_model_tags",
    )
    with engine.begin() as conn:
        for table_name in tables:
            table = sa.Table(table_name, meta, autoload_with=conn)
            selected = conn.execute(sa.select(table).where(table.c.name == template))
            rows = [dict(row._mapping) for row in selected]
            copies = []
            for name in names:
                for row in rows:
                    copy = {**row, "name": name}
                    if table_name == "model_version_tags" and row["key"] == tag_schema.ATTESTATION:
                        version = str(row["version"])
                        copy["value"] = attestation.sign(key, name, version, run_id, digest, "blessed")
                    copies.append(copy)
            if copies:
                conn.execute(sa.insert(table), copies)
    engine.dispose()


def _all_registered(client) -> list:
    found, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found
