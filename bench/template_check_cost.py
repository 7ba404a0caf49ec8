"""What the template check costs a parse (issue 18 finding 3).

    PYTHONPATH=include .venv/bin/python bench/template_check_cost.py --specs 100 \
        --out bench/results/template_check_cost.json

``--specs`` copies of churn on a data scientist's folder template (a file that re-exports the
shipped ``retrain`` build) against the same specs on the shipped ``retrain`` template, built by
``build_all`` in one process, alternating, medians: the first parse after the template file
changed (the forked checking child runs), then the cached parses (one JSON read per template).
Reports CPU seconds of the parsing process (the child's CPU is reported apart) and wall.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="template-check-"))
    os.environ["FACTORY_HOME"] = str(root / "home")
    from model_factory.airflow.build import build_all

    base = yaml.safe_load((ROOT / "include" / "models" / "churn.yaml").read_text())
    folders = {}
    for kind, template in (("shipped", "retrain"), ("folder", "mine")):
        specs, templates = root / kind / "models", root / kind / "templates"
        specs.mkdir(parents=True)
        templates.mkdir()
        (templates / "mine.py").write_text(
            "NAME = 'mine'\nDESCRIPTION = 'x'\nfrom model_factory.airflow.templates.retrain import build\n"
        )
        for i in range(args.specs):
            (specs / f"m{i}.yaml").write_text(yaml.safe_dump(base | {"name": f"m{i}", "template": template}))
        folders[kind] = (specs, templates)
    runs: dict[str, list[dict]] = {"shipped": [], "folder_changed": [], "folder_cached": []}
    for repeat in range(args.repeats):
        order = (("shipped", "shipped"), ("folder_changed", "folder"), ("folder_cached", "folder"))
        for label, kind in order:
            specs, templates = folders[kind]
            if label == "folder_changed":  # a new content hash: the check runs again
                (templates / "mine.py").write_text((templates / "mine.py").read_text() + f"# {repeat}\n")
            t, c, k = time.perf_counter(), time.process_time(), _children_cpu()
            dags = build_all(specs, templates)
            runs[label].append(
                {
                    "wall_s": time.perf_counter() - t,
                    "cpu_s": time.process_time() - c,
                    "child_cpu_s": _children_cpu() - k,
                    "dags": len(dags),
                }
            )
    keys = ("wall_s", "cpu_s", "child_cpu_s")
    summary = {
        label: {key: statistics.median(r[key] for r in rows) for key in keys} for label, rows in runs.items()
    }
    for label, s in summary.items():
        print(
            f"{label:15s} {args.specs} specs: parse CPU {s['cpu_s']:.2f} s, checking child CPU "
            f"{s['child_cpu_s']:.2f} s, wall {s['wall_s']:.2f} s (medians of {args.repeats})"
        )
    result = {
        "specs": args.specs,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "summary": summary,
        "runs": runs,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
