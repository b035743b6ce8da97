import pytest

import math

import numpy as np

from babyllama.eval.stats import (bootstrap_ci, bootstrap_p, format_p, macro_bootstrap, mcnemar_p, p_floor,
                                  paired_comparison, paired_mean_diff)


def test_bootstrap_and_macro():
    lo, hi = bootstrap_ci([1] * 80 + [0] * 20)
    assert lo < 0.8 < hi and hi - lo < 0.2
    m, (lo, hi) = macro_bootstrap({"a": [1, 1, 1, 1], "b": [0, 0, 1, 1]})
    assert m == pytest.approx(0.75) and lo <= 0.75 <= hi
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)


def test_mcnemar_by_hand():
    # 10 discordant pairs all one way: exact two-sided p = 2 / 2^10
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_p(5, 5) == pytest.approx(1.0)
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(80, 20) < 1e-8


def two_sided_binomial_by_hand(b: int, c: int) -> float:
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


@pytest.mark.parametrize("b,c", [(30, 20), (60, 40), (260, 240), (7, 93), (500, 430)])
def test_mcnemar_is_exact_at_every_size(b, c):
    # the exact binomial tail, also where a chi-square approximation used to take over (n >= 50)
    assert mcnemar_p(b, c) == pytest.approx(two_sided_binomial_by_hand(b, c), rel=1e-9)
    assert mcnemar_p(b, c) == mcnemar_p(c, b)


def test_bootstrap_p_floor_and_its_printing():
    reps = np.linspace(0.01, 0.05, 999)  # no resample on the far side of 0
    assert bootstrap_p(reps) == pytest.approx(p_floor(999)) == pytest.approx(2 / 1000)
    assert format_p(bootstrap_p(reps), 999) == "p <= 0.002 (B = 999)"
    assert bootstrap_p(np.concatenate([reps, [-0.01]])) == pytest.approx(4 / 1001)
    assert format_p(0.0312, 1000) == "p = 0.0312"
    assert bootstrap_p(np.zeros(9)) == 1.0


def test_paired_results_name_their_resamples():
    a, b = {"p": [1] * 60 + [0] * 40}, {"p": [1] * 40 + [0] * 60}
    r = paired_comparison(a, b, n_boot=200)
    assert r["resamples"] == 200 and r["p_bootstrap"] == pytest.approx(p_floor(200))
    assert paired_mean_diff([1.0, 2.0, 3.0], [1.5, 2.5, 2.0], n_boot=50)["resamples"] == 50


def test_paired_comparison():
    a = {"p": [1] * 60 + [0] * 40}
    b = {"p": [1] * 40 + [0] * 60}
    r = paired_comparison(a, b)
    assert r["diff"] == pytest.approx(0.2) and r["ci"][0] > 0 and r["p_bootstrap"] < 0.01
    assert r["only_a_right"] == 20 and r["only_b_right"] == 0
    same = paired_comparison(a, a)
    assert same["diff"] == 0 and same["p_mcnemar"] == 1.0
    with pytest.raises(ValueError):
        paired_comparison({"p": [1, 0]}, {"p": [1]})
