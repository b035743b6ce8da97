import pytest

from babyllama.eval.stats import bootstrap_ci, macro_bootstrap, mcnemar_p, paired_comparison


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
