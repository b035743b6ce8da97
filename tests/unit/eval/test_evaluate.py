import pytest

from babyllama.eval.evaluate import subsample, summarize
from babyllama.eval.tasks import Item


def test_subsample_is_seeded_and_per_paradigm():
    items = [Item(p, i, "", (" a", " b")) for p in ("x", "y") for i in range(50)]
    a, b = subsample(items, 10), subsample(items, 10)
    assert a == b and len(a) == 20


def test_subsample_draws_differ_between_paradigms_of_equal_name_length():
    """Each paradigm has its own seeded stream: two names of the same length must not get the same indices."""
    items = [Item(p, i, "", (" a", " b")) for p in ("abc", "xyz") for i in range(100)]
    picked = {}
    for it in subsample(items, 10):
        picked.setdefault(it.paradigm, []).append(it.index)
    assert picked["abc"] != picked["xyz"]
    assert subsample(items, 10) == subsample(items, 10)


def test_summarize_groups_and_macro():
    items = [Item("p1", i, "", ("a", "b"), "g1") for i in range(4)] + [Item("p2", i, "", ("a", "b"), "g1")
                                                                        for i in range(2)]
    s = summarize(items, [True, True, True, False, True, False])
    assert s["paradigms"]["p1"]["acc"] == 0.75 and s["paradigms"]["p2"]["acc"] == 0.5
    assert s["macro"]["acc"] == pytest.approx(0.625) and s["groups"]["g1"]["acc"] == pytest.approx(0.625)
    assert s["decisions"]["p1"] == "1110"
    lo, hi = s["macro"]["ci"]
    assert lo < s["macro"]["acc"] < hi  # a 95% CI around the macro mean, not a point


def test_evaluate_in_memory_model_on_a_jsonl_suite_and_perplexity(tiny_tokenizer, tiny_prepared, tmp_path):
    """The one entry point: decisions equal the scorer's, perplexity per domain, paired comparison of two models."""
    import json

    from babyllama.config import EvalConfig, ModelConfig
    from babyllama.eval.evaluate import evaluate, evaluate_models
    from babyllama.eval.scoring import Scorer
    from babyllama.eval.suites import load_items
    from babyllama.models import build_model

    f = tmp_path / "agr.jsonl"
    f.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b, "linguistics_term": "agreement"}) + "\n"
                         for g, b in [("The cat sees the ball.", "The cat see the ball."),
                                      ("She likes a dog.", "She like a dog."),
                                      ("The children wait.", "The children waits.")]))
    cfg = EvalConfig(suites=[str(f), "perplexity"], ppl_max_tokens=512)
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    res = evaluate(model, tiny_tokenizer, cfg, tiny_prepared, keep_chunks=True)
    want, _ = Scorer(model, tiny_tokenizer).score_items(load_items(str(f)))
    assert res["suites"][str(f)]["decisions"]["agr"] == "".join("1" if c else "0" for c in want)
    assert res["suites"][str(f)]["macro"]["items"] == 3 and res["layout"] == "prefix_tree"
    assert set(res["perplexity"]) == {"dev", "test"}
    assert set(res["perplexity"]["dev"]["domains"]) == {"stories", "chat", "wiki"}
    assert all(d["chunk_ce"] for d in res["perplexity"]["dev"]["domains"].values())
    with pytest.raises(Exception, match="needs --corpus"):
        evaluate(model, tiny_tokenizer, cfg)
    # exact bf16: the same decisions, perplexity still fp32's, the items ranked again counted per suite
    fp32 = evaluate(model, tiny_tokenizer, cfg.model_copy(update={"precision": "fp32"}), tiny_prepared)
    exact = evaluate(model, tiny_tokenizer, cfg.model_copy(update={"precision": "exact_bf16"}), tiny_prepared)
    assert fp32["precision"] == "fp32" and exact["precision"] == "exact_bf16"
    assert exact["suites"][str(f)]["decisions"] == fp32["suites"][str(f)]["decisions"]
    assert exact["perplexity"]["dev"]["ce"] == fp32["perplexity"]["dev"]["ce"]
    assert 0 <= exact["ranked_again_in_fp32"][str(f)] <= 3 and "ranked_again_in_fp32" not in fp32

    for i in (0, 1):
        m = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=i)
        m.save_pretrained(tmp_path / f"m{i}")
        tiny_tokenizer.save_pretrained(tmp_path / f"m{i}")
    both = evaluate_models([tmp_path / "m0", tmp_path / "m1"], EvalConfig(suites=[str(f)]))
    paired = both["suites"][str(f)]["paired"][str(tmp_path / "m1")]
    assert paired["items"] == 3 and -1 <= paired["diff"] <= 1


def test_evaluate_compiles_the_layers_when_its_rule_says_so(tiny_tokenizer, tmp_path, monkeypatch):
    import json

    from babyllama import regional
    from babyllama.config import EvalConfig, ModelConfig
    from babyllama.eval import compiled
    from babyllama.eval.evaluate import evaluate, options_of
    from babyllama.eval.suites import load_items
    from babyllama.models import build_model, count_params

    f = tmp_path / "agr.jsonl"
    f.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b}) + "\n"
                         for g, b in [("The cat sees the ball.", "The cat see the ball."),
                                      ("She likes a dog.", "She like a dog.")]))
    assert options_of(load_items(str(f))) == 4  # two sentences a pair
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    seen = []
    monkeypatch.setattr(regional, "has_compiler", lambda: True)
    monkeypatch.setattr("babyllama.eval.evaluate.compiled_layers",
                        lambda m, enabled: seen.append(enabled) or compiled.compiled_layers(m, False))
    monkeypatch.setattr(compiled, "AUTO_MIN_WORK", 4 * count_params(model))
    evaluate(model, tiny_tokenizer, EvalConfig(suites=[str(f)]))
    evaluate(model, tiny_tokenizer, EvalConfig(suites=[str(f)], compile=False))
    monkeypatch.setattr(compiled, "AUTO_MIN_WORK", 5 * count_params(model))  # one sentence too few
    res = evaluate(model, tiny_tokenizer, EvalConfig(suites=[str(f)]))
    assert seen == [True, False, False] and res["compiled"] is False
