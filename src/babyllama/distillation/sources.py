"""Where the student's teacher distribution comes from: the teachers run live, or a cache built from them once.

:class:`LiveTeachers` holds the frozen teachers and gives their logits for a batch.
:func:`cached_datasets` builds (or reuses) the caches of the training and eval tokens and wraps the datasets so that
every batch carries its positions' cached entries (:class:`CachedChunkDataset`); the trainer then needs no teacher.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data.dataset import ChunkDataset
from ..errors import UserError
from ..models import load_model, resolve_model_path
from ..tokenizer import load_tokenizer, vocab_hash
from ..hardware import autocast, device_type, resolve_device, resolve_precision
from .cache import CacheSpec, TeacherCache, build_cache, teacher_fingerprint


def load_teachers(dirs: list[str], student_tokenizer) -> list[torch.nn.Module]:
    """Load, freeze and check every teacher against the student's tokenizer."""
    if not dirs:
        raise UserError("no teachers: pass --teacher DIR (repeatable) or set distill.teachers")
    want = vocab_hash(student_tokenizer)
    teachers = []
    for d in dirs:
        d = resolve_model_path(d, "teacher")
        if not (Path(d) / "config.json").is_file():
            raise UserError(f"teacher {d}: no config.json; point to a Hugging Face model directory (a finished run)")
        tok = load_tokenizer(d)
        if vocab_hash(tok) != want:
            raise UserError(f"teacher {d} uses a different tokenizer than the student (vocabulary/merges differ); "
                            "train every teacher with the student's data.tokenizer")
        t = load_model(d, "teacher")
        if t.config.vocab_size != len(student_tokenizer):
            raise UserError(f"teacher {d} has vocabulary size {t.config.vocab_size}, the tokenizer has "
                            f"{len(student_tokenizer)}; retrain the teacher with this tokenizer")
        t.eval().requires_grad_(False)
        teachers.append(t)
    return teachers


class LiveTeachers:
    """The frozen teachers run on each batch; ``logits`` gives each teacher's (the loss object ensembles them)."""

    def __init__(self, teachers: list[torch.nn.Module], device, precision: str = "fp32"):
        self.models = [t.to(device) for t in teachers]
        self.precision = precision  # the student's step's: bf16, fp16 or fp32

    def logits(self, input_ids: torch.Tensor, attention_mask=None) -> list[torch.Tensor]:
        # accelerate wraps only the student's forward in autocast: the teachers need their own context
        # use_cache=False: a teacher whose config asks for a KV cache would build one per call, which a compiled layer
        # cannot trace through
        with torch.no_grad(), autocast(self.precision, input_ids.device):
            return [t(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits for t in self.models]


class CachedChunkDataset(ChunkDataset):
    """Training chunks with the cached teacher distribution of each position."""

    def __init__(self, tokens: np.ndarray, seq_len: int, cache: TeacherCache, seed: int = 0,
                 random_offset: bool = True, subset: int | None = None):
        super().__init__(tokens, seq_len, random_offset=random_offset, seed=seed, subset=subset)
        if len(cache.ids) != len(tokens):
            raise ValueError(f"teacher cache has {len(cache.ids)} positions, the data {len(tokens)}")
        self.cache = cache

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(i)
        s = self.start(i)
        e = s + self.seq_len
        item["teacher_ids"] = torch.from_numpy(np.array(self.cache.ids[s:e], dtype=np.int64))
        item["teacher_weight"] = torch.from_numpy(np.array(self.cache.weight[s:e]))
        item["teacher_tail"] = torch.from_numpy(np.array(self.cache.tail[s:e]))
        item["teacher_plogp"] = torch.from_numpy(np.array(self.cache.plogp[s:e]))
        return item


def cache_root(cfg: Config) -> Path:
    """``distill.cache.dir``, else ``.teacher_cache`` beside the token cache (by default inside the corpus)."""
    if cfg.distill.cache.dir:
        return Path(cfg.distill.cache.dir)
    return Path(cfg.data.cache_dir or Path(cfg.data.corpus) / ".token_cache").parent / ".teacher_cache"


def evaluated_tokens(eval_ds: ChunkDataset, data_hash: str) -> tuple[np.ndarray, str]:
    """The tokens of the chunks evaluated, and their hash: a subset (``data.eval_samples``) is cached alone."""
    seq = eval_ds.seq_len
    if len(eval_ds.index) >= len(eval_ds.tokens) // seq:
        return eval_ds.tokens, data_hash
    tokens = np.concatenate([eval_ds.tokens[eval_ds.start(j) : eval_ds.start(j) + seq] for j in range(len(eval_ds))])
    return tokens, hashlib.sha256(tokens.astype(np.int64).tobytes()).hexdigest()


def cached_datasets(cfg: Config, teachers, train_ds, eval_ds, prov: dict):
    """Build (or reuse) the teacher caches of the training and eval tokens; wrap the datasets."""
    d, c, seq = cfg.distill, cfg.distill.cache, cfg.data.seq_len
    device = resolve_device(cfg.training.device)
    teachers = [t.to(device) for t in teachers]
    fingerprints = tuple(teacher_fingerprint(t) for t in d.teachers)
    t0 = time.time()
    eval_tokens, eval_hash = evaluated_tokens(eval_ds, prov["eval_data_hash"])
    caches = {}
    for split, tokens, window, data_hash in (("train", train_ds.tokens, c.window, prov["train_data_hash"]),
                                             ("eval", eval_tokens, "aligned", eval_hash)):
        spec = CacheSpec(teachers=fingerprints, tokenizer=prov["tokenizer_hash"], data=data_hash, seq_len=seq,
                         temperature=d.temperature, top_k=c.top_k, sampled=c.sampled, ensemble=d.ensemble,
                         weights=tuple(d.teacher_weights) if d.teacher_weights is not None else None,
                         window=window, seed=cfg.training.seed if c.seed is None else c.seed,
                         batch_size=cfg.training.eval_batch_size or cfg.training.batch_size,
                         precision=resolve_precision(cfg.training.precision, device),
                         device=device_type(device))  # the kind, not the index: every DDP rank shares one key
        caches[split] = build_cache(teachers, tokens, cache_root(cfg) / f"{split}-{spec.key()}", spec,
                                    progress=cfg.training.progress)
    build_s = time.time() - t0
    train = CachedChunkDataset(train_ds.tokens, seq, caches["train"], seed=cfg.training.seed,
                               random_offset=c.student_random_offset)
    ev = CachedChunkDataset(eval_tokens, seq, caches["eval"], seed=cfg.training.seed, random_offset=False)
    prov["teacher_cache"] = {s: str(cache.dir) for s, cache in caches.items()}
    return train, ev, {"teacher_cache_s": build_s, "teacher_cache_dir": str(caches["train"].dir)}
