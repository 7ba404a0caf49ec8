"""Generated datasets of several shapes (not the demo's): one population each, a batch per day,
and faults to inject. Used by the scaffold-a-week suite (issue 23 "Done means")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

FIRST_DAY = date(2026, 5, 4)


def _rng(name: str, day: int) -> np.random.Generator:
    return np.random.default_rng([sum(map(ord, name)), day])


def binary(day: int, rows: int) -> pd.DataFrame:
    rng = _rng("binary", day)
    tenure = rng.gamma(2.0, 12.0, rows)
    charges = rng.normal(70, 20, rows).clip(5)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    logit = -1.0 - 0.04 * tenure + 0.02 * (charges - 70) + (plan == "basic") * 0.8
    churn = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "leave", "stay")
    return pd.DataFrame(
        {"tenure_months": tenure.round(1), "monthly_charges": charges.round(2), "plan": plan, "label": churn}
    )


def tiny(day: int, rows: int) -> pd.DataFrame:
    """Wine-like: three string classes, a few numeric measurements, small batches."""
    rng = _rng("tiny", day)
    kind = rng.integers(0, 3, rows)
    return pd.DataFrame(
        {
            "alcohol": (12.0 + kind * 0.8 + rng.normal(0, 0.5, rows)).round(2),
            "phenols": (2.8 - kind * 0.6 + rng.normal(0, 0.4, rows)).clip(0.1).round(2),
            "hue": (1.0 - kind * 0.2 + rng.normal(0, 0.1, rows)).clip(0.2).round(3),
            "label": np.asarray(["barolo", "grignolino", "barbera"], dtype=object)[kind],
        }
    )


def imbalanced(day: int, rows: int) -> pd.DataFrame:
    rng = _rng("imbalanced", day)
    amount = rng.lognormal(3.5, 1.0, rows)
    hour = rng.integers(0, 24, rows)
    country = rng.choice(["de", "fr", "it", "es"], rows)
    logit = -4.0 + 0.5 * np.log(amount) + (hour < 6) * 1.5
    fraud = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"amount": amount.round(2), "hour": hour, "country": country, "label": fraud})


def multiclass(day: int, rows: int) -> pd.DataFrame:
    """Five imbalanced string classes."""
    rng = _rng("multiclass", day)
    names = np.asarray(["low", "mid", "high", "premium", "vip"], dtype=object)
    kind = rng.choice(5, rows, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    return pd.DataFrame(
        {
            "spend": (kind * 40 + rng.gamma(2.0, 10.0, rows)).round(2),
            "visits": rng.poisson(2 + kind, rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "label": names[kind],
        }
    )


def regression(day: int, rows: int) -> pd.DataFrame:
    rng = _rng("regression", day)
    area = rng.gamma(5.0, 20.0, rows)
    rooms = rng.integers(1, 7, rows)
    district = rng.choice(["old_town", "harbour", "hills"], rows)
    price = (area * 3.0 + rooms * 15 + (district == "hills") * 60 + rng.normal(0, 25, rows)).clip(1)
    return pd.DataFrame(
        {"area": area.round(1), "rooms": rooms, "district": district, "label": price.round(1)}
    )


def missing(day: int, rows: int) -> pd.DataFrame:
    """~3% nulls in a numeric and a categorical column."""
    rng = _rng("missing", day)
    frame = binary(day + 1000, rows)
    frame.loc[rng.random(rows) < 0.03, "monthly_charges"] = np.nan
    frame.loc[rng.random(rows) < 0.03, "plan"] = None
    return frame


def seasonal(day: int, rows: int) -> pd.DataFrame:
    """Dated: a timestamp column within each day, weekly seasonality, an imbalanced target."""
    rng = _rng("seasonal", day)
    when = pd.Timestamp(FIRST_DAY + timedelta(days=day)) + pd.to_timedelta(
        np.sort(rng.integers(0, 86400, rows)), "s"
    )
    weekend = when.dayofweek >= 5
    visitors = (rng.poisson(50, rows) * np.where(weekend, 1.6, 1.0)).astype(int)
    temperature = rng.normal(18 + 4 * np.sin(day / 3), 3, rows).round(1)
    logit = -2.5 + 0.06 * (visitors - 50) + 0.4 * (temperature - 18)
    sold_out = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {"event_time": when.astype(str), "visitors": visitors, "temperature": temperature, "label": sold_out}
    )


@dataclass(frozen=True)
class Shape:
    name: str
    make: Callable[[int, int], pd.DataFrame]
    first_rows: int  # the scaffold's sample: the first day
    day_rows: int  # each later day


SHAPES = [
    Shape("binary", binary, 400, 300),
    Shape("tiny", tiny, 40, 20),
    Shape("imbalanced", imbalanced, 1500, 1000),
    Shape("multiclass", multiclass, 300, 150),
    Shape("regression", regression, 200, 60),
    Shape("missing", missing, 400, 300),
    Shape("seasonal", seasonal, 500, 300),
]


def faults(frame: pd.DataFrame, spec) -> dict[str, pd.DataFrame]:
    """Faulty versions of a clean day, each one a real input error validation must catch."""
    numeric = spec.features.numeric[0]
    out = {
        "text and decimal commas in a numeric column": frame.assign(
            **{
                numeric: [
                    "n/a" if i % 7 == 0 else str(v).replace(".", ",") for i, v in enumerate(frame[numeric])
                ]
            }
        ),
        "a feature column missing": frame.drop(columns=[spec.features.all[-1]]),
        "60% nulls in a feature": frame.assign(
            **{numeric: frame[numeric].where(np.arange(len(frame)) % 5 >= 3)}
        ),
    }
    bounded = next((c for c, r in spec.validation.ranges.items() if r.min == 0 and c != spec.target), None)
    if bounded:
        out["negative values in a never-negative column"] = frame.assign(
            **{bounded: -frame[bounded].abs() - 1}
        )
    if spec.target_classes:
        out["a label outside the classes"] = frame.assign(
            label=[("unheard_of" if i % 9 == 0 else v) for i, v in enumerate(frame["label"])]
        )
    elif spec.task == "regression":
        out["a null target"] = frame.assign(label=frame["label"].where(np.arange(len(frame)) % 10 > 0))
    return out
