"""What long work prints: one bar per stage on a terminal, plain lines in a log file, numbers formatted for people.

On a terminal (stderr is a TTY) a stage shows one live tqdm bar and writes its lines above it. Into a file (a
scheduler's log, ``nohup``, a sweep worker's log) a bar's carriage-return redraws would pile up, so there is no
bar: the stage's lines carry the progress themselves (step of total, tokens/s, ETA). Library bars (transformers'
weight loading and shard writing) are silenced by :func:`quiet_library_bars`.
"""

from __future__ import annotations

import sys
import time


def interactive() -> bool:
    """Whether live bars make sense: stderr is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def clock(seconds: float | None) -> str:
    """``0:03:07`` (h:mm:ss); ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def number(v: float) -> str:
    """A metric for a log line: 4 significant digits, scientific notation for the tiny (learning rates)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def say(line: str) -> None:
    """Print a line without breaking a live tqdm bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


# transformers warnings that are expected in how babyllama uses it, each with why it is harmless here
BENIGN_WARNINGS = (
    # checkpoint rotation sorts by step number when mtimes are coarse: the order it falls back to is the right one
    "mtime may not be reliable on this filesystem",
    # a tied output layer (GPT-2) is not stored apart from the input embeddings it is tied to
    "There were missing keys in the checkpoint model loaded: ['lm_head.weight']",
    # fixed-length chunks and unpadded scoring rows have no padding to mask
    "We strongly recommend passing in an `attention_mask`",
)


class _DropBenign:
    def filter(self, record) -> bool:
        msg = record.getMessage()
        return not any(b in msg for b in BENIGN_WARNINGS)


def quiet_library_bars() -> None:
    """transformers' and huggingface_hub's own bars (loading weights, writing shards) off, so a stage has one bar;
    and the transformers warnings listed in :data:`BENIGN_WARNINGS` dropped (every other warning still shows)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        for handler in hf_logging.get_logger().handlers:
            handler.addFilter(_DropBenign())
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


class Bar:
    """A tqdm bar on a terminal; in a log file, one summary line when it closes (``desc: N unit in 0:00:15``)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0):
        from tqdm import tqdm

        self.desc, self.unit, self.enabled, self.n0 = desc, unit, enabled, initial
        self.t0 = time.perf_counter()
        self.live = enabled and interactive()
        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True,
                        disable=not self.live)
        self.n = initial
        self.postfix = ""

    def update(self, k: int = 1, postfix: str | None = None) -> None:
        self.n += k
        if postfix is not None:
            self.postfix = postfix
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(k)

    def close(self, summary: bool = True) -> None:
        """Close the bar; in a log file, write its summary line unless ``summary`` is false (the caller writes its
        own)."""
        self.bar.close()
        if summary and self.enabled and not self.live:
            extra = f" ({self.postfix})" if self.postfix else ""
            say(f"{self.desc}: {self.n - self.n0:,} {self.unit} in {clock(time.perf_counter() - self.t0)}{extra}")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
