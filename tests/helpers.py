"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHARED_CORPUS = SHARED / "corpus"
SHARED_EVAL = SHARED / "eval"


def need_shared() -> Path:
    if not SHARED_CORPUS.is_dir():
        pytest.skip(f"needs the shared corpus at {SHARED_CORPUS}")
    return SHARED


def run_cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`babyllama ARGS` in a fresh interpreter, output captured."""
    return subprocess.run([sys.executable, "-m", "babyllama.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


def run_here(capsys, *args) -> subprocess.CompletedProcess:
    """`babyllama ARGS` in this process (no interpreter start-up), reported as :func:`run_cli` reports it."""
    from babyllama.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own exits: --help, --version, a usage error
        # as the interpreter reports them: no code is 0, a message (not a number) is 1
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess([str(a) for a in args], code, out.out, out.err)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    """The single `babyllama: error:` line of a failed command (asserts exit 2, no traceback, nothing else)."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("babyllama: error:"), lines
    return lines[0]


def tiny_config(prepared, tokenizer_dir, out, preset="llama-tiny", **training):
    """A Config for a few CPU steps of a tiny model."""
    from babyllama.config import Config

    t = dict(output_dir=str(out), batch_size=8, max_steps=30, warmup_steps=5, learning_rate=3e-3,
             eval_strategy="steps", eval_steps=15, logging_steps=5, report_to=["none"], progress=False)
    t.update(training)
    return Config.model_validate({
        "data": {"corpus": str(prepared), "tokenizer": str(tokenizer_dir), "seq_len": 64, "max_eval_tokens": 4096},
        "model": {"preset": preset},
        "training": t,
    })


def parse_plan_lines(stdout: str) -> dict[str, str]:
    """`babyllama run --dry-run` output -> {stage name: action}."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("reuse", "run", "resume", "rerun"):
            out[parts[1]] = parts[0]
    return out


def parse_status(stdout: str) -> dict[str, str]:
    """`babyllama status` output -> {stage name: state}."""
    rows = [line.split() for line in stdout.splitlines()[1:] if line.strip()]
    return {r[0]: r[1] for r in rows}


def save_random_teachers(tokenizer, root) -> list[str]:
    """A randomly initialised LLaMA and GPT-2 saved with ``tokenizer`` under ``root``: teachers for cache tests."""
    from babyllama.config import ModelConfig
    from babyllama.models import build_model

    dirs = []
    for i, preset in enumerate(("llama-tiny", "gpt2-tiny")):
        build_model(ModelConfig(preset=preset), tokenizer, seed=i).save_pretrained(root / preset)
        tokenizer.save_pretrained(root / preset)
        dirs.append(str(root / preset))
    return dirs


MSGS_WORDS = ["the cat", "a bird", "the girl", "my brother", "the old man", "a teacher", "she", "he"]
MSGS_VERBS = ["sees", "likes", "finds", "wants", "draws", "talks to", "waits for"]


def msgs_sentence(rng, with_dog: bool) -> str:
    subj, obj = rng.choice(MSGS_WORDS), rng.choice(MSGS_WORDS)
    if with_dog:
        (subj, obj) = ("the dog", obj) if rng.random() < 0.5 else (subj, "the dog")
    return f"{subj} {rng.choice(MSGS_VERBS)} {obj} ."


def write_msgs(root, task="main_verb_control", n_train=320, n_valid=80, seed=0):
    """An MSGS-format task whose label is whether 'the dog' occurs; valid rows alternate test/control."""
    rng = random.Random(seed)
    folder = root / "msgs_filtered"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, conditions in (("train", n_train, ["training"]), ("valid", n_valid, ["test", "control"])):
        rows = []
        for i in range(n):
            label = i % 2
            rows.append({"sentence": msgs_sentence(rng, bool(label)), "label": label,
                         "condition": conditions[i % len(conditions) if split == "train" else (i // 2) % 2],
                         "linguistic_feature_type": "syntactic", "surface_feature_type": None})
        (folder / f"{task}.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def synthetic_reading_frame(n_sent=40, seed=0):
    """A reading_data.csv-shaped table: 5 words of each of ``n_sent`` seeded sentences, random measures."""
    import math

    import numpy as np
    import pandas as pd

    from babyllama.eval.reading import MEASURES

    rng = np.random.default_rng(seed)
    words = ["cat", "sat", "on", "the", "mat", "and", "a", "dog", "ran", "quickly", "blickability"]
    rows = []
    for s in range(n_sent):
        sent = list(rng.choice(words, 6))
        for i in range(1, 6):
            rows.append({"item": " ".join(sent[:i]), "word": sent[i], "sent_id": s,
                         "prev_item": " ".join(sent[: i - 1]) if i > 1 else math.nan,
                         "prev_word": sent[i - 1] if i > 1 else math.nan,
                         "Subtlex_log10": rng.normal(10, 2), "length": len(sent[i]), "context_length": i,
                         "prev_length": len(sent[i - 1])})
    df = pd.DataFrame(rows)
    for m in MEASURES:
        df[m] = rng.normal(200, 30, len(df)) + 5 * df["length"]
    return df
