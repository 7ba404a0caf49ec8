"""Tests for the deterministic demo data generator."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_factory_dev import demo_data as dd

DAY = dt.date(2026, 3, 10)  # a Tuesday

EXPECTED_CSV_DTYPES = {
    "churn": {
        "customer_id": "str",
        "event_time": "str",
        "tenure_months": "int64",
        "monthly_charges": "float64",
        "support_calls": "int64",
        "usage_gb": "float64",
        "age": "int64",
        "plan": "str",
        "region": "str",
        "payment_method": "str",
        "churned": "int64",
    },
    "demand": {
        "store_id": "str",
        "event_time": "str",
        "temperature": "float64",
        "humidity": "float64",
        "price": "float64",
        "promo_depth": "float64",
        "day_of_week": "int64",
        "store_type": "str",
        "weather": "str",
        "units_sold": "float64",
    },
}


def csv_roundtrip(df: pd.DataFrame, tmp_path: Path, name: str = "batch.csv") -> pd.DataFrame:
    return pd.read_csv(dd.write_batch(df, tmp_path / name))


@pytest.fixture(scope="module")
def batches() -> dict[str, pd.DataFrame]:
    return {m: dd.generate_batch(m, DAY, rows=3000) for m in dd.MODELS}


def test_public_constants() -> None:
    assert dd.MODELS == ("churn", "demand")
    # FAULTS is public (the --fault choices, in this order): each fault has its own test of what it
    # breaks below, test_fault_<fault>, in the same order; a removed or renamed one fails its test.
    tests_of_a_fault = [f"test_fault_{fault}" for fault in dd.FAULTS]
    assert [name for name in globals() if name in tests_of_a_fault] == tests_of_a_fault
    for model in dd.MODELS:
        assert list(dd.COLUMNS[model]) == list(EXPECTED_CSV_DTYPES[model])


# --- determinism -------------------------------------------------------------------


@pytest.mark.parametrize("model", dd.MODELS)
def test_same_arguments_give_identical_frames(model: str) -> None:
    a = dd.generate_batch(model, DAY, rows=500, seed=3, covariate_shift=0.4)
    b = dd.generate_batch(model, DAY, rows=500, seed=3, covariate_shift=0.4)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("model", dd.MODELS)
def test_different_day_or_seed_gives_different_data(model: str) -> None:
    base = dd.generate_batch(model, DAY, rows=500)
    next_day = dd.generate_batch(model, DAY + dt.timedelta(days=1), rows=500)
    other_seed = dd.generate_batch(model, DAY, rows=500, seed=1)
    target = dd.TARGET[model]
    id_col = dd.ID_COLUMNS[model][0]
    for other in (next_day, other_seed):
        assert not base[id_col].equals(other[id_col])
        assert not np.allclose(base[target].to_numpy(), other[target].to_numpy())
        assert not base.drop(columns="event_time").equals(other.drop(columns="event_time"))


def test_generation_does_not_depend_on_python_hash_seed() -> None:
    code = (
        "import datetime, hashlib\n"
        "from model_factory_dev import demo_data as dd\n"
        "for m in dd.MODELS:\n"
        "    df = dd.generate_batch(m, datetime.date(2026, 3, 10), rows=200, seed=7)\n"
        "    print(hashlib.sha256(df.to_csv(index=False).encode()).hexdigest())\n"
    )
    env = {
        **os.environ,
        "PYTHONHASHSEED": "12345",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    here = [
        hashlib.sha256(dd.generate_batch(m, DAY, rows=200, seed=7).to_csv(index=False).encode()).hexdigest()
        for m in dd.MODELS
    ]
    assert out.stdout.split() == here


# --- schema and plausibility -------------------------------------------------------


@pytest.mark.parametrize("model", dd.MODELS)
def test_schema_in_memory(model: str, batches: dict[str, pd.DataFrame]) -> None:
    df = batches[model]
    assert list(df.columns) == list(EXPECTED_CSV_DTYPES[model])
    assert len(df) == 3000
    assert df.notna().all().all()
    assert pd.api.types.is_datetime64_dtype(df["event_time"])
    assert (df["event_time"].dt.date == DAY).all()
    assert df["event_time"].is_monotonic_increasing
    for col, values in dd.CATEGORIES[model].items():
        assert set(df[col]) <= set(values), col
        assert pd.api.types.is_string_dtype(df[col])
    for col in dd.NUMERIC_FEATURES[model]:
        assert pd.api.types.is_numeric_dtype(df[col]), col


@pytest.mark.parametrize("model", dd.MODELS)
def test_schema_after_csv_roundtrip(model: str, batches: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    back = csv_roundtrip(batches[model], tmp_path)
    assert {c: str(t) for c, t in back.dtypes.items()} == EXPECTED_CSV_DTYPES[model]
    assert back["event_time"].str.fullmatch(rf"{DAY.isoformat()}T\d\d:\d\d:\d\d").all()
    parsed = pd.to_datetime(back["event_time"])
    assert (parsed.dt.date == DAY).all()


def test_churn_values_are_plausible(batches: dict[str, pd.DataFrame]) -> None:
    df = batches["churn"]
    assert df["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert df["customer_id"].is_unique
    assert df["tenure_months"].between(0, 120).all()
    assert df["monthly_charges"].between(10, 150).all()
    assert df["support_calls"].between(0, 15).all()
    assert (df["usage_gb"] >= 0).all()
    assert df["age"].between(18, 90).all()
    assert set(df["churned"].unique()) == {0, 1}
    for col, values in dd.CATEGORIES["churn"].items():
        assert set(df[col]) == set(values), col


def test_demand_values_are_plausible(batches: dict[str, pd.DataFrame]) -> None:
    df = batches["demand"]
    assert df["store_id"].str.fullmatch(r"S\d{3}").all()
    assert df["humidity"].between(0, 100).all()
    assert (df["price"] > 0).all()
    assert df["promo_depth"].between(0, 0.5).all()
    assert 0 < (df["promo_depth"] > 0).mean() < 0.6
    assert (df["day_of_week"] == DAY.weekday()).all()
    assert (df["units_sold"] >= 0).all()
    assert set(df["store_type"]) == set(dd.CATEGORIES["demand"]["store_type"])
    # Stores keep their type from day to day.
    other = dd.generate_batch("demand", DAY + dt.timedelta(days=40), rows=3000)
    both = pd.concat([df, other])
    assert (both.groupby("store_id")["store_type"].nunique() == 1).all()


def test_churn_rate_is_realistic_across_the_year() -> None:
    rates = [
        dd.generate_batch("churn", dt.date(2026, month, 7), rows=2000)["churned"].mean()
        for month in (1, 4, 7, 10)
    ]
    assert all(0.18 <= r <= 0.35 for r in rates), rates


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    ranks = pd.Series(score).rank().to_numpy()
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_churn_is_learnable_but_not_trivial(batches: dict[str, pd.DataFrame]) -> None:
    df = batches["churn"]
    y = df["churned"].to_numpy()
    # Short tenure and high charges mean churn; each alone is a weak signal.
    assert 0.6 < _auc(-df["tenure_months"].to_numpy(), y) < 0.85
    assert 0.52 < _auc(df["monthly_charges"].to_numpy(), y) < 0.8
    # Even the true logit without its noise cannot separate the classes perfectly.
    score = (
        -0.045 * df["tenure_months"]
        + 0.024 * df["monthly_charges"]
        + 0.55 * df["support_calls"]
        - 0.02 * df["usage_gb"]
        - 0.015 * df["age"]
    ).to_numpy()
    assert 0.75 < _auc(score, y) < 0.92


def _design(df: pd.DataFrame) -> np.ndarray:
    cols = [
        np.ones(len(df)),
        np.log(df["price"]),
        df["promo_depth"],
        df["temperature"],
    ]
    for col in ("store_type", "weather"):
        dummies = pd.get_dummies(df[col], drop_first=True, dtype=float)
        cols.extend(dummies[c] for c in dummies.columns)
    return np.column_stack(cols)


def test_demand_is_learnable_but_not_trivial(batches: dict[str, pd.DataFrame]) -> None:
    df = batches["demand"]
    x, y = _design(df), np.log(df["units_sold"].to_numpy())
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - ((y - x @ coef) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert 0.6 < r2 < 0.92
    assert coef[1] < -0.8  # price elasticity
    assert coef[2] > 1.0  # promotions sell


# --- seasonality -------------------------------------------------------------------


def test_demand_temperature_has_yearly_seasonality() -> None:
    def mean_temp(month: int) -> float:
        return np.mean(
            [
                dd.generate_batch("demand", dt.date(2026, month, d), rows=300)["temperature"].mean()
                for d in (5, 15, 25)
            ]
        )

    january, april, july = mean_temp(1), mean_temp(4), mean_temp(7)
    assert july > january + 12
    assert january < april < july


def test_snow_only_when_cold() -> None:
    winter = pd.concat(dd.generate_batch("demand", dt.date(2026, 1, d), rows=500) for d in range(1, 15))
    summer = dd.generate_batch("demand", dt.date(2026, 7, 15), rows=2000)
    snow = winter["weather"] == "snow"
    assert snow.any()
    assert (winter.loc[snow, "temperature"] < 1).all()
    assert "snow" not in set(summer["weather"])


def test_weekend_sells_more_than_midweek() -> None:
    start = dt.date(2026, 3, 2)  # a Monday
    weeks = range(4)

    def mean_units(offset: int) -> float:
        return np.mean(
            [
                dd.generate_batch("demand", start + dt.timedelta(days=7 * w + offset), rows=500)[
                    "units_sold"
                ].mean()
                for w in weeks
            ]
        )

    assert mean_units(5) > 1.15 * mean_units(2)  # Saturday vs Wednesday


def test_churn_support_calls_peak_on_monday() -> None:
    monday = dt.date(2026, 3, 2)
    calls = [
        dd.generate_batch("churn", monday + dt.timedelta(days=k), rows=3000)["support_calls"].mean()
        for k in range(7)
    ]
    assert calls[0] > max(calls[1:]) + 0.15


# --- drift -------------------------------------------------------------------------


def test_churn_covariate_shift_moves_inputs(batches: dict[str, pd.DataFrame]) -> None:
    base = batches["churn"]
    half = dd.generate_batch("churn", DAY, rows=3000, covariate_shift=0.5)
    full = dd.generate_batch("churn", DAY, rows=3000, covariate_shift=1.0)
    for col in ("monthly_charges", "usage_gb"):
        std = base[col].std()
        assert base[col].mean() < half[col].mean() < full[col].mean()
        assert full[col].mean() - base[col].mean() > 1.5 * std, col
    assert (full["plan"] == "premium").mean() > (base["plan"] == "premium").mean() + 0.25
    # Unshifted features stay put.
    assert abs(full["age"].mean() - base["age"].mean()) < 0.1 * base["age"].std()


def test_demand_covariate_shift_moves_inputs(batches: dict[str, pd.DataFrame]) -> None:
    base = batches["demand"]
    full = dd.generate_batch("demand", DAY, rows=3000, covariate_shift=1.0)
    assert full["temperature"].mean() - base["temperature"].mean() > 5
    assert full["price"].mean() > 1.2 * base["price"].mean()
    assert full["humidity"].between(0, 100).all()
    assert (full["price"] > 0).all()


@pytest.mark.parametrize("model", dd.MODELS)
def test_concept_shift_changes_only_the_target(model: str, batches) -> None:
    base = batches[model]
    shifted = dd.generate_batch(model, DAY, rows=3000, concept_shift=1.0)
    target = dd.TARGET[model]
    pd.testing.assert_frame_equal(base.drop(columns=target), shifted.drop(columns=target))
    assert not base[target].equals(shifted[target])


def test_churn_concept_shift_flips_support_calls_effect(batches) -> None:
    def gap(df: pd.DataFrame) -> float:
        high = df.loc[df["support_calls"] >= 4, "churned"].mean()
        low = df.loc[df["support_calls"] <= 1, "churned"].mean()
        return high - low

    base = batches["churn"]
    half = dd.generate_batch("churn", DAY, rows=3000, concept_shift=0.5)
    full = dd.generate_batch("churn", DAY, rows=3000, concept_shift=1.0)
    assert gap(base) > 0.2
    assert gap(full) < -0.05
    assert gap(full) < gap(half) < gap(base)


def test_demand_concept_shift_weakens_price_elasticity(batches) -> None:
    def elasticity(df: pd.DataFrame) -> float:
        x, y = _design(df), np.log(df["units_sold"].to_numpy())
        return float(np.linalg.lstsq(x, y, rcond=None)[0][1])

    base = elasticity(batches["demand"])
    full = elasticity(dd.generate_batch("demand", DAY, rows=3000, concept_shift=1.0))
    assert base < -1.2
    assert full > -0.6
    assert full - base > 0.8


@pytest.mark.parametrize("kwarg", ["covariate_shift", "concept_shift"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_shift_out_of_range_is_rejected(kwarg: str, value: float) -> None:
    with pytest.raises(ValueError, match=kwarg):
        dd.generate_batch("churn", DAY, rows=10, **{kwarg: value})


@pytest.mark.parametrize("model", dd.MODELS)
def test_zero_rows_keeps_schema(model: str) -> None:
    df = dd.generate_batch(model, DAY, rows=0)
    assert df.empty
    assert list(df.columns) == list(EXPECTED_CSV_DTYPES[model])


# --- faults ------------------------------------------------------------------------


@pytest.mark.parametrize("model", dd.MODELS)
@pytest.mark.parametrize("fault", dd.FAULTS)
def test_fault_never_mutates_input_and_is_deterministic(model: str, fault: str) -> None:
    df = dd.generate_batch(model, DAY, rows=400)
    before = df.copy()
    first = dd.inject_fault(df, model, fault, seed=5)
    second = dd.inject_fault(df, model, fault, seed=5)
    pd.testing.assert_frame_equal(df, before)
    if isinstance(first, bytes):
        assert first == second
    else:
        pd.testing.assert_frame_equal(first, second)
        assert first is not df


@pytest.mark.parametrize("model", dd.MODELS)
def test_fault_target_nulls(model: str, batches, tmp_path: Path) -> None:
    df = batches[model]
    out = dd.inject_fault(df, model, "target_nulls")
    target = dd.TARGET[model]
    assert 0.08 <= out[target].isna().mean() <= 0.12
    pd.testing.assert_frame_equal(out.drop(columns=target), df.drop(columns=target))
    kept = out[target].notna()
    assert (out.loc[kept, target] == df.loc[kept, target]).all()
    assert csv_roundtrip(out, tmp_path)[target].isna().sum() == out[target].isna().sum()


@pytest.mark.parametrize(
    ("model", "col", "value"),
    [("churn", "plan", "enterprise"), ("demand", "weather", "hail")],
)
def test_fault_unseen_category(model: str, col: str, value: str, batches) -> None:
    out = dd.inject_fault(batches[model], model, "unseen_category")
    unseen = ~out[col].isin(dd.CATEGORIES[model][col])
    assert 0.12 <= unseen.mean() <= 0.18
    assert set(out.loc[unseen, col]) == {value}


@pytest.mark.parametrize(("model", "col"), [("churn", "support_calls"), ("demand", "price")])
def test_fault_dropped_column(model: str, col: str, batches) -> None:
    out = dd.inject_fault(batches[model], model, "dropped_column")
    assert col not in out.columns
    assert list(out.columns) == [c for c in batches[model].columns if c != col]
    assert len(out) == len(batches[model])


@pytest.mark.parametrize(
    ("model", "col", "low", "high"),
    [("churn", "age", 18, 90), ("demand", "humidity", 0, 100)],
)
def test_fault_out_of_range(model: str, col: str, low: float, high: float, batches) -> None:
    out = dd.inject_fault(batches[model], model, "out_of_range")
    bad = ~out[col].between(low, high)
    assert 0.04 <= bad.mean() <= 0.06
    assert out[col].dtype == batches[model][col].dtype
    assert ((out.loc[bad, col] < low - 10) | (out.loc[bad, col] > high * 2)).all()


@pytest.mark.parametrize(("model", "col"), [("churn", "monthly_charges"), ("demand", "temperature")])
def test_fault_wrong_dtype(model: str, col: str, batches, tmp_path: Path) -> None:
    out = dd.inject_fault(batches[model], model, "wrong_dtype")
    back = csv_roundtrip(out, tmp_path)
    assert not pd.api.types.is_numeric_dtype(back[col])
    as_number = pd.to_numeric(back[col], errors="coerce")
    assert 0.04 <= as_number.isna().mean() <= 0.06
    good = as_number.notna()
    np.testing.assert_allclose(as_number[good], batches[model].loc[good, col])
    # Parquet keeps it as a string column too.
    path = dd.write_batch(out, tmp_path / "batch.parquet", fmt="parquet")
    assert pd.api.types.is_string_dtype(pd.read_parquet(path)[col])


@pytest.mark.parametrize("model", dd.MODELS)
def test_fault_empty(model: str, batches, tmp_path: Path) -> None:
    out = dd.inject_fault(batches[model], model, "empty")
    assert len(out) == 0
    assert list(out.columns) == list(batches[model].columns)
    path = dd.write_batch(out, tmp_path / "empty.csv")
    assert path.read_text() == ",".join(batches[model].columns) + "\n"
    assert len(pd.read_csv(path)) == 0


@pytest.mark.parametrize("model", dd.MODELS)
def test_fault_corrupted_file(model: str, batches, tmp_path: Path) -> None:
    data = dd.inject_fault(batches[model], model, "corrupted_file")
    assert isinstance(data, bytes)
    assert data.startswith(",".join(batches[model].columns).encode() + b"\n")
    assert b"\x00" in data
    with pytest.raises(ValueError):
        pd.read_csv(io.BytesIO(data))
    with pytest.raises(ValueError):
        pd.read_csv(io.BytesIO(data), on_bad_lines="skip", encoding_errors="replace")
    path = dd.write_batch(data, tmp_path / "bad.csv")
    assert path.read_bytes() == data


def test_fault_on_missing_column_is_a_clear_error(batches) -> None:
    dropped = dd.inject_fault(batches["demand"], "demand", "dropped_column")
    with pytest.raises(ValueError, match="price"):
        dd.inject_fault(dropped, "demand", "dropped_column")


# --- errors ------------------------------------------------------------------------


def test_unknown_model_is_rejected(batches) -> None:
    with pytest.raises(ValueError, match=r"'fraud'.*churn, demand"):
        dd.generate_batch("fraud", DAY)
    with pytest.raises(ValueError, match=r"'fraud'.*churn, demand"):
        dd.inject_fault(batches["churn"], "fraud", "empty")


def test_unknown_fault_is_rejected(batches) -> None:
    with pytest.raises(ValueError, match=r"'meteor'.*target_nulls.*corrupted_file"):
        dd.inject_fault(batches["churn"], "churn", "meteor")


def test_unknown_format_is_rejected(batches, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xlsx"):
        dd.write_batch(batches["churn"], tmp_path / "x.xlsx", fmt="xlsx")


# --- writing -----------------------------------------------------------------------


@pytest.mark.parametrize("model", dd.MODELS)
def test_write_batch_parquet_roundtrip(model: str, batches, tmp_path: Path) -> None:
    path = dd.write_batch(batches[model], tmp_path / "a" / "b" / "x.parquet", fmt="parquet")
    assert path == tmp_path / "a" / "b" / "x.parquet"
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, batches[model], check_dtype=False)
    assert list(tmp_path.joinpath("a", "b").iterdir()) == [path]  # no temp files left


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", dd.FORMATS)
def test_write_demo_batches_layout_and_idempotence(fmt: str, tmp_path: Path) -> None:
    kwargs = {
        "rows": 200,
        "seed": 1,
        "faults": {("churn", 2): "target_nulls", ("demand", 1): "corrupted_file"},
        "covariate_shift": {("demand", 2): 1.0},
        "fmt": fmt,
    }
    paths = dd.write_demo_batches(tmp_path, dt.date(2025, 12, 30), 3, **kwargs)
    expected = [
        tmp_path / model / f"{day}.{fmt}"
        for model in dd.MODELS
        for day in ("2025-12-30", "2025-12-31", "2026-01-01")
    ]
    assert paths == expected
    first = _tree(tmp_path)
    assert sorted(first) == sorted(str(p.relative_to(tmp_path)) for p in expected)

    again = dd.write_demo_batches(tmp_path, dt.date(2025, 12, 30), 3, **kwargs)
    assert again == paths
    assert _tree(tmp_path) == first

    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    assert read(tmp_path / "churn" / f"2026-01-01.{fmt}")["churned"].isna().any()
    assert not read(tmp_path / "churn" / f"2025-12-31.{fmt}")["churned"].isna().any()
    assert first[f"demand/2025-12-31.{fmt}"].startswith(b"store_id,event_time,")
    with pytest.raises(ValueError):  # ParserError and ArrowInvalid are ValueErrors
        read(tmp_path / "demand" / f"2025-12-31.{fmt}")
    shifted = read(tmp_path / "demand" / f"2026-01-01.{fmt}")
    plain = dd.generate_batch("demand", dt.date(2026, 1, 1), rows=200, seed=1)
    assert shifted["price"].mean() > 1.2 * plain["price"].mean()


def test_write_demo_batches_matches_generate_batch(tmp_path: Path) -> None:
    (path,) = [
        p for p in dd.write_demo_batches(tmp_path, DAY, 1, rows=150, seed=4) if p.parent.name == "churn"
    ]
    expected = dd.generate_batch("churn", DAY, rows=150, seed=4)
    assert path.read_bytes() == dd.write_batch(expected, tmp_path / "x.csv").read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"faults": {("churn", 5): "empty"}}, "day index"),
        ({"faults": {("fraud", 0): "empty"}}, "fraud"),
        ({"faults": {("churn", 0): "meteor"}}, "meteor"),
        ({"covariate_shift": {("demand", 0): 3.0}}, "covariate_shift"),
        ({"fmt": "xlsx"}, "xlsx"),
    ],
)
def test_write_demo_batches_validates_before_writing(kwargs, message, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        dd.write_demo_batches(tmp_path / "out", DAY, 2, rows=10, **kwargs)
    assert not (tmp_path / "out").exists()


# --- command line ------------------------------------------------------------------


def test_main_writes_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--out",
        str(tmp_path),
        "--start",
        "2026-01-01",
        "--days",
        "2",
        "--rows",
        "50",
        "--fault",
        "churn:1:empty",
        "--shift",
        "demand:0:0.8",
    ]
    assert dd.main(argv) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [
        str(tmp_path / "churn" / "2026-01-01.csv"),
        str(tmp_path / "churn" / "2026-01-02.csv"),
        str(tmp_path / "demand" / "2026-01-01.csv"),
        str(tmp_path / "demand" / "2026-01-02.csv"),
    ]
    assert len(pd.read_csv(tmp_path / "churn" / "2026-01-02.csv")) == 0
    assert len(pd.read_csv(tmp_path / "churn" / "2026-01-01.csv")) == 50


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (["--fault", "churn:3"], "MODEL:DAY_INDEX:FAULT"),
        (["--fault", "fraud:1:empty"], "unknown model 'fraud'"),
        (["--fault", "churn:x:empty"], "day index 'x' is not an integer"),
        (["--fault", "churn:1:meteor"], "unknown fault 'meteor'"),
        (["--fault", "churn:9:empty"], "day index must be < --days 2"),
        (["--shift", "demand:1:lots"], "shift 'lots' is not a number"),
        (["--shift", "demand:1:2.5"], "between 0 and 1"),
        (["--shift", "demand:7:0.5"], "day index must be < --days 2"),
        (
            ["--fault", "churn:0:empty", "--fault", "churn:0:empty"],
            "already has a fault",
        ),
        (["--shift", "demand:0:0.1", "--shift", "demand:0:0.2"], "already has a shift"),
    ],
)
def test_main_rejects_bad_arguments(
    arg: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--out",
        str(tmp_path / "out"),
        "--start",
        "2026-01-01",
        "--days",
        "2",
        *arg,
    ]
    with pytest.raises(SystemExit) as exc:
        dd.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert arg[0] in err
    assert not (tmp_path / "out").exists()


def test_uncertain_shift_moves_churn_towards_the_models_doubt_and_keeps_the_unshifted_rows() -> None:
    base = dd.generate_batch("churn", DAY)
    assert base.equals(dd.generate_batch("churn", DAY, uncertain_shift=0.0))  # the default draws stay
    shifted = dd.generate_batch("churn", DAY, uncertain_shift=1.0)
    assert shifted["customer_id"].equals(base["customer_id"])  # same customers, other inputs
    assert shifted["tenure_months"].std() < 0.5 * base["tenure_months"].std()
    assert shifted["tenure_months"].median() == 20  # all at a middling tenure
    with pytest.raises(ValueError, match="uncertain_shift must be between 0 and 1"):
        dd.generate_batch("churn", DAY, uncertain_shift=1.5)


def test_outcomes_arrive_in_their_own_file_days_later_batches_unchanged(tmp_path: Path) -> None:
    dd.write_demo_batches(tmp_path / "plain", DAY, 2, models=("churn",))
    dd.write_demo_batches(
        tmp_path / "with",
        DAY,
        2,
        models=("churn",),
        outcome_delay_days={"churn": 2},
        uncertain_shift={("churn", 1): 0.5},
        concept_shift={("churn", 1): 0.3},
    )
    first = f"{DAY.isoformat()}.csv"
    assert (tmp_path / "plain/churn" / first).read_bytes() == (tmp_path / "with/churn" / first).read_bytes()
    arrived = sorted(p.name for p in (tmp_path / "with/churn_outcomes").iterdir())
    assert arrived == [f"{DAY + dt.timedelta(days=k)}.csv" for k in (2, 3)]
    batch = pd.read_csv(tmp_path / "with/churn" / first, parse_dates=["event_time"])
    outcomes = pd.read_csv(tmp_path / "with/churn_outcomes" / arrived[0], parse_dates=["outcome_time"])
    assert list(outcomes.columns) == ["customer_id", "churned", "outcome_time"]
    assert outcomes["customer_id"].tolist() == batch["customer_id"].tolist()
    assert outcomes["churned"].tolist() == batch["churned"].tolist()
    assert (outcomes["outcome_time"] > batch["event_time"]).all()  # learnt after the prediction's day
    with pytest.raises(ValueError, match="outcome_delay_days"):
        dd.write_demo_batches(tmp_path / "bad", DAY, 1, outcome_delay_days={"churn": -1})
