"""Training the tokenizer on a prepared corpus: its split's texts, read here, go to
:func:`babyllama.tokenizer.train_bpe` (which knows nothing of corpora)."""

from __future__ import annotations

from pathlib import Path

from ..tokenizer import DEFAULT_VOCAB_SIZE, check_output, train_bpe
from .corpus import load_prepared


def train_tokenizer(corpus_dir: str | Path, out: str | Path, vocab_size: int = DEFAULT_VOCAB_SIZE,
                    min_frequency: int = 2, split: str = "train", domains: list[str] | None = None,
                    overwrite: bool = False):
    """Train the byte-level BPE on a prepared corpus split; returns the Hugging Face tokenizer saved to ``out``."""
    check_output(out, vocab_size, overwrite)
    texts = list(load_prepared(corpus_dir, split, domains).values())
    return train_bpe(texts, out, vocab_size=vocab_size, min_frequency=min_frequency, overwrite=overwrite,
                     source=f"{corpus_dir}: the {split} split")
