"""The BabyLM 2025 pipeline's completion-ranking items and the readers of their files (entity tracking, wug).

Each :class:`ChoiceItem` is what the pipeline's ``read_files.decode_*`` builds: candidate ``sentences``, the part of
each that is scored (``completions``, a suffix of its sentence) and the right option first (the pipeline's label is
always 0). ``paradigm`` is the pipeline's ``UID``:

* entity tracking (Kim & Schuster 2023): one item per line, ``sentences = input_prefix + option`` for its five
  ``options``, completion the option; UID ``<file stem>_<numops>_ops``, the split (file stem) kept as ``group``;
* wug adjective nominalization (Hofmann et al. 2024): ``sentences`` split at the tab into the -ity and the -ness
  sentence, each scored whole, with the human ``ratio`` (the share of people who chose the first form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..io import read_jsonl

@dataclass(frozen=True)
class ChoiceItem:
    paradigm: str  # the pipeline's UID
    index: int  # line number in its file (0-based, among items)
    sentences: tuple[str, ...]
    completions: tuple[str, ...]  # each a suffix of its sentence; the right option first
    group: str = ""  # entity tracking: the split (file stem)
    ratio: float | None = None  # wug: the human preference for the first option


ENTITY_LINE = ("each line must be a JSON object with input_prefix (string), options (a list of strings) and "
               "numops (an integer), as in the BabyLM 2025 entity_tracking files")
WUG_LINE = ("each line must be a JSON object with sentences (two sentences separated by a tab) and ratio (a number "
            "in [0, 1]), as in the BabyLM 2025 wug_adj_nominalization file")


def _files(path: Path, what: str) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise UserError(f"{path}: no .jsonl files; point the eval root at the BabyLM 2025 {what} folder")
        return files
    if not path.is_file():
        raise UserError(f"{path} not found; point --eval-root at the folder that holds the BabyLM 2025 {what} data")
    return [path]


def read_entity_tracking(path: str | Path) -> list[ChoiceItem]:
    """A file, or every ``.jsonl`` of a folder (one split each)."""
    items: list[ChoiceItem] = []
    for f in _files(Path(path), "entity_tracking"):
        k = 0
        for n, row in read_jsonl(f, ENTITY_LINE):
            prefix, options, numops = row.get("input_prefix"), row.get("options"), row.get("numops")
            if (not isinstance(prefix, str) or not isinstance(options, list) or len(options) < 2
                    or not all(isinstance(o, str) and o for o in options)
                    or not isinstance(numops, int) or isinstance(numops, bool)):
                raise UserError(f"{f}:{n}: not an entity-tracking item; {ENTITY_LINE}")
            items.append(ChoiceItem(f"{f.stem}_{numops}_ops", k, tuple(prefix + o for o in options), tuple(options),
                                    f.stem))
            k += 1
        if not k:
            raise UserError(f"{f}: no items; the file is empty")
    return items


def read_wug(path: str | Path) -> list[ChoiceItem]:
    items: list[ChoiceItem] = []
    for f in _files(Path(path), "wug_adj_nominalization"):
        for n, row in read_jsonl(f, WUG_LINE):
            sents, ratio = row.get("sentences"), row.get("ratio")
            parts = sents.split("\t") if isinstance(sents, str) else []
            try:
                ratio = float(ratio)
            except (TypeError, ValueError):
                ratio = math.nan
            if len(parts) != 2 or not all(parts) or not 0.0 <= ratio <= 1.0:
                raise UserError(f"{f}:{n}: not a wug item; {WUG_LINE}")
            # the pipeline's UID is the task name, one correlation over every item
            items.append(ChoiceItem("wug_adj", len(items), tuple(parts), tuple(parts), ratio=ratio))
    if len(items) < 3:
        raise UserError(f"{path}: {len(items)} wug items; a rank correlation needs at least 3")
    return items
