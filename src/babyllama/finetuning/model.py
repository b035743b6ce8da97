"""Classifiers on a pretrained decoder: loaded once, rebuilt for every (task, seed) from the weights in memory.

Two heads, one per protocol family:

* ``sequence_classification`` (BabyLM 2023/2024): transformers' ``AutoModelForSequenceClassification``. For LLaMA
  and GPT-2 it is a linear ``score`` layer on the last token that is not the pad token, so it needs
  ``config.pad_token_id``; a checkpoint whose tokenizer has no pad token would fail on any batch of two or more
  ("Cannot handle batch sizes > 1 if no padding token is defined", evaluation-pipeline-2023 issue 5). We then pad
  with the EOS token, as the usual fix does, and say so. The pooling reads ``input_ids != pad_token_id``, so it is
  right for either padding side.
* ``babylm2025``: the 2025 pipeline's head on ``AutoModel`` (LayerNorm, Linear, GELU, LayerNorm, Dropout, Linear)
  on the first token, or with ``pooling: last`` on the last real token (found from the attention mask, so again
  either padding side is right). In a causal decoder the first token sees nothing after it, so first-token
  pooling classifies from the first word alone; we keep it as the pipeline's default and warn.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .pooled import pooled_hidden, supports


@dataclass
class BaseModel:
    """A pretrained model held in memory: its config, the weights of its transformer body, its tokenizer."""

    path: Path
    config: object
    body_state: dict[str, torch.Tensor]
    tokenizer: object
    tokenizer_id: str
    pad_id: int
    notes: list[str]

    @property
    def context(self) -> int | None:
        from ..tokenizer import model_context

        return model_context(self.config)

    @property
    def is_causal(self) -> bool:
        return not getattr(self.config, "is_encoder_decoder", False)


def load_base(path: str | Path) -> BaseModel:
    """Load a causal-LM checkpoint and its tokenizer once; a missing pad token falls back to EOS."""
    from ..models import load_model, resolve_model_path
    from ..tokenizer import load_tokenizer, tokenizer_hash

    from transformers.utils import logging as hf_logging

    path = resolve_model_path(path)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one model load is not long work: no bar in the log
    try:
        lm = load_model(path)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tok = load_tokenizer(path)
    notes = []
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise UserError(f"{path}: the tokenizer has neither a pad nor an EOS token; add a pad token "
                            "(tokenizer.add_special_tokens) and save it with the model")
        tok.pad_token = tok.eos_token
        notes.append(f"{path.name}: the tokenizer has no pad token; batches are padded with EOS "
                     f"({tok.eos_token!r}, id {tok.eos_token_id})")
    config = copy.deepcopy(lm.config)
    config.pad_token_id = tok.pad_token_id
    body = {k: v.detach().clone() for k, v in lm.base_model.state_dict().items()}
    return BaseModel(path, config, body, tok, tokenizer_hash(tok), int(tok.pad_token_id), notes)


class ClassifierHead(nn.Module):
    """The BabyLM 2025 pipeline's head (``classifier_model.py``)."""

    def __init__(self, hidden: int, num_labels: int, dropout: float, eps: float = 1e-5):
        super().__init__()
        self.nonlinearity = nn.Sequential(
            nn.LayerNorm(hidden, eps, elementwise_affine=False), nn.Linear(hidden, hidden), nn.GELU(),
            nn.LayerNorm(hidden, eps, elementwise_affine=False), nn.Dropout(dropout), nn.Linear(hidden, num_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinearity(x)


def last_real_token(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last attended position (right or left padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask).argmax(-1)


class Classifier(nn.Module):
    """``forward(input_ids, attention_mask) -> logits`` for either head."""

    def __init__(self, head: str, config, num_labels: int, pooling: str, dropout: float):
        super().__init__()
        from transformers import AutoModel, AutoModelForSequenceClassification

        self.head_kind, self.pooling = head, pooling
        cfg = copy.deepcopy(config)
        cfg.num_labels = num_labels
        if head == "sequence_classification":
            try:
                self.model = AutoModelForSequenceClassification.from_config(cfg)
            except ValueError as e:
                raise UserError(f"transformers has no sequence-classification head for model type "
                                f"{cfg.model_type} ({str(e).splitlines()[0][:120]}); use --protocol babylm2025") \
                    from None
        else:
            self.model = AutoModel.from_config(cfg)
            self.classifier = ClassifierHead(cfg.hidden_size, num_labels, dropout)
        # the last layer at the pooled positions only (exact; see .pooled); build_classifier turns it off for peft
        self.pooled_last_layer = supports(self.body) and (head != "sequence_classification"
                                                          or cfg.pad_token_id is not None)

    @property
    def body(self) -> nn.Module:
        return self.model.base_model

    def positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The position each row is classified from."""
        if self.head_kind == "sequence_classification":  # transformers' rule: the last token that is not the pad
            non_pad = (input_ids != self.model.config.pad_token_id).to(torch.int32)
            return (torch.arange(input_ids.shape[1], device=input_ids.device, dtype=torch.int32) * non_pad).argmax(-1)
        if self.pooling == "first":
            return torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        return last_real_token(attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooled_last_layer:
            pooled = pooled_hidden(self.body, input_ids, attention_mask, self.positions(input_ids, attention_mask))
            return self.model.score(pooled) if self.head_kind == "sequence_classification" else self.classifier(pooled)
        if self.head_kind == "sequence_classification":
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.classifier(hidden[rows, self.positions(input_ids, attention_mask)])


def add_lora(model: Classifier, r: int, alpha: int, dropout: float) -> Classifier:
    """Low-rank adapters through peft (``train_lora.py`` of the 2024 pipeline: r 8, alpha 16, dropout 0.1): the body
    is frozen but for the adapters; the classification head trains whole."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("LoRA fine-tuning needs peft: pip install 'babyllama[lora]' (or pip install peft)") from None
    if model.head_kind == "sequence_classification":  # peft keeps the score head trainable (modules_to_save)
        model.model = get_peft_model(model.model, LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=alpha,
                                                             lora_dropout=dropout))
    else:
        model.model = get_peft_model(model.model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout))
    return model


def build_classifier(base: BaseModel, head: str, num_labels: int, pooling: str, dropout: float, seed: int,
                     attention: str = "sdpa", lora: tuple[int, int, float] | None = None) -> Classifier:
    """A fresh classifier: the pretrained body's weights, a head initialised from ``seed``, the attention kernel
    ``attention`` (:func:`babyllama.hardware.set_attention`), and with ``lora`` = (r, alpha, dropout)
    adapters in place of full fine-tuning."""
    from transformers import set_seed

    from ..hardware import set_attention

    set_seed(seed)
    model = Classifier(head, base.config, num_labels, pooling, dropout)
    missing, unexpected = model.body.load_state_dict(base.body_state, strict=False)
    if missing or unexpected:
        raise UserError(f"{base.path}: the checkpoint's weights do not fit a {head} model of its config "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if getattr(model.body, "_supports_sdpa", False):  # on the body: the pooled path calls it, not the head model
        set_attention(model.body, attention)
    if lora is not None:
        add_lora(model, *lora)
        model.pooled_last_layer = False  # peft wraps the layers' projections
    return model
