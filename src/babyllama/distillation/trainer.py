"""Distilling a teacher ensemble into a student with the stock Trainer (``compute_loss`` and ``log`` only).

Run: ``babyllama distill configs/distill/cpu.yaml --teacher runs/t1 --teacher runs/t2``.

The loss, built once from ``distill:``, is :class:`babyllama.distillation.loss.DistillationLoss`. Teachers may be of any supported architecture (the first paper mixes a LLaMA and a GPT-2); they must share the
student's tokenizer (same vocabulary, merges and special tokens: checked by hash). They are frozen, in eval mode,
and run under ``torch.no_grad``. Train logs carry ``ce`` and ``kl`` beside ``loss``; evaluation reports the
student's plain CE as ``eval_loss`` (so the best checkpoint is chosen on a number comparable with the teachers'
and the baseline's) and the KL beside it as ``eval_kl``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import Config
from ..errors import UserError
from ..models import resolve_model_path
from ..regional import compile_layers
from ..training.trainer import GuardedTrainer, fit, setup_run, training_run
from .loss import CachedTeacher, DistillationLoss
from .sources import LiveTeachers, cached_datasets, load_teachers


class DistillationTrainer(GuardedTrainer):
    """Trainer whose loss is :class:`babyllama.distillation.loss.DistillationLoss` against a frozen teacher
    ensemble (live teachers, or cached entries carried by each batch)."""

    loss_is_scaled_for_ga = False  # our loss is a per-micro-batch mean: let the Trainer divide by GA steps

    def __init__(self, *args, teachers: list[torch.nn.Module], loss_fn: DistillationLoss, cache_sampled: int = 0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        precision = "bf16" if self.args.bf16 else "fp16" if self.args.fp16 else "fp32"
        self.teachers = LiveTeachers(teachers, self.args.device, precision) if teachers else None
        if self.teachers is not None and self.layers_compiled:
            for teacher in self.teachers.models:  # their forward passes are about half of a live step
                compile_layers(teacher.base_model)
        self.loss_fn = loss_fn
        self.cache_sampled = cache_sampled  # of the cached entries, how many are samples (not exact top tokens)
        self._sums = {"train": self._empty(), "eval": self._empty()}

    @staticmethod
    def _empty() -> dict:
        return {"ce": 0.0, "div": 0.0, "n": 0}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        cached = CachedTeacher.from_batch(inputs, self.cache_sampled)
        teacher_logits = None
        if cached is None:
            if self.teachers is None:
                raise ValueError("a batch without cached teacher entries, and no live teachers to compute them")
            teacher_logits = self.teachers.logits(inputs["input_ids"], inputs.get("attention_mask"))
        out = self.loss_fn(outputs.logits, inputs["labels"], teacher_logits=teacher_logits, cached=cached)
        if model.training:
            loss, key = out.loss, "train"
            self.check_finite(loss)
        else:
            loss, key = out.ce, "eval"  # eval_loss is the plain CE: comparable with teachers and baselines
        s = self._sums[key]
        s["ce"] += float(out.ce.detach())
        s["div"] += float(out.div.detach())
        s["n"] += 1
        return (loss, outputs) if return_outputs else loss

    def _mean_terms(self, key: str) -> dict:
        """The mean CE and divergence since the last log, and the sums reset."""
        s, self._sums[key] = self._sums[key], self._empty()
        return {"ce": s["ce"] / s["n"], "kl": s["div"] / s["n"]} if s["n"] else {}

    def log(self, logs: dict, start_time: float | None = None) -> None:
        # the divergence term is logged as "kl" whatever the divergence: the metrics files and the report's loss
        # curves read that name
        if "loss" in logs:
            logs.update(self._mean_terms("train"))
        elif any(k.startswith("eval_") for k in logs):
            e = self._mean_terms("eval")
            if e:
                logs["eval_kl"] = e["kl"]
                logs["eval_objective"] = self.loss_fn.mix(torch.tensor(e["ce"]), torch.tensor(e["kl"])).item()
        super().log(logs, start_time)


def distill(cfg: Config, overwrite: bool = False, callbacks: list | None = None) -> dict:
    """Train ``cfg.model`` (the student) from ``cfg.distill.teachers``; returns metrics."""
    t_start = time.time()
    d = cfg.distill
    if d.teacher_weights is not None and len(d.teacher_weights) != len(d.teachers):
        raise UserError(f"distill.teacher_weights has {len(d.teacher_weights)} entries for {len(d.teachers)} "
                        "teachers; give one weight per teacher")
    if not d.teachers:
        raise UserError("no teachers: pass --teacher DIR (repeatable) or set distill.teachers")
    d.teachers = [str(resolve_model_path(t, "teacher")) for t in d.teachers]  # hub ids: their cached snapshots
    with training_run(cfg):
        setup = setup_run(cfg, overwrite, check=lambda tok: load_teachers(d.teachers, tok))
        teachers = setup.checked
        train_ds, eval_ds, extra, sampled = setup.train_ds, setup.eval_ds, {}, 0
        if d.cache.enabled:
            train_ds, eval_ds, extra = cached_datasets(cfg, teachers, train_ds, eval_ds, setup.provenance)
            sampled = train_ds.cache.meta["sampled"]
            teachers = []  # the student trains without teachers in memory
        setup.provenance["teachers"] = [str(Path(t).resolve()) for t in d.teachers]
        return fit(cfg, setup, "distill", t_start, DistillationTrainer, train_ds, eval_ds, callbacks, extra,
                   teachers=teachers, loss_fn=DistillationLoss.from_config(d), cache_sampled=sampled)
