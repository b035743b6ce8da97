"""The BabyLM fine-tuning protocols, as their own scripts run them, and per-task hyperparameter overrides.

``babylm2023`` and ``babylm2024`` (one script, ``finetune_classification.py``, run by ``finetune_model.sh``):
``AutoModelForSequenceClassification`` (for LLaMA and GPT-2 a linear ``score`` on the last non-padding token),
the Hugging Face Trainer's defaults (AdamW, betas 0.9/0.999, eps 1e-8, no weight decay, linear decay without
warm-up, gradient clipping at 1.0) with lr 5e-5, batch 64, at most 10 epochs, max length 128, seed 12; the model
is evaluated on the validation file (2023: every 200 steps; 2024: every epoch), the best by F1 (binary tasks) or
accuracy (MNLI) is kept, and training stops when ``patience`` evaluations (2023: 10; 2024: 3) bring no gain above
0.001 (``EarlyStoppingCallback``). The reported score is the best model's on that same validation file.
2023 fine-tunes MNLI-mm as its own run selected on the mismatched file; 2024 scores MNLI-mm with the MNLI model.

``babylm2025`` (``evaluation_pipeline/finetune``): its own head on ``AutoModel`` (LayerNorm, Linear, GELU,
LayerNorm, Dropout 0.1, Linear) on the first token, AdamW (weight decay 0.01 on every parameter), 6% warm-up then
cosine decay to 0.1x, no clipping, lr 3e-5, batch 32 (16 for BoolQ and MultiRC), 10 epochs (30 for WSC), the last
incomplete batch dropped, max length 512, seed 42; the best epoch by accuracy (F1 for MRPC and QQP), no early stop.

What we do differently, by design: training batches are the Trainer's ``group_by_length=True`` batches
(transformers' ``LengthGroupedSampler``) padded to their longest example, not random batches padded to
``max_length`` (the same examples each epoch, in another order, with far less arithmetic on padding), the last
decoder layer is computed at the pooled position only (the same logits and gradients, :mod:`.pooled`), and training
runs under bf16 autocast where the training precision rule says so. ``length_grouping: false`` restores random
batches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pydantic import Field

from ..config import Section
from ..errors import UserError

PROTOCOLS = ("babylm2023", "babylm2024", "babylm2025")


@dataclass(frozen=True)
class Hparams:
    """Everything that decides one fine-tuning run of one task (after protocol defaults and overrides)."""

    learning_rate: float
    batch_size: int
    max_epochs: int
    max_length: int
    patience: int | None  # evaluations without gain before stopping; None: never stop early
    threshold: float  # the gain that counts as one
    eval_every: int | None  # steps between evaluations; None: once per epoch
    weight_decay: float
    warmup_ratio: float
    scheduler: Literal["linear", "cosine_min"]  # cosine_min: cosine decay to min_lr_rate
    min_lr_rate: float
    max_grad_norm: float | None
    drop_last: bool
    head: Literal["sequence_classification", "babylm2025"]
    pooling: Literal["last", "first"]
    select_metric: str  # accuracy | f1 | mcc
    dropout: float = 0.1  # babylm2025 head only


class TaskOverrides(Section):
    """Keys a per-task hyperparameter table may set (everything else keeps the protocol's value)."""

    learning_rate: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    max_epochs: int | None = Field(None, gt=0)
    max_length: int | None = Field(None, gt=1)
    patience: int | None = Field(None, ge=1)
    weight_decay: float | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    eval_every: int | None = Field(None, gt=0)


def _binary_select(num_labels: int) -> str:
    return "f1" if num_labels == 2 else "accuracy"


def protocol_hparams(protocol: str, task: str, num_labels: int, pooling: str = "auto") -> Hparams:
    """The protocol's settings for one task, exactly as its scripts set them."""
    if protocol in ("babylm2023", "babylm2024"):
        h = Hparams(learning_rate=5e-5, batch_size=64, max_epochs=10, max_length=128,
                    patience=10 if protocol == "babylm2023" else 3, threshold=0.001,
                    eval_every=200 if protocol == "babylm2023" else None, weight_decay=0.0, warmup_ratio=0.0,
                    scheduler="linear", min_lr_rate=0.0, max_grad_norm=1.0, drop_last=False,
                    head="sequence_classification", pooling="last", select_metric=_binary_select(num_labels))
    elif protocol == "babylm2025":
        h = Hparams(learning_rate=3e-5, batch_size=16 if task in ("boolq", "multirc") else 32,
                    max_epochs=30 if task == "wsc" else 10, max_length=512, patience=None, threshold=0.0,
                    eval_every=None, weight_decay=0.01, warmup_ratio=0.06, scheduler="cosine_min",
                    min_lr_rate=0.1, max_grad_norm=None, drop_last=True, head="babylm2025", pooling="first",
                    select_metric="f1" if task in ("mrpc", "qqp") else "accuracy")
    else:
        raise UserError(f"unknown protocol '{protocol}': use one of {', '.join(PROTOCOLS)}")
    if pooling != "auto":
        if h.head == "sequence_classification" and pooling != "last":
            raise UserError(f"protocol {protocol} pools the last token (AutoModelForSequenceClassification); "
                            "--pooling first needs --protocol babylm2025")
        h = replace(h, pooling=pooling)
    return h


def protocol_seed(protocol: str) -> int:
    return 42 if protocol == "babylm2025" else 12


def apply_overrides(h: Hparams, overrides: TaskOverrides | None, max_epochs_cap: int | None) -> Hparams:
    if overrides is not None:
        h = replace(h, **{k: v for k, v in overrides.model_dump(exclude_none=True).items()})
    if max_epochs_cap is not None and h.max_epochs > max_epochs_cap:
        h = replace(h, max_epochs=max_epochs_cap)
    return h


def overrides_for(table: dict[str, TaskOverrides], task: str) -> TaskOverrides | None:
    """A task's row of the hyperparameter table over its ``default`` row (both optional)."""
    rows = [table[k] for k in ("default", task) if k in table]
    if not rows:
        return None
    merged: dict = {}
    for r in rows:
        merged.update(r.model_dump(exclude_none=True))
    return TaskOverrides(**merged)
