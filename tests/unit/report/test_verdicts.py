"""Verdict lines pool seeds: the BLiMP comparison is stratified by (seed, paradigm), dev CE paired per chunk."""

import pytest

from babyllama.eval.stats import paired_comparison, paired_mean_diff
from babyllama.report.verdicts import verdict_lines, verdicts


def model(name, role, seed, decisions, chunks):
    macro = sum(s.count("1") / len(s) for s in decisions.values()) / len(decisions)
    return {"name": name, "role": role, "seed": seed, "dir": None, "metrics": {},
            "eval": {"suites": {"blimp_filtered": {"decisions": decisions, "macro": {"acc": macro}}},
                     "perplexity": {"dev": {"domains": {"d": {"chunk_ce": chunks}}}}}}


def test_student_against_teacher_and_baseline_pooled_over_seeds():
    models = [model("teacher:t", "teacher", 1, {"p": "1100"}, [3.0, 3.0]),
              model("baseline:s1", "baseline", 1, {"p": "1000"}, [3.2, 3.4]),
              model("baseline:s2", "baseline", 2, {"p": "0000"}, [3.3, 3.3]),
              model("student:s1", "student", 1, {"p": "1110"}, [3.1, 3.0]),
              model("student:s2", "student", 2, {"p": "1100"}, [3.0, 3.1])]
    vs = {v["comparison"]: v for v in verdicts(models, "blimp_filtered")}
    assert set(vs) == {"student - t", "student - baseline"}
    base = vs["student - baseline"]
    assert base["seeds"] == [1, 2]
    want = paired_comparison({"s1:p": [1, 1, 1, 0], "s2:p": [1, 1, 0, 0]}, {"s1:p": [1, 0, 0, 0], "s2:p": [0] * 4})
    assert base["blimp"] == want and base["blimp"]["diff"] == pytest.approx(0.5)
    assert base["dev_ce"] == paired_mean_diff([3.1, 3.0, 3.0, 3.1], [3.2, 3.4, 3.3, 3.3])
    # one teacher trained once serves every seed's student
    assert vs["student - t"]["seeds"] == [1, 2]
    lines = verdict_lines(list(vs.values()), "blimp_filtered")
    assert any(line.startswith("- **student - baseline** (2 seeds (1,2) pooled): blimp_filtered macro +50.00 pp")
               for line in lines)
    # McNemar counts the pooled discordant items: the student alone right on 4 of 8, the baseline alone on none
    (line,) = [x for x in lines if x.startswith("- **student - baseline**")]
    assert "(McNemar exact p = 0.125, 4 vs 0 discordant items)" in line
    # beside the pooled CI, each seed's own difference: how far another training run moves the result
    assert [x["seed"] for x in base["per_seed"]] == [1, 2]
    assert [x["blimp"] for x in base["per_seed"]] == pytest.approx([0.5, 0.5])
    assert [x["dev_ce"] for x in base["per_seed"]] == pytest.approx([-0.25, -0.25])
    assert line.endswith("per seed (s1, s2): blimp_filtered +50.00 / +50.00 pp, dev CE -0.2500 / -0.2500"), line


def test_one_seed_says_so_and_the_resamples_are_a_setting():
    models = [model("baseline:s1", "baseline", 1, {"p": "0" * 40}, [3.2] * 20),
              model("student:s1", "student", 1, {"p": "1" * 40}, [3.0] * 20)]
    (v,) = verdicts(models, "blimp_filtered", n_boot=199)
    assert v["blimp"]["resamples"] == 199 and v["dev_ce"]["resamples"] == 199
    (line,) = verdict_lines([v], "blimp_filtered")
    assert "(one seed (1): the CIs cover item sampling only" in line
    # every resample favours the student: the p-value is at the floor of 199 resamples, printed as a bound
    assert line.count("p <= 0.01 (B = 199)") == 2, line


def test_no_student_no_verdict():
    assert verdicts([model("teacher:t", "teacher", 1, {"p": "1"}, [1.0])], "blimp_filtered") == []
