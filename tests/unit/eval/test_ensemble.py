"""The teacher ensemble as one model: its log-probabilities are the distillation's rule at T = 1, every scorer layout
takes it, and one bad member is one line."""

import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.errors import UserError
from babyllama.eval.ensemble import EnsembleLM, EnsembleSpec, load_ensemble
from babyllama.eval.scoring import Scorer, encode
from babyllama.models import build_model

SENTENCES = ["The cat sat on the mat.", "A dog.", "Who did you say that the girl saw yesterday at the park?",
             "The cats sat on the mat."]


@pytest.fixture
def members(tiny_tokenizer):
    return [build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval(),
            build_model(ModelConfig(preset="gpt2-tiny"), tiny_tokenizer, seed=1).eval()]


def by_hand(members, rule, ids, cont):
    """Sum of the ensemble's log-probabilities of ``cont`` after the prefix, computed without the ensemble."""
    with torch.no_grad():
        logits = [m(torch.tensor([ids])).logits.float()[0, :-1] for m in members]
    if rule == "logits_mean":
        logp = torch.log_softmax(sum(logits) / len(logits), -1)
    else:
        logp = torch.log(sum(torch.softmax(x, -1) for x in logits) / len(logits))
    pos = torch.arange(len(ids) - len(cont), len(ids)) - 1  # logits at i predict token i + 1
    return float(logp[pos, torch.tensor(cont)].sum())


@pytest.mark.parametrize("rule", ["logits_mean", "probs_mean"])
def test_ensemble_scores_are_the_combination_rule_at_t1(members, tiny_tokenizer, rule):
    ens = EnsembleLM(members, rule)
    reqs = [encode(tiny_tokenizer, "", " " + s) for s in SENTENCES]
    tree = Scorer(ens, tiny_tokenizer)
    assert tree.tree_ok()  # both members take the prefix tree's mask, so the ensemble does
    got = tree.logprobs(reqs)
    padded = Scorer(ens, tiny_tokenizer, tree=False).logprobs(reqs)
    assert got == pytest.approx(padded, abs=1e-4)
    for (ctx, cont), lp in zip(reqs, got):
        assert lp == pytest.approx(by_hand(members, rule, list(ctx) + list(cont), list(cont)), abs=1e-4)
    # the ensemble is neither member
    single = Scorer(members[0], tiny_tokenizer).logprobs(reqs)
    assert max(abs(a - b) for a, b in zip(got, single)) > 1e-3


def test_an_ensemble_of_one_model_twice_is_that_model(members, tiny_tokenizer):
    reqs = [encode(tiny_tokenizer, "", " " + s) for s in SENTENCES]
    twice = Scorer(EnsembleLM([members[0], members[0]]), tiny_tokenizer).logprobs(reqs)
    assert twice == pytest.approx(Scorer(members[0], tiny_tokenizer).logprobs(reqs), abs=1e-4)


def test_members_must_agree(members, tiny_tokenizer):
    with pytest.raises(UserError, match="at least two"):
        EnsembleLM(members[:1])
    other = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0)
    other.resize_token_embeddings(len(tiny_tokenizer) + 8)
    with pytest.raises(UserError, match="different vocabulary sizes"):
        EnsembleLM([members[0], other])


def test_load_ensemble_refuses_members_with_another_tokenizer(members, tiny_tokenizer, tiny_prepared, tmp_path):
    from babyllama.data.bpe import train_tokenizer
    from babyllama.tokenizer import load_tokenizer

    train_tokenizer(tiny_prepared, tmp_path / "other-tok", vocab_size=len(tiny_tokenizer) - 20)
    other = load_tokenizer(tmp_path / "other-tok")
    for i, (m, tok) in enumerate([(members[0], tiny_tokenizer), (members[1], other)]):
        m.save_pretrained(tmp_path / f"m{i}")
        tok.save_pretrained(tmp_path / f"m{i}")
    with pytest.raises(UserError, match="uses another tokenizer"):
        load_ensemble(EnsembleSpec((str(tmp_path / "m0"), str(tmp_path / "m1"))), "cpu")
    assert EnsembleSpec(("a/t1", "b/t2")).label == "ensemble(t1+t2)"
