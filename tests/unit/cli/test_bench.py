"""``model-factory bench --quick``: the bench command runs end to end on small data, so it cannot rot.

Asserts what the run computed (every row present, the drift check flags the shifted columns, the
serving row used the compiled path, validation passed, files written), never how fast it was.
Quick mode must not create virtualenvs: ``venvs.ensure`` is made to fail here.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_factory.cli.main import main
from model_factory.settings import FactorySettings

BENCH = Path(__file__).resolve().parents[3] / "bench"


def test_quick_bench_writes_the_table_and_its_json(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import venvs

    def no_venvs(*args, **kwargs):
        raise AssertionError("--quick must not create virtualenvs")

    monkeypatch.setattr(venvs, "ensure", no_venvs)
    code = main(["bench", "--quick", "--rows", "10000", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "quick.json").read_text())
    table = (tmp_path / "quick.md").read_text()
    assert table.startswith("| work | this project")
    assert report["mode"] == "quick" and len(report["machine"]["load_before"]) == 3
    works = [row["work"] for row in report["rows"]]
    assert any(w.startswith("single-row predict") for w in works)
    assert any(w.startswith("drift check, 10,000 vs 10,000") for w in works)
    assert any(w.startswith("validation step, 10,000 rows") for w in works)
    results = report["results"]
    serving = results["serving"]["1"]
    assert serving["ours"]["path"].startswith("compiled"), serving["ours"]["path"]
    assert len(serving["ours"]["runs"]) == len(serving["alternative"]["runs"]) == report["repeats"]
    drift = results["drift_1m"]["ours"]
    assert drift["flagged"] == ["cat_1", "num_0", "num_3"]  # the columns the bench data shifts
    assert results["validation"]["ours"]["status"] == "validated"
    assert results["validation"]["alternative"]["expectations"] > 20
    assert "skipped in --quick" in table
    assert "wrote " in capsys.readouterr().out


def test_unknown_rows_are_refused(capsys) -> None:
    assert main(["bench", "--quick", "--only", "serving,nonsense"]) == 2
    assert "unknown rows ['nonsense']" in capsys.readouterr().err


def test_the_retrain_rows_bare_script_validates_trains_and_registers(tmp_path: Path, monkeypatch) -> None:
    """The retrain row's alternative, run as the bench runs it (a fresh process each time; the
    stack side is what the e2e tests' scheduler runs): it really validates, fits, compares with
    the champion and registers, so the ratio compares like work."""
    import datetime as dt
    import subprocess
    import sys

    monkeypatch.syspath_prepend(str(BENCH))
    import retrain_bench

    spec = retrain_bench.bench_spec(tmp_path / "specs")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = []
    for day in (dt.date(2026, 3, 2), dt.date(2026, 3, 3)):
        csv = tmp_path / f"{day}.csv"
        retrain_bench.write_batch(csv, day, rows=3000)
        argv = [
            sys.executable,
            str(BENCH / "retrain_bench.py"),
            "--bare",
            str(csv),
            "--spec",
            str(spec),
            "--tracking-uri",
            uri,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [int(r["version"]) for r in results] == [1, 2]
    assert results[0]["champion"] is None and 0.5 < results[1]["champion"] <= 1
    assert all(r["rows"] == 3000 and 0.5 < r["roc_auc"] <= 1 for r in results)


def test_only_retrain_is_accepted(tmp_path: Path, capsys) -> None:
    """The table has a retrain row, so ``--only retrain`` is a row, not an unknown name (quick mode
    skips the retrain DAG, so nothing heavy runs here)."""
    assert main(["bench", "--quick", "--only", "retrain", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quick.json").read_text())
    assert "serving" not in report["results"] and "drift_1m" not in report["results"]
    assert "unknown rows" not in capsys.readouterr().err


def test_an_only_run_keeps_the_other_rows_of_the_last_report(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import suite

    earlier_row = {"rows": 7, "measured_at": "2026-12-01T00:00:00Z", "load": [[3.0], [2.0]]}
    previous = {
        "finished_at": "2026-11-30T05:16:18Z",
        "machine": {"load_before": [0.1], "load_after": [1.7]},
        "results": {"drift_1m": {"rows": 5}, "serving": {"old": True}, "health_1m": earlier_row},
    }
    (tmp_path / "latest.json").write_text(json.dumps(previous))
    report: dict = {"results": {}}
    merged = suite.keep_other_rows(tmp_path / "latest.json", {"serving": {"new": True}}, {"serving"}, report)
    # each kept row says when it was measured: the old run's time, or its own when it was re-run alone
    assert merged == {
        "drift_1m": {"rows": 5, "measured_at": "2026-11-30T05:16:18Z", "load": [[0.1], [1.7]]},
        "health_1m": earlier_row,
        "serving": {"new": True},
    }
    assert report["kept"] == ["drift_1m", "health_1m"]


def test_a_kept_serving_row_is_tabled_with_its_stamp(tmp_path: Path, monkeypatch) -> None:
    """Serving results are keyed by callers; a kept one also carries its stamp (once, the table
    died on int("measured_at") and the parse run before it was lost)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import suite

    one_caller = {"gateway": _side(3000, 0.14, "gateway"), "mlserver": _side(900, 3, "MLServer")}
    previous = {"finished_at": "2026-12-04T19:27Z", "machine": {}, "results": {"serving": {"1": one_caller}}}
    (tmp_path / "latest.json").write_text(json.dumps(previous))
    merged = suite.keep_other_rows(tmp_path / "latest.json", {}, {"dag_parse"}, {"results": {}})
    assert merged["serving"]["measured_at"] == "2026-12-04T19:27Z"
    rows = suite.build_rows(merged, quick=False)
    assert [r["work"].rsplit(": ", 1)[1] for r in rows] == ["the gateway vs the best peer", "vs MLServer"]


def _side(rps: float, cpu: float, name: str) -> dict:
    return {
        "requests_per_s_median": rps,
        "p50_ms_median": 1.0,
        "p99_ms_median": 2.0,
        "workers": 2,
        "cpu_ms_per_request_median": cpu,
        "peak_mb_max": 100,
        "name": name,
        "body": "{...}",
    }


def test_serving_rows_compare_the_gateway_with_every_peer_and_its_cpu_target(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    from serving_row import serving_rows

    result = {
        "gateway": _side(3000, 0.14, "model-factory gateway"),
        "mlserver": _side(900, 3, "MLServer (own venv)"),
        "bentoml": _side(100, 9, "BentoML (own venv)"),
    }
    rows = serving_rows(1, result, quick=False)
    names = [r["work"].rsplit(": ", 1)[1] for r in rows]
    assert names == ["the gateway vs the best peer", "vs MLServer", "vs BentoML"]
    assert rows[0]["ratio"] == 3000 / 900 and rows[0]["met"] == "yes"  # ≥3x the best, ≤0.15 ms CPU
    result["gateway"]["cpu_ms_per_request_median"] = 0.2
    assert serving_rows(1, result, quick=False)[0]["met"] == "no"
    result["mlserver"]["requests_per_s_median"] = 1100  # 2.7x: ahead, but not 3x at one caller
    assert serving_rows(8, result, quick=False)[1]["met"] == "yes"
    assert serving_rows(1, result, quick=False)[1]["met"] == "no"


def test_the_peers_run_from_their_venvs_absolute_paths_with_equal_workers(tmp_path: Path, monkeypatch):
    """From any shell: each peer's executable by its venv's absolute path, the venv's bin first on
    PATH (``mlflow models serve`` execs ``uvicorn`` from PATH), and the gateway's worker count."""
    monkeypatch.syspath_prepend(str(BENCH))
    import serving_peers
    import venvs

    made: list[str] = []

    def fake_ensure(name, requirements, log=print):
        made.append(name)
        return tmp_path / name / "bin" / "python"

    monkeypatch.setattr(venvs, "ensure", fake_ensure)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    ports = iter(range(20000, 20100))
    rows = [{"tenure_months": 3, "plan": "basic"}]
    servers = serving_peers.servers(
        rows, ["tenure_months"], tmp_path / "m", tmp_path / "p", tmp_path, 3, lambda: next(ports)
    )
    assert made == ["mlflow-serve", "mlserver", "bentoml", "litserve"]
    for server in servers:
        bin_dir = str(tmp_path / made[servers.index(server)] / "bin")
        assert server.argv[0].startswith(bin_dir), server.argv
        assert server.env["PATH"].split(":")[0] == bin_dir and "PYTHONPATH" not in server.env
        assert server.workers == 3 and server.env["OMP_NUM_THREADS"] == "1"
    mlflow = servers[0].argv
    assert mlflow[mlflow.index("--workers") + 1] == "3"
    settings = json.loads((tmp_path / "mlserver" / "settings.json").read_text())
    assert settings["parallel_workers"] == 3
    v2 = json.loads(servers[1].bodies[0])
    assert v2["inputs"][0] == {"name": "tenure_months", "shape": [1], "datatype": "FP64", "data": [3.0]}
    assert v2["inputs"][1]["datatype"] == "BYTES" and v2["outputs"] == [{"name": "predict_proba"}]


def test_the_peers_model_is_the_factorys_pipeline(tmp_path: Path, monkeypatch) -> None:
    """What MLServer, BentoML and LitServe load: the served version's own fitted pipeline (joblib),
    giving the same probabilities as the pipeline on the factory's prepared features."""
    import datetime as dt
    from types import SimpleNamespace

    import numpy as np
    from model_factory.pipeline.features import prepare_features
    from model_factory.pipeline.training import build_pipeline
    from model_factory.spec import load_spec
    from model_factory_dev import demo_data

    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.syspath_prepend(str(BENCH / "peers"))
    import serving_peers
    from peer_model import PeerModel

    spec = load_spec(BENCH.parent / "include" / "models" / "churn.yaml", FactorySettings.from_env())
    train = demo_data.generate_batch("churn", dt.date(2026, 2, 2), rows=400)
    pipeline = build_pipeline(spec).fit(prepare_features(train, spec), train[spec.target])
    loaded = SimpleNamespace(
        estimator=pipeline, spec=spec, classes=pipeline.classes_, model="churn", version="1"
    )
    peer = PeerModel(serving_peers.export_model(loaded, tmp_path / "peer"))
    holdout = demo_data.generate_batch("churn", dt.date(2026, 2, 3), rows=20)
    rows = json.loads(holdout[spec.features.all].to_json(orient="records"))
    want = pipeline.predict_proba(prepare_features(holdout, spec))
    for row, expected in zip(rows, want, strict=True):
        got = peer.predict_one(row)
        assert np.allclose(list(got["probabilities"].values()), expected)
        assert got["prediction"] == int(pipeline.classes_[expected.argmax()])
