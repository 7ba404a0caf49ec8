"""The drift verdict names one PSI limit per role: the headline and the per-feature reasons agree."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from model_factory.monitoring import drift, drift_report
from model_factory.pipeline import profile


def _frames(shift: float) -> tuple[dict, pd.DataFrame]:
    rng = np.random.default_rng(7)
    train = pd.DataFrame({f"f{i}": rng.normal(size=4_000) for i in range(4)})
    now = pd.DataFrame({f"f{i}": rng.normal(size=2_000) for i in range(4)})
    now["f0"] += shift
    return profile.build_baseline(train, list(train), []), now


def _limits(texts: list[str]) -> set[float]:
    """Every 'PSI <value>' limit stated in the texts (after ≥, 'reached' or 'at or above')."""
    found = re.findall(r"(?:≥|reached PSI|at or above|at PSI) (\d+(?:\.\d+)?)", " ".join(texts))
    return {float(x) for x in found}


def test_the_per_feature_psi_limit_follows_the_specs_one_limit() -> None:
    assert drift.DriftRule().psi_warn == pytest.approx(0.1)
    assert drift.DriftRule(psi_threshold=0.3).psi_warn == pytest.approx(0.15)
    # a spec limit below the old fixed 0.1 per-feature limit used to be refused
    assert drift.DriftRule(psi_threshold=0.05).psi_warn == pytest.approx(0.025)


@pytest.mark.parametrize("shift", [0.25, 0.6])
def test_headline_and_feature_reasons_state_the_rules_limits_by_name(shift: float) -> None:
    base, now = _frames(shift)
    rule = drift.DriftRule(psi_threshold=0.3, drifted_share=0.5)
    result = drift.check_drift(base, now, rule)
    why = [w for f in result.features.values() for w in f["why"]]
    assert why, "the shifted feature gives a per-feature reason"
    stated = _limits(result.reasons + why)
    assert stated <= {rule.psi_threshold, rule.psi_warn, rule.effect_threshold}
    for text in result.reasons + why:
        for limit in re.findall(r"PSI (?:≥ )?(\d+(?:\.\d+)?), the", text):
            assert float(limit) in (rule.psi_threshold, rule.psi_warn), text
    assert all("per-feature limit" in w for w in why if w.startswith("PSI"))
    assert any("one feature alone is drift" in r for r in result.reasons)
    html = drift_report.render_html(result, base, title="t")
    assert f"{rule.psi_warn:g}, the per-feature limit" in html
    assert f"{rule.psi_threshold:g}" in html
