import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.errors import UserError
from babyllama.models import PAPER_PRESETS, build_model, count_params, hf_config, list_presets, resolve


def test_paper_presets_parameter_counts():
    counts = {r["name"]: r["params"] for r in list_presets()}
    assert set(PAPER_PRESETS) == {"llama-360m", "gpt2-705m", "babyllama-58m", "smollama-345m", "llama-16m"}
    for name, target in PAPER_PRESETS.items():
        assert abs(counts[name] / target - 1) < 0.02, (name, counts[name])
    # the authors' config/llama-16M.yaml: hidden 256, 8 layers, 8 heads, MLP 1024, vocabulary 16000 (by hand:
    # 2 x 16000 x 256 embeddings + 8 x (4 x 256^2 + 3 x 256 x 1024 + 2 x 256 norms) + 256 final norm)
    assert counts["llama-16m-authors"] == 16_584_960 == 2 * 16000 * 256 + 8 * (4 * 256**2 + 3 * 256 * 1024 + 512) + 256
    assert counts["llama-16m"] == 2 * 16000 * 256 + 8 * (4 * 256**2 + 3 * 256 * 960 + 512) + 256


def test_paper_shapes():
    c = hf_config(ModelConfig(preset="smollama-345m"))
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.vocab_size, c.max_position_embeddings) == (960, 32, 15, 5, 2560, 16000, 256)
    g = hf_config(ModelConfig(preset="gpt2-705m"))
    assert (g.n_embd, g.n_layer, g.n_head) == (1536, 24, 16)


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "gptj-tiny"])
def test_each_architecture_builds_and_runs(preset, tiny_tokenizer):
    tokenizer = tiny_tokenizer
    m = build_model(ModelConfig(preset=preset), tokenizer, seed=0)
    assert m.config.vocab_size == len(tokenizer)
    x = torch.randint(0, len(tokenizer), (2, 16))
    out = m(input_ids=x, labels=x)
    assert out.logits.shape == (2, 16, len(tokenizer)) and torch.isfinite(out.loss)
    assert count_params(m) > 0


def test_overrides_and_errors():
    assert resolve(ModelConfig(preset="llama-tiny", num_layers=3))["num_layers"] == 3
    with pytest.raises(UserError, match="unknown model preset"):
        resolve(ModelConfig(preset="nope"))
    with pytest.raises(UserError, match="set model.preset"):
        resolve(ModelConfig())
    with pytest.raises(UserError, match="not divisible"):
        hf_config(ModelConfig(preset="llama-tiny", num_kv_heads=3))


@pytest.mark.parametrize("preset", ["gpt2-tiny", "gptj-tiny"])
def test_gpt_models_use_the_fused_tanh_gelu_which_equals_gelu_new(preset, tiny_tokenizer):
    tokenizer = tiny_tokenizer
    from transformers.activations import ACT2FN

    m = build_model(ModelConfig(preset=preset), tokenizer, seed=0).eval()
    assert m.config.activation_function == "gelu_pytorch_tanh"
    x = torch.randint(0, len(tokenizer), (2, 16))
    with torch.no_grad():
        fast = m(input_ids=x).logits
        mlps = [mod for mod in m.modules() if hasattr(mod, "act") and (hasattr(mod, "c_fc") or hasattr(mod, "fc_in"))]
        assert len(mlps) == m.config.n_layer
        for mlp in mlps:
            mlp.act = ACT2FN["gelu_new"]
        slow = m(input_ids=x).logits
    assert torch.allclose(fast, slow, atol=1e-5)
    assert build_model(ModelConfig(preset=preset, activation="gelu_new"), tokenizer).config.activation_function \
        == "gelu_new"
    with pytest.raises(UserError, match="model.activation 'nope'"):
        hf_config(ModelConfig(preset=preset, activation="nope"))


def test_load_model_errors_name_the_directory(tmp_path, tiny_tokenizer):
    from babyllama.models import load_model

    with pytest.raises(UserError, match=rf"teacher {tmp_path}: no config.json"):
        load_model(tmp_path, "teacher")
    m = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0)
    m.save_pretrained(tmp_path / "m")
    assert count_params(load_model(tmp_path / "m")) == count_params(m)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="cannot load the checkpoint"):
        load_model(tmp_path / "m")


def test_a_student_can_start_from_given_weights(tmp_path, tiny_tokenizer):
    base = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=5)
    base.save_pretrained(tmp_path / "init")
    started = build_model(ModelConfig(preset="llama-tiny", init_from=str(tmp_path / "init")), tiny_tokenizer, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), started.state_dict().values()))
    fresh = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0)
    assert not torch.equal(fresh.lm_head.weight, started.lm_head.weight)
    small = build_model(ModelConfig(preset="llama-tiny", vocab_size=len(tiny_tokenizer) + 8), None, seed=0)
    small.save_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match="vocabulary size"):
        build_model(ModelConfig(preset="llama-tiny", init_from=str(tmp_path / "other")), tiny_tokenizer)
    with pytest.raises(UserError, match="not in the local Hugging Face cache|neither a directory"):
        build_model(ModelConfig(preset="llama-tiny", init_from="nobody/nothing"), tiny_tokenizer)


def test_attention_dropout_defaults_to_dropout_and_can_differ():
    llama = hf_config(ModelConfig(preset="llama-tiny", dropout=0.1))
    assert llama.attention_dropout == 0.1
    assert hf_config(ModelConfig(preset="llama-tiny", dropout=0.1, attention_dropout=0.3)).attention_dropout == 0.3
    gpt2 = hf_config(ModelConfig(preset="gpt2-tiny", dropout=0.1, attention_dropout=0.3))
    assert (gpt2.attn_pdrop, gpt2.resid_pdrop, gpt2.embd_pdrop) == (0.3, 0.1, 0.1)
