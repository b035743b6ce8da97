"""Regional compilation: which blocks compile, one graph for every batch, the attention compiled layers train with,
and when ``auto`` compiles."""

from __future__ import annotations

import pytest

from babyllama import regional
from babyllama.errors import UserError
from babyllama.models import layer_list
from babyllama.regional import resolve_compile


def test_resolve_compile_names_its_setting_and_applies_its_thresholds(monkeypatch):
    monkeypatch.setattr(regional, "has_compiler", lambda: True)
    args = dict(key="training.compile", min_work=100, min_work_gpu=1000)
    assert resolve_compile("auto", "cpu", 100, **args) == (True, None)
    assert resolve_compile("auto", "cpu", 99, **args) == (False, None)
    assert resolve_compile("auto", "cuda", 999, **args) == (False, None)
    assert resolve_compile("auto", "cuda", 1000, **args) == (True, None)
    monkeypatch.setattr(regional, "has_compiler", lambda: False)
    with pytest.raises(UserError, match="^training.compile: true needs a C\\+\\+ compiler.*set training.compile: auto"):
        resolve_compile(True, "cpu", 10, **args)
    assert resolve_compile(True, "cuda", 10, **args) == (True, None)  # inductor's GPU kernels need no C++ compiler


@pytest.mark.parametrize("preset,name", [("llama-tiny", "layers"), ("gpt2-tiny", "h")])
def test_the_blocks_of_llama_and_gpt2_bodies(tiny_tokenizer, preset, name):
    from babyllama.config import ModelConfig
    from babyllama.models import build_model

    body = build_model(ModelConfig(preset=preset), tiny_tokenizer, seed=0).base_model
    assert layer_list(body) is getattr(body, name) and len(layer_list(body)) > 0
    import torch

    assert layer_list(torch.nn.Linear(2, 2)) is None


def _classifier(arch: str, attention: str = "sdpa"):
    import torch
    from transformers import GPT2Config, LlamaConfig

    from babyllama.finetuning.model import Classifier
    from babyllama.hardware import set_attention

    torch.manual_seed(0)
    if arch == "llama":
        config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0)
    else:
        config = GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=128, pad_token_id=0,
                            bos_token_id=1, eos_token_id=1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    config._attn_implementation = "sdpa"
    model = Classifier("sequence_classification", config, 2, "last", dropout=0.0)
    set_attention(model.body, attention)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_one_graph_serves_every_batch(arch):
    """Batches above and below 4,096 positions, padded and not, and a batch of one run one compiled graph (inductor
    would otherwise guard on the size, and transformers takes another attention path for unpadded batches), with
    the eager model's logits and gradients. Eager attention passes the layers a (batch, 1, seq, seq) mask even for
    unpadded batches, a second tensor that carries the batch size. Eager attention is what compiled layers train with
    on a CPU; SDPA's compiled path (CUDA's) is tests/integration/test_cuda.py::test_compiled_fine_tuning_on_the_gpu."""
    import copy

    import torch
    import torch._dynamo

    from babyllama.regional import compile_layers

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = _classifier(arch, "by_grad")
    eager = copy.deepcopy(model)
    assert compile_layers(model.body)
    for m in (model, eager):
        m.train()
    gen = torch.Generator().manual_seed(0)
    for batch, width, padded in [(64, 70, True), (64, 70, False), (8, 10, True), (1, 5, False), (64, 90, True)]:
        ids = torch.randint(3, 50, (batch, width), generator=gen)
        mask = torch.ones(batch, width, dtype=torch.long)
        if padded:  # right padding, as fine-tuning batches are collated
            for row in range(batch):
                n = width - row % 7
                ids[row, n:], mask[row, n:] = 0, 0
        labels = torch.randint(0, 2, (batch,), generator=gen)
        grads = []
        for m in (model, eager):
            m.zero_grad(set_to_none=True)
            logits = m(ids, mask)
            torch.nn.functional.cross_entropy(logits, labels).backward()
            grads.append((logits.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
        torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-5)
        assert grads[0][1].keys() == grads[1][1].keys()
        for name, grad in grads[1][1].items():
            torch.testing.assert_close(grads[0][1][name], grad, rtol=1e-3, atol=1e-5, msg=name)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1, dict(torch._dynamo.utils.counters["stats"])
    torch._dynamo.reset()
