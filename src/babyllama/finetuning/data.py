"""Tokenized task splits (cached), length-grouped batches and dynamic padding.

Why: the 2023/2024 script pads every example to 128 tokens, while filtered RTE averages 77 tokens and CoLA 11
(our 8k BPE), so most of its arithmetic is on padding. Here each example is tokenized once per (tokenizer, file,
max length) - in memory for the process and, with a cache folder, on disk - and training batches are the ones the
Hugging Face Trainer draws with ``group_by_length=True`` (transformers' own ``get_length_grouped_indices``: a seeded
permutation cut into megabatches of at most 50 batches and at least four megabatches per epoch, each sorted by
length, the longest example first), then padded to their own longest example. Every example is still seen once per
epoch (where a protocol drops the last short batch, all but a random remainder, as with random batches).

Tokenization is the script's: ``tokenizer(text_a[, text_b], truncation=True, max_length=L)``, no special tokens
beyond what the tokenizer itself adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

from ..io import atomic_write, short_hash
from .tasks import Split


@dataclass
class Encoded:
    ids: list[np.ndarray]  # one int32 array per example
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def subset(self, index) -> Encoded:
        return Encoded([self.ids[i] for i in index], self.labels[np.asarray(index, dtype=np.int64)])


_MEMORY: dict[str, Encoded] = {}


def _tokenize(tokenizer, split: Split, max_length: int) -> Encoded:
    cols = list(zip(*split.texts))
    enc = tokenizer(*[list(c) for c in cols], truncation=True, max_length=max_length)
    ids = [np.asarray(x, dtype=np.int32) for x in enc["input_ids"]]
    if any(len(x) == 0 for x in ids):
        empty = next(i for i, x in enumerate(ids) if len(x) == 0)
        ids[empty] = np.asarray([tokenizer.pad_token_id], dtype=np.int32)  # an empty text still gets a position
    return Encoded(ids, np.asarray(split.labels, dtype=np.int64))


def encode_split(tokenizer, tokenizer_id: str, task: str, split: Split, max_length: int,
                 cache_dir: str | Path | None = None) -> Encoded:
    """The split tokenized, from the in-memory or on-disk cache when it was tokenized before."""
    key = short_hash([tokenizer_id, task, split.sha256, max_length], 16)  # the task decides the template
    if key in _MEMORY:
        return _MEMORY[key]
    path = Path(cache_dir) / f"{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        z = np.load(path)
        offsets = z["offsets"]
        flat = z["flat"]
        enc = Encoded([flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)], z["labels"])
    else:
        enc = _tokenize(tokenizer, split, max_length)
        if path is not None:
            offsets = np.concatenate([[0], np.cumsum([len(x) for x in enc.ids])]).astype(np.int64)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, flat=np.concatenate(enc.ids), offsets=offsets, labels=enc.labels)
    _MEMORY[key] = enc
    return enc


def train_batches(lengths: np.ndarray, batch_size: int, generator: torch.Generator, drop_last: bool,
                  length_grouping: bool = True) -> list[np.ndarray]:
    """One epoch's batches of example indices, in the Trainer's order: a random permutation, or (``length_grouping``)
    its ``LengthGroupedSampler`` order. Only the very last batch can be short (dropped if ``drop_last``)."""
    n = len(lengths)
    if length_grouping:
        rows = np.arange(n)
        if drop_last and n % batch_size:
            # the examples left out are drawn at random, as with random batches: grouped, the short last batch
            # would hold the shortest examples of the last megabatch, and short examples would be left out most
            rows = np.sort(torch.randperm(n, generator=generator).numpy()[:n - n % batch_size])
        grouped = get_length_grouped_indices(lengths[rows].tolist(), batch_size, generator=generator)
        perm = rows[np.asarray(grouped, dtype=np.int64)]
    else:
        perm = torch.randperm(n, generator=generator).numpy()
    batches = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(enc: Encoded, index: np.ndarray, pad_id: int, padding_side: str = "right"
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask (padded to the batch's longest example) and labels."""
    rows = [enc.ids[i] for i in index]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, r in enumerate(rows):
        if padding_side == "left":
            ids[k, width - len(r):], mask[k, width - len(r):] = r, 1
        else:
            ids[k, :len(r)], mask[k, :len(r)] = r, 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(enc.labels[index])
