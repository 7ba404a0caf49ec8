"""Issue 18 finding 3: a template that exits, interrupts or hangs, at import or in build(), costs
only its own models (an ``invalid_spec__`` DAG with the reason); the DAG file keeps every other
model's DAGs. Parsed by Airflow's own DagBag in a separate process, because the old code let
``os._exit`` end (and a loop stall) the very process that parsed."""

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

from tests.conftest import REPO

MODELS = REPO / "include" / "models"
HEADER = "NAME = '{name}'\nDESCRIPTION = 'hostile'\n"
GOOD_BUILD = textwrap.dedent("""
    def build(loaded, params):
        from airflow.sdk import DAG
        from model_factory.airflow.common import common_dag_args
        with DAG(dag_id=f"{loaded.spec.name}__x", schedule=None,
                 **common_dag_args(loaded.spec, "x")) as dag:
            pass
        return [dag]
""")
# template file stem -> (module body, words the model's invalid_spec DAG must show)
AT_IMPORT = {
    "imp_exit": ("import sys\nsys.exit(3)\n", ["imp_exit.py", "sys.exit(3)"]),
    "imp_systemexit": ("raise SystemExit('bye')\n", ["imp_systemexit.py", "sys.exit('bye')"]),
    "imp_interrupt": ("raise KeyboardInterrupt\n", ["imp_interrupt.py", "KeyboardInterrupt"]),
    "imp_os_exit": ("import os\nos._exit(0)\n", ["imp_os_exit.py", "exit code 0", "os._exit"]),
    "imp_loop": ("while True:\n    pass\n", ["imp_loop.py", "did not finish within", "endless loop"]),
}
IN_BUILD = {
    "b_exit": ("def build(loaded, params):\n    import sys\n    sys.exit(4)\n", ["build()", "sys.exit(4)"]),
    "b_systemexit": ("def build(loaded, params):\n    raise SystemExit\n", ["build()", "SystemExit"]),
    "b_interrupt": ("def build(loaded, params):\n    raise KeyboardInterrupt\n", ["KeyboardInterrupt"]),
    "b_os_exit": ("def build(loaded, params):\n    import os\n    os._exit(1)\n", ["build()", "exit code 1"]),
    "b_loop": ("def build(loaded, params):\n    while True:\n        pass\n", ["build()", "did not finish"]),
}


def _spec(name: str, template: str) -> str:
    raw = yaml.safe_load((MODELS / "churn.yaml").read_text())
    raw["name"], raw["template"] = name, template
    return yaml.safe_dump(raw)


def _parse_in_airflow(specs: Path, templates: Path, home: Path) -> dict:
    code = textwrap.dedent(f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(REPO / "dags")!r})
        print(json.dumps({{"dags": {{d: bag.dags[d].doc_md or "" for d in bag.dag_ids}},
                          "errors": {{k: str(v) for k, v in bag.import_errors.items()}}}}))
    """)
    env = os.environ | {
        "FACTORY_SPECS_DIR": str(specs),
        "FACTORY_TEMPLATES_DIR": str(templates),
        "FACTORY_HOME": str(home),
        "FACTORY_TEMPLATE_CHECK_TIMEOUT": "3",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hostile_parse(tmp_path_factory) -> dict:
    """One DAG folder parse with ten hostile templates, each used by one model, beside churn."""
    root = tmp_path_factory.mktemp("hostile")
    specs, templates = root / "models", root / "templates"
    specs.mkdir()
    templates.mkdir()
    shutil.copy(MODELS / "churn.yaml", specs / "churn.yaml")
    for stem, (body, _) in AT_IMPORT.items():
        (templates / f"{stem}.py").write_text(HEADER.format(name=stem) + body + GOOD_BUILD)
    for stem, (body, _) in IN_BUILD.items():
        (templates / f"{stem}.py").write_text(HEADER.format(name=stem) + body)
    for stem in [*AT_IMPORT, *IN_BUILD]:
        (specs / f"m_{stem}.yaml").write_text(_spec(f"m_{stem}", stem))
    return _parse_in_airflow(specs, templates, root / "home")


def test_hostile_templates_leave_every_other_dag(hostile_parse):
    assert hostile_parse["errors"] == {}
    dags = hostile_parse["dags"]
    assert {"churn__retrain", "churn__drift_watch", "churn__canary", "churn__review"} <= set(dags)
    assert {d for d in dags if d.startswith("invalid_spec__")} == {
        f"invalid_spec__m_{stem}" for stem in [*AT_IMPORT, *IN_BUILD]
    }


@pytest.mark.parametrize("stem", [*AT_IMPORT, *IN_BUILD])
def test_each_hostile_template_is_named_with_what_it_did(hostile_parse, stem):
    doc = hostile_parse["dags"][f"invalid_spec__m_{stem}"]
    for word in {**AT_IMPORT, **IN_BUILD}[stem][1]:
        assert word in doc, (word, doc)


def test_a_template_is_checked_again_only_when_its_file_or_spec_changes(tmp_path, monkeypatch):
    from model_factory.airflow import template_check
    from model_factory.airflow.build import build_all

    specs, templates = tmp_path / "models", tmp_path / "templates"
    specs.mkdir()
    templates.mkdir()
    template = templates / "fine.py"
    template.write_text(HEADER.format(name="fine") + GOOD_BUILD)
    (specs / "mine.yaml").write_text(_spec("mine", "fine"))
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    children: list[list[str]] = []
    real = template_check._run_child

    def counting(path, spec_paths, timeout):
        children.append([Path(p).name for p in spec_paths])
        return real(path, spec_paths, timeout)

    monkeypatch.setattr(template_check, "_run_child", counting)
    assert "mine__x" in build_all(specs, templates)
    assert children == [[], ["mine.yaml"]]  # the import, then the build
    assert "mine__x" in build_all(specs, templates)
    assert len(children) == 2  # nothing changed: no child
    (specs / "other.yaml").write_text(_spec("other", "fine"))
    build_all(specs, templates)
    assert children[2:] == [["other.yaml"]]  # a new spec: only it is tried
    template.write_text(template.read_text() + "\n# changed\n")
    build_all(specs, templates)
    assert children[3:] == [[], ["mine.yaml", "other.yaml"]]


def test_a_check_that_cannot_start_is_not_cached_and_names_why(tmp_path, monkeypatch):
    from model_factory.airflow.build import build_all

    specs, templates = tmp_path / "models", tmp_path / "templates"
    specs.mkdir()
    templates.mkdir()
    (templates / "fine.py").write_text(HEADER.format(name="fine") + GOOD_BUILD)
    (specs / "mine.yaml").write_text(_spec("mine", "fine"))
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.warns(UserWarning):
        dags = build_all(specs, templates)
    assert "could not start" in dags["invalid_spec__mine"].doc_md
    assert not list((tmp_path / "home").glob("template_checks/*.json"))
    monkeypatch.undo()
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    assert "mine__x" in build_all(specs, templates)
