"""Cached teacher outputs: run the teacher ensemble once, train the student for all epochs from disk.

Live distillation runs every teacher forward on every student step (paper 1: a 360M and a 705M model per step of
a 58M student, for 6 epochs). Here the ensemble runs once over the training tokens and stores, for every token
position, K entries of the combined, tempered teacher distribution, memory-mapped on disk (``ids``: uint16/uint32
``(N, K)``, ``weight``: float32 ``(N, K)``, ``tail`` and ``plogp``: float32 ``(N,)``; about ``6 K`` bytes per
token for a 16k vocabulary). The student then trains without teachers in memory; the loss is
:func:`babyllama.losses.kl_per_position_cached`.

What the K entries are: the ``K - S`` most probable tokens with their probabilities, and ``S`` (``cache_sampled``)
token ids drawn with replacement from the rest of the distribution, each weighted ``p_rest / S``. Pure top-K
(``S = 0``) keeps one bucket for the unrepresented mass; it is biased, and badly so when the tempered teacher is
flat: measured here, the top 64 of 8000 tokens of two ~10M teachers at T = 2 hold only 14% of the mass. The
sampled entries make the cross-entropy term, hence the KL's value and gradient, unbiased (sparse logit sampling).
The exact ``sum_v p_v log p_v`` is stored so that the logged KL is a proper estimate.

Which context does a cached position see? The student's chunks start at random offsets each epoch, so no fixed set
of teacher windows can reproduce every chunk's context. ``window: sliding`` runs the teachers on windows of
``seq_len`` tokens every ``seq_len / 2`` tokens and keeps, from each window, only the positions in its second half
(from the first window, all): every cached position had at least ``seq_len / 2`` tokens of context (positions in the
first half-window excepted), at the cost of two teacher passes over the data (live: one per epoch). The student's
own context for a position ranges from 0 to ``seq_len - 1`` tokens, so the teacher often sees *more* context than
the student; `benchmarks/distill.py` measures what this costs (eval CE of students trained live vs. from the cache).
``window: aligned`` (the default) uses windows every ``seq_len`` tokens, one teacher pass, and by default fixed
student chunks (no random offsets): the contexts then match the live ones exactly (used by the equality test).
``aligned`` with ``cache_random_offset: true`` keeps the one pass and gives the student the papers' random-offset
chunks: a position's teacher context (0 to ``seq_len - 1`` tokens, its place in the aligned window) then differs
from the student's, but is distributed as in live distillation. Over three epochs of the benchmark the aligned cache
with fixed chunks gave the best student of the three choices (eval CE 1.0% below live distillation's; sliding 0.5%,
aligned with random offsets 0.1%), at the cost of one pass: hence the default.

Why the pass count decides the end-to-end speedup: live distillation pays the teacher forwards for every token in
every epoch, the cache once per pass. In units of a plain student step per token, let the teachers' forwards cost
r, live distillation's dense KL k, a cached student step c and the cache's vocabulary work e; over E epochs the
speedup is ``E (1 + r + k) / (E c + passes (r + e))``, which tends to ``E / passes`` as the teachers grow against the
student: with six epochs, 3x is the limit of two passes (sliding) and 6x that of one (aligned).

The eval split gets its own cache, over the chunks evaluated only (``data.eval_samples`` picks a subset).

The cache is keyed by a hash of the teachers' weights, the tokenizer, the training tokens, T, K, the ensemble
rule and weights, the window and seq_len. It is built into a temporary directory and renamed when complete, and
under torchrun/accelerate each process computes every ``world_size``-th batch of windows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data.dataset import ChunkDataset
from .losses import ensemble_log_probs
from .runinfo import sha256_file

CACHE_VERSION = 4
ROW_BLOCK = 128  # rows of the (rows, vocab) ensemble processed at once while building a cache


def teacher_fingerprint(d: str | Path) -> str:
    d = Path(d)
    files = sorted(list(d.glob("*.safetensors")) + list(d.glob("*.bin")) + [d / "config.json"])
    return hashlib.sha256("|".join(f"{f.name}:{sha256_file(f)}" for f in files if f.is_file()).encode()).hexdigest()


def cache_key(teacher_dirs: list[str], tok_hash: str, data_hash: str, temperature: float, k: int, ensemble: str,
              weights, window: str, seq_len: int, sampled: int = 0, seed: int = 0) -> str:
    payload = [CACHE_VERSION, [teacher_fingerprint(t) for t in teacher_dirs], tok_hash, data_hash, temperature, k,
               ensemble, weights, window, seq_len, sampled, seed]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def windows(n: int, seq_len: int, window: str) -> list[tuple[int, int]]:
    """(window start, first position to record) for every teacher window; together they cover [0, n)."""
    stride = seq_len // 2 if window == "sliding" else seq_len
    out, covered, start = [], 0, 0
    while start + seq_len <= n:
        out.append((start, covered))
        covered = start + seq_len
        start += stride
    if covered < n and n >= seq_len:
        out.append((n - seq_len, covered))
    return out


@dataclass
class TeacherCache:
    dir: Path
    ids: np.ndarray
    weight: np.ndarray
    tail: np.ndarray
    plogp: np.ndarray
    meta: dict

    ARRAYS = ("ids", "weight", "tail", "plogp")

    @classmethod
    def load(cls, d: str | Path) -> TeacherCache:
        d = Path(d)
        meta = json.loads((d / "meta.json").read_text())
        return cls(d, *(np.load(d / f"{a}.npy", mmap_mode="r") for a in cls.ARRAYS), meta)


def sparse_entries(logp: torch.Tensor, k: int, sampled: int, generator: torch.Generator | None = None):
    """(ids, weights, tail, plogp) of log-probabilities ``(R, V)``: K - S exact top entries + S tail samples."""
    p = logp.exp()
    plogp = (p * logp).sum(-1)
    top_p, top_i = p.topk(k - sampled, dim=-1)
    rest = (1 - top_p.sum(-1)).clamp_min(0)
    if sampled == 0:
        return top_i, top_p, rest, plogp
    q = p.scatter_(-1, top_i, 0.0)  # p is not needed any more: no (R, V) copy
    empty = q.sum(-1) <= 0
    q[empty] = 1.0  # nothing left to sample: any id, weight 0 below
    samp = torch.multinomial(q, sampled, replacement=True, generator=generator)
    w = (rest / sampled).unsqueeze(-1).expand(-1, sampled) * (~empty).unsqueeze(-1)
    return torch.cat([top_i, samp], -1), torch.cat([top_p, w], -1), torch.zeros_like(rest), plogp


def _dist():
    """(rank, world size, barrier) under torchrun/accelerate launch; (0, 1, no-op) otherwise.

    The process group is initialised here when the launcher set WORLD_SIZE and nobody has yet; the Trainer (through
    accelerate) then reuses it.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size(), dist.barrier
    return 0, 1, lambda: None


@torch.inference_mode()
def build_cache(teachers: list[torch.nn.Module], tokens: np.ndarray, out_dir: str | Path, seq_len: int,
                temperature: float, k: int, ensemble: str = "logits_mean", weights=None, window: str = "aligned",
                batch_size: int = 32, bf16: bool = False, progress: bool = True, sampled: int = 0,
                seed: int = 0) -> TeacherCache:
    """Run the ensemble over ``tokens`` and write the top-K cache into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    if (out / "meta.json").is_file():
        return TeacherCache.load(out)
    rank, world, barrier = _dist()
    tmp = out.with_name(out.name + ".tmp")
    n = len(tokens)
    vocab = teachers[0].config.vocab_size
    k = min(k, vocab)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        id_dtype = np.uint16 if vocab <= 65536 else np.uint32
        np.lib.format.open_memmap(tmp / "ids.npy", "w+", id_dtype, (n, k))
        np.lib.format.open_memmap(tmp / "weight.npy", "w+", np.float32, (n, k))
        for name in ("tail", "plogp"):
            np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float32, (n,))
    barrier()
    mms = {a: np.load(tmp / f"{a}.npy", mmap_mode="r+") for a in TeacherCache.ARRAYS}
    sampled = min(sampled, k - 1)
    wins = windows(n, seq_len, window)
    all_batches = [wins[i : i + batch_size] for i in range(0, len(wins), batch_size)]
    mine = list(range(rank, len(all_batches), world))  # batch bi seeds its samples: same cache for any world size
    device = next(teachers[0].parameters()).device
    t0 = time.perf_counter()
    bar = tqdm(mine, desc="teacher cache", unit="batch", disable=not progress or rank != 0,
               mininterval=0.5 if sys.stderr.isatty() else 30)
    for bi in bar:
        batch = all_batches[bi]
        x = torch.from_numpy(np.stack([tokens[s : s + seq_len].astype(np.int64) for s, _ in batch])).to(device)
        # Only the positions this batch records get logits (sliding windows: the second half of each window), and
        # only those rows go through the ensemble and the top-K/sampling: half the vocabulary-sized work.
        keep = seq_len - min(first - s for s, first in batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = [t(input_ids=x, logits_to_keep=keep).logits for t in teachers]
        rows = torch.cat([torch.arange(j * keep + first - s - (seq_len - keep), (j + 1) * keep)
                          for j, (s, first) in enumerate(batch)]).to(device)
        logits = [lg.reshape(-1, lg.size(-1)) for lg in logits]
        if len(rows) < len(batch) * keep:
            logits = [lg.index_select(0, rows) for lg in logits]
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + bi)
        # The ensemble and the entry selection are memory-bound passes over (rows, vocab) float32 tensors: in
        # blocks of ROW_BLOCK rows they stay in cache (2.2x faster here than one pass over the whole batch).
        parts = [sparse_entries(ensemble_log_probs([lg[r : r + ROW_BLOCK] for lg in logits], temperature, ensemble,
                                                   weights), k, sampled, gen)
                 for r in range(0, logits[0].size(0), ROW_BLOCK)]
        ent = [torch.cat(v).cpu().numpy() for v in zip(*parts)]
        at = 0
        for s, first in batch:
            m = s + seq_len - first
            for a, v in zip(TeacherCache.ARRAYS, ent):
                mms[a][first : s + seq_len] = v[at : at + m]
            at += m
        bar.set_postfix_str(f"{(bar.n + 1) * len(batch) * seq_len / (time.perf_counter() - t0):,.0f} tok/s",
                            refresh=False)
    for mm in mms.values():
        mm.flush()
    del mms
    barrier()
    if rank == 0:
        tail_mean = float(np.load(tmp / "weight.npy", mmap_mode="r")[:, k - sampled:].sum(-1).mean()) if sampled \
            else float(np.load(tmp / "tail.npy", mmap_mode="r").mean())
        meta = {"version": CACHE_VERSION, "positions": n, "k": k, "sampled": sampled, "vocab": vocab,
                "mass_beyond_exact_top": tail_mean, "seq_len": seq_len,
                "window": window, "temperature": temperature, "ensemble": ensemble, "weights": weights,
                "teacher_tokens": len(wins) * seq_len, "build_s": time.perf_counter() - t0}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    barrier()
    return TeacherCache.load(out)


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
