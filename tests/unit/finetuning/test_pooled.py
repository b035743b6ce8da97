"""The pooled last layer equals transformers' full models: logits and every gradient, for LLaMA (grouped-query
attention included) and GPT-2, both heads and poolings, right and left padding."""

import copy

import pytest
import torch

from babyllama.finetuning.model import Classifier
from babyllama.finetuning.pooled import supports

PAD = 0


def _llama(**kw):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=PAD,
                       attn_implementation="eager", **kw)


def _gpt2(**kw):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=50, n_embd=32, n_layer=3, n_head=4, n_positions=64, pad_token_id=PAD,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, scale_attn_by_inverse_layer_idx=True,
                      attn_implementation="eager", **kw)


def _batch(padding_side: str):
    torch.manual_seed(1)
    lengths = [9, 4, 1, 7]
    width = max(lengths)
    ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for r, n in enumerate(lengths):
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        ids[r, cols] = torch.randint(3, 50, (n,))
        mask[r, cols] = 1
    return ids, mask


def _pair(config, head, pooling):
    torch.manual_seed(0)
    pooled = Classifier(head, config, 3, pooling, dropout=0.0)
    assert pooled.pooled_last_layer
    full = copy.deepcopy(pooled)
    full.pooled_last_layer = False
    return pooled, full


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
@pytest.mark.parametrize("head,pooling", [("sequence_classification", "last"), ("babylm2025", "last"),
                                          ("babylm2025", "first")])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_equals_the_full_model(make, head, pooling, padding_side):
    pooled, full = _pair(make(), head, pooling)
    ids, mask = _batch(padding_side)
    for model in (pooled, full):
        model.train()
    labels = torch.tensor([0, 2, 1, 2])
    out = {}
    for name, model in (("pooled", pooled), ("full", full)):
        logits = model(ids, mask)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        out[name] = (logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(out["pooled"][0], out["full"][0], rtol=1e-5, atol=1e-6)
    assert out["pooled"][1].keys() == out["full"][1].keys()
    for name, grad in out["full"][1].items():
        torch.testing.assert_close(out["pooled"][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # the last layer's query gets its gradient from the pooled positions alone, and it is not zero (a first-token
    # query attends to itself only, so there it has none in either model)
    query = [g for n, g in out["pooled"][1].items() if ".2." in n and ("q_proj" in n or "c_attn.weight" in n)]
    assert query and (pooling == "first" or all(g.abs().sum() > 0 for g in query))


def test_the_sequence_classification_head_equals_transformers_logits():
    """The pooled path's logits are transformers' own LlamaForSequenceClassification logits."""
    pooled, _ = _pair(_llama(), "sequence_classification", "last")
    pooled.eval()
    ids, mask = _batch("right")
    with torch.no_grad():
        theirs = pooled.model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(pooled(ids, mask), theirs, rtol=1e-5, atol=1e-6)


def test_under_bf16_autocast_it_stays_close_to_the_full_model():
    pooled, full = _pair(_llama(), "sequence_classification", "last")
    ids, mask = _batch("right")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = pooled(ids, mask).float(), full(ids, mask).float()
    torch.testing.assert_close(a, b, rtol=0.02, atol=0.02)


def test_what_keeps_the_full_forward():
    from transformers import GPT2Config

    assert not supports(Classifier("babylm2025", _gpt2(add_cross_attention=True), 2, "last", 0.0).body)
    assert not supports(Classifier("babylm2025", GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50,
                                                            reorder_and_upcast_attn=True), 2, "last", 0.0).body)
    cfg = _llama()
    cfg.pad_token_id = None  # transformers' head then refuses batches of two or more: left to it to say so
    assert not Classifier("sequence_classification", cfg, 2, "last", 0.0).pooled_last_layer
    assert Classifier("babylm2025", cfg, 2, "last", 0.0).pooled_last_layer


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_by_grad_attention_reaches_the_pooled_path(make, monkeypatch):
    """build_classifier's 'by_grad' attention (eager with gradients, SDPA without) holds when the pooled path calls
    the body directly: the kernel each forward runs is recorded."""
    from babyllama.finetuning.model import BaseModel, build_classifier

    config = make()
    config._attn_implementation = "sdpa"
    body = Classifier("babylm2025", config, 2, "last", 0.0).body
    base = BaseModel(path=None, config=config, body_state=body.state_dict(), tokenizer=None, tokenizer_id="",
                     pad_id=PAD, notes=[])
    model = build_classifier(base, "sequence_classification", 2, "last", 0.0, seed=0, attention="by_grad")
    assert model.pooled_last_layer
    seen = []
    body = model.body
    body.register_forward_pre_hook(lambda m, a, k: seen.append(m.config._attn_implementation), with_kwargs=True)
    ids, mask = _batch("right")
    model(ids, mask)
    with torch.no_grad():
        model(ids, mask)
    assert seen == ["eager", "sdpa"]


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_right_padded_batches_reach_the_body_unpadded(make):
    """Right-padded rows run the first layers without their padding mask (causal attention already hides the
    padding from every real position; the result is the same, the equality tests above cover it), so that padded
    and unpadded batches take one attention path; left-padded rows keep their mask."""
    from babyllama.finetuning.pooled import right_padded

    pooled, _ = _pair(make(), "sequence_classification", "last")
    seen = []
    pooled.body.register_forward_pre_hook(lambda m, a, k: seen.append(k["attention_mask"]), with_kwargs=True)
    for side in ("right", "left"):
        ids, mask = _batch(side)
        assert right_padded(mask) == (side == "right")
        pooled(ids, mask)
    assert bool(seen[0].all()) and seen[0].shape == mask.shape
    assert torch.equal(seen[1], mask)
