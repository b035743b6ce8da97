"""Per-domain cleaners for the BabyLM corpus: pure ``str -> str`` functions.

The rules follow the Baby Llama authors' ``mrclean.py`` where it was right, and are narrower where it dropped
real text (their subtitle rule deleted every line containing "subtitle", dialogue included).

* every domain: runs of spaces/tabs/no-break spaces collapse to one space; the space before ``. , ; ! ?`` goes;
* wikipedia: ``= = = Heading = = =`` lines become plain ``Heading`` lines;
* open_subtitles: subtitle credit lines ("Subtitles by ...", "Sync: ...") are dropped;
* qed: lines that are mostly upper case are turned into sentence case;
* cbt: split contractions are joined (``don 't`` -> ``don't``).

Document boundaries are found by :func:`split_documents`; :mod:`babyllama.data.corpus` joins documents with the
end-of-text token.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SPACES = re.compile(r"[ \t\u00A0]+")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t\u00A0]+([.,;!?])")
_WIKI_HEADING = re.compile(r"^[ \t]*(?:=[ \t]*)+(.+?)(?:[ \t]*=)+[ \t]*$", re.MULTILINE)
_WIKI_TOP_HEADING = re.compile(r"^[ \t]*=[ \t]+([^=].*?)[ \t]+=[ \t]*$")
_SUBTITLE_CREDIT = re.compile(
    r"\bsub(?:title[sd]?|titling)\b\s*(?:by|:|sync|created|ripped|provided|downloaded|corrected|-)"
    r"|\bopen\s*subtitles\b|\bsync(?:ed|hronized)?\s*(?:by|:)",
    re.IGNORECASE,
)
_SPLIT_APOSTROPHE = re.compile(r"(\w)[ \t\u00A0](['’](?:s|t|re|ve|ll|d|m|S|T|RE|VE|LL|D|M)\b)")
_SENTENCE_SPLIT = re.compile(r"([.!?]+\s*)")
_PARENS_OR_PUNCT = re.compile(r"\(.*?\)|[^A-Za-z]")


def clean_spaces(text: str) -> str:
    """Collapse runs of spaces and tabs to one space, strip line ends, drop the space before ``.,;!?``."""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACES.sub(" ", text)
    return "\n".join(line.strip(" ") for line in text.split("\n"))


def clean_wikipedia(text: str) -> str:
    """``= = = Heading = = =`` -> ``Heading`` (any depth), then :func:`clean_spaces`."""
    return clean_spaces(_WIKI_HEADING.sub(r"\1", text))


def clean_open_subtitles(text: str) -> str:
    """Drop subtitle credit lines ("Subtitles by X", "Sync: Y", "Open Subtitles ..."), keep all other lines."""
    kept = [line for line in text.split("\n") if not _SUBTITLE_CREDIT.search(line)]
    return clean_spaces("\n".join(kept))


def _mostly_upper(line: str) -> bool:
    letters = _PARENS_OR_PUNCT.sub("", line)
    return bool(letters) and sum(c.isupper() for c in letters) / len(letters) >= 0.5


def clean_qed(text: str) -> str:
    """Lines that are mostly upper case become sentence case ("HELLO THERE. HOW" -> "Hello there. How")."""
    out = []
    for line in text.split("\n"):
        if _mostly_upper(line):
            parts = _SENTENCE_SPLIT.split(line)
            line = "".join(p[:1].upper() + p[1:].lower() for p in parts)
            line = re.sub(r"\bi\b", "I", line)
        out.append(line)
    return clean_spaces("\n".join(out))


def clean_cbt(text: str) -> str:
    """Join split contractions (``don 't`` -> ``don't``, ``king 's`` -> ``king's``), then :func:`clean_spaces`."""
    return clean_spaces(_SPLIT_APOSTROPHE.sub(r"\1\2", text))


# Canonical domain names (BabyLM 2023 names; 2024 aliases map onto them).
CLEANERS: dict[str, Callable[[str], str]] = {
    "wikipedia": clean_wikipedia,
    "open_subtitles": clean_open_subtitles,
    "qed": clean_qed,
    "cbt": clean_cbt,
}
ALIASES = {"simple_wiki": "simple_wikipedia"}


def cleaner_for(domain: str) -> Callable[[str], str]:
    """The cleaner of a domain; unknown domains (a user's own text) get :func:`clean_spaces`."""
    return CLEANERS.get(ALIASES.get(domain, domain), clean_spaces)


def split_documents(domain: str, text: str) -> list[str]:
    """Split raw text into documents where the source marks boundaries.

    * cbt: each ``_BOOK_TITLE_ : ...`` line starts a new book (the title line itself is dropped);
    * wikipedia: each top-level ``= Title =`` line starts a new article (kept as the article's first line);
    * simple_wikipedia / simple_wiki and any domain: blank lines separate documents where present.
    Domains without markers are one document per file.
    """
    domain = ALIASES.get(domain, domain)
    docs: list[list[str]] = [[]]
    for line in text.split("\n"):
        if domain == "cbt" and line.startswith("_BOOK_TITLE_"):
            docs.append([])
            continue
        if domain == "wikipedia" and _WIKI_TOP_HEADING.match(line):
            docs.append([])
        if not line.strip():
            if docs[-1]:
                docs.append([])
            continue
        docs[-1].append(line)
    return ["\n".join(d) for d in docs if d]
