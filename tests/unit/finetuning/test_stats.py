"""Seed statistics: t intervals and paired t-tests, checked against scipy and by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from babyllama.finetuning.stats import difference_range, metric_range, paired, score_range, summarize, t_interval


def test_t_interval_by_hand():
    x = [0.60, 0.64, 0.71]
    lo, hi = t_interval(x)
    half = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert (lo, hi) == pytest.approx((np.mean(x) - half, np.mean(x) + half))
    assert t_interval([0.5]) is None


def test_summarize_clips_to_the_metric_range():
    s = summarize([0.98, 0.99, 1.0], bounds=(0.0, 1.0))
    assert s["ci"][1] == 1.0 and s["ci"][0] < 0.98 and s["n"] == 3


def test_paired_matches_ttest_rel():
    a, b = [0.61, 0.66, 0.70, 0.64], [0.58, 0.65, 0.66, 0.60]
    r = paired(a, b)
    assert r["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert r["diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert r["ci"][0] < r["diff"] < r["ci"][1]


def test_paired_one_seed_and_constant_differences():
    assert paired([0.6], [0.5])["p"] is None and paired([0.6], [0.5])["ci"] is None
    assert paired([0.5, 0.6], [0.5, 0.6])["p"] == 1.0
    with pytest.raises(ValueError):
        paired([0.5, 0.6], [0.5])


def test_paired_interval_clipped_to_what_a_difference_can_take():
    a, b = [0.46, 0.54], [0.54, 0.54]  # two seeds: the t interval is about +-0.5 around -0.04
    free = paired(a, b)
    assert free["ci"][0] < -0.5 and free["ci"][1] > 0.4
    clipped = paired(a, b, bounds=(0.0, 1.0))
    assert clipped["ci"] == (pytest.approx(free["ci"][0]), pytest.approx(free["ci"][1]))  # inside [-1, 1]: unchanged
    wide = paired([0.1, 0.9], [0.9, 0.1], bounds=(0.0, 1.0))  # t interval about +-10
    assert wide["ci"] == (-1.0, 1.0) and wide["diff"] == 0.0
    assert paired([0.1, 0.9], [0.9, 0.1], bounds=(-1.0, 1.0))["ci"] == (-2.0, 2.0)  # MCC differences span [-2, 2]


def test_metric_ranges():
    assert metric_range(["accuracy", "f1"]) == (0.0, 1.0)
    assert metric_range(["accuracy", "mcc"]) == (-1.0, 1.0)  # a macro average over tasks with an MCC task
    assert difference_range((0.0, 1.0)) == (-1.0, 1.0) and difference_range((-1.0, 1.0)) == (-2.0, 2.0)


def test_score_range_of_a_task_and_of_the_macro_average():
    model = {"tasks": {"rte": {"metric": "accuracy"}, "cola": {"metric": "mcc"}},
             "macro": {"tasks": ["rte", "cola"]}}
    assert score_range(model, "rte") == (0.0, 1.0) and score_range(model, "cola") == (-1.0, 1.0)
    assert score_range(model, "macro") == (-1.0, 1.0)
    model["macro"]["tasks"] = ["rte"]
    assert score_range(model, "macro") == (0.0, 1.0)
