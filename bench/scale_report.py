"""The fleet-scale rows of the performance page, from the JSON the scale benches wrote.

    python bench/scale_report.py            # writes bench/results/scale.md

Reads ``bench/results/parse_*specs*.json`` (``parse_many_specs.py``) and
``bench/results/fleet_reads_*.json`` (``fleet_reads.py``); each row names its file and the load
average it was measured under (CPU seconds are what to compare across loads: a wall time under a
load of 15 on 2 cores is mostly waiting).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _results(pattern: str, size_key: str) -> list[tuple[Path, dict]]:
    """Each result file matching ``pattern`` with its data, read once, smallest ``size_key`` first."""
    found = [(path, json.loads(path.read_text())) for path in RESULTS.glob(pattern)]
    return sorted(found, key=lambda item: item[1][size_key])


def _load(data: dict) -> str:
    before = data.get("load_average_before")
    return f"{before[0]:.1f}" if before else "?"


def parse_rows() -> list[str]:
    rows = []
    for path, data in _results("parse_*specs*.json", "specs"):
        runs = data["dagbag"] if isinstance(data.get("dagbag"), list) else [data["dagbag"]]
        largest_wall = statistics.median(r["dagbag_s"] for r in runs)
        largest_cpu = statistics.median(r["dagbag_cpu_s"] for r in runs)
        total_cpu = [r["total_parse_cpu_s"] for r in runs if r.get("total_parse_cpu_s") is not None]
        errors = runs[0].get("import_errors", 0)
        rows.append(
            f"| {data['specs']:,} | {data.get('shards') or 1} | {runs[0]['dags']:,} | {largest_cpu:.2f} s "
            f"| {largest_wall:.1f} s | {f'{statistics.median(total_cpu):.0f} s' if total_cpu else '—'} "
            f"| {errors} | {_load(data)} | `{path.name}` |"
        )
    return rows


def fleet_rows() -> list[str]:
    rows = []
    for path, data in _results("fleet_reads_*.json", "models"):
        med = data["medians"]
        page = med["fleet_page"]
        status, show = med["status_table"], med["show_json"]
        first = data.get("status_first_ever")
        first_cell = f"{first['cpu_s']:.1f} s ({first['wall_s']:.1f} s)" if first else "—"
        rows.append(
            f"| {data['models']:,} | {status['cpu_s']:.1f} s ({status['wall_s']:.1f} s) | {first_cell} "
            f"| {show['cpu_s']:.1f} s ({show['wall_s']:.1f} s) "
            f"| {page['first']:.1f} s | {page['warm']:.1f} s | {_load(data)} | `{path.name}` |"
        )
    return rows


def report() -> str:
    lines = [
        "DAG-file parse (`parse_many_specs.py --parse-only`): every shard file parsed in its own process, "
        "two at a time; the largest single file is what Airflow's `dagbag_import_timeout` judges.",
        "",
        "| specs | shard files | DAGs | largest file, CPU | largest file, wall | all files, CPU "
        "| import errors | load before | result |",
        "|---|---|---|---|---|---|---|---|---|",
        *parse_rows(),
        "",
    ]
    fleet = fleet_rows()
    if fleet:
        lines += [
            "Fleet reads (`fleet_reads.py`; Airflow not asked): `model-factory status --offline` and `show` "
            "as whole processes, CPU (wall), one page of 50 rows; `status` once more the very first time in "
            "a fresh home (it builds the spec index); the view's fleet page (`GET /`), first request of a "
            "fresh app and warm, wall.",
            "",
            "| models | `status` | `status`, first ever | `show` | fleet page, first | fleet page, warm "
            "| load before | result |",
            "|---|---|---|---|---|---|---|---|",
            *fleet,
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    (RESULTS / "scale.md").write_text(report())
    print(f"wrote {RESULTS / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
