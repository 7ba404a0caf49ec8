"""Hardening (issue 10 items 6 and 7, spec and source side): schedules, estimator params and YAML
shape checked at parse time; source URIs confined to the data roots and allow-listed variables,
no query/fragment dropped silently, no secret in an error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from model_factory.io import batches, storage
from model_factory.settings import FactorySettings
from model_factory.spec import MAX_SPEC_BYTES, MAX_YAML_DEPTH, SpecError, load_spec
from model_factory_dev import demo_data as dd

from tests.conftest import REPO, settings_with

SECRET = "postgresql://airflow:s3cr3t-pa55@db/airflow"


def write_spec(folder: Path, text: str | None = None, **changes) -> Path:
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    for dotted, value in changes.items():
        target = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    path = folder / "churn.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(raw))
    return path


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(path, FactorySettings.from_env())
    assert str(path) in str(info.value)
    return info.value.problems


def one(found: list[tuple[str, str]], field: str, *fragments: str) -> None:
    assert any(f == field and all(x in r for x in fragments) for f, r in found), found


# --- schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("schedule", "every night", "not a cron expression"),
        ("schedule", "0 2 * * * *", "five cron fields"),
        ("schedule", "61 2 * * *", "not a cron expression"),
        ("schedule", "@nightly", "not a schedule preset"),
        ("schedule", "@once", "not a schedule preset"),
        ("drift.schedule", "hourly", "not a cron expression"),
        ("drift.schedule", "*/5 * * *", "not a cron expression"),
    ],
)
def test_a_schedule_airflow_cannot_run_is_refused_at_parse_time(tmp_path, field, value, fragment):
    one(problems(write_spec(tmp_path, **{field: value})), field, repr(value), fragment)


@pytest.mark.parametrize("value", ["@daily", "@hourly", "*/15 * * * *", "0 2 * * 1-5", None])
def test_cron_expressions_and_presets_load(tmp_path, value):
    assert load_spec(write_spec(tmp_path, schedule=value), FactorySettings.from_env()).schedule == value


# --- estimator params -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "params", "fragment"),
    [
        ("RandomForestClassifier", {"n_estimators": 1_000_000_000}, "n_estimators must be between 1 and"),
        ("RandomForestClassifier", {"n_estimators": 1e9}, "n_estimators must be between 1 and 10000"),
        ("RandomForestClassifier", {"n_jobs": -1}, "n_jobs must be between 1 and"),
        ("RandomForestClassifier", {"n_jobs": 10_000}, "n_jobs must be between 1 and"),
        ("LogisticRegression", {"max_iter": 2.5}, "max_iter must be a whole number"),
        ("LogisticRegression", {"C": float("inf")}, "C must be a finite number"),
        ("LogisticRegression", {"class_weight": {i: 1 for i in range(2000)}}, "more than 1000 items"),
        ("LogisticRegression", {"solver": "x" * 500}, "longer than 200"),
        ("HistGradientBoostingClassifier", {"max_bins": 100_000}, "max_bins must be between 2 and 255"),
    ],
)
def test_estimator_params_are_bounded(tmp_path, cls, params, fragment):
    path = write_spec(tmp_path, **{"estimator.class": cls, "estimator.params": params})
    one(problems(path), "estimator", fragment)


def test_n_jobs_cap_is_the_cores_or_a_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_MAX_N_JOBS", "3")
    spec = write_spec(
        tmp_path,
        **{
            "estimator.class": "RandomForestClassifier",
            "estimator.params": {"n_jobs": 3, "n_estimators": 50},
        },
    )
    assert load_spec(spec, FactorySettings.from_env()).estimator.params["n_jobs"] == 3
    write_spec(tmp_path, **{"estimator.class": "RandomForestClassifier", "estimator.params": {"n_jobs": 4}})
    one(problems(tmp_path / "churn.yaml"), "estimator", "n_jobs must be between 1 and 3")


# --- YAML shape -----------------------------------------------------------------------------


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = (REPO / "include" / "models" / "churn.yaml").read_text()
    text = text.replace("  params: {C: 1.0, max_iter: 1000}", "  params:\n    " + "\n    ".join(lines))
    found = problems(write_spec(tmp_path, text))
    assert found[0][0] == "" and "YAML aliases (*name) are not allowed" in found[0][1]
    assert "line " in found[0][1]


def test_yaml_nested_deeper_than_the_limit_is_refused(tmp_path):
    deep = "tags:\n  x: " + "[" * (MAX_YAML_DEPTH + 5) + "]" * (MAX_YAML_DEPTH + 5) + "\n"
    text = (REPO / "include" / "models" / "churn.yaml").read_text().split("tags:")[0] + deep
    found = problems(write_spec(tmp_path, text))
    assert f"nested more than {MAX_YAML_DEPTH} levels deep" in found[0][1]
    deeper = "tags:\n  x: " + "[" * 100_000 + "]" * 100_000 + "\n"  # no RecursionError either
    found = problems(write_spec(tmp_path, text.split("tags:")[0] + deeper))
    assert "nested more than" in found[0][1]


def test_oversized_and_non_utf8_specs_are_refused(tmp_path):
    text = (REPO / "include" / "models" / "churn.yaml").read_text()
    found = problems(write_spec(tmp_path, text + "#" + "x" * MAX_SPEC_BYTES + "\n"))
    assert f"a spec may be at most {MAX_SPEC_BYTES}" in found[0][1]
    (tmp_path / "churn.yaml").write_bytes(text.encode() + b"\n# caf\xe9\n")
    assert "not UTF-8 text" in problems(tmp_path / "churn.yaml")[0][1]


# --- source URIs: spec side -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("file:///etc/passwd#{ds}", "must not contain '?' or '#'"),
        ("s3://bucket/x.csv?versionId={ds}", "must not contain '?' or '#'"),
        ("${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}/{ds}.csv", "uses ${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}"),
        ("${AIRFLOW__CORE__FERNET_KEY}/{ds}", "only FACTORY_* variables"),
    ],
)
def test_source_uri_refused_at_parse_time_without_any_secret(tmp_path, monkeypatch, uri, fragment):
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", SECRET)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", SECRET)
    found = problems(write_spec(tmp_path, **{"source.uri": uri}))
    one(found, "source.uri", fragment)
    assert SECRET not in str(found)
    one(problems(write_spec(tmp_path, **{"drift.data_uri": uri})), "drift.data_uri", fragment)


# --- source URIs: run time ------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    (data / "churn").mkdir(parents=True)
    monkeypatch.setenv("FACTORY_DATA_ROOT", data.as_uri())
    monkeypatch.delenv("FACTORY_SOURCE_ROOTS", raising=False)
    return data


def test_fernet_key_in_a_uri_names_the_variable_never_its_value(roots):
    env = {**os.environ, "AIRFLOW__CORE__FERNET_KEY": SECRET}
    with pytest.raises(batches.SourceUriError) as info:
        batches.resolve_source_uri("${AIRFLOW__CORE__FERNET_KEY}/{ds}", "2026-03-02", settings_with(), env)
    assert "${AIRFLOW__CORE__FERNET_KEY}" in str(info.value) and SECRET not in str(info.value)
    # an allow-listed variable that holds no URI: a clear error, not an IndexError
    env["FACTORY_NOT_A_URI"] = "just-text"
    with pytest.raises(batches.SourceUriError, match="does not resolve to a file:// or s3:// URI"):
        batches.resolve_source_uri("${FACTORY_NOT_A_URI}/{ds}", "2026-03-02", settings_with(), env)


@pytest.mark.parametrize(
    "template",
    [
        "file:///etc/passwd-{ds}",
        "${FACTORY_DATA_ROOT}/../../../../etc/passwd-{ds}",
        "file://etc/passwd-{ds}",
    ],
)
def test_file_sources_outside_the_data_roots_are_refused(roots, template):
    with pytest.raises(batches.SourceUriError):
        batches.resolve_source_uri(template, "2026-03-02", settings_with())


def test_a_symlink_out_of_the_data_root_is_refused_and_extra_roots_are_allowed(roots, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "2026-03-02.csv").write_text("a\n1\n")
    (roots / "churn" / "link").symlink_to(outside)
    with pytest.raises(batches.SourceUriError, match="outside the data roots") as info:
        batches.resolve_source_uri("${FACTORY_DATA_ROOT}/churn/link/{ds}.csv", "2026-03-02", settings_with())
    assert str(info.value) == (
        f"source file {outside / '2026-03-02.csv'} is outside the data roots {[roots.as_uri()]}: put it "
        "under FACTORY_DATA_ROOT or add its folder to FACTORY_SOURCE_ROOTS"
    )
    # the caller's settings (FACTORY_SOURCE_ROOTS, read at the entry point) name the extra roots
    extra = settings_with(source_roots=f"s3://bucket, {outside.as_uri()}")
    assert batches.source_roots(extra) == [roots.as_uri(), "s3://bucket", outside.as_uri()]
    uri = batches.resolve_source_uri("${FACTORY_DATA_ROOT}/churn/link/{ds}.csv", "2026-03-02", extra)
    assert uri.endswith("/churn/link/2026-03-02.csv")


def test_ingest_of_a_confined_source_copies_nothing(roots, tmp_path):
    secret_file = tmp_path / "passwd-2026-03-02"
    secret_file.write_text("root:x:0:0\n")
    spec_path = write_spec(tmp_path, **{"source.uri": f"{tmp_path.as_uri()}/passwd-{{ds}}"})
    spec = load_spec(spec_path, FactorySettings.from_env())
    store = tmp_path / "store"
    with pytest.raises(batches.SourceUriError):
        batches.ingest_batch(spec, "2026-03-02", settings_with(store_uri=store.as_uri()))
    assert not store.exists()
    dd.write_batch(
        dd.generate_batch("churn", __import__("datetime").date(2026, 3, 2), rows=20),
        roots / "churn" / "2026-03-02.csv",
    )
    ok = load_spec(write_spec(tmp_path), FactorySettings.from_env())
    assert batches.ingest_batch(ok, "2026-03-02", settings_with(store_uri=store.as_uri()))["rows"] == 20


def test_store_uris_with_a_query_or_fragment_are_errors_not_dropped(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(storage.StorageError, match="query or fragment"):
        storage.write_bytes(f"{target.as_uri()}#frag", b"{}")
    with pytest.raises(storage.StorageError, match="names a host"):
        storage.read_bytes("file://etc/passwd")
    assert not target.exists()


# --- leftovers of killed writes (issue 10 item 9) --------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_write_leaves_temp_files_the_next_write_removes(tmp_path):
    import socket

    target = tmp_path / "data.json"
    host = socket.gethostname()
    # a write killed before its rename (same host, process gone) and a very old one from elsewhere
    killed = tmp_path / f".data.json.{host}.{_dead_pid()}.ab12cd.tmp"
    old_foreign = tmp_path / ".data.json.other-host.123.ef34gh.tmp"
    live = tmp_path / f".data.json.{host}.{os.getpid()}.zz99yy.tmp"  # a write in progress
    for path in (killed, old_foreign, live):
        path.write_bytes(b"half a file")
    stale = time.time() - storage.STALE_TEMP_SECONDS - 60
    os.utime(old_foreign, (stale, stale))

    storage.write_json(target.as_uri(), {"ok": True})
    assert storage.read_json(target.as_uri()) == {"ok": True}
    assert not killed.exists() and not old_foreign.exists()
    assert live.exists()
    assert storage.list_uris(tmp_path.as_uri()) == [target.as_uri()]


def test_params_of_a_custom_factory_are_bounded_too(tmp_path):
    estimator = {"factory": "churn_features:build", "params": {"n_jobs": -1}}
    path = write_spec(tmp_path, estimator=estimator, template="custom_training")
    one(problems(path), "estimator", "n_jobs must be between 1 and")
