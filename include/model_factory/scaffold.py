"""Scaffolds for data scientists: a model spec (from a sample of the data) and a DAG template.

``new_model`` writes ``<models>/<name>.yaml`` for a template (and ``code/<name>.py`` for
``custom_training``). Given a CSV/Parquet sample it fills in the features and their kinds,
ranges and category sets, the target's type and classes, and a time column to split on; then it
checks the spec loads and validates the sample against it. ``new_template`` writes a template
module into the templates folder and its test. Both return what they wrote and the next step.

Over 500 lines on purpose: learning each spec section from a sample and writing it with its comments
are one flow whose rules depend on each other (task, then gates, split and constraints).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from model_factory.settings import FactorySettings
from model_factory.spec import MAX_SPEC_BYTES, NAME_PATTERN

if TYPE_CHECKING:
    import pandas as pd

MAX_CATEGORIES = 50  # more distinct strings than this: an id or free text, left out
TARGET_GUESSES = ("target", "label", "y", "class", "outcome")
TIME_WORDS = ("time", "date", "timestamp", "ts")


class ScaffoldError(ValueError):
    """A scaffold cannot be written: says what and how to fix it."""


@dataclass
class Scaffold:
    written: list[Path]
    next_steps: list[str]
    notes: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)


MAX_SAMPLE_ROWS = 200_000  # rows read from a sample; more add nothing to what is learnt
MAX_SAMPLE_COLUMNS = 1_000  # wider: name the columns to keep in a smaller sample
MAX_HEADER_BYTES = 64 * 1024  # a CSV header line longer than this is not a header
PROBE_BYTES = 1024 * 1024  # bytes looked at before pandas reads anything


def _probe_text(path: Path) -> None:
    """Refuse, from the first MiB only, what is not a UTF-8 CSV with a sane header line:
    empty, binary (NUL bytes: also a sparse file of zeros), another encoding, a huge header."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(PROBE_BYTES)
    except (OSError, EOFError) as exc:
        raise ScaffoldError(f"--from-data {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    if not head.strip():
        raise ScaffoldError(f"--from-data {path}: the file is empty (no header line, no rows)")
    nul = head.find(b"\0")
    if nul >= 0:
        raise ScaffoldError(
            f"--from-data {path}: binary data (a NUL byte at offset {nul}), not a CSV text file"
        )
    newline = head.find(b"\n")
    header_end = newline if newline >= 0 else len(head)
    if header_end > MAX_HEADER_BYTES:
        raise ScaffoldError(
            f"--from-data {path}: the header line is over {MAX_HEADER_BYTES} bytes "
            f"({'more than ' if newline < 0 else ''}{header_end}): keep the columns the "
            "model needs in a smaller sample"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the probe's end
            raise _not_utf8(path, exc.start, head[exc.start]) from None


def _not_utf8(path: Path, offset: int | None, byte: int | None) -> ScaffoldError:
    where = f" (byte 0x{byte:02x} at offset {offset})" if offset is not None and byte is not None else ""
    return ScaffoldError(
        f"--from-data {path}: not UTF-8 text{where}; the factory reads batches as "
        "UTF-8: re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
    )


def _check_width(path: Path, columns: int) -> None:
    if columns > MAX_SAMPLE_COLUMNS:
        raise ScaffoldError(
            f"--from-data {path}: {columns} columns, more than {MAX_SAMPLE_COLUMNS}: "
            "keep the columns the model needs in a smaller sample"
        )


def read_sample(path: Path) -> pd.DataFrame:
    """The first MAX_SAMPLE_ROWS rows of a CSV/Parquet sample; what cannot be read raises
    ScaffoldError saying why (bounded reads: a huge or hostile file costs at most a probe)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ScaffoldError(f"--from-data {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            parquet = pq.ParquetFile(path)
            _check_width(path, len(parquet.schema_arrow.names))
            batches = parquet.iter_batches(batch_size=MAX_SAMPLE_ROWS)
            first = next(batches, None)
            return first.to_pandas() if first is not None else parquet.schema_arrow.empty_table().to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise ScaffoldError(f"--from-data {path}: not a readable Parquet file ({exc})") from None
    if suffix not in (".csv", ".txt") and not path.name.endswith(".csv.gz"):
        raise ScaffoldError(f"--from-data {path}: give a .csv or .parquet sample")
    _probe_text(path)
    try:
        _check_width(path, len(pd.read_csv(path, nrows=0).columns))
        return pd.read_csv(path, nrows=MAX_SAMPLE_ROWS, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, None, None) from exc
    except pd.errors.EmptyDataError:
        raise ScaffoldError(f"--from-data {path}: the file is empty (no header line, no rows)") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise ScaffoldError(
            f"--from-data {path}: not a readable CSV ({type(exc).__name__}: {str(exc)[:300]})"
        ) from None


def _is_time(series: pd.Series, name: str) -> bool:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if series.dtype != object and not pd.api.types.is_string_dtype(series):
        return False
    first = series.dropna().astype(str).head(1).tolist()
    named = any(word in name.lower() for word in TIME_WORDS) or name.lower().endswith("_at")
    if not named and not (first and re.match(r"^\d{4}-\d{2}-\d{2}", first[0])):
        return False
    head = series.dropna().head(200)
    parsed = pd.to_datetime(head, errors="coerce", utc=True)
    if len(parsed) == 0 or parsed.notna().mean() > 0.95:
        return len(parsed) > 0
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    meant = bool(words & set(TIME_WORDS)) or name.lower().endswith("_at") or not named
    if meant and parsed.notna().any():  # some values are dates, too many are not: broken
        bad = head[parsed.isna()].astype(str).drop_duplicates().head(5)
        shown = ", ".join(repr(v if len(v) <= 40 else v[:40] + "...") for v in bad)
        raise ScaffoldError(
            f"column {name!r} looks like a time column, but {parsed.isna().sum()} of its "
            f"first {len(head)} values do not read as dates, e.g. {shown}: fix them "
            "(ISO 8601, e.g. 2026-05-04 13:45:00), or drop the column"
        )
    return False


def _nice(x: float, down: bool) -> float:
    """A readable bound a little beyond x (two significant digits)."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(x))) - 1)
    return float((math.floor if down else math.ceil)(x / scale) * scale)


MIN_SAMPLE_ROWS = 30  # fewer: nothing (ranges, classes, gates) can be learnt from it
MIN_CATEGORY_COUNT = 5  # every value seen this often: the set is complete enough to enforce


def soft_range(values: np.ndarray) -> tuple[float, float, float]:
    """(low, high, margin): the sample's min/max widened by a margin that grows as the sample
    shrinks, (10% + 100%/sqrt(n)) of the robust 1-99% spread, so that later days of the same
    population fall inside (values beyond are reported, never quarantined)."""
    n = len(values)
    q01, q99 = np.quantile(values, [0.01, 0.99])
    spread = float(q99 - q01) or float(values.max() - values.min()) or abs(float(values.mean())) or 1.0
    margin = spread * (0.1 + 1.0 / math.sqrt(n))
    return float(values.min()) - margin, float(values.max()) + margin, margin


def hard_range(values: np.ndarray) -> dict[str, float]:
    """Limits the data itself says are physical: never negative (all >= 0) and a share or a
    probability (all within [0, 1], not all 0/1 flags... those are also within): nothing else."""
    out: dict[str, float] = {}
    if values.min() >= 0:
        out["min"] = 0.0
        fractional = bool((values != np.round(values)).any())
        if values.max() <= 1.0 and fractional:
            out["max"] = 1.0
    return out


def null_ceiling(fraction: float, n: int) -> float:
    """The null share a day may have: twice the sample's, plus three standard errors of a
    share measured on a day of ~min(n, 100) rows; at least 0.05, at most 0.5."""
    day = min(n, 100)
    ceiling = 2 * fraction + 3 * math.sqrt(max(fraction, 0.005) * (1 - fraction) / day)
    return float(min(0.5, max(0.05, math.ceil(ceiling * 100) / 100)))


def _check_target(df: pd.DataFrame, target: str) -> pd.Series:
    y = df[target]
    if y.isna().all():
        raise ScaffoldError(f"target {target!r} is null in every row of the sample: nothing to learn from")
    return y.dropna()


def _check_time(df: pd.DataFrame, col: str, target: str, classes: list | None, notes: list[str]) -> None:
    """A time column that splits by time must span more than one day, and every class must
    appear before the last fifth of the time (else the holdout has a class training never saw)."""
    import pandas as pd

    when = pd.to_datetime(df[col], errors="coerce", utc=True)
    if when.dt.normalize().nunique() < 2:
        notes.append(
            f"{col}: every row is on one day ({when.min():%Y-%m-%d}): the split is by "
            "time within the day; a sample of several days shows seasonality"
        )
    if classes:
        cut = when.quantile(0.8)
        early = set(df.loc[when < cut, target].dropna().astype(str))
        late_only = sorted({str(c) for c in classes} - early)
        if late_only:
            raise ScaffoldError(
                f"classes {late_only} of {target!r} appear only in the last fifth of "
                f"{col!r}: a time split would hold them out of training; give a longer "
                "sample, or drop the time column to split at random"
            )


def _target_column(df: pd.DataFrame, columns: list[str], target: str | None) -> str:
    """The target named, else guessed from its name; refuses a sample too small to learn from."""
    if df.empty:
        raise ScaffoldError("the sample has no rows")
    if len(df) < MIN_SAMPLE_ROWS:
        raise ScaffoldError(
            f"the sample has {len(df)} rows; the scaffold needs at least {MIN_SAMPLE_ROWS} "
            "to learn ranges, classes and gates"
        )
    if target is None:
        target = next((c for c in columns if c.lower() in TARGET_GUESSES), None)
    if target is None or target not in columns:
        raise ScaffoldError(f"name the target column with --target (columns: {columns})")
    return target


def _task_and_classes(y: pd.Series, target: str, learnt_lines: list[str]) -> tuple[str, list | None]:
    """Classification (with its classes) for a bool, text or few-integer target, else regression."""
    import pandas as pd

    integral = pd.api.types.is_numeric_dtype(y) and bool((y == y.round()).all())
    few = integral and y.nunique() <= 20
    if pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y) and not few:
        return "regression", None
    classes = sorted(y.unique().tolist(), key=str)
    classes = [
        int(c) if isinstance(c, int | bool) or (isinstance(c, float) and c.is_integer()) else str(c)
        for c in classes
    ]
    if len(classes) < 2:
        raise ScaffoldError(f"target {target!r} has one class in the sample ({classes}): need two")
    shares = y.astype(str).value_counts(normalize=True)
    learnt_lines.append(
        f"target {target}: {len(classes)} classes, the rarest {shares.index[-1]!r} "
        f"is {shares.iloc[-1]:.1%} of the rows"
    )
    return "classification", classes


def _learnt_ranges(values: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """(soft, hard) ranges of a numeric column's finite values, the soft one kept within the hard."""
    low, high, _ = soft_range(values)
    hard = hard_range(values)
    low = max(low, hard.get("min", low))
    high = min(high, hard.get("max", high))
    return {"min": _nice(low, down=True), "max": _nice(high, down=False)}, hard


def _category_set(col: str, counts: pd.Series) -> tuple[list[str] | None, str]:
    """The category set to enforce (None while a value is too rare for the set to look complete),
    and the learnt line saying so."""
    if len(counts) and counts.min() >= MIN_CATEGORY_COUNT:
        return (
            sorted(counts.index.tolist()),
            f"{col}: category set enforced (every value seen >= {MIN_CATEGORY_COUNT} times)",
        )
    return None, (
        f"{col}: no category set ({(counts < MIN_CATEGORY_COUNT).sum()} "
        f"values seen < {MIN_CATEGORY_COUNT} times: later days may bring "
        "new ones; the model ignores unseen values)"
    )


def infer(df: pd.DataFrame, target: str | None = None) -> dict[str, Any]:
    """Spec sections learnt from a sample: target/task/classes, features, hard and soft ranges,
    null ceiling, category sets (only where complete), with a line per choice in ``learnt``."""
    import pandas as pd

    columns = [str(c) for c in df.columns]
    target = _target_column(df, columns, target)
    y = _check_target(df, target)
    notes: list[str] = []
    learnt_lines: list[str] = []
    task, classes = _task_and_classes(y, target, learnt_lines)

    numeric, categorical, ranges, soft, categories = [], [], {}, {}, {}
    time_column = None
    worst_nulls = 0.0
    for col in columns:
        series = df[col]
        if col == target:  # (validation.ranges holds features only)
            continue
        if _is_time(series, col):
            time_column = time_column or col
            notes.append(f"{col}: a time column (used to split by time, not a feature)")
            continue
        if pd.api.types.is_bool_dtype(series):
            categorical.append(col)  # trains as "True"/"False"; no category set: the raw
            # booleans would not match a set of strings in validation
        elif pd.api.types.is_numeric_dtype(series):
            numeric.append(col)
            values = series.to_numpy(dtype="float64", na_value=np.nan)
            values = values[np.isfinite(values)]
            if len(values):
                soft[col], hard = _learnt_ranges(values)
                if hard:
                    ranges[col] = hard
                    learnt_lines.append(
                        f"{col}: hard {hard} (every sample value is within); soft "
                        f"[{soft[col]['min']}, {soft[col]['max']}]"
                    )
        else:
            counts = series.dropna().astype(str).value_counts()
            if len(counts) > MAX_CATEGORIES or len(counts) > 0.5 * len(series):
                notes.append(
                    f"{col}: {len(counts)} distinct values in {len(series)} rows: "
                    "an id or free text, left out of the features"
                )
                continue
            categorical.append(col)
            enforced, why = _category_set(col, counts)
            if enforced is not None:
                categories[col] = enforced
            learnt_lines.append(why)
        worst_nulls = max(worst_nulls, float(series.isna().mean()))
    if not numeric and not categorical:
        raise ScaffoldError("no usable feature columns in the sample")
    if time_column:
        _check_time(df, time_column, target, classes, notes)
    ceiling = null_ceiling(worst_nulls, len(df))
    day = min(len(df), 100)
    learnt_lines.append(
        f"max_null_fraction {ceiling}: the worst column has {worst_nulls:.1%} nulls "
        f"(2x that + 3 standard errors on a ~{day}-row day, >= 5%)"
    )
    return {
        "target": target,
        "task": task,
        "classes": classes,
        "numeric": numeric,
        "categorical": categorical,
        "ranges": ranges,
        "soft_ranges": soft,
        "categories": categories,
        "max_null_fraction": ceiling,
        "learnt": learnt_lines,
        "time_column": time_column,
        "notes": notes,
        "rows": len(df),
    }


ESTIMATOR_FOR = {
    ("classification", "small"): ("LogisticRegression", {"C": 1.0, "max_iter": 1000}),
    ("regression", "small"): ("Ridge", {"alpha": 1.0}),
}
# The bar is relative: chance level as the floor, and a dummy model (class prior / mean) on the
# same rows to beat by BASELINE_MARGIN; ROC AUC (one-vs-rest for several classes) whatever the
# class balance, R^2 for regression. Every gate field is written out, as model.yaml shows it.
GATES_FOR = {"classification": ("roc_auc", 0.5), "regression": ("r2", 0.0)}
BASELINE_MARGIN = 0.05
MIN_HOLDOUT_ROWS = 100
GATE_DEFAULTS = {
    "max_regression": 0.01,
    "too_good_jump": 0.25,
    "too_good_score": None,
    "min_holdout_rows": MIN_HOLDOUT_ROWS,
    "confidence": 0.95,
}
HOLDOUT_FRACTION = 0.2
SEARCH_FOR = {
    "LogisticRegression": {"C": {"low": 0.01, "high": 10.0, "log": True}},
    "Ridge": {"alpha": {"low": 0.01, "high": 100.0, "log": True}},
}

CODE_STUB = '''"""Training code for {name} (template custom_training).

The factory calls build(**estimator.params) inside the train task and fits what it returns on
its prepared features: numeric columns as float, categoricals as strings. Any scikit-learn
compatible estimator or pipeline works; classes defined in this file are trusted when the model
is saved and loaded, nothing else beyond scikit-learn's own.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import {estimator}
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

NUMERIC = {numeric!r}
CATEGORICAL = {categorical!r}


def build(n_estimators: int = 200) -> Pipeline:
    columns = ColumnTransformer([
        ("numeric", SimpleImputer(strategy="median"), NUMERIC),
        ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
    ])
    return Pipeline([("columns", columns), ("model", {estimator}(n_estimators=n_estimators, random_state=0))])
'''


def model_spec(
    name: str, template: str, owner: str, source: str, learnt: dict[str, Any] | None, fmt: str = "csv"
) -> dict[str, Any]:
    """The spec as a mapping, with placeholders where no sample was given."""
    learnt = learnt or {
        "target": "label",
        "task": "classification",
        "classes": None,
        "numeric": ["feature_a", "feature_b"],
        "categorical": ["segment"],
        "ranges": {},
        "categories": {},
        "time_column": None,
    }
    task = learnt["task"]
    estimator_class, params = ESTIMATOR_FOR[(task, "small")]
    metric, threshold = GATES_FOR[task]
    validation: dict[str, Any] = {"ranges": learnt["ranges"], "categories": learnt["categories"]}
    if "soft_ranges" in learnt:
        validation = {
            "max_null_fraction": learnt["max_null_fraction"],
            "ranges": learnt["ranges"],
            "soft_ranges": learnt["soft_ranges"],
            "categories": learnt["categories"],
        }
    target: Any = learnt["target"]
    if learnt.get("classes"):
        target = {"name": learnt["target"], "classes": learnt["classes"]}
    spec: dict[str, Any] = {
        "name": name,
        "owner": owner,
        "description": f"TODO: one sentence on what {name} predicts and who uses it.",
        "task": task,
        "template": template,
        "source": {"uri": source, "format": fmt},
        "target": target,
        "features": {"numeric": learnt["numeric"], "categorical": learnt["categorical"]},
        "estimator": {"class": estimator_class, "params": params},
        "validation": validation,
        "gates": {
            "primary_metric": metric,
            "threshold": threshold,
            "baseline_margin": BASELINE_MARGIN,
            **GATE_DEFAULTS,
        },
        "split": {"strategy": "random", "holdout_fraction": HOLDOUT_FRACTION},
        # Small daily batches add up: enough rows for a holdout of min_holdout_rows.
        "training": {"window_batches": 3, "window_rows": math.ceil(MIN_HOLDOUT_ROWS / HOLDOUT_FRACTION)},
    }
    if learnt.get("time_column"):
        spec["split"] = {
            "strategy": "time",
            "time_column": learnt["time_column"],
            "holdout_fraction": HOLDOUT_FRACTION,
        }
    if template == "custom_training":
        spec["estimator"] = {"factory": f"{name}:build", "params": {"n_estimators": 200}}
    elif template == "tuned_retrain":
        spec["template_params"] = {"search": SEARCH_FOR[estimator_class], "trials": 10, "max_minutes": 10}
    elif template == "batch_scoring":
        spec["template_params"] = {"data_uri": source, "schedule": "0 4 * * *"}
    return spec


def _default_source(name: str, fmt: str) -> str:
    return f"${{FACTORY_DATA_ROOT}}/{name}/{{ds}}.{fmt}"


def new_model(
    name: str,
    template: str,
    models_dir: Path,
    *,
    owner: str,
    source: str | None = None,
    sample: Path | None = None,
    target: str | None = None,
    force: bool = False,
    settings: FactorySettings,
) -> Scaffold:
    """Write the spec (and a code stub for custom_training); check it loads and, with a
    sample, that the sample passes the spec's validation."""
    from model_factory.airflow.template_registry import discover
    from model_factory.spec import SpecError, load_spec

    if not re.match(NAME_PATTERN, name):
        raise ScaffoldError(f"model name {name!r}: lower_snake_case, 2-63 characters, a letter first")
    registry = discover()
    if template not in registry.templates:
        raise ScaffoldError(f"unknown template {template!r}; known: {sorted(registry.templates)}")
    path = models_dir / f"{name}.yaml"
    code = models_dir / "code" / f"{name}.py"
    if path.exists() and not force:
        raise ScaffoldError(f"{path} exists (use --force to overwrite)")
    fmt = "parquet" if sample is not None and sample.suffix.lower() == ".parquet" else "csv"
    df = read_sample(sample) if sample is not None else None
    learnt = infer(df, target) if df is not None else None
    spec = model_spec(name, template, owner, source or _default_source(name, fmt), learnt, fmt)

    header = _spec_header(name, template, sample, learnt)
    text = header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100)
    size = len(text.encode())
    if size > MAX_SPEC_BYTES:
        raise ScaffoldError(
            f"the spec learnt from {sample} would be {size} bytes, over the "
            f"{MAX_SPEC_BYTES} a spec may have: keep fewer columns"
        )
    code_text = None
    if template == "custom_training" and (force or not code.exists()):
        code_text = _code_stub(name, spec)
    result = Scaffold(written=[], next_steps=[], notes=list(learnt["notes"]) if learnt else [])
    models_dir.mkdir(parents=True, exist_ok=True)
    # Written and checked in a staging folder beside the specs, moved in place only when it all
    # worked: a failure (or a kill) leaves no half-written spec for the DAG processor to pick up.
    with tempfile.TemporaryDirectory(prefix=f".scaffold-{name}-", dir=models_dir) as staging_dir:
        staging = Path(staging_dir)
        staged = staging / path.name
        staged.write_text(text)
        if code_text is not None:
            (staging / "code").mkdir()
            (staging / "code" / code.name).write_text(code_text)
        try:
            loaded = load_spec(staged, settings)
        except SpecError as exc:
            raise ScaffoldError(f"the scaffolded spec does not load (please report):\n{exc}") from exc
        if df is not None:
            import logging

            logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its import chatter
            from model_factory.pipeline.validation import validate_frame

            outcome = validate_frame(df, loaded, staging)
            result.validation = (
                ["the sample passes the spec's validation"]
                if outcome.success
                else [f"the sample FAILS the spec's validation: {r}" for r in outcome.reasons]
            )
        if code_text is not None:
            code.parent.mkdir(exist_ok=True)
            os.replace(staging / "code" / code.name, code)
        os.replace(staged, path)
    result.written = [path] + ([code] if code_text is not None else [])
    if learnt is None:
        result.notes.append("no --from-data sample: fill in target, features and validation by hand")
    result.next_steps = _next_steps(name, template, path, spec)
    return result


def _spec_header(name: str, template: str, sample: Path | None, learnt: dict[str, Any] | None) -> str:
    """The comment block at the top of a scaffolded spec: where it came from and, with a sample,
    what was learnt from it and why."""
    header = (
        f"# {name}: scaffolded by `model-factory new-model` (template {template})"
        + (f" from {sample.name} ({learnt['rows']} rows)" if learnt and sample else "")
        + ".\n"
        "# Other fields have defaults: include/templates/model.yaml shows them all.\n"
    )
    if learnt and learnt.get("learnt"):
        header += (
            "# What the scaffold learnt from the sample, and why:\n"
            "# - ranges are hard limits only where the data shows one (never negative, a share "
            "in [0, 1]);\n#   soft_ranges (sample min/max widened by 10% + 100%/sqrt(n) of the "
            "1-99% spread) are\n#   reported in the validation report and watched, never "
            "quarantined\n# - gates: beat a dummy model on the same rows by baseline_margin; "
            "on a holdout under\n#   min_holdout_rows the decision rests on cross-validation "
            "over the window, else 'undecided'\n"
            + "".join(f"# - {' '.join(line.splitlines())}\n" for line in learnt["learnt"])
        )
    return header


def _code_stub(name: str, spec: dict[str, Any]) -> str:
    """The custom_training code stub: a random forest on the spec's features."""
    estimator = "RandomForestClassifier" if spec["task"] == "classification" else "RandomForestRegressor"
    return CODE_STUB.format(
        name=name,
        estimator=estimator,
        numeric=spec["features"]["numeric"],
        categorical=spec["features"]["categorical"],
    )


def _next_steps(name: str, template: str, path: Path, spec: dict[str, Any]) -> list[str]:
    """What to do after scaffolding: review, validate, put a batch, run the DAG."""
    return [
        f"review {path} (description, gates.threshold"
        f"{', code/' + name + '.py' if template == 'custom_training' else ''})",
        f"model-factory validate {path}",
        f"put a batch at {spec['source']['uri']} (with {{ds}} = the date), e.g. the sample",
        f"the DAGs {name}__retrain{' and ' + name + '__score' if template == 'batch_scoring' else ''} "
        "appear on the next DAG-processor pass; run one with "
        f"`model-factory trigger {name} --date YYYY-MM-DD` "
        f"(or `airflow dags test {name}__retrain YYYY-MM-DD`)",
    ]


TEMPLATE_STUB = '''"""{name}: a DAG template of our own (scaffolded by `model-factory new-template`).

A spec uses it with `template: {name}`; its `template_params:` are checked against Params when
the DAG file is parsed. Compose the factory's building blocks (model_factory.airflow.blocks):
ingest, validate, train, evaluate, register, announce_challenger, scoring_champion, check_input,
score, or whole DAGs (retrain_dag, drift_watch_dag, canary_dag, scoring_dag). Every DAG id must
start with "<model>__". Heavy imports (pandas, sklearn, mlflow) only inside tasks.
"""

from __future__ import annotations

from airflow.sdk import DAG, task
from model_factory.airflow import blocks
from model_factory.airflow.common import common_dag_args, spec_doc
from model_factory.spec import LoadedSpec
from pydantic import BaseModel, ConfigDict, Field

NAME = "{name}"
DESCRIPTION = "TODO: one line on what this pipeline shape does"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_rows: int = Field(default=100, ge=1, description="TODO: your template's own settings")


def build(loaded: LoadedSpec, params: Params) -> list[DAG]:
    spec = loaded.spec
    with DAG(
        dag_id=f"{{spec.name}}__{name}",
        schedule=spec.schedule,
        max_active_runs=1,
        **common_dag_args(spec, "{name}"),
        doc_md=spec_doc(loaded, "Ingest and validate the day's batch, then report its size."),
    ) as dag:
        validated = blocks.validate(loaded, blocks.ingest(loaded))

        @task
        def report(validated: dict) -> dict:
            if validated["rows"] < params.min_rows:
                raise ValueError(f"only {{validated['rows']}} rows (min_rows {{params.min_rows}})")
            return {{"ds": validated["ds"], "rows": validated["rows"]}}

        report(validated)
    return [dag]
'''

TEMPLATE_TEST_STUB = '''"""The {name} template builds for a sample spec (`model-factory new-template`)."""

from __future__ import annotations

import yaml
from model_factory.airflow.build import build_all
from model_factory.airflow.templates import templates_dir

SAMPLE_SPEC = {{
    "name": "sample_{name}", "owner": "my-team", "description": "A sample spec for the template.",
    "task": "classification", "template": "{name}", "template_params": {{}},
    "source": {{"uri": "${{FACTORY_DATA_ROOT}}/sample/{{ds}}.csv"}},
    "target": "label", "features": {{"numeric": ["x"], "categorical": ["kind"]}},
    "estimator": {{"class": "LogisticRegression"}},
    "gates": {{"primary_metric": "roc_auc", "threshold": 0.6}},
}}


def test_{name}_builds_its_dags(tmp_path):
    (tmp_path / "sample_{name}.yaml").write_text(yaml.safe_dump(SAMPLE_SPEC))
    dags = build_all(tmp_path, templates_dir())
    assert not [d for d in dags if d.startswith("invalid_spec__")], [d.doc_md for d in dags.values()]
    dag = dags["sample_{name}__{name}"]
    assert "template:{name}" in dag.tags
    assert all(t.owner == "my-team" and t.retries >= 1 for t in dag.tasks)
'''


def new_template(name: str, templates_dir: Path, tests_dir: Path, force: bool = False) -> Scaffold:
    """Write ``<templates_dir>/<name>.py`` and ``<tests_dir>/test_<name>.py``."""
    from model_factory.airflow.templates import SHIPPED

    if not re.match(r"^[a-z][a-z0-9_]{1,40}$", name):
        raise ScaffoldError(f"template name {name!r}: use lower_snake_case, 2-41 characters")
    if name in SHIPPED:
        raise ScaffoldError(f"{name!r} is a shipped template; pick another name")
    module, test = templates_dir / f"{name}.py", tests_dir / f"test_{name}.py"
    for path in (module, test):
        if path.exists() and not force:
            raise ScaffoldError(f"{path} exists (use --force to overwrite)")
    templates_dir.mkdir(parents=True, exist_ok=True)
    tests_dir.mkdir(parents=True, exist_ok=True)
    module.write_text(TEMPLATE_STUB.format(name=name))
    test.write_text(TEMPLATE_TEST_STUB.format(name=name))
    return Scaffold(
        written=[module, test],
        next_steps=[
            f"edit {module}: Params, build() (the DAG id must start with '<model>__')",
            f"pytest -q {test}",
            f"use it: `template: {name}` in a spec (model-factory new-model NAME -t {name})",
            "model-factory templates  # lists it with the shipped ones",
        ],
    )
