"""The scorer's split output-layer path gives the same log-probabilities as lm-eval's full log_softmax path."""

import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.eval import scoring
from babyllama.eval.scoring import Scorer, encode, split_head
from babyllama.models import build_model


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "gptj-tiny"])
@pytest.mark.parametrize("bf16", [False, True])
def test_split_head_equals_full_log_softmax(preset, bf16, tokenizer, monkeypatch):
    model = build_model(ModelConfig(preset=preset), tokenizer, seed=0).eval()
    assert split_head(model) is not None
    texts = ["The cat sat on the mat.", "A dog.", "Who did you say that the girl saw yesterday at the park?"]
    reqs = [encode(tokenizer, "", " " + t) for t in texts]
    reqs += [encode(tokenizer, "The cat sat on", " the mat."), encode(tokenizer, "Context here. ", "Target")]
    monkeypatch.setattr(scoring, "HEAD_BLOCK", 7)  # several row blocks, a ragged last one
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


def test_split_by_default_only_in_bf16_and_never_for_unknown_architectures(tokenizer):
    model = build_model(ModelConfig(preset="llama-tiny"), tokenizer, seed=0)
    assert Scorer(model, tokenizer, bf16=True).split is not None
    assert Scorer(model, tokenizer).split is None  # fp32: lm-eval's own arithmetic
    model.config.model_type = "somebody_elses_lm"  # could scale or soft-cap its logits
    assert split_head(model) is None
    assert Scorer(model, tokenizer, bf16=True).split is None
