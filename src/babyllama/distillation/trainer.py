"""Distilling a teacher ensemble into a student with the stock Trainer (``compute_loss`` and ``log`` only).

Run: ``babyllama distill configs/distill/cpu.yaml --teacher runs/t1 --teacher runs/t2``.

Teachers may be of any supported architecture (the first paper mixes a LLaMA and a GPT-2); they must share the
student's tokenizer (same vocabulary, merges and special tokens: checked by hash). They are frozen, in eval mode,
and run under ``torch.no_grad``. Train logs carry ``ce`` and ``kl`` beside ``loss``; evaluation reports the
student's plain CE as ``eval_loss`` (so the best checkpoint is chosen on a number comparable with the teachers'
and the baseline's) and the KL beside it as ``eval_kl``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import default_data_collator

from ..config import Config, DistillConfig
from ..errors import UserError
from ..losses import IGNORE_INDEX, causal_ce, ce_and_cached_kl, kl_loss, mix, reduce_kl
from ..models import build_model, resolve_model_path
from ..training.hardware import configure_attention
from ..training.trainer import (GuardedTrainer, attach_progress, finish_run, setup_run, standard_callbacks,
                             training_arguments, training_run)
from .sources import LiveTeachers, cached_datasets, load_teachers


class DistillationTrainer(GuardedTrainer):
    """Trainer whose loss mixes CE and the KL to a frozen teacher ensemble."""

    loss_is_scaled_for_ga = False  # our loss is a per-micro-batch mean: let the Trainer divide by GA steps

    def __init__(self, *args, teachers: list[torch.nn.Module], distill_cfg: DistillConfig, **kwargs):
        super().__init__(*args, **kwargs)
        precision = "bf16" if self.args.bf16 else "fp16" if self.args.fp16 else "fp32"
        self.teachers = LiveTeachers(teachers, distill_cfg, self.args.device, precision) if teachers else None
        self.dcfg = distill_cfg
        self._sums = {"train": {"ce": 0.0, "kl": 0.0, "n": 0}, "eval": {"ce": 0.0, "kl": 0.0, "n": 0}}

    def ce_and_kl(self, logits: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's CE and the reduced KL to the ensemble: fused from cached teacher entries when the batch
        carries them, else with the teachers run live."""
        d = self.dcfg
        labels = inputs["labels"]
        mask = labels != IGNORE_INDEX
        if "teacher_ids" in inputs:
            ce, per_pos = ce_and_cached_kl(logits, labels, inputs["teacher_ids"], inputs["teacher_weight"],
                                           inputs["teacher_tail"], inputs["teacher_plogp"], d.temperature)
            return ce, reduce_kl(per_pos, d.kl_reduction, mask)
        if self.teachers is None:
            raise ValueError("a batch without cached teacher entries, and no live teachers to compute them")
        t_logp = self.teachers.log_probs(inputs["input_ids"], inputs.get("attention_mask"))
        return causal_ce(logits, labels), kl_loss(t_logp, logits, d.temperature, d.kl_reduction, mask)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        d = self.dcfg
        ce, kl = self.ce_and_kl(outputs.logits, inputs)
        if model.training:
            loss, key = mix(ce, kl, d.alpha, d.temperature), "train"
            self.check_finite(loss)
        else:
            loss, key = ce, "eval"  # eval_loss is the plain CE: comparable with teachers and baselines
        s = self._sums[key]
        s["ce"] += float(ce.detach())
        s["kl"] += float(kl.detach())
        s["n"] += 1
        return (loss, outputs) if return_outputs else loss

    def _take(self, key: str) -> dict:
        s = self._sums[key]
        n = max(s["n"], 1)
        out = {"ce": s["ce"] / n, "kl": s["kl"] / n} if s["n"] else {}
        self._sums[key] = {"ce": 0.0, "kl": 0.0, "n": 0}
        return out

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._take("train"))
        elif any(k.startswith("eval_") for k in logs):
            e = self._take("eval")
            if e:
                logs["eval_kl"] = e["kl"]
                logs["eval_objective"] = mix(torch.tensor(e["ce"]), torch.tensor(e["kl"]), self.dcfg.alpha,
                                             self.dcfg.temperature).item()
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
        run = setup_run(cfg, overwrite, check=lambda tok: load_teachers(d.teachers, tok))
        teachers = run.checked
        train_ds, eval_ds, extra = run.train_ds, run.eval_ds, {}
        if d.cache.enabled:
            train_ds, eval_ds, extra = cached_datasets(cfg, teachers, train_ds, eval_ds, run.provenance)
            teachers = []  # the student trains without teachers in memory
        student = configure_attention(build_model(cfg.model, run.tokenizer, seed=cfg.training.seed), cfg)
        callbacks = [*standard_callbacks(train_ds, cfg, run.provenance), *(callbacks or [])]
        trainer = DistillationTrainer(model=student, args=training_arguments(cfg, run.out), train_dataset=train_ds,
                                      eval_dataset=eval_ds, processing_class=run.tokenizer,
                                      data_collator=default_data_collator, callbacks=callbacks,
                                      teachers=teachers, distill_cfg=d)
        attach_progress(trainer, cfg)
        if run.resume:
            print(f"resuming from {run.resume}", flush=True)
        result = trainer.train(resume_from_checkpoint=run.resume)
        run.provenance["teachers"] = [str(Path(t).resolve()) for t in d.teachers]
        return finish_run(trainer, cfg, run.out, "distill", run.provenance, t_start, result, extra)
