"""Distilling a teacher ensemble into a student with the stock Trainer (``compute_loss`` and ``log`` only).

Run: ``babyllama distill configs/distill/cpu.yaml --teacher runs/t1 --teacher runs/t2``.

Teachers may be of any supported architecture (the first paper mixes a LLaMA and a GPT-2); they must share the
student's tokenizer (same vocabulary, merges and special tokens: checked by hash). They are frozen, in eval mode,
and run under ``torch.no_grad``. Train logs carry ``ce`` and ``kl`` beside ``loss``; evaluation reports the
student's plain CE as ``eval_loss`` (so the best checkpoint is chosen on a number comparable with the teachers'
and the baseline's) and the KL beside it as ``eval_kl``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, Trainer, default_data_collator

from ..config import Config
from ..errors import UserError
from ..losses import IGNORE_INDEX, causal_ce, ce_and_cached_kl, ensemble_log_probs, kl_loss, mix, reduce_kl
from ..models import build_model
from ..tokenizer import load_tokenizer, vocab_hash
from .pretrain import attach_progress, common_setup, finish
from .trainer import EpochCallback, configure_attention, training_arguments


def load_model_dir(path: str | Path, what: str = "model"):
    """AutoModelForCausalLM from a directory, with one clear line for a missing or corrupt checkpoint."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise UserError(f"{what} {p}: no config.json; point to a Hugging Face model directory (a finished run)")
    try:
        return AutoModelForCausalLM.from_pretrained(str(p), dtype=torch.float32, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the loader says, the directory is the user's to fix
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(f"{what} {p}: cannot load the checkpoint ({msg}); re-train or re-copy it") from None


def load_teachers(dirs: list[str], student_tokenizer) -> list[torch.nn.Module]:
    """Load, freeze and check every teacher against the student's tokenizer."""
    if not dirs:
        raise UserError("no teachers: pass --teacher DIR (repeatable) or set distill.teachers")
    want = vocab_hash(student_tokenizer)
    teachers = []
    for d in dirs:
        tok = load_tokenizer(d)
        if vocab_hash(tok) != want:
            raise UserError(f"teacher {d} uses a different tokenizer than the student (vocabulary/merges differ); "
                            "train every teacher with the student's data.tokenizer")
        t = load_model_dir(d, "teacher")
        if t.config.vocab_size != len(student_tokenizer):
            raise UserError(f"teacher {d} has vocabulary size {t.config.vocab_size}, the tokenizer has "
                            f"{len(student_tokenizer)}; retrain the teacher with this tokenizer")
        t.eval().requires_grad_(False)
        teachers.append(t)
    return teachers


class DistillationTrainer(Trainer):
    """Trainer whose loss mixes CE and the KL to a frozen teacher ensemble."""

    loss_is_scaled_for_ga = False  # our loss is a per-micro-batch mean: let the Trainer divide by GA steps

    def __init__(self, *args, teachers: list[torch.nn.Module], distill_cfg, **kwargs):
        super().__init__(*args, **kwargs)
        self.teachers = [t.to(self.args.device) for t in teachers]
        self.dcfg = distill_cfg
        self._sums = {"train": {"ce": 0.0, "kl": 0.0, "n": 0}, "eval": {"ce": 0.0, "kl": 0.0, "n": 0}}

    def teacher_log_probs(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        # accelerate wraps only the student's forward in autocast: the teachers need their own context
        half = torch.bfloat16 if self.args.bf16 else torch.float16
        with torch.no_grad(), torch.autocast(input_ids.device.type, dtype=half,
                                             enabled=self.args.bf16 or self.args.fp16):
            logits = [t(input_ids=input_ids, attention_mask=attention_mask).logits for t in self.teachers]
        return ensemble_log_probs(logits, self.dcfg.temperature, self.dcfg.ensemble, self.dcfg.teacher_weights)

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
        t_logp = self.teacher_log_probs(inputs["input_ids"], inputs.get("attention_mask"))
        return causal_ce(logits, labels), kl_loss(t_logp, logits, d.temperature, d.kl_reduction, mask)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        d = self.dcfg
        ce, kl = self.ce_and_kl(outputs.logits, inputs)
        if model.training:
            loss, key = mix(ce, kl, d.alpha, d.temperature), "train"
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


def distill(cfg: Config, overwrite: bool = False) -> dict:
    """Train ``cfg.model`` (the student) from ``cfg.distill.teachers``; returns metrics."""
    t_start = time.time()
    d = cfg.distill
    if d.teacher_weights is not None and len(d.teacher_weights) != len(d.teachers):
        raise UserError(f"distill.teacher_weights has {len(d.teacher_weights)} entries for {len(d.teachers)} "
                        "teachers; give one weight per teacher")
    out, resume, tokenizer, train_ds, eval_ds, prov = common_setup(cfg, overwrite)
    teachers = load_teachers(d.teachers, tokenizer)
    extra = {}
    if d.cache:
        train_ds, eval_ds, extra = cached_datasets(cfg, teachers, train_ds, eval_ds, prov)
        teachers = []  # the student trains without teachers in memory
    student = configure_attention(build_model(cfg.model, tokenizer, seed=cfg.training.seed), cfg)
    args = training_arguments(cfg, out)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                  processing_class=tokenizer, data_collator=default_data_collator,
                                  callbacks=[EpochCallback(train_ds)], teachers=teachers, distill_cfg=d)
    attach_progress(trainer, cfg)
    if resume:
        print(f"resuming from {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    prov["teachers"] = [str(Path(t).resolve()) for t in d.teachers]
    return finish(trainer, cfg, out, "distill", prov, t_start, result, extra)


def cached_datasets(cfg: Config, teachers, train_ds, eval_ds, prov: dict):
    """Build (or reuse) the teacher caches of the training and eval tokens; wrap the datasets."""
    from ..teacher_cache import CachedChunkDataset, build_cache, cache_key
    from .trainer import resolve_precision

    d, seq = cfg.distill, cfg.data.seq_len
    root = Path(d.cache_dir or Path(cfg.data.cache_dir or Path(cfg.data.corpus) / ".token_cache").parent /
                ".teacher_cache")
    bf16 = resolve_precision(cfg.training.precision) == "bf16"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teachers = [t.to(device) for t in teachers]
    t0 = time.time()
    # Evaluation reads fixed chunks, with data.eval_samples a seeded subset of them (the paper recipe: 8192 chunks
    # of a dev set that can be as large as the training set): the eval cache covers only the chunks evaluated.
    eval_tokens, eval_hash = eval_ds.tokens, prov["eval_data_hash"]
    if len(eval_ds.index) < len(eval_ds.tokens) // seq:
        eval_tokens = np.concatenate([eval_ds.tokens[eval_ds.start(j) : eval_ds.start(j) + seq]
                                      for j in range(len(eval_ds))])
        eval_hash = hashlib.sha256(eval_tokens.astype(np.int64).tobytes()).hexdigest()
    caches = {}
    for split, tokens, window, data_hash in (("train", train_ds.tokens, d.cache_window, prov["train_data_hash"]),
                                             ("eval", eval_tokens, "aligned", eval_hash)):
        key = cache_key(d.teachers, prov["tokenizer_hash"], data_hash, d.temperature, d.cache_top_k, d.ensemble,
                        d.teacher_weights, window, seq, d.cache_sampled, cfg.training.seed)
        caches[split] = build_cache(teachers, tokens, root / f"{split}-{key}", seq, d.temperature,
                                    d.cache_top_k, d.ensemble, d.teacher_weights, window,
                                    batch_size=cfg.training.eval_batch_size or cfg.training.batch_size,
                                    bf16=bf16, progress=cfg.training.progress, sampled=d.cache_sampled,
                                    seed=cfg.training.seed)
    build_s = time.time() - t0
    offsets = d.cache_random_offset if d.cache_random_offset is not None else d.cache_window == "sliding"
    train = CachedChunkDataset(train_ds.tokens, seq, caches["train"], seed=cfg.training.seed, random_offset=offsets)
    ev = CachedChunkDataset(eval_tokens, seq, caches["eval"], seed=cfg.training.seed, random_offset=False)
    prov["teacher_cache"] = {s: str(c.dir) for s, c in caches.items()}
    return train, ev, {"teacher_cache_s": build_s, "teacher_cache_dir": str(caches["train"].dir)}
