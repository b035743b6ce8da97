import json

import numpy as np
import pytest

from babyllama.errors import UserError
from babyllama.eval.runner import subsample, summarize
from babyllama.eval.stats import bootstrap_ci, macro_bootstrap, mcnemar_p, paired_comparison
from babyllama.eval.tasks import Item, load_suite, read_ewok, read_minimal_pairs
from conftest import SHARED_EVAL, need_shared


def test_minimal_pairs_reader_and_errors(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"sentence_good": "A cat.", "sentence_bad": "A cats.", "linguistics_term": "agr"}) +
                 "\n\n" + json.dumps({"sentence_good": "B.", "sentence_bad": "C."}) + "\n")
    items = read_minimal_pairs(f)
    assert items[0] == Item("mine", 0, "", (" A cat.", " A cats."), "agr") and len(items) == 2
    f.write_text('{"sentence_good": "x"}\n')
    with pytest.raises(UserError, match=r"mine.jsonl:1: missing sentence_good or sentence_bad"):
        read_minimal_pairs(f)
    f.write_text('{"sentence_good": "x", "sentence_bad": "y"}\n{oops\n')
    with pytest.raises(UserError, match=r"mine.jsonl:2: not JSON"):
        read_minimal_pairs(f)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="not UTF-8"):
        read_minimal_pairs(f)
    with pytest.raises(UserError, match="unknown suite"):
        load_suite("nonexistent_suite")


def test_shared_suites_load():
    need_shared()
    blimp = load_suite("blimp", SHARED_EVAL)
    assert len(blimp) == 67000 and len({i.paradigm for i in blimp}) == 67
    assert len({i.group for i in blimp}) == 13  # linguistics_term values in BLiMP's files
    assert len(load_suite("blimp_filtered", SHARED_EVAL)) == 59875
    assert len(load_suite("supplement", SHARED_EVAL)) == 5218
    ewok = read_ewok(SHARED_EVAL / "ewok_filtered" / "ewok_filtered.zip")
    assert len(ewok) == 7618 and ewok[0].context and ewok[0].choices[0].startswith(" ")
    sub = load_suite("blimp", SHARED_EVAL, ["adjunct_island", "causative"])
    assert {i.paradigm for i in sub} == {"adjunct_island", "causative"}


def test_subsample_is_seeded_and_per_paradigm():
    items = [Item(p, i, "", (" a", " b")) for p in ("x", "y") for i in range(50)]
    a, b = subsample(items, 10), subsample(items, 10)
    assert a == b and len(a) == 20


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


def test_summarize_groups_and_macro():
    items = [Item("p1", i, "", ("a", "b"), "g1") for i in range(4)] + [Item("p2", i, "", ("a", "b"), "g1")
                                                                        for i in range(2)]
    s = summarize(items, [True, True, True, False, True, False])
    assert s["paradigms"]["p1"]["acc"] == 0.75 and s["paradigms"]["p2"]["acc"] == 0.5
    assert s["macro"]["acc"] == pytest.approx(0.625) and s["groups"]["g1"]["acc"] == pytest.approx(0.625)
    assert s["decisions"]["p1"] == "1110"
    assert np.isclose(s["macro"]["ci"][0], s["macro"]["ci"][0])
