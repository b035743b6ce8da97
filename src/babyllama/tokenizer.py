"""Byte-level BPE tokenizer: training, loading, hashing, fast encoding.

The special tokens come from :mod:`babyllama.special_tokens`: ``<pad>`` (id 0), ``<s>`` (BOS, id 1), ``</s>`` (EOS
and end-of-text between documents, id 2). The tokenizer is saved as a Hugging Face fast tokenizer, so
``AutoTokenizer.from_pretrained(OUT)`` loads it with those tokens set. Like the authors' GPT-2 tokenizer it adds no
special tokens when encoding; callers add BOS/EOS where they mean to.

Run: ``babyllama tokenizer train PREPARED_CORPUS OUT --vocab-size 16000``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import atomic_write, require_folders
from .special_tokens import BOS, EOS, PAD, SPECIAL_TOKENS
from .progress import interactive

DEFAULT_VOCAB_SIZE = 16000  # both papers


def _line_batches(texts: list[str], lines_per_piece: int = 256) -> Iterator[str]:
    for text in texts:
        for doc in text.split(EOS):
            lines = doc.split("\n")
            for i in range(0, len(lines), lines_per_piece):
                yield "\n".join(lines[i : i + lines_per_piece])


def check_output(out: str | Path, vocab_size: int, overwrite: bool) -> Path:
    """One line, before anything is read or written, for an output directory that is taken or a vocabulary too
    small for a byte-level BPE."""
    out = Path(out)
    require_folders([out], "tokenizer folder")
    if (out / "tokenizer.json").exists() and not overwrite:
        raise UserError(f"{out} already holds a tokenizer; choose another directory or pass --overwrite")
    if out.is_dir() and any(out.iterdir()) and not (out / "tokenizer.json").exists():
        raise UserError(f"{out} is not empty and holds no tokenizer; choose an empty or new output directory")
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise UserError(f"--vocab-size {vocab_size} is too small for a byte-level BPE; use at least 259")
    return out


def train_bpe(texts: list[str], out: str | Path, vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2,
              overwrite: bool = False, source: str = "the corpus"):
    """Train a byte-level BPE on ``texts`` (documents or files of lines) and save it in Hugging Face format to
    ``out``; ``source`` names the texts in error lines. :func:`babyllama.data.bpe.train_tokenizer` reads them from a
    prepared corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = check_output(out, vocab_size, overwrite)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=interactive(),  # its bar in a log file is blank lines
    )
    tok.train_from_iterator(_line_batches(texts), trainer=trainer)
    if tok.get_vocab_size() < vocab_size:
        raise UserError(f"{source} supports only {tok.get_vocab_size()} tokens at "
                        f"--min-frequency {min_frequency}, not {vocab_size}; ask for --vocab-size "
                        f"{tok.get_vocab_size()} or less, lower --min-frequency, or use more text (nothing was "
                        "written)")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=1_000_000)
    with atomic_write(out, directory=True) as tmp:  # a killed save leaves no half-written tokenizer in OUT
        fast.save_pretrained(str(tmp))
    return fast


def model_context(model_config) -> int | None:
    """The number of positions a transformers model config allows (LLaMA, GPT-2, GPT-J name it differently)."""
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(model_config, attr, None)
        if v:
            return int(v)
    return None


def finalize_tokenizer_config(directory: str | Path, context: int | None) -> None:
    """Make a saved tokenizer say what it is for its model: ``model_max_length`` = the model's context (not the
    1e6 placeholder), and ``tokenizer_class`` = ``PreTrainedTokenizerFast``, which every transformers 5.x (and
    4.x) loads; 5.x itself writes ``TokenizersBackend``, a name the earlier releases do not know."""
    from .io import read_json, write_json

    path = Path(directory) / "tokenizer_config.json"
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        return
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only"):  # how this copy was loaded, not what the tokenizer is
        cfg.pop(key, None)
    if context:
        cfg["model_max_length"] = context
    write_json(path, cfg)


def load_tokenizer(path: str | Path):
    """Load a tokenizer directory with AutoTokenizer (offline); a clear error if it is not one."""
    from transformers import AutoTokenizer

    p = Path(path)
    if not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        raise UserError(f"{p}: no tokenizer here; train one with `babyllama tokenizer train CORPUS {p}`")
    try:
        return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse is the user's file
        raise UserError(f"{p}: cannot load the tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                        "re-train or re-download it") from None


def _backend_json(tokenizer) -> dict:
    return json.loads(tokenizer.backend_tokenizer.to_str())


def vocab_hash(tokenizer) -> str:
    """sha256 of the vocabulary, merges and special tokens: equal iff two tokenizers map text to the same ids."""
    j = _backend_json(tokenizer)
    model = j.get("model", {})
    payload = {
        "vocab": model.get("vocab"),
        "merges": model.get("merges"),
        "added": [(t["id"], t["content"]) for t in j.get("added_tokens", [])],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def tokenizer_hash(tokenizer) -> str:
    """sha256 of the whole tokenizer definition (normaliser, pre-tokeniser, model): the token-cache key."""
    return hashlib.sha256(json.dumps(_backend_json(tokenizer), sort_keys=True).encode()).hexdigest()


def encode_text(tokenizer, text: str, lines_per_piece: int = 256) -> np.ndarray:
    """Encode cleaned text (documents separated by ``</s>``) into one flat id array, EOS after each document.

    Documents are cut into pieces at line boundaries and encoded in parallel by the Rust backend. Every piece but
    a document's last ends with its newline and the next starts with a non-space character (lines are stripped
    by the cleaners), so the byte-level pre-tokeniser sees the same words as on the whole text: the ids equal
    those of encoding each document in one call (tested).
    """
    from tokenizers import Tokenizer

    # a private copy: a transformers call with truncation=True leaves truncation on in the shared backend
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    pieces: list[str] = []
    ends: list[bool] = []  # whether EOS follows the piece
    docs = text.split(EOS)
    for di, doc in enumerate(docs):
        if not doc:
            continue
        lines = doc.split("\n")
        for i in range(0, len(lines), lines_per_piece):
            chunk = "\n".join(lines[i : i + lines_per_piece])
            last = i + lines_per_piece >= len(lines)
            pieces.append(chunk if last else chunk + "\n")
            ends.append(last and di < len(docs) - 1)
    encs = backend.encode_batch(pieces, add_special_tokens=False)
    out: list[int] = []
    for enc, end in zip(encs, ends):
        out.extend(enc.ids)
        if end:
            out.append(eos_id)
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    return np.asarray(out, dtype=dtype)
