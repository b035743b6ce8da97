"""Trainer checkpoints that are whole or ignored: a marker after each save, and the last good one on resume.

The Trainer writes ``checkpoint-N/`` file by file (weights, optimizer, scheduler, RNG state, then
``trainer_state.json``); a kill or a full disk in between leaves a folder that ``resume_from_checkpoint`` dies on.
After every save :class:`CheckpointMarker` writes ``babyllama_checkpoint.json`` (atomically) listing the folder's
files and sizes. :func:`last_good_checkpoint` takes the newest checkpoint whose marker matches what is on disk
(one without a marker is accepted only if its ``trainer_state.json``, written last, parses), and removes the newer
unfinished ones, saying so.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from ..io import read_json, write_json

MARKER = "babyllama_checkpoint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(out: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of a run, newest (highest N) first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is whole."""
    state = read_json(ckpt / "trainer_state.json")
    if not isinstance(state, dict) or "global_step" not in state:
        return "no readable trainer_state.json"
    if not (ckpt / MARKER).exists():
        return None  # saved without our marker: trainer_state.json, which the Trainer writes last, parsed
    marker = read_json(ckpt / MARKER)
    if not isinstance(marker, dict):
        return f"unreadable {MARKER}"
    for name, size in marker.get("files", {}).items():
        f = ckpt / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} were written"
    return None


def last_good_checkpoint(out: str | Path, say=print) -> str | None:
    """The newest whole checkpoint; newer unfinished ones are removed (they hold nothing to resume)."""
    for ckpt in checkpoints(out):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return str(ckpt)
        say(f"removing unfinished checkpoint {ckpt} ({problem}); resuming from the one before")
        shutil.rmtree(ckpt, ignore_errors=True)
    return None


class CheckpointMarker(TrainerCallback):
    """After the Trainer has saved ``checkpoint-N``, record its files and sizes (the process that saves only)."""

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            files = {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*"))
                     if p.is_file() and p.name != MARKER}
            write_json(ckpt / MARKER, {"step": state.global_step, "files": files})

