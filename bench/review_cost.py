"""What the model card, the explanation and the data budget add to a retrain, by rows.

    python bench/review_cost.py --rows 100000 1000000 [--model churn]

Per size: generate demo rows, split and fit the spec's pipeline (the retrain's own fit, for
scale), then time the card's sections (holdout predictions for candidate and champion, plots,
slices), the permutation importance (sampled to evaluation.importance_max_rows), the HTML
rendering (and its size), and the data budget (refits on each share). No MLflow: these are the
parts the review adds on top of what a retrain already does. Wall and CPU seconds are printed.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date

from model_factory.pipeline.features import prepare_features, target_values
from model_factory.pipeline.training import build_pipeline, split_holdout
from model_factory.review.budget import run_data_budget
from model_factory.review.card import evaluate_sections, render_card
from model_factory.review.checklist import Facts, evaluate_checklist
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec, load_spec
from model_factory_dev import demo_data


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def measure(model: str, rows: int) -> dict:
    base = load_spec(
        FactorySettings.from_env().specs_dir / f"{model}.yaml", FactorySettings.from_env()
    ).model_dump(by_alias=True)
    spec = ModelSpec.model_validate(
        {
            **base,
            "evaluation": {
                **base.get("evaluation", {}),
                "slices": ["region", "plan"] if model == "churn" else [],
            },
        }
    )
    df = demo_data.generate_batch(model, date(2026, 3, 2), rows=rows)
    train, holdout = split_holdout(df, spec)
    X, y = prepare_features(train, spec), target_values(train, spec)
    fitted, fit_wall, fit_cpu = timed(lambda: build_pipeline(spec).fit(X, y))
    sections, sec_wall, sec_cpu = timed(evaluate_sections, spec, fitted, holdout, fitted)
    context = {
        "spec": spec.model_dump(mode="json", by_alias=True),
        "template": "retrain",
        "model": model,
        "version": "2",
        "run_id": "bench",
        "created": 0,
        "champion_version": "1",
        "primary_metric": spec.gates.primary_metric,
        "lineage": {"inputs": [], "tags": {}},
        "validation": [],
        "params": {},
        "budget": None,
        "cost": {"train_wall_seconds": fit_wall, "train_cpu_seconds": fit_cpu, "process_peak_rss_mb": None},
        "decision": {"status": "blessed", "reason": "bench", "interval": None, "review": {}},
        "checklist": evaluate_checklist(spec, Facts()),
        **sections,
    }
    html, render_wall, _ = timed(render_card, context)
    budget, budget_wall, budget_cpu = timed(run_data_budget, spec, train, holdout)
    return {
        "model": model,
        "rows": rows,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "fit_wall_s": fit_wall,
        "fit_cpu_s": fit_cpu,
        "card_sections_wall_s": sec_wall,
        "card_sections_cpu_s": sec_cpu,
        "of_which_importance_s": sections["importance"]["seconds"],
        "importance_rows": sections["importance"]["rows_used"],
        "plots_s": sections["timings"]["plots_seconds"],
        "predict_s": sections["timings"]["predict_seconds"],
        "render_wall_s": render_wall,
        "card_kb": round(len(html.encode()) / 1024, 1),
        "data_budget_wall_s": budget_wall,
        "data_budget_cpu_s": budget_cpu,
        "budget_recommendation": budget["recommendation"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--model", default="churn")
    args = parser.parse_args()
    for rows in args.rows:
        print(json.dumps(measure(args.model, rows)), flush=True)


if __name__ == "__main__":
    main()
