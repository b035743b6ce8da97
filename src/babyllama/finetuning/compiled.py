"""When fine-tuning compiles its decoder layers (``finetune.compile``); the compiling is :mod:`babyllama.regional`.

Fine-tuning's batches are right-padded; the pooled path gives every batch the same attention path
(:func:`.pooled.pooled_hidden`), so one compiled graph serves them all.
"""

from __future__ import annotations

from ..regional import resolve_compile as _resolve

# positions trained (examples x tokens x epochs, all of one model's runs) from which auto compiles: where a first
# compile is paid back by the faster steps, on a CPU and on a CUDA GPU (benchmarks/README.md measures both
# break-evens: the fine-tuning compile on 2 cores, and "Fine-tuning on a GPU")
AUTO_MIN_POSITIONS = 1_500_000
AUTO_MIN_POSITIONS_GPU = 10_000_000


def resolve_compile(pref: bool | str, device: str, positions: int) -> tuple[bool, str | None]:
    """(compile, why not when auto declines). ``auto``: on a CPU with a C++ compiler, for runs of at least
    :data:`AUTO_MIN_POSITIONS` positions; on a CUDA GPU from :data:`AUTO_MIN_POSITIONS_GPU`; elsewhere off."""
    return _resolve(pref, device, positions, "finetune.compile", AUTO_MIN_POSITIONS, AUTO_MIN_POSITIONS_GPU)
