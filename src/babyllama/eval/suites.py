"""The suite registry: every zero-shot suite by name, where its files lie under the eval root, how to read them.

In the manner of lm-evaluation-harness's task registry: a suite is registered once (:func:`register_suite`) and
everything else (the CLI's ``--suite`` choices and help, recipes, the runner's stage keys) asks the registry.
Kinds: ``pairs`` (two-way choices scored by log-likelihood as lm-eval does, :mod:`.tasks`), the BabyLM 2025
pipeline's ``entity_tracking`` and ``wug`` (completion ranking, :mod:`.choice_suites`) and ``reading`` (surprisal
regressions, :mod:`.reading`), and ``perplexity`` (per-domain CE on a prepared corpus, :mod:`.perplexity`). A path
to a ``.jsonl`` file or a folder of them is a ``pairs`` suite too. Suite groups (``babylm2025``,
``babylm2025_fast``) name the BabyLM 2025 pipeline's text zero-shot suites; a config's suite list expands them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config.evaluation import SUITE_GROUPS
from ..errors import UserError
from ..io import sha256_file
from .tasks import Item, read_ewok, read_minimal_pair_path
from .tasks2025 import read_entity_tracking, read_wug

Kind = Literal["pairs", "entity_tracking", "wug", "reading", "perplexity"]
ITEM_KINDS = ("pairs", "entity_tracking", "wug", "reading")  # suites with data files under the eval root


def _read_reading(path: Path):
    from .reading import read_reading

    return read_reading(path)


@dataclass(frozen=True)
class Suite:
    name: str
    kind: Kind
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
register_suite(Suite("entity_tracking", "entity_tracking", "BabyLM 2025 entity tracking (Kim & Schuster 2023): "
                     "regular, ambiref, move_contents; accuracy of the most probable of 5 box contents",
                     "entity_tracking", read_entity_tracking))
register_suite(Suite("entity_tracking_fast", "entity_tracking", "the BabyLM 2025 fast entity tracking "
                     "(regular.jsonl alone)", "entity_tracking/regular.jsonl", read_entity_tracking))
register_suite(Suite("wug_adj", "wug", "BabyLM 2025 wug adjective nominalization (-ity vs -ness): Spearman's rho "
                     "with the human ratios", "wug_adj_nominalization", read_wug))
register_suite(Suite("reading", "reading", "BabyLM 2025 reading (de Varda et al. 2023): surprisal's gain in "
                     "explained variance of eye-tracking and self-paced reading times", "reading", _read_reading))
register_suite(Suite("perplexity", "perplexity", "CE, perplexity and bits per word per domain of a prepared corpus"))


def suite_names() -> list[str]:
    return list(SUITES)


def suite_help() -> str:
    return ("; ".join(f"{s.name}: {s.description}" for s in SUITES.values()) + "; groups: "
            + "; ".join(f"{g} = {' '.join(m)}" for g, m in SUITE_GROUPS.items()))


def default_eval_root() -> Path | None:
    root = os.environ.get("BABYLLAMA_DATA")
    return Path(root) / "eval" if root else None


def get_suite(name: str) -> Suite:
    """The registered suite, or a ``pairs`` suite for a path to JSONL minimal pairs."""
    if name in SUITES:
        return SUITES[name]
    if Path(name).exists():
        return Suite(name, "pairs", f"minimal pairs from {name}", name, read_minimal_pair_path)
    raise UserError(f"unknown suite '{name}': use one of {', '.join([*SUITES, *SUITE_GROUPS])}, or a path to "
                    "JSONL minimal pairs")


def suite_path(name: str, eval_root: str | Path | None) -> Path:
    """Where a suite's data file or folder lies."""
    suite = get_suite(name)
    if suite.kind not in ITEM_KINDS:
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


def load_items(name: str, eval_root: str | Path | None = None, paradigms: list[str] | None = None):
    """Items of a suite (the reading suite: its table), a pairs suite optionally only some paradigms."""
    suite = get_suite(name)
    items = suite.reader(suite_path(name, eval_root))
    if paradigms and suite.kind == "pairs":
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
