"""Completion ranking as the BabyLM 2025 pipeline scores it (``sentence_zero_shot``, causal backend), faster.

Encoding (``CompletionRankingDataset.process_causal_sentences``): each candidate sentence is tokenized whole by the
model's own tokenizer *with* its special tokens (the pipeline calls ``processor(text=sentence)``; our tokenizers
add none), and a token is scored when its character span ends after the completion's first character
(``offset end > len(sentence) - len(completion) + first offset``). The first token is never scored: the pipeline
feeds ``tokens[:-1]`` and scores ``tokens[1:]``, so without a BOS a sentence scored whole loses its first token.
The sentence is not truncated to the model's context (lm-eval's rule, :mod:`.scoring`, truncates): a rotary model
(LLaMA) runs past the context it was trained on, as in the pipeline. A model with learned absolute positions
(GPT-2) cannot, and the pipeline stops there with an index error; here its longer inputs are truncated from the
left as lm-eval does, and counted (``truncated``).

Scoring (``compute_causal_results``): ``log_softmax(logits / T)`` of every scored token, summed per candidate;
the chosen candidate is ``torch.max``'s, the *first* maximal one. The right candidate is always first, so the
pipeline counts an exact tie as right (``tie_rule="first"``, its rule; BabyLM 2025 pipeline issue 34);
``tie_rule="strict"`` counts a tie for the maximum as wrong.

Here the candidates' shared prefix runs once (the prefix-tree layout of :class:`.scoring.Scorer`), and every item
whose best two candidates are within ``TIE_MARGIN`` nats is scored again in the padded layout, the pipeline's
arithmetic (:meth:`.scoring.Scorer.rescore_near_ties`), so float rounding cannot move a decision. The temperature
scan (``temperatures``) is the pipeline's ``--min_temperature/--max_temperature/--temperature_interval``: the same
float32 grid, the best temperature the first one with the highest score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .scoring import Scorer, config_context
from .tasks2025 import ChoiceItem

# model types whose position embeddings are a learned table (no input beyond its length)
LEARNED_POSITIONS = {"gpt2", "gpt_neo", "opt", "bloom_", "gpt_bigcode"}


def position_limit(model) -> int | None:
    """The longest input a model can take at all: its context for learned absolute positions, else None (an
    ensemble: its most limited member)."""
    members = getattr(model, "members", None)
    if members is not None:
        limits = [x for m in members if (x := position_limit(m))]
        return min(limits) if limits else None
    cfg = model.config
    if getattr(cfg, "model_type", None) in LEARNED_POSITIONS:
        return config_context(cfg)
    return None


TIE_RULES = ("first", "strict")


def temperatures(t_min: float = 1.0, t_max: float | None = None, interval: float = 0.05) -> list[float]:
    """The pipeline's grid (``get_temperatures``): ``torch.arange(min, max + interval, interval)`` in float32,
    clamped at 1e-6, or ``[min]`` alone."""
    if t_max is None:
        return (torch.ones(1) * t_min).tolist()
    return torch.arange(t_min, t_max + interval, interval).clamp(min=1e-6).tolist()


def encode_completion(tokenizer, sentence: str, completion: str) -> tuple[list[int], list[int]]:
    """(context ids, scored ids) of one candidate: the scored tokens are a contiguous run (the model's special
    tokens carry empty spans and are never scored)."""
    try:
        enc = tokenizer(sentence, return_offsets_mapping=True)
    except NotImplementedError:
        raise UserError(f"the tokenizer {type(tokenizer).__name__} gives no character offsets, which the BabyLM "
                        "2025 tasks need to align completions to tokens; save the model with a fast "
                        "(tokenizers) tokenizer") from None
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if not ids:
        return [], []
    start_char = len(sentence) - len(completion) + offsets[0][0]
    scored = [i for i in range(1, len(ids)) if offsets[i][1] > start_char]
    if not scored:
        return list(ids), []
    a, b = scored[0], scored[-1] + 1
    if b - a != len(scored):
        raise UserError(f"the tokenizer's offsets do not align the completion {completion!r} to a run of tokens "
                        f"in {sentence!r}; use a tokenizer whose character offsets increase along the text")
    return list(ids[:a]), list(ids[a:b])


@dataclass(frozen=True)
class ChoiceRequests:
    """Every candidate of a list of items encoded once (a temperature scan scores them again at each temperature):
    the (context, scored) ids, the (item, option) of each, and how many the model's context cuts."""

    reqs: list[tuple[list[int], list[int]]]
    where: list[tuple[int, int]]
    shape: tuple[int, int]
    max_len: int
    truncated: int


def choice_requests(scorer: Scorer, items: Sequence[ChoiceItem]) -> ChoiceRequests:
    reqs, where = [], []
    for i, it in enumerate(items):
        for j, (s, c) in enumerate(zip(it.sentences, it.completions)):
            reqs.append(encode_completion(scorer.tokenizer, s, c))
            where.append((i, j))
    limit = position_limit(scorer.model)
    max_len = limit if limit else 10**9  # the pipeline truncates nothing
    return ChoiceRequests(reqs, where, (len(items), max(len(it.sentences) for it in items)), max_len,
                          sum(len(c) + len(k) - 1 > max_len for c, k in reqs))


def choice_logprobs(scorer: Scorer, requests: ChoiceRequests, temperature: float = 1.0,
                    ranking: bool = False) -> np.ndarray:
    """``(items, options)`` summed log-probabilities of each candidate's scored tokens at ``temperature``.
    ``ranking``: only each item's ranking is used (entity tracking), so exact bf16 may decide it
    (:meth:`.scoring.Scorer.ranked_logprobs`); otherwise (wug's probabilities) every value is fp32's."""
    lp = np.full(requests.shape, -np.inf)
    saved_len, saved_t, saved_exact = scorer.max_len, scorer.temperature, scorer.exact_bf16
    scorer.max_len, scorer.temperature = requests.max_len, temperature
    scorer.exact_bf16 = saved_exact and ranking
    try:
        sums = scorer.ranked_logprobs(requests.reqs, [i for i, _ in requests.where])
    finally:
        scorer.max_len, scorer.temperature, scorer.exact_bf16 = saved_len, saved_t, saved_exact
    for (i, j), v in zip(requests.where, sums):
        lp[i, j] = v
    return lp


def decisions(lp: np.ndarray, tie_rule: str = "first") -> np.ndarray:
    """Right (option 0 chosen) per item: ``first``: option 0 is a maximum (``torch.max`` picks the first);
    ``strict``: option 0 beats every other option."""
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}")
    best_other = lp[:, 1:].max(axis=1)
    return lp[:, 0] >= best_other if tie_rule == "first" else lp[:, 0] > best_other


def chosen(lp: np.ndarray) -> np.ndarray:
    """The pipeline's prediction per item: the first maximal option."""
    return lp.argmax(axis=1)
