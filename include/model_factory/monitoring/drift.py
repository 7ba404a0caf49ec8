"""The drift decision: a fresh batch against the champion's baseline profile and input contract.

``check_drift`` makes one chunked pass over the batch (counting in
:mod:`model_factory.pipeline.column_counts`), evaluates the input contract from the same counts
(:mod:`model_factory.pipeline.contract`), computes per feature the statistics of
:mod:`model_factory.pipeline.two_sample` against the baseline (:mod:`model_factory.pipeline.profile`)
and decides under a ``DriftRule``; the verdict is a ``DriftCheck``.

Statistics per feature:

* **PSI** over the baseline's quantile bins plus an explicit "missing" cell (categorical: one cell per
  training category, one per never-seen category, plus missing), on shares of all rows.
* **Two-sample KS** (numeric, non-missing values). The reference ECDF is known exactly at the
  sketch's ~1000 quantile points (and just left of them); the current ECDF is counted at the same
  points, and the statistic is the largest gap there. It is never above scipy's ``ks_2samp``
  statistic on the raw samples and at most ``ks_resolution`` (the largest reference mass between
  two sketch points, ~0.001) below it.
* **Chi-square** (categorical): training counts against batch counts (never-seen categories are
  their own cells, missing is a cell); with it the total variation distance (TVD) as the effect size.
* Missing-rate shift, and the share of values outside the input contract's mean +/- k sigma bounds.

With thousands of rows every p-value is tiny, so decisions use effect sizes; p-values guard
small samples (PSI too: its cells' chi-square test). Under ``min_rows`` and from ``small_min_rows``
rows, the p-values come from tests valid at small n (exact KS, permutation chi-square). See
``DriftRule`` for the decision and ``check_drift`` for precedence.

Over 500 lines on purpose: the drift decision with its large- and small-sample tests and its one
rule, so every threshold lives in one place.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from model_factory.pipeline.column_counts import (
    DEFAULT_CHUNK_ROWS,
    Accumulator,
    CategoricalAccumulator,
    NumericAccumulator,
    bin_counts,
    column_blocks,
    count_columns,
)
from model_factory.pipeline.contract import contract_failures, input_contract
from model_factory.pipeline.profile import baseline_from_json
from model_factory.pipeline.two_sample import (
    chi2_permutation_pvalue,
    chi2_two_sample,
    ks_detectable,
    ks_exact_pvalue,
    ks_from_cells,
    ks_pvalue,
    psi,
)

if TYPE_CHECKING:
    from model_factory.spec import ModelSpec

FORMAT_VERSION = 1  # of the drift check's result
LISTED_NEW_CATEGORIES = 20  # never-seen categories kept by name in a result; the rest are summed
# A feature's statistics, None until the batch has values for them.
NUMERIC_STATISTICS = (
    "count",
    "missing_rate",
    "missing_shift",
    "mean",
    "std",
    "min",
    "max",
    "psi",
    "psi_pvalue",
    "ks_statistic",
    "ks_pvalue",
    "outside_bounds_share",
)
CATEGORICAL_STATISTICS = (
    "count",
    "missing_rate",
    "missing_shift",
    "psi",
    "psi_pvalue",
    "chi2_statistic",
    "chi2_dof",
    "chi2_pvalue",
    "tvd",
    "new_share",
)


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class DriftRule:
    """When a batch counts as drifted.

    Decision: drift if any judged feature has PSI >= ``psi_threshold``, or at least
    ``drifted_share`` of the judged features are *drifted*. A feature is drifted when its PSI >=
    ``psi_warn`` (default: half of ``psi_threshold``, so a spec's one PSI limit sets both and
    every message names which of the two it applies), or when its effect size (KS statistic for
    numeric, total variation distance for categorical) >= ``effect_threshold``. Every effect must
    also be significant: its test's p-value (PSI: the chi-square test of the same cells) under
    ``alpha`` / the number of tests of the judged features (two per numeric feature, KS and the
    cells' chi-square; one per categorical one; at small n one each), Bonferroni: at most
    ``alpha`` false alarms per check on an unchanged population. With thousands of rows that
    always holds; on a small baseline or batch it keeps sampling noise from reading as drift (a
    320-row baseline against 600 rows puts PSI over 0.1 on ~1 feature in 70 by chance alone).

    From ``min_rows`` rows the p-values are the asymptotic ones. From ``small_min_rows`` up to
    ``min_rows`` they come from tests valid at small n (numeric: the exact two-sample KS, which
    also guards PSI; categorical: the permutation chi-square) and the reasons state the smallest
    KS shift the test can see at those sizes; so do they for a batch of ``min_rows`` or more
    against a baseline under ``min_rows``. Below both no decision is made. Features in
    ``ignore_features`` are reported but never judged (e.g. a column constant within a day, such
    as the day of week).
    """

    psi_threshold: float = 0.2
    drifted_share: float = 0.3
    psi_warn: float | None = None
    effect_threshold: float = 0.1
    alpha: float = 0.01
    min_rows: int = 500
    small_min_rows: int = 100
    ignore_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.psi_warn is None:
            object.__setattr__(self, "psi_warn", self.psi_threshold / 2)
        if self.psi_warn is None or not 0 < self.psi_warn <= self.psi_threshold:
            raise ValueError("DriftRule needs 0 < psi_warn <= psi_threshold")
        if not 0 < self.drifted_share <= 1:
            raise ValueError("DriftRule.drifted_share must be in (0, 1]")
        if not 0 < self.effect_threshold <= 1 or not 0 < self.alpha < 1:
            raise ValueError("DriftRule.effect_threshold must be in (0, 1] and alpha in (0, 1)")
        if self.min_rows < 1 or self.small_min_rows < 1:
            raise ValueError("DriftRule.min_rows and small_min_rows must be at least 1")
        object.__setattr__(self, "ignore_features", tuple(self.ignore_features))

    def to_dict(self) -> dict:
        return {**asdict(self), "ignore_features": list(self.ignore_features)}

    def small(self, rows: int) -> bool:
        """Whether a batch of ``rows`` is decided in the small-sample regime (under min_rows)."""
        return self.small_min_rows <= rows < self.min_rows

    def exact_tests(self, rows: int, reference_rows: int) -> bool:
        """Whether the tests valid at small n give the p-values: a batch in the small regime, or
        a decidable batch against a baseline under ``min_rows`` (asymptotic p-values need both
        samples large)."""
        return self.small(rows) or (rows >= self.min_rows and reference_rows < self.min_rows)


@dataclass(frozen=True)
class DriftCheck:
    """The verdict of ``check_drift``.

    ``status`` is one of ``data_quality``, ``insufficient_data``, ``drift``, ``no_drift``. The
    per-feature entries stay plain dicts: they are the report's payload (statistics, the
    distribution for the chart), written to JSON and HTML as they are; ``to_dict`` gives the
    whole verdict in that JSON form.
    """

    status: str
    reasons: list[str]
    rows: int
    features: dict[str, dict[str, Any]]
    drifted_features: list[str]
    data_quality: list[str]
    bounds_alerts: list[str]
    rule: dict[str, Any]
    contract: dict[str, Any]
    baseline: dict[str, Any]
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {"format_version": out.pop("format_version"), **out}


def _numeric_result(
    profile: dict,
    acc: NumericAccumulator | None,
    rows: int,
    bounds_config: dict | None,
    ref_rows: int,
    exact: bool,
) -> dict:
    grid = np.asarray(profile["sketch"]["grid"], dtype="float64")
    ref_cells = np.asarray(profile["sketch"]["cell_counts"], dtype=np.int64)
    edges = np.asarray(profile["edges"], dtype="float64")
    out: dict[str, Any] = {
        "kind": "numeric",
        "present": acc is not None,
        "rows": rows,
        "reference_mean": profile["mean"],
        "reference_std": profile["std"],
        "reference_missing_rate": profile["missing_rate"],
        "ks_resolution": float(ref_cells[0::2].max()) / profile["count"],
        "distribution": {
            "edges": profile["edges"],
            "reference": profile["proportions"],
            "reference_missing": profile["missing_share"],
            "current": None,
            "current_missing": None,
        },
    }
    out |= dict.fromkeys(NUMERIC_STATISTICS)
    if bounds_config is not None:
        kw = bounds_config["kwargs"]
        out["bounds"] = [kw["min_value"], kw["max_value"]]
        out["outside_bounds_allowed"] = 1.0 - kw.get("mostly", 1.0)
        out["reference_outside_share"] = bounds_config.get("meta", {}).get("training_outside_share")
    if acc is None:
        return out
    missing = acc.rows - acc.count
    out |= {"count": acc.count, "missing_rate": missing / rows if rows else None}
    if rows:
        out["missing_shift"] = out["missing_rate"] - profile["missing_rate"]
        current_counts = bin_counts(acc.cells, grid, edges)
        current = current_counts / rows
        out["distribution"] |= {"current": current.tolist(), "current_missing": missing / rows}
        reference = [*profile["proportions"], profile["missing_share"]]
        out["psi"] = psi(reference, [*current, missing / rows])
        if not exact:  # at small n the KS test guards PSI (below)
            ref_counts = np.rint(np.asarray(reference) * ref_rows).astype(np.int64)
            cur_counts = np.asarray([*current_counts, missing], dtype=np.int64)
            out["psi_pvalue"] = chi2_two_sample(ref_counts, cur_counts)[2]
    if acc.count:
        d = ks_from_cells(ref_cells, acc.cells)
        p = ks_exact_pvalue(ref_cells, acc.cells) if exact else ks_pvalue(d, profile["count"], acc.count)
        out |= {
            "mean": acc.mean,
            "std": acc.std,
            "min": acc.min,
            "max": acc.max,
            "ks_statistic": d,
            "ks_pvalue": p,
        }
        if exact:
            # A permutation test of the cells is anticonservative here: the cells are cut at the
            # reference's own quantiles (measured: 1.4% rejections at 1%, 6.3% at 5%, normal
            # samples of 100 vs 180). The exact KS is not (0.8%, 4.0%): it guards PSI too.
            out["psi_pvalue"] = p
        if acc.bounds is not None:
            out["outside_bounds_share"] = acc.outside / acc.count
    return out


def _categorical_result(
    profile: dict, acc: CategoricalAccumulator | None, rows: int, ref_rows: int, exact: bool
) -> dict:
    ref_counts: dict[str, int] = profile["counts"]
    ref_missing = ref_rows - profile["count"]
    out: dict[str, Any] = {
        "kind": "categorical",
        "present": acc is not None,
        "rows": rows,
        "reference_missing_rate": profile["missing_rate"],
        "distribution": {
            "categories": list(ref_counts),
            "reference": list(profile["frequencies"].values()),
            "reference_missing": profile["missing_rate"],
            "current": None,
            "current_missing": None,
            "new": [False] * len(ref_counts),
            "other_new": None,
        },
    }
    out |= dict.fromkeys(CATEGORICAL_STATISTICS)
    out |= {"new_categories": {}, "new_category_count": 0}
    if acc is None or not rows:
        if acc is not None:
            out["count"] = 0
        return out
    new = sorted((c for c in acc.counts if c not in ref_counts), key=lambda c: (-acc.counts[c], c))
    cats = [*ref_counts, *new]
    ref_vec = np.array([*(ref_counts[c] for c in ref_counts), *(0 for _ in new), ref_missing], dtype=np.int64)
    cur_vec = np.array([*(acc.counts.get(c, 0) for c in cats), acc.missing], dtype=np.int64)
    p, q = ref_vec / ref_vec.sum(), cur_vec / rows
    statistic, dof, pvalue = chi2_two_sample(ref_vec, cur_vec)
    if exact:
        pvalue = chi2_permutation_pvalue(ref_vec, cur_vec)
    new_total = int(sum(acc.counts[c] for c in new))
    listed = new[:LISTED_NEW_CATEGORIES]
    rest = new[LISTED_NEW_CATEGORIES:]
    out |= {
        "count": rows - acc.missing,
        "missing_rate": acc.missing / rows,
        "missing_shift": acc.missing / rows - profile["missing_rate"],
        "psi": psi(p, q),
        "psi_pvalue": pvalue,  # the chi-square test of the same cells
        "chi2_statistic": statistic,
        "chi2_dof": dof,
        "chi2_pvalue": pvalue,
        "tvd": float(0.5 * np.abs(p - q).sum()),
        "new_share": new_total / rows,
        "new_categories": {c: acc.counts[c] for c in listed},
        "new_category_count": len(new),
    }
    n_ref = len(ref_counts)
    out["distribution"] |= {
        "categories": [*ref_counts, *listed],
        "current": q[: n_ref + len(listed)].tolist(),
        "reference": [*out["distribution"]["reference"], *(0.0 for _ in listed)],
        "current_missing": acc.missing / rows,
        "new": [False] * n_ref + [True] * len(listed),
        "other_new": {"categories": len(rest), "share": sum(acc.counts[c] for c in rest) / rows}
        if rest
        else None,
    }
    return out


def _psi_significant(feat: dict, limit: float, alpha: float) -> bool:
    p = feat["psi_pvalue"]
    return feat["psi"] is not None and feat["psi"] >= limit and p is not None and p < alpha


def _judge(feat: dict, rule: DriftRule, alpha: float) -> list[str]:
    """Why a feature counts as drifted under the rule (empty: it does not); ``alpha``: each
    test's level (the rule's alpha shared among the judged features)."""
    why = []
    assert rule.psi_warn is not None
    if _psi_significant(feat, rule.psi_warn, alpha):
        why.append(
            f"PSI {feat['psi']:.3f} ≥ {rule.psi_warn:g}, the per-feature limit (drift needs "
            f"{rule.drifted_share:.0%} of features so, or one at PSI {rule.psi_threshold:g}; "
            f"p = {feat['psi_pvalue']:.2g})"
        )
    if feat["kind"] == "numeric":
        effect, p, label = feat["ks_statistic"], feat["ks_pvalue"], "KS"
    else:
        effect, p, label = feat["tvd"], feat["chi2_pvalue"], "TVD"
    if effect is not None and effect >= rule.effect_threshold and p is not None and p < alpha:
        why.append(f"{label} {effect:.3f} ≥ {rule.effect_threshold:g} (p = {p:.2g})")
    return why


def _decide(
    features: dict[str, dict],
    judged: list[str],
    drifted: list[str],
    data_quality: list[str],
    rows: int,
    rule: DriftRule,
    alpha: float,
    ref_rows: int,
) -> tuple[str, list[str]]:
    """(status, reasons) by ``check_drift``'s precedence."""
    over = [n for n in judged if _psi_significant(features[n], rule.psi_threshold, alpha)]
    share = len(drifted) / len(judged) if judged else 0.0
    stat_reasons: list[str] = [
        f"feature {n!r}: PSI {features[n]['psi']:.3f} is at or above {rule.psi_threshold:g}, the limit "
        "at which one feature alone is drift"
        for n in over
    ]
    if judged and share >= rule.drifted_share:
        stat_reasons.append(
            f"{len(drifted)} of {len(judged)} features drifted ({share:.0%}: PSI ≥ {rule.psi_warn:g}, the "
            "per-feature limit, or a significant test), at or above the rule's "
            f"{rule.drifted_share:.0%}: {', '.join(drifted)}"
        )
    if data_quality:
        status = "data_quality"
        reasons = [
            f"the batch breaks the input contract ({len(data_quality)} data-quality failure"
            f"{'s' if len(data_quality) != 1 else ''}, not statistical drift): fix the feed rather "
            "than retrain",
            *data_quality,
        ]
        if stat_reasons:
            reasons.append("statistical drift on the other features too: " + "; ".join(stat_reasons))
    elif rows < rule.min_rows and not rule.small(rows):
        status = "insufficient_data"
        least = min(rule.min_rows, rule.small_min_rows)
        reasons = [
            f"only {rows:,} rows in the batch; the rule needs at least {least:,} to decide, "
            "so no decision was made (the statistics are indicative only)"
        ]
    elif stat_reasons:
        status, reasons = "drift", stat_reasons
    else:
        status = "no_drift"
        top = max(judged, key=lambda n: features[n]["psi"] or 0.0, default=None)
        highest = f" (highest: {top!r} at {features[top]['psi']:.3f})" if top else ""
        reasons = [
            f"no feature reached PSI {rule.psi_threshold:g}, the limit at which one feature alone is drift"
            f"{highest}, and {len(drifted)} of {len(judged)} features drifted ({share:.0%}: PSI ≥ "
            f"{rule.psi_warn:g}, the per-feature limit, or a significant test), below the rule's "
            f"{rule.drifted_share:.0%}"
        ]
    if status in ("drift", "no_drift") and rule.exact_tests(rows, ref_rows):
        unseen = ks_detectable(alpha, ref_rows, rows)
        plural = "s" if len(judged) != 1 else ""
        small = f"{rows:,} rows" if rows < rule.min_rows else f"a {ref_rows:,}-row baseline"
        reasons.insert(
            0,
            (
                f"{small}, under drift.min_rows {rule.min_rows:,}: decided by tests valid at small n "
                f"(exact two-sample KS, permutation chi-square), each at p < {alpha:.2g} (alpha "
                f"{rule.alpha:g} shared by the tests of {len(judged)} judged feature{plural}); against the "
                f"{ref_rows:,}-row baseline a shift under KS {unseen:.2f} goes unseen at these sizes"
            ),
        )
    return status, reasons


def _accumulators(baseline: dict, present: list[str], bounds_of: dict[str, dict]) -> dict[str, Accumulator]:
    """One accumulator per present column; a numeric one on the baseline's sketch grid, counting
    the values outside its contract bounds (when the contract has them)."""
    accs: dict[str, Accumulator] = {}
    for col in present:
        if col in baseline["numeric"]:
            b = bounds_of.get(col)
            bounds = (b["kwargs"]["min_value"], b["kwargs"]["max_value"]) if b else None
            accs[col] = NumericAccumulator(np.asarray(baseline["numeric"][col]["sketch"]["grid"]), bounds)
        else:
            accs[col] = CategoricalAccumulator()
    return accs


def _contract_findings(
    expectations: list[dict], accs: dict[str, Accumulator], rows: int
) -> tuple[dict[str, list[str]], list[str], set[str]]:
    """The contract evaluated from the batch's counts (check_contract gives the same answers via
    GX): (data-quality failures by column, bounds alerts, the columns out of bounds)."""
    dq_by_col: dict[str, list[str]] = {}
    alerts: list[str] = []
    out_of_bounds: set[str] = set()
    for config, reason in contract_failures(expectations, accs, rows):
        if config.get("meta", {}).get("kind") == "bounds":
            alerts.append(reason)
            out_of_bounds.add(config["kwargs"]["column"])
        else:
            dq_by_col.setdefault(config["kwargs"].get("column"), []).append(reason)
    return dq_by_col, alerts, out_of_bounds


def _feature_results(
    baseline: dict, accs: dict[str, Accumulator], rows: int, bounds_of: dict[str, dict], exact: bool
) -> dict[str, dict]:
    """Every baseline feature's statistics against the batch's counts, numeric ones first."""
    features: dict[str, dict] = {}
    for col in baseline["numeric"]:
        acc = accs.get(col)
        assert acc is None or isinstance(acc, NumericAccumulator)
        features[col] = _numeric_result(
            baseline["numeric"][col], acc, rows, bounds_of.get(col), baseline["rows"], exact
        )
    for col in baseline["categorical"]:
        acc = accs.get(col)
        assert acc is None or isinstance(acc, CategoricalAccumulator)
        features[col] = _categorical_result(baseline["categorical"][col], acc, rows, baseline["rows"], exact)
    return features


def check_drift(
    baseline: dict,
    current: pd.DataFrame | str | os.PathLike | bytes,
    rule: DriftRule | None = None,
    *,
    contract: dict | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> DriftCheck:
    """Compare a batch with the baseline in one chunked pass; the verdict (``.to_dict()``: JSON).

    ``contract`` defaults to ``input_contract(baseline)``. Status precedence: ``data_quality`` (a
    schema expectation of the contract fails: missing or non-numeric column, nulls above the
    ceiling, a flood of never-seen categories; retraining on a broken feed would not help, and a
    missing column is certain at any batch size) > ``insufficient_data`` (fewer than
    ``rule.min_rows`` rows: statistics are reported as indicative, no decision) > ``drift`` >
    ``no_drift``. Features with a data-quality failure are not judged for drift.
    """
    rule = rule or DriftRule()
    baseline = baseline_from_json(baseline)
    contract = contract if contract is not None else input_contract(baseline)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    numeric, categorical = list(baseline["numeric"]), list(baseline["categorical"])
    expectations = contract["expectations"]
    bounds_of = {
        c["kwargs"]["column"]: c for c in expectations if c["type"] == "expect_column_values_to_be_between"
    }

    rows, present, blocks = column_blocks(current, numeric, categorical, chunk_rows)
    exact = rule.exact_tests(rows, baseline["rows"])
    accs = _accumulators(baseline, present, bounds_of)
    count_columns(blocks, accs)

    dq_by_col, alerts, out_of_bounds = _contract_findings(expectations, accs, rows)
    data_quality = [r for reasons in dq_by_col.values() for r in reasons]

    features = _feature_results(baseline, accs, rows, bounds_of, exact)
    judged = []
    for name, feat in features.items():
        feat["data_quality"] = dq_by_col.get(name, [])
        feat["ignored"] = name in rule.ignore_features
        feat["judged"] = not feat["ignored"] and not feat["data_quality"] and feat["present"]
        if feat["judged"]:
            judged.append(name)
    # numeric: KS and the cells' chi-square (at small n the KS alone); categorical: the chi-square
    tests = sum(2 if features[n]["kind"] == "numeric" and not exact else 1 for n in judged)
    alpha = rule.alpha / max(1, tests)  # Bonferroni over every test of the judged features
    for name, feat in features.items():
        feat["why"] = _judge(feat, rule, alpha) if feat["judged"] else []
        feat["drifted"] = bool(feat["why"])
        feat["bounds_ok"] = None if feat.get("outside_bounds_share") is None else name not in out_of_bounds
        for key, value in feat.items():
            if isinstance(value, float):
                feat[key] = _finite(value)

    drifted = [n for n in judged if features[n]["drifted"]]
    status, reasons = _decide(features, judged, drifted, data_quality, rows, rule, alpha, baseline["rows"])
    ignored = [n for n in features if features[n]["ignored"]]
    if ignored:
        reasons.append(f"not judged, by the rule: {', '.join(ignored)}")
    check = DriftCheck(
        status=status,
        reasons=reasons,
        rows=rows,
        features=features,
        drifted_features=drifted,
        data_quality=data_quality,
        bounds_alerts=alerts,
        rule=rule.to_dict(),
        contract=dict(contract.get("meta", {})),
        baseline={"format_version": baseline["format_version"], "rows": baseline["rows"]},
    )
    return without_verdicts(check, check.reasons) if status == "insufficient_data" else check


def without_verdicts(check: DriftCheck, reasons: list[str]) -> DriftCheck:
    """The check as ``insufficient_data`` with ``reasons``: the statistics stay (indicative), but
    no feature is called drifted or not (``drifted`` is None, ``why`` empty): with no decision
    made, a per-feature verdict would be read as one."""
    features = {
        name: {**feat, "drifted": None if feat["judged"] else feat["drifted"], "why": []}
        for name, feat in check.features.items()
    }
    return replace(
        check, status="insufficient_data", reasons=list(reasons), features=features, drifted_features=[]
    )


# --------------------------------------------------------------------------------------------------
# Concept drift


@dataclass(frozen=True)
class ConceptPolicy:
    """A model's limits for a concept-drift decision, read from its spec in one place."""

    min_labels: int
    max_drop: float
    too_good_jump: float  # math.inf: never "too good" (the spec's gates.too_good_jump null)

    @classmethod
    def of(cls, spec: ModelSpec) -> ConceptPolicy:
        jump = spec.gates.too_good_jump
        return cls(
            min_labels=spec.drift.min_labels,
            max_drop=spec.drift.max_metric_drop,
            too_good_jump=math.inf if jump is None else jump,
        )


def concept_result(
    live_metric: float,
    reference_metric: float | None,
    n_labelled: int,
    higher_is_better: bool,
    policy: ConceptPolicy,
) -> dict[str, Any]:
    """The keys every concept check's result has (against the holdout or a seasonal reference)."""
    return {
        "live_metric": live_metric,
        "reference_metric": reference_metric,
        "n_labelled": n_labelled,
        "higher_is_better": higher_is_better,
        "min_labels": policy.min_labels,
        "max_drop": policy.max_drop,
        "too_good_jump": policy.too_good_jump if math.isfinite(policy.too_good_jump) else None,
        "relative_change": None,
        "z": None,
    }


def check_concept_drift(
    live_metric: float,
    reference_metric: float,
    *,
    policy: ConceptPolicy,
    higher_is_better: bool,
    n_labelled: int,
    live_se: float | None = None,
    reference_rows: int | None = None,
    alpha: float = 0.01,
) -> dict:
    """Live metric on recently labelled data vs the champion's holdout metric.

    Relative change is computed as in ``evaluation.decide``: gain / |reference| (plain gain when the
    reference is 0), gain being oriented so positive is better. A drop beyond ``max_drop`` is
    ``concept_drift`` (retrain); a gain beyond ``too_good_jump`` is ``too_good`` (hold for review: a
    leak or a broken label feed is likelier than a better world), not a retrain.

    Either must also be beyond noise when ``live_se`` (the live metric's standard error) is given:
    the difference over its standard error, sqrt(live_se^2 + reference_se^2), past the one-sided
    normal quantile of ``alpha``. The reference metric was measured on ``reference_rows`` rows of
    the same population, so its standard error is taken as live_se * sqrt(n_labelled /
    reference_rows) (a standard error shrinks as 1/sqrt(rows)); without ``reference_rows`` only
    the live noise counts. On small data (a champion judged on 400 rows, 600 labelled rows) a 5%
    dip in ROC AUC is within noise: without this, an unchanged population fired retrains.
    """
    min_labels, max_drop, too_good_jump = policy.min_labels, policy.max_drop, policy.too_good_jump
    base = concept_result(live_metric, reference_metric, n_labelled, higher_is_better, policy) | {
        "reference_rows": reference_rows
    }
    if n_labelled < min_labels:
        return base | {
            "status": "insufficient_data",
            "reasons": [f"only {n_labelled} labelled rows; at least {min_labels} are needed to judge"],
        }
    if not (math.isfinite(live_metric) and math.isfinite(reference_metric)):
        return base | {
            "status": "insufficient_data",
            "reasons": [f"a metric is not a number (live {live_metric}, reference {reference_metric})"],
        }
    gain = (live_metric - reference_metric) if higher_is_better else (reference_metric - live_metric)
    relative = gain / abs(reference_metric) if reference_metric else gain
    base["relative_change"] = relative
    vs = f"live {live_metric:.4f} vs reference {reference_metric:.4f} on {n_labelled} labelled rows"
    noise = ""
    if live_se is not None and math.isfinite(live_se) and live_se > 0:
        ref_se = live_se * math.sqrt(n_labelled / reference_rows) if reference_rows else 0.0
        z = gain / math.sqrt(live_se**2 + ref_se**2)
        base["z"] = z
        needed = NormalDist().inv_cdf(1 - alpha)
        if (relative < -max_drop or relative > too_good_jump) and abs(z) < needed:
            against = f" and {reference_rows} reference rows" if reference_rows else ""
            return base | {
                "status": "ok",
                "reasons": [
                    f"{vs} ({relative:+.1%}): beyond the limits, but within the noise of {n_labelled} live"
                    f"{against} (z = {z:.2f}; significant needs |z| ≥ {needed:.2f}, alpha {alpha:g}): "
                    "no alarm"
                ],
            }
        noise = f", z = {z:.2f}"
    if relative < -max_drop:
        return base | {
            "status": "concept_drift",
            "reasons": [f"{vs}: {-relative:.1%} worse{noise}, beyond the allowed {max_drop:.1%}; retrain"],
        }
    if relative > too_good_jump:
        return base | {
            "status": "too_good",
            "reasons": [
                f"{vs}: {relative:.1%} better{noise}, above the {too_good_jump:.0%} 'too good to be true' "
                "limit; hold for review (check for a leak or a broken label feed), do not retrain"
            ],
        }
    return base | {"status": "ok", "reasons": [f"{vs} ({relative:+.1%}), within limits"]}
