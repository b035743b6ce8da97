"""One fine-tuning run (one model, task and seed) with the protocol's optimiser, schedule, evaluation and selection.

The semantics are the pipelines' (see :mod:`.protocols`); what it does faster is structural: the best checkpoint is
kept in memory rather than saved and reloaded, evaluation batches are sorted by length, training batches are
length-grouped and padded to their longest example (:mod:`.data`), the last layer runs at the pooled positions only
(:mod:`.pooled`), AdamW is the fused kernel, and bf16 autocast is used where the training precision rule says it
pays. Early stopping follows ``EarlyStoppingCallback``: an evaluation counts as a gain when
it beats the best so far by more than ``threshold``; ``patience`` evaluations without one stop the run. The kept
model is the best evaluation (strictly better than all before it); with no evaluation at all (2023: a run shorter
than 200 steps) the final model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..hardware import autocast, device_type
from ..regional import compile_layers, eager_scoring
from .data import Encoded, collate, eval_batches, train_batches
from .metrics import classification_metrics
from .model import BaseModel, build_classifier
from .protocols import Hparams


@dataclass
class RunResult:
    seed: int
    metrics: dict[str, float]  # the kept model on the validation file (MSGS: its condition == "test" rows)
    selection: dict[str, float]  # the kept model on the whole validation file (what selected it)
    predictions: list[int]  # the kept model's class ids on the whole validation file
    best_epoch: float | None  # fractional with step-wise evaluation
    epochs_run: float
    steps: int
    stopped_early: bool
    examples: int  # training examples processed
    train_tokens: int  # real (non-pad) tokens processed in training
    padded_tokens: int  # positions processed in training, padding included
    seconds: float
    history: list[dict] = field(default_factory=list)
    extra: dict[str, dict] = field(default_factory=dict)  # other validation files scored by the kept model


class Selection:
    """Which evaluation is kept and when to stop, as the Trainer's ``load_best_model_at_end`` with
    ``EarlyStoppingCallback(patience, threshold)`` decide: the kept one is strictly better than every one before;
    the patience counter resets on a gain of more than ``threshold`` over the best before this evaluation."""

    def __init__(self, patience: int | None, threshold: float):
        self.patience, self.threshold = patience, threshold
        self.best: float | None = None
        self.waited = 0

    def update(self, score: float) -> tuple[bool, bool]:
        """(keep this one, stop now)."""
        gain = self.best is None or (score > self.best and score - self.best > self.threshold)
        keep = self.best is None or score > self.best
        if keep:
            self.best = score
        self.waited = 0 if gain else self.waited + 1
        return keep, self.patience is not None and self.waited >= self.patience


@torch.inference_mode()
def predict(model, enc: Encoded, pad_id: int, batch_size: int, precision: str, device: str) -> np.ndarray:
    model.eval()
    out = np.zeros(len(enc), dtype=np.int64)
    for index in eval_batches(enc.lengths, batch_size):
        ids, mask, _ = collate(enc, index, pad_id)
        with autocast(precision, device), eager_scoring():
            logits = model(ids.to(device), mask.to(device))
        out[index] = logits.float().argmax(-1).cpu().numpy()
    return out


def optimizer_for(model, h: Hparams, precision: str, device: str):
    """(AdamW over the trainable parameters with the protocol's settings, the gradient scaler ``precision`` needs)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    # the fused kernel: one pass over each parameter instead of a dozen element-wise ops (CPU and CUDA)
    opt = torch.optim.AdamW(trainable, lr=h.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=h.weight_decay, fused=device_type(device) in ("cpu", "cuda") or None)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is then a no-op)
    scaler = torch.amp.GradScaler(device_type(device), enabled=precision == "fp16")
    return opt, scaler


def training_step(model, opt, scaler, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                  max_grad_norm: float | None, precision: str, device: str) -> None:
    """One optimiser step on one batch: forward under the precision's autocast, cross-entropy, backward, the
    gradient clipped to ``max_grad_norm`` (the Trainer's default 1.0), the update. The schedule is the caller's."""
    with autocast(precision, device):
        logits = model(ids, mask)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    scaler.scale(loss).backward()
    if max_grad_norm is not None:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_([p for group in opt.param_groups for p in group["params"]], max_grad_norm)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)


def _scheduler(opt, h: Hparams, total_steps: int):
    from transformers import get_cosine_with_min_lr_schedule_with_warmup, get_scheduler

    warmup = int(h.warmup_ratio * total_steps)
    if h.scheduler == "cosine_min":
        return get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total_steps, min_lr_rate=h.min_lr_rate)
    return get_scheduler("linear", opt, num_warmup_steps=warmup, num_training_steps=total_steps)


def finetune_run(base: BaseModel, train: Encoded, valid: Encoded, num_labels: int, h: Hparams, seed: int, *,
                 precision: str = "fp32", device: str = "cpu", eval_batch_size: int = 128,
                 length_grouping: bool = True, report_mask: np.ndarray | None = None,
                 extra_valid: dict[str, Encoded] | None = None, attention: str = "sdpa",
                 lora: tuple[int, int, float] | None = None, compile_layers_: bool = False,
                 log: Callable[[str], None] | None = None, label: str = "") -> RunResult:
    """Fine-tune a fresh classifier on ``train``, select on ``valid``; the kept model's scores and predictions.
    ``compile_layers_``: the body's layers compiled for the training steps (:mod:`.compiled`)."""
    t0 = time.perf_counter()
    model = build_classifier(base, h.head, num_labels, h.pooling, h.dropout, seed, attention, lora).to(device)
    if compile_layers_:
        compile_layers(model.body)
    opt, scaler = optimizer_for(model, h, precision, device)
    gen = torch.Generator().manual_seed(seed)
    lengths = train.lengths
    per_epoch = len(lengths) // h.batch_size if h.drop_last else math.ceil(len(lengths) / h.batch_size)
    if per_epoch == 0:
        per_epoch = 1  # fewer examples than one batch: the one short batch is kept
        drop_last = False
    else:
        drop_last = h.drop_last
    total = per_epoch * h.max_epochs
    sched = _scheduler(opt, h, total)

    selection = Selection(h.patience, h.threshold)
    best_state, best_preds, best_at = None, None, None
    history: list[dict] = []
    step = examples = real_tokens = padded = 0
    stopped = False

    def evaluate(epoch: float) -> bool:
        nonlocal best_state, best_preds, best_at
        preds = predict(model, valid, base.pad_id, eval_batch_size, precision, device)
        m = classification_metrics(valid.labels, preds, num_labels)
        score = m[h.select_metric]
        keep, stop = selection.update(score)
        if keep:
            best_preds, best_at = preds, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append({"epoch": round(epoch, 3), "step": step, **{k: round(v, 5) for k, v in m.items()}})
        if log:
            rate = examples / max(time.perf_counter() - t0, 1e-9)
            eta = (total - step) * h.batch_size / max(rate, 1e-9)
            log(f"  {label} epoch {epoch:.2f}/{h.max_epochs} step {step}/{total}: {h.select_metric} {score:.4f} "
                f"(best {selection.best:.4f} at epoch {best_at:.2f}) {rate:.0f} ex/s, at most {eta:.0f} s left")
        model.train()
        return stop

    model.train()
    for epoch in range(h.max_epochs):
        for index in train_batches(lengths, h.batch_size, gen, drop_last, length_grouping):
            ids, mask, labels = collate(train, index, base.pad_id)
            # counted on the host copy: a count of the device copy would wait for the GPU at every step
            real_tokens += int(mask.sum())
            padded += mask.numel()
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            training_step(model, opt, scaler, ids, mask, labels, h.max_grad_norm, precision, device)
            sched.step()
            step += 1
            examples += len(index)
            if h.eval_every and step % h.eval_every == 0 and evaluate(step / per_epoch):
                stopped = True
                break
        if stopped:
            break
        if not h.eval_every and evaluate(epoch + 1.0):
            stopped = True
            break
    epochs_run = step / per_epoch
    if best_state is not None:
        model.load_state_dict(best_state)
        preds = best_preds
    else:  # no evaluation happened: the final model, as the Trainer leaves it
        preds = predict(model, valid, base.pad_id, eval_batch_size, precision, device)
    on_valid = classification_metrics(valid.labels, preds, num_labels)
    if report_mask is not None and report_mask.any():
        metrics = classification_metrics(valid.labels[report_mask], preds[report_mask], num_labels)
    else:
        metrics = on_valid
    extra = {}
    for name, enc in (extra_valid or {}).items():
        p = predict(model, enc, base.pad_id, eval_batch_size, precision, device)
        extra[name] = {"metrics": classification_metrics(enc.labels, p, num_labels), "predictions": p.tolist()}
    return RunResult(seed, metrics, on_valid, preds.tolist(), best_at, round(epochs_run, 3), step, stopped,
                     examples, real_tokens, padded, time.perf_counter() - t0, history, extra)
