"""The decoder layers compiled for training: ``torch.compile`` of each layer (regional), scoring left eager.

Why: at the sizes a CPU fine-tunes, a step is bound by element-wise work (norms, rotary embeddings, the gated MLP,
dtype casts), which inductor fuses; on a GPU, at these sizes, by the launches of many small kernels, which fusing
cuts. A whole model compiles once per process per architecture (one layer class, dynamic shapes), and every later
model, seed and task of that process reuses the compiled code (measured: benchmarks/README.md, "Fine-tuning").
Compiling costs tens of seconds the first time on a machine and a few once inductor's on-disk cache holds it, so
``auto`` compiles only runs long enough to pay for it. Evaluation runs the same layers eagerly (``force_eager``): a
no-grad graph would be a second compile for a few seconds of scoring.

One graph serves every batch: shapes are dynamic, the pooled path gives every right-padded batch the same attention
path (:func:`.pooled.pooled_hidden`), and the batch dimension is unbacked, in the hidden states and in the
attention mask that eager attention is given (declared equal inside the compiled region). Unbacked, inductor cannot
ask whether a batch holds more than 4,096 positions, which it otherwise guards on (for its chunked float sums) and
so compiles the same layer twice; its sums then add each vector lane in one run instead of in chunks of 4,096, a
rounding difference of the kind any fused kernel makes.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from ..errors import UserError
from ..hardware import has_compiler
from ..models import layer_list

# positions trained (examples x tokens x epochs, all of one model's runs) from which auto compiles: where a first
# compile is paid back by the faster steps, on a CPU and on a CUDA GPU (benchmarks/README.md measures both
# break-evens: the fine-tuning compile on 2 cores, and "Fine-tuning on a GPU")
AUTO_MIN_POSITIONS = 1_500_000
AUTO_MIN_POSITIONS_GPU = 10_000_000


def resolve_compile(pref: bool | str, device: str, positions: int) -> tuple[bool, str | None]:
    """(compile, why not when auto declines). ``auto``: on a CPU with a C++ compiler, for runs of at least
    :data:`AUTO_MIN_POSITIONS` positions; on a CUDA GPU from :data:`AUTO_MIN_POSITIONS_GPU`; elsewhere off."""
    if pref is True and device == "cpu" and not has_compiler():
        raise UserError("finetune.compile: true needs a C++ compiler (c++, g++ or clang++) on PATH for "
                        "torch.compile on a CPU; install one or set finetune.compile: auto or false")
    if pref is True or pref is False:
        return pref, None
    if device == "cuda":
        return positions >= AUTO_MIN_POSITIONS_GPU, None
    if device != "cpu":
        return False, None
    if positions < AUTO_MIN_POSITIONS:
        return False, None
    if not has_compiler():
        return False, "no C++ compiler (c++, g++ or clang++) on PATH for torch.compile; the layers run eagerly"
    return True, None


def training_attention(compiled: bool, precision: str, device: str) -> str:
    """The attention a fine-tuning run trains with. Compiled layers on a CPU train with eager attention (``by_grad``:
    SDPA still scores), whose scaling, mask and softmax inductor fuses into their neighbours, while the CPU SDPA
    kernel stays opaque and its backward slow (benchmarks/README.md, "Fine-tuning"); otherwise the hardware rule."""
    from ..hardware import resolve_attention

    return "by_grad" if compiled and device == "cpu" else resolve_attention("auto", precision, device=device)


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
