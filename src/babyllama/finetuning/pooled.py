"""The decoder's last layer run at the pooled positions only.

A classifier on a causal decoder reads one position per row (the last real token, or the first). Below the last
layer every position still matters, as keys and values for later ones; in the last layer only the pooled position's
query, attention output, MLP and final norm reach the head, so computing them at every position is wasted work
(what that saves: benchmarks/README.md, "Fine-tuning").

:func:`pooled_hidden` runs the body's first L-1 layers as transformers runs them (its embeddings, masks, dropout
and attention kernel), then the last layer with keys and values from every position and the query at the pooled
one, written after transformers' own ``LlamaDecoderLayer`` and ``GPT2Block`` and using their attention functions.
The result equals the full model's hidden state at those positions, values and gradients (tests compare them with
transformers' models); only the random numbers that dropout draws in the last layer differ. Other architectures,
and bodies wrapped by peft, keep the full forward (:func:`supports`).
"""

from __future__ import annotations

import torch
from torch import nn


def _layout(body: nn.Module):
    """(layer list name, final norm name, last-layer function) of a body this module can pool, else None."""
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block, GPT2Model
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel

    if isinstance(body, LlamaModel):
        if len(body.layers) > 0 and all(type(layer) is LlamaDecoderLayer for layer in body.layers):
            return "layers", "norm", _llama_last
    elif isinstance(body, GPT2Model):
        if (len(body.h) > 0 and all(type(block) is GPT2Block for block in body.h)
                and not body.config.add_cross_attention and not body.config.reorder_and_upcast_attn):
            return "h", "ln_f", _gpt2_last
    return None


def supports(body: nn.Module) -> bool:
    """Whether ``body`` (a transformers base model) has a pooled last layer here."""
    return _layout(body) is not None


def _allowed_keys(attention_mask: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive mask (batch, 1, 1, seq) of each pooled query: causal and without padded keys, in the form
    transformers' eager attention adds to its scores."""
    seq = attention_mask.shape[1]
    keys = torch.arange(seq, device=attention_mask.device)
    allowed = (keys[None, :] <= positions[:, None]) & attention_mask.bool()
    mask = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    mask = mask.masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None, None, :]


def _heads(states: torch.Tensor, batch: int, seq: int, head_dim: int) -> torch.Tensor:
    """(batch, seq, heads x head_dim) as (batch, heads, seq, head_dim), the layout attention functions take."""
    return states.view(batch, seq, -1, head_dim).transpose(1, 2)


def _llama_last(body, layer, hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, eager_attention_forward

    batch, seq, _ = hidden.shape
    rows = torch.arange(batch, device=hidden.device)
    attn = layer.self_attn
    residual = hidden[rows, positions]
    x = layer.input_layernorm(hidden)
    query = _heads(attn.q_proj(x[rows, positions]), batch, 1, attn.head_dim)
    key = _heads(attn.k_proj(x), batch, seq, attn.head_dim)
    value = _heads(attn.v_proj(x), batch, seq, attn.head_dim)
    position_ids = torch.arange(seq, device=hidden.device)[None]
    cos, sin = body.rotary_emb(hidden, position_ids=position_ids)  # hidden: the dtype transformers passes
    query, _ = apply_rotary_pos_emb(query, query, cos[0, positions][:, None], sin[0, positions][:, None])
    key, _ = apply_rotary_pos_emb(key, key, cos, sin)
    out, _ = eager_attention_forward(attn, query, key, value, mask, scaling=attn.scaling,
                                     dropout=attn.attention_dropout if attn.training else 0.0)
    h = residual + attn.o_proj(out.reshape(batch, -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def _gpt2_last(body, block, hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from transformers.models.gpt2.modeling_gpt2 import eager_attention_forward

    batch, seq, _ = hidden.shape
    rows = torch.arange(batch, device=hidden.device)
    attn = block.attn
    residual = hidden[rows, positions]
    x = block.ln_1(hidden)
    width = attn.split_size
    weight, bias = attn.c_attn.weight, attn.c_attn.bias  # Conv1D: (in, 3 x width), query | key | value
    query = torch.addmm(bias[:width], x[rows, positions], weight[:, :width])
    key, value = (x @ weight[:, width:] + bias[width:]).split(width, dim=2)
    query = _heads(query, batch, 1, attn.head_dim)
    key = _heads(key, batch, seq, attn.head_dim)
    value = _heads(value, batch, seq, attn.head_dim)
    out, _ = eager_attention_forward(attn, query, key, value, mask, scaling=attn.scaling,
                                     dropout=attn.attn_dropout.p if attn.training else 0.0)
    h = residual + attn.resid_dropout(attn.c_proj(out.reshape(batch, -1)))
    return h + block.mlp(block.ln_2(h))


def right_padded(attention_mask: torch.Tensor) -> bool:
    """Whether every row is its real tokens followed by padding (or none)."""
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def pooled_hidden(body: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  positions: torch.Tensor) -> torch.Tensor:
    """The body's final hidden state (after its final norm) at ``positions`` (one per row): (batch, hidden).

    On right-padded rows the first layers run as if no position were padding: causal attention already keeps every
    real position from the padding after it, and the padded positions' own states reach nothing that is read (the
    last layer's keys are masked below). The results are the same; what changes is that every batch, padded or not,
    takes transformers' unpadded (causal-only) attention path, so compiled layers (:mod:`.compiled`) need one graph
    instead of one per case."""
    layers_name, norm_name, last_layer = _layout(body)
    layers, norm = body._modules[layers_name], body._modules[norm_name]
    body_mask = torch.ones_like(attention_mask) if right_padded(attention_mask) else attention_mask
    # the body's own forward over all but the last layer, its final norm left for after the pooled layer
    body._modules[layers_name], body._modules[norm_name] = layers[:-1], nn.Identity()
    try:
        hidden = body(input_ids=input_ids, attention_mask=body_mask, use_cache=False).last_hidden_state
    finally:
        body._modules[layers_name], body._modules[norm_name] = layers, norm
    mask = _allowed_keys(attention_mask, positions, hidden.dtype)
    return norm(last_layer(body, layers[-1], hidden, positions, mask))
