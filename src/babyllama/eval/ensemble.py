"""The teacher ensemble as one scorable language model, without writing a merged checkpoint.

:class:`EnsembleLM` runs its members on the same input and returns, as its logits, the log-probabilities of the
distillation's combination rule at T = 1 (:func:`babyllama.losses.ensemble_log_probs`): ``logits_mean`` is
softmax(mean of the members' logits), ``probs_mean`` the mean of their distributions. Log-probabilities are valid
logits (a log-softmax of them is themselves), so every scorer - the minimal-pair scorer with its prefix tree and the
perplexity suite - scores the ensemble as it scores one model. The members must share one tokenizer (checked by
hash), as the teachers of a distillation do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from ..errors import UserError
from ..losses import ensemble_log_probs
from .scoring import config_context


@dataclass(frozen=True)
class EnsembleSpec:
    """What `babyllama eval --ensemble A B ...` names: member model directories and the combination rule."""

    members: tuple[str, ...]
    rule: str = "logits_mean"
    weights: tuple[float, ...] | None = None
    name: str = field(default="")

    @property
    def label(self) -> str:
        return self.name or "ensemble(" + "+".join(Path(m).name for m in self.members) + ")"


@dataclass
class EnsembleConfig:
    """The attributes scorers read from a model's config, as the members agree on them."""

    vocab_size: int
    max_position_embeddings: int
    model_type: str = "ensemble"


class EnsembleLM(torch.nn.Module):
    def __init__(self, members: list[torch.nn.Module], rule: str = "logits_mean", weights=None):
        super().__init__()
        if len(members) < 2:
            raise UserError("an ensemble needs at least two models (--ensemble DIR DIR ...)")
        vocab = {int(m.config.vocab_size) for m in members}
        if len(vocab) != 1:
            raise UserError(f"the ensemble's models have different vocabulary sizes ({sorted(vocab)}); an ensemble "
                            "averages over one vocabulary: use models trained with one tokenizer")
        self.members = torch.nn.ModuleList(members)
        self.rule, self.weights = rule, None if weights is None else list(weights)
        self.config = EnsembleConfig(vocab.pop(), min(config_context(m.config) or 2048 for m in members))

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        logits = [m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=False).logits
                  for m in self.members]
        return SimpleNamespace(logits=ensemble_log_probs(logits, 1.0, self.rule, self.weights))


def load_ensemble(spec: EnsembleSpec, device: str):
    """(EnsembleLM on ``device``, the members' shared tokenizer); one line when the tokenizers differ."""
    from ..models import load_model, resolve_model_path
    from ..tokenizer import load_tokenizer, vocab_hash

    members, tok, first = [], None, None
    for m in spec.members:
        path = resolve_model_path(m)
        t = load_tokenizer(path)
        if tok is None:
            tok, first = t, path
        elif vocab_hash(t) != vocab_hash(tok):
            raise UserError(f"ensemble member {path} uses another tokenizer than {first} (vocabulary/merges "
                            "differ); an ensemble's models must share one tokenizer")
        members.append(load_model(path, "ensemble member").eval().requires_grad_(False))
    return EnsembleLM(members, spec.rule, spec.weights).to(device), tok
