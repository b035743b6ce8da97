"""The suite registry: every zero-shot suite by name, where its files lie under the eval root, how to read them.

In the manner of lm-evaluation-harness's task registry: a suite is registered once (:func:`register_suite`) and
everything else (the CLI's ``--suite`` choices and help, recipes, the runner's stage keys) asks the registry.
Kinds: ``pairs`` (two-way choices scored by log-likelihood, :mod:`.tasks`) and ``perplexity`` (per-domain CE on a
prepared corpus, :mod:`.perplexity`). A path to a ``.jsonl`` file or a folder of them is a ``pairs`` suite too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import UserError
from ..io import sha256_file
from .tasks import Item, read_ewok, read_minimal_pair_path


@dataclass(frozen=True)
class Suite:
    name: str
    kind: Literal["pairs", "perplexity"]
    description: str
    path: str | None = None  # relative to the eval root (pairs suites)
    reader: Callable[[Path], list[Item]] | None = None


SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    if suite.name in SUITES:
        raise ValueError(f"suite '{suite.name}' is registered twice")
    SUITES[suite.name] = suite
    return suite


for _name, _path, _what in (
    ("blimp", "blimp", "BLiMP, 67 paradigms of 1,000 minimal pairs"),
    ("blimp_filtered", "blimp_filtered", "BLiMP filtered to the BabyLM vocabulary (BabyLM 2023/2024)"),
    ("blimp_fast", "blimp_fast", "the BabyLM 2025 fast subset of filtered BLiMP"),
    ("supplement", "supplement_filtered", "the BabyLM BLiMP supplement"),
    ("supplement_fast", "supplement_fast", "the BabyLM 2025 fast subset of the supplement"),
):
    register_suite(Suite(_name, "pairs", _what, _path, read_minimal_pair_path))
register_suite(Suite("ewok", "pairs", "EWoK world knowledge, log P(Target | Context1) (BabyLM ewok_filtered)",
                     "ewok_filtered/ewok_filtered.zip", read_ewok))
register_suite(Suite("ewok_fast", "pairs", "the BabyLM 2025 fast subset of EWoK", "ewok_fast/ewok_fast.zip",
                     read_ewok))
register_suite(Suite("perplexity", "perplexity", "CE, perplexity and bits per word per domain of a prepared corpus"))


def suite_names() -> list[str]:
    return list(SUITES)


def suite_help() -> str:
    return "; ".join(f"{s.name}: {s.description}" for s in SUITES.values())


def default_eval_root() -> Path | None:
    root = os.environ.get("BABYLLAMA_DATA")
    return Path(root) / "eval" if root else None


def get_suite(name: str) -> Suite:
    """The registered suite, or a ``pairs`` suite for a path to JSONL minimal pairs."""
    if name in SUITES:
        return SUITES[name]
    if Path(name).exists():
        return Suite(name, "pairs", f"minimal pairs from {name}", name, read_minimal_pair_path)
    raise UserError(f"unknown suite '{name}': use one of {', '.join(SUITES)}, or a path to JSONL minimal pairs")


def suite_path(name: str, eval_root: str | Path | None) -> Path:
    """Where a pairs suite's file or folder lies."""
    suite = get_suite(name)
    if suite.kind != "pairs":
        raise ValueError(f"suite '{name}' has no item files")
    if name not in SUITES:
        return Path(name)
    root = Path(eval_root) if eval_root else default_eval_root()
    if root is None:
        raise UserError(f"suite '{name}' needs the eval data: pass --eval-root DIR or set BABYLLAMA_DATA "
                        "(e.g. ../shared/data), or `babyllama data download blimp DIR`")
    path = root / suite.path
    if not path.exists():
        raise UserError(f"suite '{name}': {path} not found; check --eval-root / BABYLLAMA_DATA")
    return path


def load_items(name: str, eval_root: str | Path | None = None, paradigms: list[str] | None = None) -> list[Item]:
    """Items of a pairs suite, optionally only some paradigms."""
    items = get_suite(name).reader(suite_path(name, eval_root))
    if paradigms:
        have = {it.paradigm for it in items}
        if not have & set(paradigms):
            raise UserError(f"suite '{name}': no paradigm among {', '.join(sorted(paradigms))}")
        items = [it for it in items if it.paradigm in set(paradigms)]
    return items


def fingerprint(name: str, eval_root: str | Path | None) -> list:
    """Content identity of a pairs suite's files (relative names, sizes, sha256): a stage key needs no paths."""
    path = suite_path(name, eval_root)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p.relative_to(path)) if path.is_dir() else p.name, p.stat().st_size, sha256_file(p)) for p in files]
