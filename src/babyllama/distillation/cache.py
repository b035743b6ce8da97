"""Cached teacher outputs: the disk format, its key, and the builder.

Live distillation runs every teacher forward on every student step. Here the ensemble runs once over the training
tokens and stores, for every token position, K entries of the combined, tempered teacher distribution,
memory-mapped on disk (``ids``: uint16/uint32 ``(N, K)``, ``weight``: float32 ``(N, K)``, ``tail`` and ``plogp``:
float32 ``(N,)``; about ``6 K`` bytes per token for a 16k vocabulary). The student then trains without teachers in
memory; the loss reads them through :class:`babyllama.distillation.loss.CachedTeacher`.

What the K entries are: the ``K - S`` most probable tokens with their probabilities, and ``S`` (``sampled``) token
ids drawn with replacement from the rest of the distribution, each weighted ``p_rest / S``. Pure top-K (``S = 0``)
keeps one bucket for the unrepresented mass; it is biased, badly so when the tempered teacher is flat and the top
tokens hold little of the mass. The sampled entries make the cross-entropy term, hence the KL's value and
gradient, unbiased (sparse logit sampling). The exact ``sum_v p_v log p_v`` is stored so that the logged KL is a
proper estimate.

Which context does a cached position see? ``window: sliding`` runs the teachers on windows of ``seq_len`` tokens
every ``seq_len / 2`` tokens and keeps, from each window, only the positions in its second half (from the first
window, all): every cached position had at least ``seq_len / 2`` tokens of context, at the cost of two teacher
passes; the student keeps its random chunk offsets. ``window: aligned`` uses windows every ``seq_len`` tokens, one
teacher pass, and by default fixed student chunks, so the contexts match live distillation exactly (the equality
test relies on it); with ``random_offset: true`` the student gets the papers' random-offset chunks from the same
pass, and a position's teacher context then differs from the student's. benchmarks/README.md compares the three.

Why the pass count bounds the end-to-end speedup: live distillation pays the teacher forwards for every token in
every epoch, the cache once per pass. In units of a plain student step per token, let the teachers' forwards cost
r, live distillation's dense KL k, a cached student step c and the cache's vocabulary work e; over E epochs the
speedup is ``E (1 + r + k) / (E c + passes (r + e))``, which tends to ``E / passes`` as the teachers grow against the
student.

A cache is identified by a frozen :class:`CacheSpec` (teachers' weights, tokenizer, tokens, T, K, S, ensemble rule
and weights, window, seq_len, the seed and batch size that draw the samples, and the precision and device the
teachers ran under); its hash is the directory name. It is built into a temporary directory and renamed when
complete; under torchrun/accelerate each process computes every ``world_size``-th batch of windows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..distributed import process_group
from ..io import atomic_write, exclusive, sha256_file
from ..losses import ensemble_log_probs
from ..progress import Bar
from ..hardware import autocast

CACHE_VERSION = 5
ROW_BLOCK = 128  # rows of the (rows, vocab) ensemble processed at once: a block stays in cache


def teacher_fingerprint(d: str | Path) -> str:
    """Hash of a teacher's weights and config: equal iff the teacher computes the same function."""
    d = Path(d)
    files = sorted(list(d.glob("*.safetensors")) + list(d.glob("*.bin")) + [d / "config.json"])
    return hashlib.sha256("|".join(f"{f.name}:{sha256_file(f)}" for f in files if f.is_file()).encode()).hexdigest()


@dataclass(frozen=True)
class CacheSpec:
    """Everything a cache's content depends on; :meth:`key` names its directory."""

    teachers: tuple[str, ...]  # teacher fingerprints, in ensemble order
    tokenizer: str  # tokenizer hash
    data: str  # hash of the tokens cached
    seq_len: int
    temperature: float
    top_k: int
    sampled: int
    ensemble: str = "logits_mean"
    weights: tuple[float, ...] | None = None
    window: str = "aligned"
    seed: int = 0  # with batch_size, draws the sampled entries (batch i is seeded by (seed, i))
    batch_size: int = 32
    precision: str = "fp32"  # the teachers' autocast: bf16 rounds their logits differently from fp32
    device: str = "cpu"

    def key(self) -> str:
        payload = [CACHE_VERSION, dataclasses.asdict(self)]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


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
        """Memory-map a finished cache; arrays whose shapes disagree with its meta.json are a ValueError."""
        d = Path(d)
        meta = json.loads((d / "meta.json").read_text())
        arrays = [np.load(d / f"{a}.npy", mmap_mode="r") for a in cls.ARRAYS]
        n, k = meta["positions"], meta["k"]
        if [a.shape for a in arrays] != [(n, k), (n, k), (n,), (n,)]:
            raise ValueError(f"array shapes {[a.shape for a in arrays]} do not match meta.json ({n} x {k})")
        return cls(d, *arrays, meta)


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


@torch.inference_mode()
def build_cache(teachers: list[torch.nn.Module], tokens: np.ndarray, out_dir: str | Path, spec: CacheSpec,
                progress: bool = True) -> TeacherCache:
    """Run the ensemble over ``tokens`` and write the cache ``spec`` describes into ``out_dir`` (atomically).

    A single process holds a lock beside ``out_dir`` while it checks and builds, so that a second one wanting the
    same cache (two sweep trials distilling from the same teachers at the same time) waits and loads it instead of
    building it again. (Under DDP the ranks already build one cache together.)
    """
    out = Path(out_dir)
    if process_group().world_size > 1:
        return _build_cache(teachers, tokens, out, spec, progress)
    with exclusive(out.parent, "teacher cache", wait=True, name=f".{out.name}.lock"):
        return _build_cache(teachers, tokens, out, spec, progress)


def _build_cache(teachers: list[torch.nn.Module], tokens: np.ndarray, out: Path, spec: CacheSpec,
                 progress: bool) -> TeacherCache:
    group = process_group()
    if (out / "meta.json").is_file():
        try:
            return TeacherCache.load(out)
        except (OSError, ValueError, KeyError) as e:  # damaged after it was written: build it again
            if group.rank == 0:
                print(f"teacher cache {out} is damaged ({type(e).__name__}: {e}); building it again", flush=True)
            group.barrier()
    n, seq_len = len(tokens), spec.seq_len
    vocab = teachers[0].config.vocab_size
    k = min(spec.top_k, vocab)
    sampled = min(spec.sampled, k - 1)
    weights = list(spec.weights) if spec.weights is not None else None
    wins = windows(n, seq_len, spec.window)
    all_batches = [wins[i : i + spec.batch_size] for i in range(0, len(wins), spec.batch_size)]
    mine = list(range(group.rank, len(all_batches), group.world_size))  # same cache for any world size
    device = next(teachers[0].parameters()).device
    with atomic_write(out, directory=True) if group.rank == 0 else nullcontext() as tmp:
        tmp = Path(group.broadcast(str(tmp) if tmp else None))
        if group.rank == 0:
            id_dtype = np.uint16 if vocab <= 65536 else np.uint32
            np.lib.format.open_memmap(tmp / "ids.npy", "w+", id_dtype, (n, k))
            np.lib.format.open_memmap(tmp / "weight.npy", "w+", np.float32, (n, k))
            for name in ("tail", "plogp"):
                np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float32, (n,))
        group.barrier()
        mms = {a: np.load(tmp / f"{a}.npy", mmap_mode="r+") for a in TeacherCache.ARRAYS}
        t0 = time.perf_counter()
        bar = Bar(len(mine), "teacher cache", "batches", enabled=progress and group.rank == 0)
        for bi in mine:
            batch = all_batches[bi]
            x = torch.from_numpy(np.stack([tokens[s : s + seq_len].astype(np.int64) for s, _ in batch])).to(device)
            # Only the positions this batch records get logits (sliding windows: the second half of each window),
            # and only those rows go through the ensemble and the top-K/sampling.
            keep = seq_len - min(first - s for s, first in batch)
            with autocast(spec.precision, device):
                logits = [t(input_ids=x, logits_to_keep=keep, use_cache=False).logits for t in teachers]
            rows = torch.cat([torch.arange(j * keep + first - s - (seq_len - keep), (j + 1) * keep)
                              for j, (s, first) in enumerate(batch)]).to(device)
            logits = [lg.reshape(-1, lg.size(-1)) for lg in logits]
            if len(rows) < len(batch) * keep:
                logits = [lg.index_select(0, rows) for lg in logits]
            gen = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + bi)
            # The ensemble and the entry selection are memory-bound passes over (rows, vocab) float32 tensors:
            # in blocks of ROW_BLOCK rows they stay in cache.
            parts = [sparse_entries(ensemble_log_probs([lg[r : r + ROW_BLOCK] for lg in logits], spec.temperature,
                                                       spec.ensemble, weights), k, sampled, gen)
                     for r in range(0, logits[0].size(0), ROW_BLOCK)]
            ent = [torch.cat(v).cpu().numpy() for v in zip(*parts)]
            at = 0
            for s, first in batch:
                m = s + seq_len - first
                for a, v in zip(TeacherCache.ARRAYS, ent):
                    mms[a][first : s + seq_len] = v[at : at + m]
                at += m
            bar.update(1, f"{(bar.n + 1) * len(batch) * seq_len / (time.perf_counter() - t0):,.0f} tok/s")
        bar.close()
        for mm in mms.values():
            mm.flush()
        del mms
        group.barrier()
        if group.rank == 0:
            tail_mean = float(np.load(tmp / "weight.npy", mmap_mode="r")[:, k - sampled:].sum(-1).mean()) \
                if sampled else float(np.load(tmp / "tail.npy", mmap_mode="r").mean())
            meta = {"version": CACHE_VERSION, "positions": n, "k": k, "sampled": sampled, "vocab": vocab,
                    "mass_beyond_exact_top": tail_mean, "teacher_tokens": len(wins) * seq_len,
                    "build_s": time.perf_counter() - t0, "spec": dataclasses.asdict(spec)}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    group.barrier()
    return TeacherCache.load(out)
