"""Token caches and the training/evaluation datasets.

Each split of a prepared corpus is encoded once per domain into a flat token array on disk (``uint16`` while the
vocabulary fits, else ``uint32``) and memory-mapped afterwards. The cache file is keyed by a hash of the whole
tokenizer definition and of the cleaned text, so a changed tokenizer or corpus can never reuse stale tokens (a key
of tokenizer class and vocabulary size alone, as the authors' code has, would).

Training samples are ``seq_len`` chunks whose start is shifted by a random offset in ``[0, seq_len)`` drawn per
chunk and per epoch from ``(seed, epoch)`` (the papers' ``random_chunk``, made reproducible). Evaluation uses fixed
chunks from offset 0, optionally a seeded random subset of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError
from ..io import atomic_write, read_json
from ..tokenizer import encode_text, tokenizer_hash
from .corpus import load_prepared

CACHE_FORMAT = 1  # bump when the encoding procedure changes


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _save_array(path: Path, arr: np.ndarray) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def encode_cached(tokenizer, text: str, cache_dir: Path, tok_hash: str | None = None) -> tuple[np.ndarray, str]:
    """Encode ``text`` or load it from the cache. Returns (memory-mapped ids, cache key)."""
    tok_hash = tok_hash or tokenizer_hash(tokenizer)
    key = hashlib.sha256(f"{CACHE_FORMAT}:{tok_hash}:{text_hash(text)}".encode()).hexdigest()[:32]
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r"), key
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a corrupt cache entry is ours to rebuild
    _save_array(path, encode_text(tokenizer, text))
    return np.load(path, mmap_mode="r"), key


@dataclass
class TokenSplit:
    """One split as per-domain token arrays plus the hash of what went in (data provenance)."""

    domains: dict[str, np.ndarray]
    data_hash: str
    full_tokens: int = 0  # before ``max_tokens`` cut the domains short

    def flat(self) -> np.ndarray:
        return np.concatenate([self.domains[d] for d in sorted(self.domains)]) if self.domains else np.zeros(0)

    @property
    def num_tokens(self) -> int:
        return sum(len(a) for a in self.domains.values())


SUBSET_BLOCK = 2048  # tokens per block of a spread subset: whole passages, yet hundreds of them per domain


def take_tokens(tokens: np.ndarray, n: int, subset: str = "spread", seed: int = 0) -> np.ndarray:
    """``n`` tokens of one domain. ``first``: its first ``n``. ``spread``: whole ``SUBSET_BLOCK``-token blocks drawn
    from all of it in a seeded order and kept in corpus order, so that any smaller subset lies inside any larger one
    (the data-size ablation's nested subsets)."""
    if n >= len(tokens):
        return tokens
    if subset == "first":
        return tokens[:n]
    blocks = -(-len(tokens) // SUBSET_BLOCK)
    order = np.random.default_rng([seed, blocks]).permutation(blocks)
    sizes = np.minimum(SUBSET_BLOCK, len(tokens) - order * SUBSET_BLOCK)  # the last block can be short
    chosen = np.sort(order[: int(np.searchsorted(np.cumsum(sizes), n)) + 1])
    return np.concatenate([tokens[b * SUBSET_BLOCK:(b + 1) * SUBSET_BLOCK] for b in chosen])[:n]


def load_split(corpus_dir: str | Path, split: str, tokenizer, domains: list[str] | None = None,
               max_tokens: int | None = None, cache_dir: str | Path | None = None,
               fraction: float = 1.0, subset: str = "spread") -> TokenSplit:
    """Tokens of one split, per domain. ``max_tokens`` keeps that many tokens in all, each domain in proportion to
    its size; ``fraction`` then keeps that fraction of each domain's share; ``subset`` says which tokens
    (:func:`take_tokens`)."""
    texts = load_prepared(corpus_dir, split, domains)
    cache = Path(cache_dir) if cache_dir else Path(corpus_dir) / ".token_cache"
    th = tokenizer_hash(tokenizer)
    arrays, keys = {}, []
    for domain, text in texts.items():
        arr, key = encode_cached(tokenizer, text, cache, th)
        arrays[domain] = arr
        keys.append(f"{domain}:{key}")
    total = sum(len(a) for a in arrays.values())
    share = {d: len(a) for d, a in arrays.items()}
    if max_tokens and max_tokens < total:
        share = {d: max(1, int(n * max_tokens / total)) for d, n in share.items()}
        keys.append(f"max_tokens={max_tokens}")
    if fraction < 1:
        share = {d: max(1, int(n * fraction)) for d, n in share.items()}
        keys.append(f"fraction={fraction!r}")
    if any(share[d] < len(a) for d, a in arrays.items()):
        arrays = {d: take_tokens(a, share[d], subset) for d, a in arrays.items()}
        if subset != "first":  # first-token subsets keep the key they have without a subset= part
            keys.append(f"subset={subset}")
    return TokenSplit(arrays, hashlib.sha256("|".join(keys).encode()).hexdigest(), total)


class ChunkDataset(Dataset):
    """``seq_len`` chunks of a flat token stream, as ``{"input_ids", "labels"}`` int64 tensors.

    ``random_offset=True`` (training): chunk ``i`` starts at ``i * seq_len + offset[i]`` with offsets drawn from
    ``(seed, epoch)``; there are ``n // seq_len - 1`` chunks so the shifted last chunk stays in range.
    ``random_offset=False`` (evaluation): chunk ``i`` starts at ``i * seq_len``; ``subset`` keeps a seeded random
    choice of that many chunks.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, random_offset: bool = False, seed: int = 0,
                 subset: int | None = None):
        self.tokens = tokens
        self.seq_len = seq_len
        self.random_offset = random_offset
        self.seed = seed
        n = len(tokens) // seq_len - (1 if random_offset else 0)
        if n < 1:
            raise UserError(
                f"only {len(tokens)} tokens: fewer than one chunk of data.seq_len={seq_len} (+1 for random "
                "offsets); use more text or a shorter seq_len"
            )
        self.index = np.arange(n)
        if subset is not None and subset < n:
            self.index = np.sort(np.random.default_rng(seed).choice(n, size=subset, replace=False))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.random_offset:
            rng = np.random.default_rng([self.seed, self.epoch])
            self.offsets = rng.integers(0, self.seq_len, size=len(self.index))
        else:
            self.offsets = np.zeros(len(self.index), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def start(self, i: int) -> int:
        return int(self.index[i]) * self.seq_len + int(self.offsets[i])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.start(i)
        ids = torch.from_numpy(np.asarray(self.tokens[s : s + self.seq_len], dtype=np.int64))
        return {"input_ids": ids, "labels": ids.clone()}


def build_datasets(data_cfg, tokenizer, seed: int):
    """(train dataset, eval dataset, provenance dict) from a :class:`babyllama.config.DataConfig`."""
    if not data_cfg.corpus:
        raise UserError("data.corpus is not set; point it at a prepared corpus (`babyllama data prepare`)")
    train = load_split(data_cfg.corpus, data_cfg.train_split, tokenizer, data_cfg.domains,
                       data_cfg.max_train_tokens, data_cfg.cache_dir, data_cfg.train_fraction, data_cfg.subset)
    ev = load_split(data_cfg.corpus, data_cfg.eval_split, tokenizer, data_cfg.domains,
                    data_cfg.max_eval_tokens, data_cfg.cache_dir, subset=data_cfg.subset)
    train_ds = ChunkDataset(train.flat(), data_cfg.seq_len, random_offset=True, seed=seed)
    eval_ds = ChunkDataset(ev.flat(), data_cfg.seq_len, random_offset=False, seed=seed,
                           subset=data_cfg.eval_samples)
    stats = read_json(Path(data_cfg.corpus) / "stats.json") or {}
    words = sum(d.get("words", 0) for name, d in stats.get("splits", {}).get(data_cfg.train_split, {}).items()
                if name in train.domains)
    prov = {
        "train_words_per_token": words / train.full_tokens if train.full_tokens else None,
        "train_data_hash": train.data_hash,
        "eval_data_hash": ev.data_hash,
        "train_tokens": train.num_tokens,
        "eval_tokens": ev.num_tokens,
        "train_chunks": len(train_ds),
        "eval_chunks": len(eval_ds),
    }
    return train_ds, eval_ds, prov
