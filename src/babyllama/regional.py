"""Regional compilation: ``torch.compile`` of each decoder layer of a model, for its training steps.

Why: at the sizes a CPU trains, a step is bound by element-wise work (norms, rotary embeddings, the gated MLP,
dtype casts), which inductor fuses; on a GPU, at these sizes, by the launches of many small kernels, which fusing
cuts. Compiling the layers, not the whole model, keeps the graph one layer long: one layer class compiles once per
process per architecture (dynamic shapes), and every later model, seed and stage of that process reuses the
compiled code, where a whole-model graph also traces the embedding, the output layer and the loss and compiles
slower for a smaller gain (benchmarks/README.md, "Item 3 in the real training path"). Compiling costs tens of
seconds the first time on a machine and a few once inductor's on-disk cache holds it, so ``auto`` settings compile
only runs long enough to pay for it (:func:`resolve_compile`). Scoring under no_grad runs the same layers eagerly
(:func:`eager_scoring`): a no-grad graph would be a second compile for a few seconds of evaluation.

One graph serves every batch: shapes are dynamic, and the batch dimension is unbacked, in the hidden states and in
the attention mask that eager attention is given (declared equal inside the compiled region). Unbacked, inductor
cannot ask whether a batch holds more than 4,096 positions, which it otherwise guards on (for its chunked float
sums) and so compiles the same layer twice; its sums then add each vector lane in one run instead of in chunks of
4,096, a rounding difference of the kind any fused kernel makes.

Used by pretraining and distillation (``training.compile``) and fine-tuning (``finetune.compile``); scoring's own,
temporary compile is :mod:`babyllama.eval.compiled`.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from .errors import UserError
from .hardware import has_compiler
from .models import layer_list


def resolve_compile(pref: bool | str, device: str, work: float, key: str, min_work: float, min_work_gpu: float,
                    flag: str | None = None) -> tuple[bool, str | None]:
    """(compile, why not when auto declines) for a run of ``work`` (trained positions; scoring: parameters x
    sentences); ``key`` names the setting in the error, ``flag`` the command-line option that sets it. ``auto``: on
    a CPU with a C++ compiler from ``min_work``, on a CUDA GPU from ``min_work_gpu``; elsewhere off."""
    if pref is True and device == "cpu" and not has_compiler():
        raise UserError(f"{key}: true needs a C++ compiler (c++, g++ or clang++) on PATH for torch.compile on a "
                        f"CPU; install one or set {key}: auto or false" + (f" ({flag} auto/off)" if flag else ""))
    if pref is True or pref is False:
        return pref, None
    if device == "cuda":
        return work >= min_work_gpu, None
    if device != "cpu" or work < min_work:
        return False, None
    if not has_compiler():
        return False, "no C++ compiler (c++, g++ or clang++) on PATH for torch.compile; the layers run eagerly"
    return True, None


def compile_layers(body: nn.Module) -> bool:
    """Compile each repeated block of ``body`` in place (dynamic shapes, the batch dimension unbacked: one graph
    for every batch). False when the body has no block list to compile."""
    layers = layer_list(body)
    if layers is None:
        return False
    for layer in layers:
        layer.forward = _one_graph_for_every_batch(layer.forward)
    return True


def _one_graph_for_every_batch(forward):
    """``forward`` compiled with the batch dimension of its hidden states and of any 4-D attention mask marked
    unbacked. The mask matters: eager attention gets a (batch, 1, query, key) mask even for unpadded batches, and a
    backed batch size there would let inductor guard on the batch again. The marking happens outside the compiled
    region (where it must); inside, the masks are declared to share the hidden states' batch size, since two
    unbacked sizes are otherwise unrelated and broadcasting one against the other breaks the graph."""
    import torch._dynamo.config
    from torch._dynamo.decorators import mark_unbacked

    def same_batch(hidden_states, *args, _masks=(), **kwargs):
        for key in _masks:
            mask = args[key] if isinstance(key, int) else kwargs[key]
            torch._check(mask.shape[0] == hidden_states.shape[0])
        return forward(hidden_states, *args, **kwargs)

    compiled = torch.compile(functools.wraps(forward)(same_batch), dynamic=True)

    @functools.wraps(forward)
    def marked(hidden_states, *args, **kwargs):
        batch = hidden_states.shape[0]
        mark_unbacked(hidden_states, 0)
        masks = []
        for key, value in (*enumerate(args), *kwargs.items()):
            if isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[0] == batch:
                mark_unbacked(value, 0)
                masks.append(key)
        # the layers' float attributes (norm epsilon, attention scaling, dropout) are constants of the model: traced
        # as symbols, dynamo's first attempt fails and it starts again, a few seconds of a cold compile
        with torch._dynamo.config.patch(specialize_float=True):
            return compiled(hidden_states, *args, _masks=tuple(masks), **kwargs)

    return marked


def eager_scoring():
    """A context in which compiled layers run their eager code (scoring under no_grad)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()
