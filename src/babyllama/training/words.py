"""Checkpoints by words seen (BabyLM 2025: 1M, 2M, ... 10M, then every 10M to 100M training words).

Words are counted from the corpus: the training split's words per token (its ``stats.json`` against its token
count) times the tokens trained on. Each checkpoint is a Hugging Face folder ``OUTPUT_DIR/words-<N>`` with
``words.json`` ({words, target, step}); unlike the Trainer's rotating checkpoints they are all kept.
"""

from __future__ import annotations

import re
from pathlib import Path

from transformers import TrainerCallback

from ..io import atomic_write, read_json
from ..tokenizer import finalize_tokenizer_config, model_context

WORDS_DIR = re.compile(r"^words-([0-9.]+)([kMB]?)$")


def words_label(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def word_checkpoints(out: str | Path) -> list[tuple[int, Path]]:
    """(target words, folder) of every finished words-* checkpoint of a training output folder, in order."""
    found = []
    for d in Path(out).iterdir() if Path(out).is_dir() else []:
        info = read_json(d / "words.json") if d.is_dir() and WORDS_DIR.match(d.name) else None
        if isinstance(info, dict):
            found.append((int(info["target"]), d))
    return sorted(found)


class WordCheckpoints(TrainerCallback):
    """Save the model (and tokenizer) each time the words seen pass the next ``targets`` entry."""

    def __init__(self, targets: list[int], words_per_token: float, tokens_per_step: int, out: Path):
        self.targets = sorted(set(targets))
        self.words_per_step = words_per_token * tokens_per_step
        self.out = Path(out)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not args.should_save:
            return
        seen = state.global_step * self.words_per_step
        for target in self.targets:
            folder = self.out / f"words-{words_label(target)}"
            if target <= seen and not (folder / "words.json").is_file():
                with atomic_write(folder, directory=True) as tmp:
                    model.save_pretrained(tmp, safe_serialization=True)
                    if processing_class is not None:
                        processing_class.save_pretrained(tmp)
                        finalize_tokenizer_config(tmp, model_context(model.config))
                    (tmp / "words.json").write_text(
                        f'{{"words": {round(seen)}, "target": {target}, "step": {state.global_step}}}\n')
