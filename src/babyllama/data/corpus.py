"""Reading BabyLM corpora in every layout, and `babyllama data prepare`.

Layouts recognised (``find_layout``):

* **2023**: ``babylm_10M/`` (or ``babylm_100M/``), ``babylm_dev/``, ``babylm_test/``; files ``<domain>.train|dev|test``
  over the domains aochildes, bnc_spoken, cbt, children_stories, gutenberg, open_subtitles, qed, simple_wikipedia,
  switchboard, wikipedia;
* **2024**: ``train_10M/`` (or ``train_100M/``), ``dev/``, ``test/``; domains bnc_spoken, childes, gutenberg,
  open_subtitles, simple_wiki, switchboard;
* **plain**: ``train/ dev/ test/`` (the layout of ``shared/data/corpus``), any file names;
* **text folder**: any folder of UTF-8 ``.txt`` files, read as one domain named after the folder. Its last 5% of
  lines (at least one) become the dev split so that training can evaluate.

A prepared corpus (the output of :func:`prepare`) is a plain layout of ``<split>/<domain>.txt`` files of cleaned
text, documents separated by the end-of-text token, with ``stats.json`` beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..io import atomic_write, require_folders
from ..special_tokens import EOT
from .clean import cleaner_for, split_documents

SPLITS = ("train", "dev", "test")
LAYOUTS = {
    "2023": {"train": ("babylm_10M", "babylm_100M"), "dev": ("babylm_dev",), "test": ("babylm_test",)},
    "2024": {"train": ("train_10M", "train_100M"), "dev": ("dev",), "test": ("test",)},
    "plain": {"train": ("train",), "dev": ("dev",), "test": ("test",)},
}
SKIP_NAMES = {"stats.json", "README.md", "SOURCES.md", "MANIFEST.sha256", "LICENSE", ".DS_Store"}


@dataclass
class Corpus:
    """Where each (split, domain) text lives. ``files[split][domain]`` is a list of paths."""

    root: Path
    layout: str
    files: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    holdout_dev: bool = False  # text-folder layout: dev is carved from the end of train

    @property
    def domains(self) -> list[str]:
        return sorted({d for split in self.files.values() for d in split})


def read_text(path: Path) -> str:
    """Read a UTF-8 file; undecodable bytes are a :class:`UserError` naming the file and the byte offset."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror}); check the path and permissions") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise UserError(f"{path}: holds a NUL byte at offset {nul} (a binary file?); remove the file or convert it to "
                        "plain UTF-8 text")
    try:
        return data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not UTF-8 text (bad byte at offset {e.start}); convert it, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > fixed`"
        ) from None


def _domain_of(path: Path) -> str:
    return path.stem if path.suffix in {".train", ".dev", ".test", ".txt"} else path.name


def _text_files(d: Path) -> list[Path]:
    return sorted(
        p for p in d.iterdir() if p.is_file() and p.name not in SKIP_NAMES and not p.name.startswith(".")
    )


def find_layout(root: str | Path, size: str = "10M") -> Corpus:
    """Detect the layout of ``root`` and list its files. ``size`` picks 10M or 100M when both are present."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"corpus directory not found: {root}; pass a BabyLM folder (or download one with "
            "`babyllama data download babylm-2024-10M DEST`)"
        )
    for name, dirs in LAYOUTS.items():
        train_dirs = [root / d for d in dirs["train"] if (root / d).is_dir()]
        if not train_dirs:
            continue
        preferred = [d for d in train_dirs if d.name.endswith(size)] or train_dirs
        corpus = Corpus(root, name)
        for split in SPLITS:
            cand = preferred if split == "train" else [root / d for d in dirs[split] if (root / d).is_dir()]
            if cand:
                corpus.files[split] = {}
                for p in _text_files(cand[0]):
                    corpus.files[split].setdefault(_domain_of(p), []).append(p)
        _check_nonempty(corpus)
        return corpus
    txt = sorted(root.glob("*.txt"))
    if txt:
        corpus = Corpus(root, "text", {"train": {root.name: txt}}, holdout_dev=True)
        _check_nonempty(corpus)
        return corpus
    raise UserError(
        f"{root}: no corpus found (expected train/ dev/ test/, babylm_10M/ babylm_dev/ ..., train_10M/ dev/ ..., "
        "or .txt files); point to the folder that holds the splits"
    )


def _check_nonempty(corpus: Corpus) -> None:
    train = corpus.files.get("train", {})
    if not train or all(p.stat().st_size == 0 for ps in train.values() for p in ps):
        raise UserError(f"{corpus.root}: the training split is empty; add text files or point to another folder")


def clean_domain(domain: str, raw: str) -> list[str]:
    """Raw domain text -> cleaned documents (empty ones dropped)."""
    clean = cleaner_for(domain)
    docs = (clean(doc).strip("\n") for doc in split_documents(domain, raw))
    return [d for d in docs if d.strip()]


def count_words(docs: list[str]) -> tuple[int, int]:
    """(words, lines) of cleaned documents, counted like ``wc -w`` / ``wc -l`` on the text."""
    return sum(len(d.split()) for d in docs), sum(d.count("\n") + 1 for d in docs)


def prepare(src: str | Path, out: str | Path, overwrite: bool = False, size: str = "10M") -> dict:
    """Clean every split and domain of ``src`` into ``out``; write ``stats.json``; return the stats.

    The output is written into a temporary sibling directory and renamed into place at the end, so an
    interrupted run leaves no partial corpus that looks complete. An existing ``out`` is never replaced unless
    ``overwrite`` is set and it is itself a prepared corpus (holds our ``stats.json``).
    """
    corpus = find_layout(src, size)
    out = Path(out)
    require_folders([out], "prepared corpus folder")
    if out.exists() and any(out.iterdir()):
        if not (overwrite and (out / "stats.json").is_file()):
            raise UserError(
                f"{out} exists and is not empty; choose a new output directory"
                + (" (it is not a prepared corpus, so --overwrite will not touch it)" if overwrite else
                   " or pass --overwrite to replace a previously prepared corpus")
            )
    stats: dict = {"source": str(Path(src).resolve()), "layout": corpus.layout, "splits": {}}
    with atomic_write(out, directory=True) as tmp:
        for split, domains in corpus.files.items():
            for domain, paths in sorted(domains.items()):
                raw = "\n".join(read_text(p) for p in paths)
                docs = clean_domain(domain, raw)
                if corpus.holdout_dev:
                    _write_holdout(tmp, domain, docs, stats)
                    continue
                _write_split(tmp, split, domain, docs, stats)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _write_split(root: Path, split: str, domain: str, docs: list[str], stats: dict) -> None:
    (root / split).mkdir(exist_ok=True)
    (root / split / f"{domain}.txt").write_text(EOT.join(docs) + EOT, encoding="utf-8")
    words, lines = count_words(docs)
    stats["splits"].setdefault(split, {})[domain] = {"words": words, "lines": lines, "documents": len(docs)}


def _write_holdout(root: Path, domain: str, docs: list[str], stats: dict) -> None:
    lines = "\n".join(docs).split("\n")
    n_dev = max(1, len(lines) // 20)
    if len(lines) < 2:
        raise UserError(f"{domain}: too little text to hold out a dev split; add more lines")
    _write_split(root, "train", domain, ["\n".join(lines[:-n_dev])], stats)
    _write_split(root, "dev", domain, ["\n".join(lines[-n_dev:])], stats)


def load_prepared(root: str | Path, split: str, domains: list[str] | None = None) -> dict[str, str]:
    """{domain: cleaned text} of one split of a prepared corpus."""
    root = Path(root)
    if not (root / "stats.json").is_file():
        raise UserError(
            f"{root} is not a prepared corpus (no stats.json); run `babyllama data prepare SRC {root}` first"
        )
    d = root / split
    if not d.is_dir():
        raise UserError(f"{root}: no '{split}' split; prepare a corpus that has it or change data.{split}_split")
    texts = {p.stem: read_text(p) for p in sorted(d.glob("*.txt"))}
    if domains:
        missing = sorted(set(domains) - set(texts))
        if missing:
            raise UserError(f"{d}: no domain(s) {', '.join(missing)}; available: {', '.join(texts)}")
        texts = {k: v for k, v in texts.items() if k in domains}
    if not texts or not any(t.strip() for t in texts.values()):
        raise UserError(f"{d}: the split is empty; prepare the corpus again from a non-empty source")
    return texts


def stats_table(stats: dict) -> str:
    """Markdown table of words and lines per domain and split."""
    splits = list(stats["splits"])
    domains = sorted({d for s in splits for d in stats["splits"][s]})
    head = "| domain | " + " | ".join(f"{s} words | {s} lines" for s in splits) + " |"
    sep = "|---|" + "---:|---:|" * len(splits)
    rows = [head, sep]
    totals = {s: [0, 0] for s in splits}
    for d in domains:
        cells = []
        for s in splits:
            e = stats["splits"][s].get(d)
            cells += [f"{e['words']:,}", f"{e['lines']:,}"] if e else ["", ""]
            if e:
                totals[s][0] += e["words"]
                totals[s][1] += e["lines"]
        rows.append(f"| {d} | " + " | ".join(cells) + " |")
    rows.append("| **total** | " + " | ".join(f"**{w:,}** | **{n:,}**" for w, n in totals.values()) + " |")
    return "\n".join(rows)
