"""Completion ranking equals the BabyLM 2025 pipeline's causal scoring, written out here as its code does it (one
padded batch, the offset rule, ``tokens[:-1]`` in, ``tokens[1:]`` scored), at T = 1 and another temperature."""

import numpy as np
import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.errors import UserError
from babyllama.eval.completion import choice_logprobs, choice_requests, decisions, encode_completion, temperatures
from babyllama.eval.scoring import Scorer
from babyllama.eval.tasks2025 import ChoiceItem
from babyllama.models import build_model


def pipeline_scores(model, tokenizer, sentences, completions, temperature=1.0):
    """``process_causal_sentences`` + ``get_causal_collate_fn`` + ``compute_causal_results`` for one candidate
    index across items, as the pipeline's code reads (right-padded with the pad id)."""
    toks, masks = [], []
    for s, c in zip(sentences, completions):
        out = tokenizer(s, return_offsets_mapping=True)
        ids, offs = out["input_ids"], out["offset_mapping"]
        start_char = len(s) - len(c) + offs[0][0]
        phrase = [1 if end > start_char else 0 for _, end in offs]
        toks.append(torch.tensor(ids))
        masks.append(torch.tensor(phrase))
    pad = tokenizer.pad_token_id
    padded = torch.nn.utils.rnn.pad_sequence(toks, batch_first=True, padding_value=pad)
    attn = torch.nn.utils.rnn.pad_sequence([torch.ones_like(t) for t in toks], batch_first=True)[:, :-1]
    phrase = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True)[:, 1:]
    with torch.no_grad():
        logits = model(input_ids=padded[:, :-1], attention_mask=attn).logits
    lp = torch.log_softmax(logits / temperature, -1).gather(-1, padded[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (lp * phrase).sum(1).double().numpy()


ITEMS = [
    ChoiceItem("regular_0_ops", 0, ("Box 1 contains the cat.", "Box 1 contains the dog and the mat.",
                                    "Box 1 contains nothing."),
               ("the cat.", "the dog and the mat.", "nothing."), "regular"),
    ChoiceItem("regular_1_ops", 1, ("The cat sat on the mat", "The cat sat on the dog", "The cat sat on a hat"),
               (" the mat", " the dog", " a hat"), "regular"),
    ChoiceItem("wug", 2, ("Create a noun: blickable. blickability", "Create a noun: blickable. blickableness",
                          "Who saw the cat?"),
               ("Create a noun: blickable. blickability", "Create a noun: blickable. blickableness",
                "Who saw the cat?"), ""),
]


@pytest.mark.parametrize("tree", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_choice_logprobs_equal_the_pipeline(tiny_tokenizer, tree, temperature):
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    scorer = Scorer(model, tiny_tokenizer, tree=tree)
    ours = choice_logprobs(scorer, choice_requests(scorer, ITEMS), temperature)
    for j in range(3):
        ref = pipeline_scores(model, tiny_tokenizer, [it.sentences[j] for it in ITEMS],
                              [it.completions[j] for it in ITEMS], temperature)
        assert ours[:, j] == pytest.approx(ref, abs=2e-4)
    assert scorer.temperature == 1.0 and scorer.max_len < 10**9  # restored


def test_encoding_scores_the_completion_and_never_the_first_token(tiny_tokenizer):
    ctx, cont = encode_completion(tiny_tokenizer, "The cat sat on the mat", " the mat")
    assert tiny_tokenizer.decode(cont) == " the mat" and tiny_tokenizer.decode(ctx) == "The cat sat on"
    # a sentence scored whole, no BOS (our tokenizers add none): its first token is context only
    ctx, cont = encode_completion(tiny_tokenizer, "The cat sat.", "The cat sat.")
    assert len(ctx) == 1 and tiny_tokenizer.decode(ctx + cont) == "The cat sat."


def test_a_tokenizer_without_offsets_is_one_line(tiny_tokenizer):
    class Slow:
        def __call__(self, text, return_offsets_mapping=False):
            raise NotImplementedError

    with pytest.raises(UserError, match="offsets"):
        encode_completion(Slow(), "a b", "b")


def test_tie_rules():
    lp = np.array([[-1.0, -1.0, -3.0], [-2.0, -1.0, -5.0], [-0.5, -1.0, -0.7]])
    assert decisions(lp, "first").tolist() == [True, False, True]  # torch.max takes the first of a tie
    assert decisions(lp, "strict").tolist() == [False, False, True]
    assert torch.max(torch.tensor(lp), dim=1)[1].tolist()[0] == 0  # what "first" reproduces


def test_temperature_grid_is_the_pipelines():
    assert temperatures() == [1.0]
    grid = temperatures(0.5, 1.0, 0.1)
    assert grid == torch.arange(0.5, 1.0 + 0.1, 0.1).clamp(min=1e-6).tolist()
    # float32 steps: the pipeline's grid can reach one step past the maximum (here 1.1); reproduced, not fixed
    assert grid[:6] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], abs=1e-6) and len(grid) == 7
