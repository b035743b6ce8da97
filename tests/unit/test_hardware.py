"""Precision and attention choices, and the by-grad attention switch."""

import pytest
import torch

from babyllama.errors import UserError
from babyllama import hardware
from babyllama.hardware import (autocast, cpu_has_native_bf16, device_type, resolve_attention,
                                         resolve_device, resolve_eval_precision, resolve_precision)


def test_auto_precision_picks_bf16_where_native_and_faster(monkeypatch):
    assert resolve_precision("auto", "cpu") == ("bf16" if hardware.cpu_bf16_pays() else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    for gain, want in ((6.0, "bf16"), (2.0, "bf16"), (0.6, "fp32")):  # AMX, an AVX512-BF16 EPYC, no AMX
        monkeypatch.setattr(hardware, "cpu_bf16_matmul_gain", lambda: gain)
        assert resolve_precision("auto", "cpu") == want
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is never timed
    monkeypatch.setattr(hardware, "cpu_bf16_matmul_gain", lambda: pytest.fail("timed"))
    assert resolve_precision("auto", "cpu") == "fp32"


def test_the_bf16_gain_is_a_measured_ratio():
    gain = hardware.cpu_bf16_matmul_gain()
    assert gain > 0 and gain == hardware.cpu_bf16_matmul_gain()  # measured once per process


@pytest.mark.parametrize("native", [True, False])
def test_scoring_is_exact_bf16_where_bf16_is_native_else_fp32(native, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_bf16_pays", lambda: native)
    assert resolve_eval_precision("auto", "cpu") == ("exact_bf16" if native else "fp32")
    for pref in ("fp32", "exact_bf16", "bf16"):
        assert resolve_eval_precision(pref, "cpu") == pref


def test_device_on_a_machine_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == resolve_device("cpu") == "cpu"
    for pref in ("cuda", "cuda:0"):
        with pytest.raises(UserError, match=f"device {pref}: torch sees no CUDA device.*use device auto or cpu"):
            resolve_device(pref)
    with pytest.raises(UserError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_device_on_a_machine_with_gpus_follows_the_launchers_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "2")  # torchrun's third process on this node
    assert resolve_device("auto") == "cuda:2" and resolve_device("cuda:3") == "cuda:3"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="cuda:4: this machine has 4 CUDA device"):
        resolve_device("cuda:4")
    # the precision rule reads the kind of device, whatever its index
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert device_type("cuda:2") == "cuda" and resolve_precision("auto", "cuda:2") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cuda:2") == "bf16"
    assert resolve_attention("auto", "bf16", device="cuda:2") == "sdpa"


def test_fp16_is_refused_on_the_cpu_and_autocast_follows_the_precision():
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    x = torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (x @ x).dtype == torch.float32


def test_auto_attention_choice():
    assert resolve_attention("auto", "bf16", device="cpu") == "by_grad"
    assert resolve_attention("auto", "fp32", device="cpu") == "sdpa"
    # compiled layers train with eager attention on a CPU (fused by inductor), in either precision; SDPA on a GPU
    assert resolve_attention("auto", "fp32", compiled=True, device="cpu") == "by_grad"
    assert resolve_attention("auto", "bf16", compiled=True, device="cpu") == "by_grad"
    assert resolve_attention("auto", "bf16", compiled=True, device="cuda:0") == "sdpa"
    assert resolve_attention("auto", "bf16", device="cuda") == "sdpa"
    assert resolve_attention("eager", "fp32", device="cpu") == "eager"


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny"])
def test_by_grad_attention_trains_eager_and_evaluates_sdpa(preset, tiny_tokenizer, monkeypatch):
    tokenizer = tiny_tokenizer
    """The 'by_grad' mode runs eager attention with gradients on and SDPA without, with the same outputs."""
    import transformers.integrations.sdpa_attention as sdpa_mod
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from babyllama.config import ModelConfig
    from babyllama.models import build_model
    from babyllama.hardware import set_attention

    calls = []
    real = sdpa_mod.sdpa_attention_forward

    def spy(*a, **k):
        calls.append(torch.is_grad_enabled())
        return real(*a, **k)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", spy)
    model = build_model(ModelConfig(preset=preset), tokenizer, seed=0)
    x = torch.randint(3, len(tokenizer), (2, 12))
    with torch.no_grad():
        ref = model(x).logits  # plain sdpa
    calls.clear()
    set_attention(model, "by_grad")
    out = model(x).logits
    assert calls == [] and model.config._attn_implementation == "eager"
    torch.testing.assert_close(out.detach(), ref, atol=1e-5, rtol=1e-4)
    with torch.inference_mode():
        again = model(x).logits
    assert calls and not any(calls) and model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(again, ref)


def test_models_without_sdpa_keep_eager(tiny_tokenizer, monkeypatch):
    tokenizer = tiny_tokenizer
    """A model class transformers gives no SDPA kernel stays eager; asking for sdpa is a UserError."""
    from babyllama.config import Config
    from babyllama.errors import UserError
    from babyllama.models import build_model
    from babyllama.hardware import configure_attention

    def build(attention):
        cfg = Config.model_validate({"model": {"preset": "gptj-tiny"}, "training": {"attention": attention}})
        model = build_model(cfg.model, tokenizer, seed=0)
        model.config._attn_implementation = "eager"
        return configure_attention(model, cfg)

    # GPT-J has SDPA since transformers 5.x; pretend it has none, as for a class that never had it.
    from transformers import GPTJForCausalLM
    monkeypatch.setattr(GPTJForCausalLM, "_supports_sdpa", False)
    for attention in ("auto", "eager"):
        model = build(attention)
        assert model.config._attn_implementation == "eager" and not model._forward_pre_hooks
    with pytest.raises(UserError, match="no SDPA attention for gptj"):
        build("sdpa")
