"""Shared fixtures: a small slice of ../shared/data/corpus, a ~512-token BPE, tiny models.

Everything is built once per session in a temporary directory; nothing is written into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHARED_CORPUS = SHARED / "corpus"
SHARED_EVAL = SHARED / "eval"
SLICE_DOMAINS = ("aochildes", "cbt", "gutenberg", "open_subtitles", "simple_wikipedia", "wikipedia")


def need_shared() -> Path:
    if not SHARED_CORPUS.is_dir():
        pytest.skip(f"needs the shared corpus at {SHARED_CORPUS}")
    return SHARED


@pytest.fixture(scope="session")
def raw_slice(tmp_path_factory) -> Path:
    """A plain-layout corpus of the first lines of six shared domains (about 60k train words)."""
    need_shared()
    root = tmp_path_factory.mktemp("raw")
    for split, n in (("train", 1500), ("dev", 300), ("test", 100)):
        (root / split).mkdir()
        for d in SLICE_DOMAINS:
            src = SHARED_CORPUS / split / f"{d}.{split}"
            with open(src, encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            (root / split / f"{d}.{split}").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def prepared(raw_slice, tmp_path_factory) -> Path:
    from babyllama.data.corpus import prepare

    out = tmp_path_factory.mktemp("prep") / "corpus"
    prepare(raw_slice, out)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(prepared, tmp_path_factory) -> Path:
    from babyllama.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(prepared, out, vocab_size=512)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from babyllama.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def tiny_config(prepared, tokenizer_dir, out, preset="llama-tiny", **training):
    """A Config for a few CPU steps of a tiny model on the slice."""
    from babyllama.config import Config

    t = dict(output_dir=str(out), batch_size=8, max_steps=30, warmup_steps=5, learning_rate=3e-3,
             eval_strategy="steps", eval_steps=15, logging_steps=5, report_to=["none"], progress=False)
    t.update(training)
    return Config.model_validate({
        "data": {"corpus": str(prepared), "tokenizer": str(tokenizer_dir), "seq_len": 64, "max_eval_tokens": 4096},
        "model": {"preset": preset},
        "training": t,
    })


@pytest.fixture(scope="session")
def teachers(prepared, tokenizer_dir, tmp_path_factory) -> list[Path]:
    """Two tiny trained models of different architectures (LLaMA, GPT-2), 30 steps each."""
    from babyllama.train.pretrain import train

    root = tmp_path_factory.mktemp("teachers")
    out = []
    for preset in ("llama-tiny", "gpt2-tiny"):
        train(tiny_config(prepared, tokenizer_dir, root / preset, preset=preset, max_steps=30, eval_steps=30))
        out.append(root / preset)
    return out
