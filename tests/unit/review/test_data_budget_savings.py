"""The data budget's CPU saving is measured and printed with the precision it needs."""

from __future__ import annotations

import re

from model_factory.review import budget
from model_factory.review.budget import cpu_time, recommend, timed_fit


def _points(small_cpu: float, full_cpu: float) -> list[dict]:
    return [
        {"share": 0.25, "rows": 250, "metric": 0.899, "cpu_seconds": small_cpu},
        {"share": 1.0, "rows": 1000, "metric": 0.90, "cpu_seconds": full_cpu},
    ]


def test_a_millisecond_saving_is_printed_in_ms_never_as_zero_seconds():
    rec = recommend(_points(0.0012, 0.0048), "roc_auc", 0.01)
    assert rec["recommended_share"] == 0.25 and rec["cpu_saved_seconds"] == 0.0036
    text = rec["recommendation"]
    assert "3.6 ms" in text and "1.2 ms instead of 4.8 ms" in text and "75%" in text
    assert not re.search(r"\b0\.00\b", text), text


def test_fewer_rows_that_took_no_less_cpu_say_no_measurable_saving():
    text = recommend(_points(0.0050, 0.0049), "roc_auc", 0.01)["recommendation"]
    assert "25% of the training rows" in text and "no measurable CPU saving" in text
    assert "save" not in text.replace("saving", "")


def test_cpu_time_keeps_the_precision_it_needs():
    shown = [cpu_time(x) for x in (12.345, 1.0, 0.0456, 0.0008)]
    assert shown == ["12.35 s", "1.00 s", "45.6 ms", "0.800 ms"]


class _CountingFit:
    def __init__(self, burn: int):
        self.fits, self.burn = 0, burn

    def fit(self, features, target):
        self.fits += 1
        sum(i * i for i in range(self.burn))  # real CPU work, measured by process_time
        return self


def test_a_short_fit_is_repeated_and_timed_per_fit(monkeypatch):
    monkeypatch.setattr(budget, "MIN_TIMED_CPU_S", 0.05)
    quick = _CountingFit(burn=1_000)
    cpu, wall, fits = timed_fit(quick, None, None)
    assert fits == quick.fits and 1 < fits <= budget.MAX_TIMED_FITS and cpu > 0 and wall > 0
    slow = _CountingFit(burn=3_000_000)
    assert timed_fit(slow, None, None)[2] == slow.fits == 1  # one fit already over the minimum
