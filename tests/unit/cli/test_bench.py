"""``model-factory bench --quick``: the bench command runs end to end on small data, so it cannot rot.

Asserts what the run computed (every row present, the drift check flags the shifted columns, the
serving row used the compiled path, validation passed, files written), never how fast it was.
Quick mode must not create virtualenvs: ``venvs.ensure`` is made to fail here.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_factory.cli.main import main

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
        argv = [sys.executable, str(BENCH / "retrain_bench.py"), "--bare", str(csv), "--spec", str(spec),
                "--tracking-uri", uri]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [int(r["version"]) for r in results] == [1, 2]
    assert results[0]["champion"] is None and 0.5 < results[1]["champion"] <= 1
    assert all(r["rows"] == 3000 and 0.5 < r["roc_auc"] <= 1 for r in results)
