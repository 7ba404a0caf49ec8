"""Issue 22 item 1: specs spread over shard DAG files by a stable hash. Each spec is in exactly
one shard; a shard builds only its own specs; two generations of shard files side by side never
define one DAG id twice; a shard whose parse fails loses only its own models, and its import
error names their spec files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from model_factory.airflow.shards import (
    SHARD_FILE,
    SHARD_SOURCE,
    active_count,
    shard_dags,
    shard_of,
    write_shard_files,
)

from tests.conftest import REPO

MODELS = REPO / "include" / "models"


def _write_specs(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    raw = yaml.safe_load((MODELS / "churn.yaml").read_text())
    for name in names:
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw | {"name": name}))


@pytest.fixture
def fleet(tmp_path, monkeypatch) -> Path:
    specs = tmp_path / "models"
    _write_specs(specs, [f"m{i:02d}" for i in range(24)])
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(specs))
    monkeypatch.setenv("FACTORY_TEMPLATES_DIR", str(tmp_path / "none"))
    return specs


def _models(dags: dict) -> set[str]:
    return {d.split("__")[0] for d in dags}


def test_the_hash_is_stable_across_processes():
    names = [f"model_{i}" for i in range(50)]
    code = (
        "from model_factory.airflow.shards import shard_of\n"
        f"print([shard_of(n + '.yaml', 7) for n in {names!r}])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"PYTHONHASHSEED": "123"},
    )
    assert other.stdout.strip() == str([shard_of(n + ".yaml", 7) for n in names])
    assert len(set(shard_of(n, 7) for n in names)) == 7  # spread over every shard


def test_every_spec_is_in_exactly_one_shard(fleet, tmp_path):
    files = write_shard_files(tmp_path / "dags", 4)
    built = [shard_dags(str(f)) for f in files]
    assert set().union(*map(_models, built)) == {p.stem for p in fleet.glob("*.yaml")}
    assert sum(len(_models(b)) for b in built) == 24  # none twice
    for index, dags in enumerate(built):
        assert all(shard_of(f"{model}.yaml", 4) == index for model in _models(dags))
        assert all(
            d.endswith(("__retrain", "__drift_watch", "__canary", "__review", "__health")) for d in dags
        )


def test_a_tasks_parse_builds_only_its_model_in_its_shard(fleet, tmp_path):
    files = write_shard_files(tmp_path / "dags", 4)
    home = files[shard_of("m05.yaml", 4)]
    assert set(shard_dags(str(home), "m05__canary")) == {
        f"m05__{k}" for k in ("retrain", "drift_watch", "canary", "review", "health")
    }
    elsewhere = files[(shard_of("m05.yaml", 4) + 1) % 4]
    assert not any(d.startswith("m05__") for d in shard_dags(str(elsewhere), "m05__canary"))


def test_two_generations_side_by_side_never_define_a_dag_twice(fleet, tmp_path):
    dags_dir = tmp_path / "dags"
    old = write_shard_files(dags_dir, 4)
    new = [dags_dir / SHARD_FILE.format(index=i, count=8) for i in range(8)]
    for i, path in enumerate(new[:5]):  # a change to 8 shards half copied: 4 still builds
        path.write_text(SHARD_SOURCE.format(index=i, count=8))
    assert active_count(dags_dir) == 4
    assert all(shard_dags(str(f)) == {} for f in new[:5])
    for i, path in enumerate(new):  # all 8 there, the 4 not yet removed: only 8 builds
        path.write_text(SHARD_SOURCE.format(index=i, count=8))
    assert active_count(dags_dir) == 8
    assert all(shard_dags(str(f)) == {} for f in old)
    ids = [d for f in new for d in shard_dags(str(f))]
    assert len(ids) == len(set(ids)) == 24 * 5  # churn's five DAGs (it reads its outcomes: a health DAG)
    write_shard_files(dags_dir, 8)
    assert sorted(p.name for p in dags_dir.iterdir()) == sorted(p.name for p in new)


def test_a_shard_whose_parse_fails_loses_only_its_models_and_names_them(tmp_path):
    specs, templates, dags_dir = tmp_path / "models", tmp_path / "templates", tmp_path / "dags"
    names = [f"m{i:02d}" for i in range(12)]
    _write_specs(specs, names)
    slow = next(f"slow{i}" for i in range(100) if shard_of(f"slow{i}.yaml", 4) == shard_of("m00.yaml", 4))
    templates.mkdir()
    (templates / "sleepy.py").write_text(
        textwrap.dedent("""
        import time
        from model_factory.airflow.templates.retrain import build as retrain_build
        NAME, DESCRIPTION = "sleepy", "builds slowly"
        def build(loaded, params):
            time.sleep(6)
            return retrain_build(loaded, params)
    """)
    )
    raw = yaml.safe_load((MODELS / "churn.yaml").read_text())
    (specs / f"{slow}.yaml").write_text(yaml.safe_dump(raw | {"name": slow, "template": "sleepy"}))
    write_shard_files(dags_dir, 4)
    shutil.copy(REPO / "dags" / "model_factory_analyzer.py", dags_dir)
    code = textwrap.dedent(f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(dags_dir)!r})
        errors = {{k: str(v) for k, v in bag.import_errors.items()}}
        print(json.dumps({{"dags": sorted(bag.dag_ids), "errors": errors}}))
    """)
    env = os.environ | {
        "FACTORY_SPECS_DIR": str(specs),
        "FACTORY_TEMPLATES_DIR": str(templates),
        "FACTORY_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "3",
        "FACTORY_TEMPLATE_CHECK_TIMEOUT": "20",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    failed = shard_of(f"{slow}.yaml", 4)
    assert list(result["errors"]) == [str(dags_dir / SHARD_FILE.format(index=failed, count=4))]
    error = result["errors"][str(dags_dir / SHARD_FILE.format(index=failed, count=4))]
    assert f"shard {failed} of 4" in error and f"{slow}.yaml" in error and "m00.yaml" in error
    survivors = {n for n in names if shard_of(f"{n}.yaml", 4) != failed}
    assert survivors and _models(d for d in result["dags"] if d != "model_factory_analyzer") == survivors
