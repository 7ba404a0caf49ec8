"""Deterministic synthetic daily batches for the two demo models.

Nothing is downloaded. Every batch is a pure function of (model, day, seed, shifts):
the random generator is seeded from a stable CRC of (model, day, seed), so the demo,
the tests and drift experiments all see exactly the same rows on every run and
machine (for a given numpy version).

Run as a script to lay out a demo data directory::

    PYTHONPATH=include python -m model_factory_dev.demo_data --out DIR --start 2026-01-01 \
        --days 6 --fault churn:3:target_nulls --shift demand:5:0.8

Over 500 lines on purpose: one generator per demo model, sharing the calendar, the seasonal and
decay patterns and the fault injection that every model's days use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

MODELS: tuple[str, ...] = ("churn", "demand")
# Models whose batches the demo also writes (write_demo_batches(models=ALL_MODELS)): "segment"
# is multiclass with string class names (bronze/silver/gold/platinum).
EXTRA_MODELS: tuple[str, ...] = ("segment",)
ALL_MODELS: tuple[str, ...] = MODELS + EXTRA_MODELS
SEGMENT_TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
FAULTS: tuple[str, ...] = (
    "target_nulls",
    "unseen_category",
    "dropped_column",
    "out_of_range",
    "wrong_dtype",
    "empty",
    "corrupted_file",
)
FORMATS: tuple[str, ...] = ("csv", "parquet")

ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "churn": ("customer_id", "event_time"),
    "demand": ("store_id", "event_time"),
}
NUMERIC_FEATURES: dict[str, tuple[str, ...]] = {
    "churn": ("tenure_months", "monthly_charges", "support_calls", "usage_gb", "age"),
    "demand": ("temperature", "humidity", "price", "promo_depth", "day_of_week"),
}
CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "churn": {
        "plan": ("basic", "standard", "premium"),
        "region": ("north", "south", "east", "west"),
        "payment_method": ("card", "bank_transfer", "paypal"),
    },
    "demand": {
        "store_type": ("mall", "street", "outlet"),
        "weather": ("sunny", "cloudy", "rain", "snow"),
    },
}
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {m: tuple(cats) for m, cats in CATEGORIES.items()}
TARGET: dict[str, str] = {"churn": "churned", "demand": "units_sold"}
COLUMNS: dict[str, tuple[str, ...]] = {
    m: ID_COLUMNS[m] + NUMERIC_FEATURES[m] + CATEGORICAL_FEATURES[m] + (TARGET[m],) for m in MODELS
}

# The column each column-level fault breaks, per model.
_FAULT_COLUMNS: dict[str, dict[str, str]] = {
    "churn": {
        "unseen_category": "plan",
        "dropped_column": "support_calls",
        "out_of_range": "age",
        "wrong_dtype": "monthly_charges",
    },
    "demand": {
        "unseen_category": "weather",
        "dropped_column": "price",
        "out_of_range": "humidity",
        "wrong_dtype": "temperature",
    },
    "segment": {
        "unseen_category": "channel",
        "dropped_column": "visits",
        "out_of_range": "tenure_years",
        "wrong_dtype": "annual_spend",
    },
}
_UNSEEN_VALUE = {"churn": "enterprise", "demand": "hail", "segment": "fax"}
_OUT_OF_RANGE_VALUES = {"churn": (-5, 250), "demand": (500.0, -40.0), "segment": (-3.0, 400.0)}
# None of these are in pandas' default NA strings, so read_csv keeps them and has
# to fall back to a string column (a comma decimal is a classic locale bug).
_BAD_STRINGS = ("unknown", "#VALUE!", "missing", "12,5", "--")

# Additive covariate-shift steps at shift=1. With the plan mix moving to premium on
# top, the means of monthly_charges and usage_gb move by about 2 unshifted std.
_CHARGES_STEP = 29.0
_USAGE_STEP = 32.0
_N_STORES = 60
_UNCERTAIN_TENURE = 20.0  # months: a middling tenure, where tenure tells the model little
_NEW_USAGE_EFFECT = 0.08  # logit per GB at uncertain_shift=1: what drives the new customers' churn


def _check_model(model: str) -> None:
    if model not in ALL_MODELS:
        raise ValueError(f"unknown model {model!r}; known models: {', '.join(ALL_MODELS)}")


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return value


def _rng(*parts: object) -> np.random.Generator:
    """Generator seeded by a stable hash of parts (never Python's salted hash())."""
    key = "|".join(str(p) for p in parts).encode()
    return np.random.default_rng([zlib.crc32(key), zlib.adler32(key)])


def _event_times(rng: np.random.Generator, day: dt.date, n: int, hour_weights: np.ndarray) -> pd.Series:
    hours = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    seconds = hours * 3600 + rng.integers(0, 3600, size=n)
    midnight = np.datetime64(day.isoformat(), "s")
    times = midnight + seconds.astype("timedelta64[s]")
    return pd.Series(times.astype("datetime64[us]"), name="event_time")


def _winter(day: dt.date) -> float:
    """+1 in mid-January, -1 in mid-July."""
    return math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)


def _churn(
    rng: np.random.Generator, day: dt.date, n: int, cov: float, concept: float, uncertain: float = 0.0
) -> pd.DataFrame:
    winter = _winter(day)
    weekday = day.weekday()
    cats = CATEGORIES["churn"]

    ids = rng.choice(1_000_000, size=n, replace=False)
    hour_w = np.array([1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 8, 6, 4, 2])
    event_time = _event_times(rng, day, n, hour_w.astype(float))

    plan_p = (1 - cov) * np.array([0.45, 0.35, 0.20]) + cov * np.array([0.10, 0.30, 0.60])
    plan = rng.choice(3, size=n, p=plan_p)
    region = rng.choice(4, size=n, p=[0.30, 0.25, 0.25, 0.20])
    payment = rng.choice(3, size=n, p=[0.50, 0.30, 0.20])

    age = np.clip(np.rint(rng.normal(46, 15, n)), 18, 90).astype(np.int64)
    tenure = np.rint(rng.gamma(1.3, 22.0, n))
    tenure = np.clip(np.minimum(tenure, (age - 18) * 12), 0, 120)
    # uncertain_shift: the customer base moves to sign-ups of middling tenure, where a model that
    # learnt churn from tenure is least sure (its scores gather), and whose churn follows their
    # usage instead (below): a retrained model learns that, the old one cannot.
    tenure = np.rint((1 - uncertain) * tenure + uncertain * _UNCERTAIN_TENURE).astype(np.int64)

    charges = np.array([35.0, 70.0, 105.0])[plan] + rng.normal(0, 12, n)
    charges = np.clip(charges + cov * _CHARGES_STEP, 10, 150).round(2)

    usage = np.array([8.0, 20.0, 40.0])[plan] * np.exp(rng.normal(0, 0.5, n))
    usage *= (1 + 0.1 * winter) * (1.1 if weekday >= 5 else 1.0)
    usage = np.maximum(usage + cov * _USAGE_STEP, 0).round(2)

    lam = 1.0 + 2.0 * np.exp(-tenure / 12) + 0.01 * (charges - 65).clip(0) + (0.4 if weekday == 0 else 0.0)
    calls = np.clip(rng.poisson(lam), 0, 15).astype(np.int64)

    # The concept: a logistic model; concept_shift flips the support_calls effect.
    calls_coef = 0.55 * (1 - 2 * concept)
    logit = (
        -1.45
        - 0.045 * (tenure - 30)
        + 0.024 * (charges - 65)
        + calls_coef * (calls - 2)
        - 0.02 * (usage - 20)
        + uncertain * _NEW_USAGE_EFFECT * (usage - 20)  # the new customers leave when they use much
        - 0.015 * (age - 46)
        + np.array([0.25, 0.0, -0.35])[plan]
        + np.array([0.0, -0.35, 0.30])[payment]
        + np.array([0.0, 0.10, -0.10, 0.05])[region]
        + 0.15 * winter
        + rng.normal(0, 0.4, n)
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    df = pd.DataFrame(
        {
            "customer_id": pd.array([f"C{i:06d}" for i in ids], dtype="str"),
            "event_time": event_time,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "usage_gb": usage,
            "age": age,
            "plan": _labels(cats["plan"], plan),
            "region": _labels(cats["region"], region),
            "payment_method": _labels(cats["payment_method"], payment),
            "churned": churned,
        }
    )
    return df


def _segment(rng: np.random.Generator, day: dt.date, n: int, cov: float, concept: float) -> pd.DataFrame:
    """Customer value tier (4 string classes) from spend, visits, tenure, channel and region."""
    ids = rng.choice(1_000_000, size=n, replace=False)
    event_time = _event_times(rng, day, n, np.ones(24))
    channel = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    region = rng.choice(4, size=n, p=[0.30, 0.25, 0.25, 0.20])
    spend = np.round(np.exp(rng.normal(6.0 + 0.6 * cov, 0.8, n)), 2)
    visits = rng.poisson(6 + 3 * cov, n).astype(np.int64)
    tenure = np.round(rng.gamma(2.0, 2.0, n), 1)
    score = (
        np.log1p(spend) * (1.0 - 0.5 * concept)
        + 0.12 * visits
        + 0.08 * tenure
        + np.array([0.0, 0.3, 0.6])[channel]
        + rng.normal(0, 0.35, n)
    )
    cuts = np.array([6.6, 7.5, 8.3])  # fixed cuts: shifts move the class mix, as in production
    tier = np.searchsorted(cuts, score)
    return pd.DataFrame(
        {
            "customer_id": pd.array([f"S{i:06d}" for i in ids], dtype="str"),
            "event_time": event_time,
            "annual_spend": spend,
            "visits": visits,
            "tenure_years": tenure,
            "channel": _labels(("web", "app", "store"), channel),
            "region": _labels(CATEGORIES["churn"]["region"], region),
            "tier": _labels(SEGMENT_TIERS, tier),
        }
    )


def _labels(values: tuple[str, ...], idx: np.ndarray) -> pd.api.extensions.ExtensionArray:
    return pd.array(np.asarray(values, dtype=object)[idx], dtype="str")


def _stores(seed: int) -> dict[str, np.ndarray]:
    """Per-store attributes; fixed across days so a store keeps its type and size."""
    rng = _rng("demand", "stores", seed)
    return {
        "type": rng.choice(3, size=_N_STORES, p=[0.35, 0.45, 0.20]),
        "size": rng.normal(0, 0.10, _N_STORES),
        "climate": rng.normal(0, 1.5, _N_STORES),
        "price_mult": np.exp(rng.normal(0, 0.05, _N_STORES)),
    }


def _demand(
    rng: np.random.Generator,
    day: dt.date,
    n: int,
    cov: float,
    concept: float,
    seed: int,
) -> pd.DataFrame:
    """Store sales (units_sold) by store, hour, weather, price and promotion on one day.

    Over 80 lines on purpose: one generator's draws from one rng, in the order the seeded demo data
    depends on; weather, price, promotion and units all share the store, hour and weekday drawn first.
    """
    stores = _stores(seed)
    doy = day.timetuple().tm_yday
    weekday = day.weekday()
    weekend = weekday >= 5
    winter = _winter(day)

    # Day-level weather: a shared anomaly plus a per-store one.
    day_anomaly = rng.normal(0, 3)
    store_anomaly = rng.normal(0, 1, _N_STORES)
    precip = rng.random(_N_STORES) < 0.30 + 0.10 * winter
    cloudy = rng.random(_N_STORES) < 0.45

    store = rng.choice(_N_STORES, size=n)
    hour_w = np.zeros(24)
    hour_w[8:22] = [3, 4, 5, 6, 8, 8, 7, 6, 6, 7, 8, 7, 5, 3]
    event_time = _event_times(rng, day, n, hour_w)
    hour = event_time.dt.hour.to_numpy()

    temperature = (
        10
        + 12 * math.sin(2 * math.pi * (doy - 105) / 365.25)
        + day_anomaly
        + stores["climate"][store]
        + store_anomaly[store]
        + 3 * np.sin(np.pi * (hour - 8) / 14)
        - 1.5
        + rng.normal(0, 0.7, n)
        + cov * 8
    ).round(1)

    # 0 sunny, 1 cloudy, 2 rain, 3 snow -- snow only below freezing-ish.
    weather = np.where(precip[store], np.where(temperature < 0.5, 3, 2), cloudy[store].astype(int))
    humidity = (
        55 + np.array([-12.0, 5.0, 25.0, 20.0])[weather] - 0.4 * (temperature - 10) + rng.normal(0, 7, n)
    )
    humidity = np.clip(humidity, 5, 100).round(1)

    store_type = stores["type"][store]
    price = np.array([12.0, 10.0, 7.5])[store_type] * stores["price_mult"][store]
    price = np.maximum(price * np.exp(rng.normal(0, 0.08, n)) * (1 + 0.3 * cov), 0.5)
    price = price.round(2)

    on_promo = rng.random(n) < (0.40 if weekend else 0.25)
    depth_levels = np.arange(1, 11) * 0.05
    depth = rng.choice(depth_levels, size=n, p=np.linspace(2, 0.5, 10) / 12.5)
    promo_depth = np.where(on_promo, depth, 0.0).round(2)

    # The concept: log-linear demand; concept_shift erodes price elasticity.
    elasticity = -1.6 * (1 - 0.8 * concept)
    log_mu = (
        np.log(np.array([80.0, 45.0, 30.0]))[store_type]
        + stores["size"][store]
        + elasticity * np.log(price / 10)
        + 2.0 * promo_depth
        + 0.03 * (temperature - 15)
        + np.array([0.10, 0.0, -0.20, -0.35])[weather]
        + (np.array([0.35, 0.20, 0.45])[store_type] if weekend else 0.0)
        + (0.20 if doy >= 330 else 0.0)
    )
    units = np.exp(log_mu + rng.normal(0, 0.17, n)).round(2)

    cats = CATEGORIES["demand"]
    return pd.DataFrame(
        {
            "store_id": pd.array([f"S{s + 1:03d}" for s in store], dtype="str"),
            "event_time": event_time,
            "temperature": temperature,
            "humidity": humidity,
            "price": price,
            "promo_depth": promo_depth,
            "day_of_week": np.full(n, weekday, dtype=np.int64),
            "store_type": _labels(cats["store_type"], store_type),
            "weather": _labels(cats["weather"], weather),
            "units_sold": units,
        }
    )


def generate_batch(
    model: str,
    day: dt.date,
    rows: int = 2000,
    seed: int = 0,
    covariate_shift: float = 0.0,
    concept_shift: float = 0.0,
    uncertain_shift: float = 0.0,
) -> pd.DataFrame:
    """One day's batch for model, sorted by event_time.

    covariate_shift, concept_shift and uncertain_shift (churn only: inputs move to where the
    model is least sure) run from 0 (none) to 1 (strong). None changes
    how many random numbers are drawn, so for the same (model, day, seed) a
    concept-shifted batch has exactly the same features and only a different target.
    """
    _check_model(model)
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    cov = _check_fraction("covariate_shift", covariate_shift)
    concept = _check_fraction("concept_shift", concept_shift)
    uncertain = _check_fraction("uncertain_shift", uncertain_shift)
    rng = _rng(model, day.isoformat(), seed)
    if model == "churn":
        df = _churn(rng, day, rows, cov, concept, uncertain)
    elif model == "segment":
        df = _segment(rng, day, rows, cov, concept)
    else:
        df = _demand(rng, day, rows, cov, concept, seed)
    return df.sort_values("event_time", kind="stable", ignore_index=True)


def inject_fault(df: pd.DataFrame, model: str, fault: str, seed: int = 0) -> pd.DataFrame | bytes:
    """A broken copy of df; corrupted_file gives the raw bytes of an unparseable file."""
    _check_model(model)
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known faults: {', '.join(FAULTS)}")
    col = TARGET[model] if fault == "target_nulls" else _FAULT_COLUMNS[model].get(fault)
    if col is not None and col not in df.columns:
        raise ValueError(f"fault {fault!r} needs column {col!r}, which df does not have")
    rng = _rng("fault", model, fault, seed)
    out = df.copy()
    n = len(out)

    def pick(fraction: float) -> np.ndarray:
        """Row positions for about fraction of the rows (at least one if any)."""
        k = min(n, max(1, round(fraction * n))) if n else 0
        return np.sort(rng.choice(n, size=k, replace=False))

    if fault == "target_nulls":
        values = out[col].astype("float64")
        values.iloc[pick(0.10)] = np.nan
        out[col] = values
    elif fault == "unseen_category":
        out.iloc[pick(0.15), out.columns.get_loc(col)] = _UNSEEN_VALUE[model]
    elif fault == "dropped_column":
        out = out.drop(columns=[col])
    elif fault == "out_of_range":
        idx = pick(0.05)
        bad = np.asarray(_OUT_OF_RANGE_VALUES[model], dtype=out[col].dtype)
        out.iloc[idx, out.columns.get_loc(col)] = bad[rng.integers(0, len(bad), len(idx))]
    elif fault == "wrong_dtype":
        idx = pick(0.05)
        values = out[col].astype("str")
        bad = np.asarray(_BAD_STRINGS, dtype=object)
        values.iloc[idx] = bad[rng.integers(0, len(bad), len(idx))]
        out[col] = values
    elif fault == "empty":
        out = out.iloc[0:0]
    else:  # corrupted_file
        return _corrupted_bytes(out, rng)
    return out


def _corrupted_bytes(df: pd.DataFrame, rng: np.random.Generator) -> bytes:
    """A plausible-looking CSV that breaks mid-file, like a truncated binary upload.

    A valid header and a few good rows, then a row with too many fields, binary
    garbage with NUL bytes, and a quote that is never closed.
    """
    head = _csv_bytes(df.head(5))
    # No quote characters in the garbage, so the opened quote never closes and even
    # the C reader with on_bad_lines="skip", encoding_errors="replace" fails.
    garbage = rng.integers(0, 256, size=256, dtype=np.uint8).tobytes().replace(b'"', b"\x00")
    extra_fields = b",".join([b"x"] * (len(df.columns) + 3))
    return (
        head
        + extra_fields
        + b"\n\x00\x00\x00PK\x03\x04"
        + garbage
        + b'\n"unterminated,\x00\xff\xfe'
        + garbage
        + b"\x00\n"
    )


def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S", lineterminator="\n").encode()


def write_batch(df_or_bytes: pd.DataFrame | bytes, path: Path, fmt: str = "csv") -> Path:
    """Write atomically (temp file + rename) so a sensor never sees a half-written file."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(df_or_bytes, (bytes, bytearray)):
        data = bytes(df_or_bytes)
    elif fmt == "csv":
        data = _csv_bytes(df_or_bytes)
    else:
        data = df_or_bytes.to_parquet(index=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_demo_batches(
    data_root: Path,
    start: dt.date,
    days: int,
    rows: int = 2000,
    seed: int = 0,
    faults: dict[tuple[str, int], str] | None = None,
    covariate_shift: dict[tuple[str, int], float] | None = None,
    fmt: str = "csv",
    models: Sequence[str] = MODELS,
    concept_shift: dict[tuple[str, int], float] | None = None,
    uncertain_shift: dict[tuple[str, int], float] | None = None,
    outcome_delay_days: dict[str, int] | None = None,
) -> list[Path]:
    """Write <data_root>/<model>/<YYYY-MM-DD>.<fmt> for every model (of ``models``) and day.

    faults and the shifts are keyed by (model, day_index); day 0 is start. ``outcome_delay_days``
    (model: days) also writes that model's outcomes, as another system would deliver them, to
    ``<data_root>/<model>_outcomes/<day + delay>.csv`` (see ``outcomes_of``).
    Everything is validated before the first file is written.
    """
    faults = dict(faults or {})
    shifts = dict(covariate_shift or {})
    concepts = dict(concept_shift or {})
    uncertains = dict(uncertain_shift or {})
    delays = dict(outcome_delay_days or {})
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    for what, mapping in (
        ("faults", faults),
        ("covariate_shift", shifts),
        ("concept_shift", concepts),
        ("uncertain_shift", uncertains),
    ):
        for model, index in mapping:
            _check_model(model)
            if not 0 <= index < days:
                raise ValueError(f"{what} key {(model, index)!r}: day index not in 0..{days - 1}")
    for fault in faults.values():
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known faults: {', '.join(FAULTS)}")
    checked = (("covariate_shift", shifts), ("concept_shift", concepts), ("uncertain_shift", uncertains))
    for name, values in checked:
        for value in values.values():
            _check_fraction(name, value)
    for model, delay in delays.items():
        _check_model(model)
        if delay < 0:
            raise ValueError(f"outcome_delay_days[{model!r}] must be >= 0, got {delay}")

    written = []
    for model in models:
        _check_model(model)
        for index in range(days):
            day = start + dt.timedelta(days=index)
            df = generate_batch(
                model,
                day,
                rows=rows,
                seed=seed,
                covariate_shift=shifts.get((model, index), 0.0),
                concept_shift=concepts.get((model, index), 0.0),
                uncertain_shift=uncertains.get((model, index), 0.0),
            )
            if model in delays:
                arrives = day + dt.timedelta(days=delays[model])
                target = Path(data_root) / f"{model}_outcomes" / f"{arrives.isoformat()}.csv"
                written.append(write_batch(outcomes_of(df, model), target))
            data: pd.DataFrame | bytes = df
            if (model, index) in faults:
                data = inject_fault(df, model, faults[(model, index)], seed=seed * 100_003 + index)
            path = Path(data_root) / model / f"{day.isoformat()}.{fmt}"
            written.append(write_batch(data, path, fmt=fmt))
    return written


def outcomes_of(df: pd.DataFrame, model: str) -> pd.DataFrame:
    """A batch's true outcomes as the system that learns them delivers them: the id, the outcome
    and when it happened (a day after the row's own event time)."""
    _check_model(model)
    id_column = ID_COLUMNS.get(model, ("customer_id",))[0]
    return pd.DataFrame(
        {
            id_column: df[id_column],
            TARGET[model]: df[TARGET[model]],
            "outcome_time": df["event_time"] + pd.Timedelta(days=1),
        }
    )


def _parse_key(text: str, what: str) -> tuple[str, int, str]:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MODEL:DAY_INDEX:{what.upper()} (expected 3 ':'-separated parts)"
        )
    model, index, value = parts
    if model not in MODELS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown model {model!r}; known models: {', '.join(MODELS)}"
        )
    try:
        day_index = _non_negative_int(index)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: day index {exc}") from None
    return model, day_index, value


def _parse_fault(text: str) -> tuple[str, int, str]:
    model, index, fault = _parse_key(text, "fault")
    if fault not in FAULTS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown fault {fault!r}; known faults: {', '.join(FAULTS)}"
        )
    return model, index, fault


def _parse_shift(text: str) -> tuple[str, int, float]:
    model, index, raw = _parse_key(text, "shift")
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: shift {raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: shift must be between 0 and 1")
    return model, index, value


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _by_model_day(parser: argparse.ArgumentParser, option: str, items: list, days: int) -> dict:
    """``--fault``/``--shift`` values keyed by (model, day index), one per key, within --days."""
    keyed: dict = {}
    for model, index, value in items:
        if index >= days:
            parser.error(f"--{option} {model}:{index}:{value}: day index must be < --days {days}")
        if (model, index) in keyed:
            parser.error(f"--{option} {model}:{index}:{value}: {model} day {index} already has a {option}")
        keyed[(model, index)] = value
    return keyed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_factory_dev.demo_data",
        description="Write deterministic synthetic daily batches for the demo models.",
    )
    parser.add_argument("--out", type=Path, required=True, help="data root directory")
    parser.add_argument("--start", type=_parse_date, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=_non_negative_int, required=True, help="number of days")
    parser.add_argument("--rows", type=_non_negative_int, default=2000, help="rows per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="csv")
    parser.add_argument(
        "--fault",
        type=_parse_fault,
        action="append",
        default=[],
        metavar="MODEL:DAY:FAULT",
        help=f"inject a fault into one batch; FAULT is one of {', '.join(FAULTS)}",
    )
    parser.add_argument(
        "--shift",
        type=_parse_shift,
        action="append",
        default=[],
        metavar="MODEL:DAY:AMOUNT",
        help="covariate shift (0..1) for one batch",
    )
    args = parser.parse_args(argv)

    faults = _by_model_day(parser, "fault", args.fault, args.days)
    shifts = _by_model_day(parser, "shift", args.shift, args.days)

    paths = write_demo_batches(
        args.out,
        args.start,
        args.days,
        rows=args.rows,
        seed=args.seed,
        faults=faults,
        covariate_shift=shifts,
        fmt=args.fmt,
    )
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
