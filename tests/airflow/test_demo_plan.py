"""`make demo` with specs that are not the demo's: run where their batches exist, else left
alone and said so; the demo's own models cover every shipped template."""

from __future__ import annotations

from datetime import date, timedelta

import yaml
from model_factory.airflow.templates import SHIPPED
from model_factory.settings import FactorySettings
from model_factory.spec import load_spec, load_specs
from model_factory_dev import demo

from tests.conftest import REPO


def _extra_spec(tmp_path, name: str):
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw.update(name=name, source={"uri": "${FACTORY_DATA_ROOT}/" + name + "/{ds}.csv"})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path, FactorySettings.from_env())


def test_demo_models_cover_every_shipped_template():
    specs = {
        s.spec.name: s.spec for s in load_specs(REPO / "include" / "models", FactorySettings.from_env())[0]
    }
    assert set(demo.DEMO_SPECS) <= set(specs)
    assert {specs[name].template for name in demo.DEMO_SPECS} == set(SHIPPED)
    assert any(
        specs[n].target_classes
        and len(specs[n].target_classes) > 2
        and all(isinstance(c, str) for c in specs[n].target_classes)
        for n in demo.DEMO_SPECS
    )


def test_a_data_scientists_spec_runs_only_where_its_batches_exist(tmp_path, factory_home):
    shipped = [s.spec for s in load_specs(REPO / "include" / "models", FactorySettings.from_env())[0]]
    mine, none = _extra_spec(tmp_path, "mine"), _extra_spec(tmp_path, "nobatch")
    batch = factory_home / "source" / "mine" / f"{demo.START + timedelta(days=1)}.csv"
    batch.parent.mkdir(parents=True)
    batch.write_text("x\n1\n")

    runs, notes = demo.plan(FactorySettings.from_env(), [*shipped, mine, none], days=3)

    assert [(d, s.name) for d, s in runs if s.name == "mine"] == [(demo.START + timedelta(days=1), "mine")]
    assert not [s for _, s in runs if s.name == "nobatch"]
    assert any("nobatch" in n and "left alone" in n for n in notes)
    assert any("mine" in n and "1 demo date" in n for n in notes)
    churn_days = [d for d, s in runs if s.name == "churn"]
    tuned_days = [d for d, s in runs if s.name == "churn_tuned"]
    assert len(churn_days) == 3 and tuned_days == churn_days[-demo.TEMPLATE_DAYS :]
    assert demo.dag_ids(next(s for s in shipped if s.template == "batch_scoring"))[-1].endswith("__score")


def test_run_dag_gives_sigterm_back_after_airflow_left_its_task_handler_installed():
    import signal

    def task_runner_handler(signum, frame):  # what Airflow 3.3's in-process task runner leaves
        pass

    class LeavesItsHandler:
        def test(self, run_conf):
            signal.signal(signal.SIGTERM, task_runner_handler)
            return type("Run", (), {"state": "success", "get_task_instances": lambda self: []})()

    before = signal.getsignal(signal.SIGTERM)
    state, _, _ = demo.run_dag(LeavesItsHandler(), date(2026, 5, 4))
    assert state == "success"
    assert signal.getsignal(signal.SIGTERM) is before
