"""Fixtures. Two corpora:

* an in-process one (``tiny_*``): a few thousand words of generated English in three domains, a ~300-token BPE
  and 2-layer models, built in seconds and needing nothing outside the repository (the unit tests use it);
* a slice of ``../shared/data/corpus`` (``prepared``, ``tokenizer_dir``, ``teachers``), for integration tests
  on real text; they skip where the shared data is absent.

Everything is built once per session in a temporary directory; nothing is written into the repository.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import SHARED_CORPUS, need_shared, tiny_config  # noqa: E402

SLICE_DOMAINS = ("aochildes", "cbt", "gutenberg", "open_subtitles", "simple_wikipedia", "wikipedia")
TINY_VOCAB = 300
DURATIONS = Path(__file__).with_name("durations.json")  # seconds per test file, from `pytest --store-durations`

_SUBJECTS = ["the cat", "a dog", "the girl", "my brother", "the old man", "a teacher", "the children", "she", "he"]
_VERBS = ["sees", "likes", "finds", "wants", "draws", "reads about", "talks to", "waits for"]
_OBJECTS = ["the ball", "a red apple", "the garden", "her friend", "the big house", "a small bird", "the river"]
_ENDS = [".", ".", ".", "!", "?"]


def synthetic_text(n_sentences: int, seed: int) -> str:
    """Seeded sentences from a small grammar, a few per line: text a tiny BPE and a 2-layer model can learn."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_sentences // 3):
        sents = []
        for _ in range(3):
            s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
            if rng.random() < 0.3:
                s += f" and {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
            sents.append(s[0].upper() + s[1:] + rng.choice(_ENDS))
        lines.append(" ".join(sents))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """A plain-layout corpus of three generated domains (about 5,000 train words)."""
    root = tmp_path_factory.mktemp("tiny_raw")
    for k, (split, n) in enumerate((("train", 240), ("dev", 60), ("test", 30))):
        (root / split).mkdir()
        for i, d in enumerate(("stories", "chat", "wiki")):
            (root / split / f"{d}.{split}").write_text(synthetic_text(n, seed=10 * k + i))
    return root


def _prepared(raw: Path, factory) -> Path:
    from babyllama.data.corpus import prepare

    out = factory.mktemp("prep") / "corpus"
    prepare(raw, out)
    return out


def _tokenizer_dir(prepared: Path, factory, vocab_size: int) -> Path:
    from babyllama.data.bpe import train_tokenizer

    out = factory.mktemp("tok") / "tokenizer"
    train_tokenizer(prepared, out, vocab_size=vocab_size)
    return out


@pytest.fixture(scope="session")
def tiny_prepared(tiny_raw, tmp_path_factory) -> Path:
    return _prepared(tiny_raw, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tiny_prepared, tmp_path_factory) -> Path:
    return _tokenizer_dir(tiny_prepared, tmp_path_factory, TINY_VOCAB)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from babyllama.tokenizer import load_tokenizer

    return load_tokenizer(tiny_tokenizer_dir)


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
    return _prepared(raw_slice, tmp_path_factory)


@pytest.fixture(scope="session")
def tokenizer_dir(prepared, tmp_path_factory) -> Path:
    return _tokenizer_dir(prepared, tmp_path_factory, 512)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from babyllama.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def teachers(prepared, tokenizer_dir, tmp_path_factory) -> list[Path]:
    """Two tiny trained models of different architectures (LLaMA, GPT-2), 30 steps each, on the shared slice."""
    from babyllama.training.pretrain import train

    root = tmp_path_factory.mktemp("teachers")
    out = []
    for preset in ("llama-tiny", "gpt2-tiny"):
        train(tiny_config(prepared, tokenizer_dir, root / preset, preset=preset, max_steps=30, eval_steps=30))
        out.append(root / preset)
    return out


@pytest.fixture
def data_root(tiny_raw, tmp_path):
    """corpus/ (the in-process corpus, with the smoke recipe's domain names) and an eval/ of tiny suites and tiny
    RTE and WSC files (the smoke recipe fine-tunes on them)."""
    root = tmp_path / "data"
    for split in ("train", "dev", "test"):
        (root / "corpus" / split).mkdir(parents=True)
        for src, dom in zip(sorted((tiny_raw / split).iterdir()), ("aochildes", "cbt", "simple_wikipedia")):
            shutil.copy(src, root / "corpus" / split / f"{dom}.{split}")
    pair = json.dumps({"sentence_good": "A cat.", "sentence_bad": "A cats."}) + "\n"
    for suite in ("blimp_fast", "supplement_fast"):
        (root / "eval" / suite).mkdir(parents=True)
        (root / "eval" / suite / "p.jsonl").write_text(pair)
    (root / "eval" / "ewok_fast").mkdir()
    with zipfile.ZipFile(root / "eval" / "ewok_fast" / "ewok_fast.zip", "w") as z:
        z.writestr("ewok_fast/d.jsonl", json.dumps({"Context1": "c", "Target1": "a", "Target2": "b"}) + "\n")
    glue = root / "eval" / "glue_filtered"
    glue.mkdir()
    for split, n in (("train", 8), ("valid", 4)):
        rte = [{"sentence1": "a cat sees the ball.", "sentence2": "a cat sees.", "label": i % 2} for i in range(n)]
        wsc = [{"text": "the girl sees her friend.", "span1_index": 0, "span2_index": 3, "span1_text": "girl",
                "span2_text": "her", "label": i % 2} for i in range(n)]
        (glue / f"rte.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rte))
        (glue / f"wsc.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in wsc))
    return root


def pytest_addoption(parser):
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each test file's seconds to tests/{DURATIONS.name}, the order later runs start files "
                          "in; it replaces the file, so run it over the whole suite")


def pytest_collection_modifyitems(config, items):
    """Longest test files first; ``gpu``-marked tests skipped where torch sees no CUDA device.

    `make test` hands whole files to its workers (``--dist loadfile --no-loadscope-reorder``) in this order: with the
    longest first, no worker is left running a minute-long file while the other has run out of work.
    """
    import torch

    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], 0.0))  # stable: a file keeps its order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_file_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    file = report.nodeid.split("::")[0]
    _file_seconds[file] = _file_seconds.get(file, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    # the controller (or a run without workers) hears every test's report; a worker only its own
    if session.config.getoption("store_durations") and not hasattr(session.config, "workerinput"):
        ordered = sorted(_file_seconds.items(), key=lambda kv: -kv[1])
        DURATIONS.write_text(json.dumps({f: round(s, 1) for f, s in ordered}, indent=1) + "\n")
