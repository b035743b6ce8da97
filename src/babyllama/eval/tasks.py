"""Zero-shot items and the readers of their files (the suite registry, :mod:`.suites`, says which file is which).

A suite is a list of :class:`Item`. Each item is a two-way choice scored as lm-evaluation-harness scores a
``multiple_choice`` task with target 0: the item is right when
``log P(choice_0 | context) >= log P(choice_1 | context)`` (ties count as right).

* minimal pairs (BLiMP, filtered BLiMP, the supplement, any user JSONL with ``sentence_good``/``sentence_bad``):
  context ``""``, choices ``[" " + good, " " + bad]``; the empty context is replaced by one prefix token at scoring;
* EWoK (BabyLM template ``ewok_filtered``): context ``Context1``, choices ``[" " + Target1, " " + Target2]``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..io import read_jsonl

EWOK_PASSWORD = b"BabyLM2025"  # published by BabyLM with the EWoK zips; the data must stay zipped (terms of use)


@dataclass(frozen=True)
class Item:
    paradigm: str  # file stem: a BLiMP paradigm, an EWoK domain, a supplement task
    index: int  # line number in its file (0-based, among items)
    context: str
    choices: tuple[str, str]  # the right one first
    group: str = ""  # BLiMP linguistics_term (phenomenon); EWoK domain


PAIR_LINE = "each line must be a JSON object with string fields sentence_good and sentence_bad"


def _bad(path, line_no, what) -> UserError:
    return UserError(f"{path}:{line_no}: {what}; {PAIR_LINE}")


def read_minimal_pairs(path: str | Path) -> list[Item]:
    path = Path(path)
    items = []
    for n, row in read_jsonl(path, PAIR_LINE):
        good, bad = row.get("sentence_good"), row.get("sentence_bad")
        if not isinstance(good, str) or not isinstance(bad, str):
            raise _bad(path, n, "missing sentence_good or sentence_bad")
        items.append(Item(path.stem, len(items), "", (" " + good, " " + bad), str(row.get("linguistics_term", ""))))
    if not items:
        raise UserError(f"{path}: no items; the file is empty")
    return items


def read_ewok(zip_path: str | Path) -> list[Item]:
    zip_path = Path(zip_path)
    items: list[Item] = []
    try:
        with zipfile.ZipFile(zip_path) as z:
            names = sorted(n for n in z.namelist() if n.endswith(".jsonl"))
            for name in names:
                stem = Path(name).stem
                rows = z.read(name, pwd=EWOK_PASSWORD).decode("utf-8").splitlines()
                k = 0
                for n, line in enumerate(rows, 1):
                    if not line.strip():
                        continue
                    try:
                        r = json.loads(line)
                        items.append(Item(stem, k, r["Context1"], (" " + r["Target1"], " " + r["Target2"]),
                                          r.get("Domain", stem)))
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise UserError(f"{zip_path}:{name}:{n}: not an EWoK item (needs Context1, Target1, "
                                        "Target2); use the BabyLM ewok zip") from None
                    k += 1
    except (zipfile.BadZipFile, RuntimeError, OSError) as e:
        raise UserError(f"{zip_path}: cannot read the EWoK zip ({e}); use the password-protected BabyLM zip "
                        "as distributed") from None
    if not items:
        raise UserError(f"{zip_path}: no EWoK items inside")
    return items


def read_minimal_pair_path(path: Path) -> list[Item]:
    """A ``.jsonl`` file, or every ``.jsonl`` file of a folder (one paradigm each), as minimal pairs."""
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise UserError(f"{path}: no .jsonl files")
        return [it for f in files for it in read_minimal_pairs(f)]
    return read_minimal_pairs(path)
