"""The decoder layers compiled for scoring (``eval.compile``): ``torch.compile`` of each layer, for one evaluation.

Why: a scoring pass on a CPU spends as much time outside the matmuls as in them (the norms, rotary embeddings, the
gated MLP, the dtype casts of bf16 autocast), and inductor fuses that work; in bf16 the matmuls are fast enough
that the rest is most of the pass. One layer class compiles once per process for each precision (the fp32 and
the bf16 pass are separate graphs), with dynamic shapes, so every batch of the prefix tree and every later model
of the process reuses it; inductor's on-disk cache makes the next process's compile a few seconds. The compile
costs tens of seconds cold, so ``auto`` compiles only evaluations large enough to pay for it (the break-evens
measured: benchmarks/README.md, "Exact bf16 scoring"). Attention stays the model's kernel (SDPA): compiled, eager
attention was slower there.

The layers are compiled for the length of :func:`compiled_layers` and given back their own forward after it, so
that a model scored in the middle of training leaves the evaluation as it came in. A model whose layers were
already compiled (fine-tuning's) is left as it is.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..models import layer_list
from ..regional import resolve_compile

# auto compiles an evaluation whose parameters x options (sentences of pairs, choices of multiple-choice items)
# reach this: the cold compile's break-even measured for a 58M model (about 27,000 pairs, 3.1e12) with room; a
# 12.5M model breaks even at about 1.4e12 (57,000 pairs), its gain being a smaller share of a shorter pass
AUTO_MIN_WORK = 4e12


def resolve_scoring_compile(pref: bool | str, device: str, params: int, options: int) -> bool:
    """Whether to compile the layers for an evaluation of ``options`` options with a ``params``-parameter model.
    ``auto``: on a CPU with a C++ compiler, from :data:`AUTO_MIN_WORK` parameters x options (the whole BLiMP,
    supplement and EWoK with a 58M model, not with a 12.5M one); elsewhere off (not measured on accelerators)."""
    return resolve_compile(pref, device, params * options, "eval.compile", AUTO_MIN_WORK, math.inf,
                           flag="--compile")[0]


@contextlib.contextmanager
def compiled_layers(model: nn.Module, enabled: bool = True):
    """Within the block, each decoder layer of ``model`` runs compiled (dynamic shapes); yields whether any was.
    Layers that already carry a forward of their own (compiled by fine-tuning) are left alone."""
    layers = layer_list(getattr(model, "base_model", model)) if enabled else None
    patched = [layer for layer in (layers or []) if "forward" not in vars(layer)]
    for layer in patched:
        layer.forward = torch.compile(layer.forward, dynamic=True)
    try:
        yield bool(patched)
    finally:
        for layer in patched:
            del layer.forward  # the class's forward again
