"""Entity tracking's macro and wug's correlation against small hand-computed cases (scipy for the rank correlation),
and the temperature scan's choice."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import spearmanr

from babyllama.eval import choice_suites
from babyllama.eval.choice_suites import compare_choice, entity_summary, score_choice_suite, wug_summary
from babyllama.eval.tasks2025 import ChoiceItem, read_entity_tracking, read_wug
from babyllama.errors import UserError


def _items(spec):
    out = []
    for uid, group, n in spec:
        out += [ChoiceItem(uid, k, ("a", "b"), ("a", "b"), group) for k in range(n)]
    return out


def test_entity_macro_is_the_pipelines_mean_of_split_means():
    # regular: two UIDs (1/2 and 1), ambiref: one UID (0): pipeline = ((0.5 + 1) / 2 + 0) / 2 = 0.375;
    # the plain mean over UIDs would be 0.5
    items = _items([("regular_0_ops", "regular", 2), ("regular_1_ops", "regular", 2), ("ambiref_0_ops", "ambiref", 4)])
    correct = [True, False, True, True, False, False, False, False]
    s = entity_summary(items, correct, n_boot=200)
    assert s["macro"]["acc"] == pytest.approx(0.375)
    assert s["groups"]["regular"]["acc"] == pytest.approx(0.75) and s["groups"]["ambiref"]["acc"] == 0.0
    assert sum(s["weights"].values()) == pytest.approx(1.0)
    assert s["macro"]["ci"][0] <= 0.375 <= s["macro"]["ci"][1]
    # paired: the same weights; a model right everywhere is 1 - 0.375 better
    better = entity_summary(items, [True] * 8, n_boot=200)
    d = compare_choice("entity_tracking", better, s, 200)
    assert d["diff"] == pytest.approx(0.625)


def test_wug_is_spearman_of_the_softmax_with_the_human_ratios():
    rng = np.random.default_rng(0)
    lp = rng.normal(size=(40, 2)) * 3
    human = rng.uniform(size=40)
    items = [ChoiceItem("wug_adj", k, ("x", "y"), ("x", "y"), ratio=float(h)) for k, h in enumerate(human)]
    s = wug_summary(items, lp, n_boot=300)
    p_first = 1 / (1 + np.exp(lp[:, 1] - lp[:, 0]))
    assert s["model_ratios"] == pytest.approx(p_first.tolist(), abs=1e-6)
    assert s["macro"]["acc"] == pytest.approx(spearmanr(p_first, human)[0], abs=1e-9)
    assert s["macro"]["ci"][0] < s["macro"]["acc"] < s["macro"]["ci"][1]
    assert s["predictions"] == (lp[:, 1] > lp[:, 0]).astype(int).tolist()
    same = compare_choice("wug", s, s, 200)
    assert same["diff"] == 0 and same["ci"] == (0.0, 0.0)


def test_scan_reports_the_first_best_temperature(monkeypatch):
    items = _items([("regular_0_ops", "regular", 4)])
    # right at T = 0.6 and 0.7 (two ties for best), wrong elsewhere: the pipeline keeps the first best
    right_at = {0.6, 0.7}

    def fake(scorer, requests, t, ranking=False):
        ok = any(abs(t - r) < 1e-6 for r in right_at)
        return np.array([[0.0, -1.0] if ok else [-1.0, 0.0] for _ in range(requests.shape[0])])

    monkeypatch.setattr("babyllama.eval.completion.choice_requests",
                        lambda scorer, its: SimpleNamespace(shape=(len(its), 2), truncated=0))
    monkeypatch.setattr("babyllama.eval.completion.choice_logprobs", fake)
    cfg = SimpleNamespace(temperature_min=0.5, temperature_max=0.8, temperature_interval=0.1, tie_rule="first",
                          resamples=100)
    s = score_choice_suite(None, "entity_tracking", items, cfg)
    assert s["temperature"]["chosen"] == pytest.approx(0.6) and s["macro"]["acc"] == 1.0
    assert len(s["temperature"]["scan"]) == 4
    cfg.temperature_max = None
    assert score_choice_suite(None, "entity_tracking", items, cfg)["temperature"] == {"chosen": 0.5, "scan": None}
    assert choice_suites.KINDS == ("entity_tracking", "wug")


def test_wug_scores_fp32_values_in_exact_bf16_and_entity_tracking_only_its_ranking(tiny_tokenizer):
    from babyllama.config import ModelConfig
    from babyllama.eval.scoring import Scorer
    from babyllama.models import build_model

    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    words = ["blick", "dax", "wug", "fep", "zorp", "tove"]
    items = [ChoiceItem("wug_adj", k, (f"It is {w}ity.", f"It is {w}ness."), (f" {w}ity.", f" {w}ness."),
                        ratio=k / 5) for k, w in enumerate(words)]
    cfg = SimpleNamespace(temperature_min=1.0, temperature_max=None, temperature_interval=0.1, tie_rule="first",
                          resamples=50)
    fp32 = score_choice_suite(Scorer(model, tiny_tokenizer), "wug", items, cfg)
    exact_scorer = Scorer(model, tiny_tokenizer, exact_bf16=True)
    exact = score_choice_suite(exact_scorer, "wug", items, cfg)
    assert exact["model_ratios"] == fp32["model_ratios"] and exact_scorer.rescored_bf16 == 0
    entity = [ChoiceItem("regular_1_ops", 0, it.sentences, it.completions, "regular") for it in items]
    score_choice_suite(exact_scorer, "entity_tracking", entity, cfg)
    assert exact_scorer.exact_bf16  # ranked in bf16 (the mode survives the wug call)


def test_readers_refuse_bad_files_in_one_line(tmp_path):
    good = {"input_prefix": "Box 0 contains ", "options": ["the a.", "the b."], "numops": 2}
    f = tmp_path / "regular.jsonl"
    f.write_text(json.dumps(good) + "\n")
    items = read_entity_tracking(f)
    assert items[0].paradigm == "regular_2_ops" and items[0].sentences[1] == "Box 0 contains the b."
    f.write_text(json.dumps({**good, "numops": "2"}) + "\n")
    with pytest.raises(UserError, match=r"regular.jsonl:1: not an entity-tracking item"):
        read_entity_tracking(f)
    f.write_text("{not json\n")
    with pytest.raises(UserError, match="not JSON"):
        read_entity_tracking(f)
    with pytest.raises(UserError, match="not found"):
        read_entity_tracking(tmp_path / "missing")
    w = tmp_path / "wug.jsonl"
    w.write_text("\n".join(json.dumps({"sentences": "a\tb", "ratio": r}) for r in (0.1, 0.5, 0.9)) + "\n")
    assert [it.ratio for it in read_wug(w)] == [0.1, 0.5, 0.9]
    w.write_text(json.dumps({"sentences": "a b", "ratio": 0.5}) + "\n")
    with pytest.raises(UserError, match="not a wug item"):
        read_wug(w)
