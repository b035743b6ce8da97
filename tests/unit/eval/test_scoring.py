"""The scorer's split output-layer path gives the same log-probabilities as lm-eval's full log_softmax path."""

import numpy as np
import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.eval import scoring
from babyllama.eval.scoring import Scorer, encode, split_head
from babyllama.models import build_model


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "gptj-tiny"])
@pytest.mark.parametrize("bf16", [False, True])
def test_split_head_equals_full_log_softmax(preset, bf16, tiny_tokenizer, monkeypatch):
    tokenizer = tiny_tokenizer
    model = build_model(ModelConfig(preset=preset), tokenizer, seed=0).eval()
    assert split_head(model) is not None
    texts = ["The cat sat on the mat.", "A dog.", "Who did you say that the girl saw yesterday at the park?"]
    reqs = [encode(tokenizer, "", " " + t) for t in texts]
    reqs += [encode(tokenizer, "The cat sat on", " the mat."), encode(tokenizer, "Context here. ", "Target")]
    monkeypatch.setattr(scoring, "HEAD_BLOCK", 7)  # several row blocks, a ragged last one
    monkeypatch.setattr(scoring, "SOFTMAX_BLOCK", 3)  # and slices within them
    fast_scorer = Scorer(model, tokenizer, batch_size=2, bf16=bf16, split=True)
    assert fast_scorer.split is not None
    fast = fast_scorer.logprobs(reqs)
    full_scorer = Scorer(model, tokenizer, batch_size=2, bf16=bf16, split=False)  # lm-eval's arithmetic
    assert full_scorer.split is None
    full = full_scorer.logprobs(reqs)
    assert fast == pytest.approx(full, abs=1e-4)
    # and by hand for one sentence: sum of log_softmax at the continuation positions
    ctx, cont = reqs[0]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.float(), -1)[0, :-1]
    by_hand = float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum())
    assert full[0] == pytest.approx(by_hand, abs=1e-4 if not bf16 else 0.5)


def test_split_by_default_only_in_bf16_and_never_for_unknown_architectures(tiny_tokenizer):
    tokenizer = tiny_tokenizer
    model = build_model(ModelConfig(preset="llama-tiny"), tokenizer, seed=0)
    assert Scorer(model, tokenizer, bf16=True).split is not None
    assert Scorer(model, tokenizer).split is None  # fp32: lm-eval's own arithmetic
    model.config.model_type = "somebody_elses_lm"  # could scale or soft-cap its logits
    assert split_head(model) is None
    assert Scorer(model, tokenizer, bf16=True).split is None


def test_encode_many_equals_encode(tiny_tokenizer):
    tokenizer = tiny_tokenizer
    pairs = [("", " The cat sat."), ("", " A dog."), ("", " The cat sat."), ("Context here. ", "Target"),
             ("The cat sat on", " the mat.")]
    assert scoring.encode_many(tokenizer, pairs) == [encode(tokenizer, c, k) for c, k in pairs]


def test_pack_tree_merges_shared_prefixes_within_the_row_limit():
    inputs = [(1, 2, 3), (1, 2, 4), (1, 5), (1, 2, 3, 6), (7,), (1, 2)]
    rows, where = scoring.pack_tree(inputs, row_tokens=5)
    # sorted: (1,2), (1,2,3), (1,2,3,6), (1,2,4) share one trie of 5 nodes; (1,5) would make 6, so a new row
    assert [r[0] for r in rows] == [[1, 2, 3, 6, 4], [1, 5, 7]]
    assert [r[1] for r in rows] == [[0, 1, 2, 3, 2], [0, 1, 0]]  # position id = depth
    anc = rows[0][2].astype(int).tolist()
    assert anc[4] == [1, 1, 0, 0, 1]  # the 4 after (1, 2) sees 1, 2 and itself, not the 3 and 6 of its sibling
    assert anc[3] == [1, 1, 1, 1, 0]
    assert rows[1][2].astype(int).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]  # two tries in one row
    assert where == [(0, [0, 1, 2]), (0, [0, 1, 4]), (1, [0, 1]), (0, [0, 1, 2, 3]), (1, [2]), (0, [0, 1])]
    for i, (r, path) in enumerate(where):  # every input reads back from its nodes
        assert [rows[r][0][j] for j in path] == list(inputs[i])
    long_rows, _ = scoring.pack_tree([(1,) * 9, (2, 3)], row_tokens=4)  # longer than a row: a row of its own
    assert [len(r[0]) for r in long_rows] == [9, 2]


PAIRS = ["The cat sat on the mat.", "The cat sat on the mats.", "The cats sat on the mat.", "A dog.", "A dog barks.",
         "Who did you say that the girl saw yesterday at the park?", "Who did you say the girl saw?"]


def _count_positions(module):
    """A forward hook counting the non-padding input positions a model body runs (padding is id 0 here)."""
    seen = [0]

    def hook(mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen[0] += int((ids != 0).sum())
    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "gptj-tiny"])
@pytest.mark.parametrize("bf16", [False, True])
def test_prefix_tree_equals_padded_layout(preset, bf16, tiny_tokenizer):
    tokenizer = tiny_tokenizer
    model = build_model(ModelConfig(preset=preset), tokenizer, seed=0).eval()
    reqs = [encode(tokenizer, "", " " + t) for t in PAIRS]
    reqs += [encode(tokenizer, "The cat sat on", " the mat."), encode(tokenizer, "Context here. ", "Target")]
    tree = Scorer(model, tokenizer, bf16=bf16, row_tokens=12)  # several rows
    assert tree.tree_ok()
    assert len(scoring.pack_tree([tree._inputs(tuple(c), tuple(k)) for c, k in reqs], 12)[0]) > 2
    seen, handle = _count_positions(model.base_model)
    got = tree.logprobs(reqs)
    handle.remove()
    assert 0 < seen[0] < sum(len(c) + len(k) - 1 for c, k in reqs)  # shared prefixes ran once
    want = Scorer(model, tokenizer, bf16=bf16, tree=False).logprobs(reqs)
    assert got == pytest.approx(want, abs=1e-4 if not bf16 else 0.1)


def test_models_that_ignore_the_tree_mask_are_scored_padded(tiny_tokenizer):
    tokenizer = tiny_tokenizer
    model = build_model(ModelConfig(preset="llama-tiny"), tokenizer, seed=0).eval()
    model.config.model_type = "somebody_elses_lm"  # no split head: the tree runs model(...) itself
    forward = model.forward
    model.forward = lambda input_ids, **kw: forward(input_ids=input_ids)  # drops the mask and position ids
    reqs = [encode(tokenizer, "", " " + t) for t in PAIRS]
    scorer = Scorer(model, tokenizer)
    assert not scorer.tree_ok()
    assert scorer.logprobs(reqs) == Scorer(model, tokenizer, tree=False).logprobs(reqs)

    def no_position_ids(input_ids, attention_mask=None, position_ids=None):
        if position_ids is not None:
            raise TypeError("unexpected keyword argument 'position_ids'")
        return forward(input_ids=input_ids)

    model.forward = no_position_ids
    assert not Scorer(model, tokenizer).tree_ok()


def test_near_ties_are_rescored_in_the_padded_layout(tiny_tokenizer):
    tokenizer = tiny_tokenizer
    from babyllama.eval.tasks import Item

    model = build_model(ModelConfig(preset="llama-tiny"), tokenizer, seed=0).eval()
    items = [Item("p", 0, "", (" The cat sat.", " The cat sat.")),  # a tie: right, and re-scored
             Item("p", 1, "", (" The cat sat on the mat.", " The cats sat on the mat.")),
             Item("p", 2, "", (" A dog.", " A dog barks."))]
    scorer = Scorer(model, tokenizer)
    correct, lps = scorer.score_items(items)
    assert correct[0] and lps[0][0] == lps[0][1]
    tree = scorer.logprobs(scoring.encode_many(tokenizer, [("", c) for it in items for c in it.choices]))
    close = [i for i in range(3) if abs(tree[2 * i] - tree[2 * i + 1]) <= scoring.TIE_MARGIN]
    assert scorer.rescored == len(close) >= 1
    padded = Scorer(model, tokenizer, tree=False)
    for i in close:
        assert list(lps[i]) == padded.logprobs([encode(tokenizer, "", c) for c in items[i].choices])
    _, lps_padded = padded.score_items(items)
    assert [x for p in lps for x in p] == pytest.approx([x for p in lps_padded for x in p], abs=1e-4)


def _pair_items():
    from babyllama.eval.tasks import Item

    return [Item("p", i, "", (" " + a, " " + b)) for i, (a, b) in enumerate([
        ("The cat sat on the mat.", "The cats sat on the mat."), ("A dog barks.", "A dog bark."),
        ("She reads books.", "She read books."), ("The cat sat.", "The cat sat."),
        ("Birds fly south.", "Bird fly south."), ("He was here.", "He were here.")])]


def test_the_bf16_bound_grows_with_the_two_best_scores():
    u = scoring.BF16_UNIT_ROUNDOFF
    assert u == 2.0**-8
    want = scoring.TIE_MARGIN + scoring.BF16_ERROR_FACTOR * u * (12.0 + 10.0)
    assert scoring.bf16_bound([-12.0, -50.0, -10.0]) == pytest.approx(want)  # the best two: -10 and -12


def test_exact_bf16_ranks_as_fp32_and_ranks_again_only_what_bf16_leaves_in_doubt(tiny_tokenizer, monkeypatch):
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    items = _pair_items()
    want, fp32 = Scorer(model, tiny_tokenizer).score_items(items)
    _, bf16 = Scorer(model, tiny_tokenizer, bf16=True).score_items(items)
    exact = Scorer(model, tiny_tokenizer, exact_bf16=True)
    got, lps = exact.score_items(items)
    assert got == want
    assert exact.bf16_scores == pytest.approx([x for p in bf16 for x in p], abs=1e-6)  # plain bf16's scores
    doubt = [i for i, (a, b) in enumerate(bf16) if abs(a - b) <= scoring.bf16_bound([a, b])]
    assert exact.rescored_bf16 == len(doubt) >= 1  # the tie at least
    for i in range(len(items)):  # the pairs ranked again carry fp32's scores, the others bf16's
        assert lps[i] == pytest.approx(fp32[i] if i in doubt else bf16[i], abs=1e-4)
    # a factor far too small would leave bf16 to decide: the bound is what keeps the decisions fp32's
    monkeypatch.setattr(scoring, "BF16_ERROR_FACTOR", 1e6)
    everything = Scorer(model, tiny_tokenizer, exact_bf16=True)
    assert np.array(everything.score_items(items)[1]) == pytest.approx(np.array(fp32), abs=1e-4)
    assert everything.rescored_bf16 == len(items)
    monkeypatch.setattr(scoring, "BF16_ERROR_FACTOR", 0.0)
    monkeypatch.setattr(scoring, "TIE_MARGIN", -1.0)
    nothing = Scorer(model, tiny_tokenizer, exact_bf16=True)
    assert np.array(nothing.score_items(items)[1]) == pytest.approx(np.array(bf16), abs=1e-6)
    assert nothing.rescored_bf16 == 0


def test_values_stay_fp32_in_exact_bf16(tiny_tokenizer):
    from babyllama.eval.completion import choice_logprobs, choice_requests
    from babyllama.eval.tasks2025 import ChoiceItem

    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    items = [ChoiceItem("u", 0, ("The box holds a cat.", "The box holds a dog."), (" a cat.", " a dog.")),
             ChoiceItem("u", 1, ("He is very happy.", "He is very sad."), (" happy.", " sad."))]
    fp32 = Scorer(model, tiny_tokenizer)
    exact = Scorer(model, tiny_tokenizer, exact_bf16=True)
    want = choice_logprobs(fp32, choice_requests(fp32, items))
    values = choice_logprobs(exact, choice_requests(exact, items), ranking=False)  # wug's probabilities
    assert values == pytest.approx(want, abs=1e-4) and exact.rescored_bf16 == 0
    ranked = choice_logprobs(exact, choice_requests(exact, items), ranking=True)  # entity tracking: only the ranking counts
    assert (ranked.argmax(axis=1) == want.argmax(axis=1)).all()


@pytest.mark.parametrize("tree", [True, False])
def test_scoring_builds_no_kv_cache_whatever_the_config_says(tiny_tokenizer, tree):
    """A model whose config has use_cache: true (a hub model's default) is scored without a KV cache: the scorer
    never reads one, and compiled layers cannot trace through one."""
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    model.config.use_cache = True
    calls = []
    model.base_model.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(kwargs.get("use_cache")),
                                               with_kwargs=True)
    Scorer(model, tiny_tokenizer, tree=tree).logprobs([encode(tiny_tokenizer, "", " " + t) for t in PAIRS])
    assert calls and set(calls) == {False}
