"""Model presets and construction through transformers (LLaMA with grouped-query attention, GPT-2, GPT-J).

Paper presets (vocabulary 16000, context 2 x 128 = 256, untied LLaMA embeddings as in transformers' default):

=============== ============ ====== ====== ===== ======= ==========
name            architecture hidden layers heads kv      MLP
=============== ============ ====== ====== ===== ======= ==========
llama-360m      llama        1024   24     8     8       3072
gpt2-705m       gpt2         1536   24     16    16      4 x hidden
babyllama-58m   llama        512    16     8     8       1024
smollama-345m   llama        960    32     15    5       2560
llama-16m       llama        256    8      8     8       960
=============== ============ ====== ====== ===== ======= ==========

``llama-16m`` has 16.19M parameters. The authors' own ``config/llama-16M.yaml`` (MLP 1024) has 16.58M, 3.7% more
than its name; that exact shape is the preset ``llama-16m-authors``.

CPU presets use vocabulary 8000 (the CPU recipes' tokenizer) and exist so that the whole pipeline runs here;
``*-tiny`` presets are for tests. ``vocab_size`` of a preset is nominal: when a model is built for a tokenizer the
tokenizer's size is used unless the config sets ``model.vocab_size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig
from .errors import UserError

# GPT-2 and GPT-J were trained with ``gelu_new``: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), which
# transformers evaluates as seven elementwise tensor ops (and as many in the backward). ``gelu_pytorch_tanh`` is the
# same function as one fused kernel (outputs equal to float rounding, tested); our GPT-2 and GPT-J use it.
FAST_GELU = "gelu_pytorch_tanh"

PAPER_CONTEXT = 256
PRESETS: dict[str, dict[str, Any]] = {
    # paper 1 (Baby Llama): teachers and student
    "llama-360m": dict(architecture="llama", hidden_size=1024, num_layers=24, num_heads=8, intermediate_size=3072,
                       vocab_size=16000, max_position_embeddings=PAPER_CONTEXT),
    "gpt2-705m": dict(architecture="gpt2", hidden_size=1536, num_layers=24, num_heads=16, vocab_size=16000,
                      max_position_embeddings=PAPER_CONTEXT),
    "babyllama-58m": dict(architecture="llama", hidden_size=512, num_layers=16, num_heads=8, intermediate_size=1024,
                          vocab_size=16000, max_position_embeddings=PAPER_CONTEXT),
    # paper 2 (BabyLlama-2): teachers and student share this shape
    "smollama-345m": dict(architecture="llama", hidden_size=960, num_layers=32, num_heads=15, num_kv_heads=5,
                          intermediate_size=2560, vocab_size=16000, max_position_embeddings=PAPER_CONTEXT),
    # a 16M LLaMA (16.19M); the MLP is 960 rather than the authors' 1024, whose model has 16.58M parameters
    "llama-16m": dict(architecture="llama", hidden_size=256, num_layers=8, num_heads=8, intermediate_size=960,
                      vocab_size=16000, max_position_embeddings=PAPER_CONTEXT),
    # the authors' config/llama-16M.yaml exactly
    "llama-16m-authors": dict(architecture="llama", hidden_size=256, num_layers=8, num_heads=8,
                              intermediate_size=1024, vocab_size=16000, max_position_embeddings=PAPER_CONTEXT),
    # CPU scale (vocabulary 8000)
    "llama-cpu-12m": dict(architecture="llama", hidden_size=256, num_layers=8, num_heads=8, intermediate_size=1024,
                          vocab_size=8000, max_position_embeddings=PAPER_CONTEXT),
    "gpt2-cpu-10m": dict(architecture="gpt2", hidden_size=256, num_layers=10, num_heads=8, vocab_size=8000,
                         max_position_embeddings=PAPER_CONTEXT),
    "llama-cpu-4m": dict(architecture="llama", hidden_size=128, num_layers=8, num_heads=4, intermediate_size=512,
                         vocab_size=8000, max_position_embeddings=PAPER_CONTEXT),
    "llama-cpu-2m": dict(architecture="llama", hidden_size=96, num_layers=6, num_heads=4, intermediate_size=384,
                         vocab_size=8000, max_position_embeddings=PAPER_CONTEXT),
    # tests
    "llama-tiny": dict(architecture="llama", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                       intermediate_size=128, vocab_size=512, max_position_embeddings=PAPER_CONTEXT),
    "gpt2-tiny": dict(architecture="gpt2", hidden_size=64, num_layers=2, num_heads=4, vocab_size=512,
                      max_position_embeddings=PAPER_CONTEXT),
    "gptj-tiny": dict(architecture="gptj", hidden_size=64, num_layers=2, num_heads=4, rotary_dim=8,
                      intermediate_size=128, vocab_size=512, max_position_embeddings=PAPER_CONTEXT),
}
PAPER_PRESETS = {"llama-360m": 360e6, "gpt2-705m": 705e6, "babyllama-58m": 58e6, "smollama-345m": 345e6,
                 "llama-16m": 16e6}


def resolve(cfg: ModelConfig) -> dict[str, Any]:
    """Preset values overlaid with every field the config sets explicitly."""
    base: dict[str, Any] = {}
    if cfg.preset:
        if cfg.preset not in PRESETS:
            raise UserError(f"unknown model preset '{cfg.preset}'; choose one of: {', '.join(PRESETS)}")
        base = dict(PRESETS[cfg.preset])
    base.update({k: v for k, v in cfg.model_dump().items() if v is not None and k != "preset"})
    missing = [k for k in ("architecture", "hidden_size", "num_layers", "num_heads") if k not in base]
    if missing:
        raise UserError(f"model: set model.preset or model.{', model.'.join(missing)}")
    return base


def hf_config(cfg: ModelConfig, vocab_size: int | None = None, bos_id: int = 1, eos_id: int = 2, pad_id: int = 0):
    """A transformers config for the resolved model. ``vocab_size`` (the tokenizer's) wins over the preset's."""
    from transformers import GPT2Config, GPTJConfig, LlamaConfig
    from transformers.activations import ACT2FN

    r = resolve(cfg)
    vocab = cfg.vocab_size or vocab_size or r.get("vocab_size")
    if vocab_size and cfg.vocab_size and cfg.vocab_size < vocab_size:
        raise UserError(f"model.vocab_size={cfg.vocab_size} is smaller than the tokenizer's {vocab_size}")
    ctx = r.get("max_position_embeddings", PAPER_CONTEXT)
    drop = r.get("dropout", 0.0)
    attn_drop = r.get("attention_dropout", drop)
    ids = dict(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    arch = r["architecture"]
    act = r.get("activation", "silu" if arch == "llama" else FAST_GELU)
    if act not in ACT2FN:
        raise UserError(f"model.activation '{act}' is not a transformers activation; use one of: "
                        f"{', '.join(sorted(ACT2FN))}")
    if r["hidden_size"] % r["num_heads"]:
        raise UserError(f"model: hidden_size {r['hidden_size']} is not divisible by num_heads {r['num_heads']}")
    if arch == "llama":
        kv = r.get("num_kv_heads", r["num_heads"])
        if r["num_heads"] % kv:
            raise UserError(f"model: num_heads {r['num_heads']} is not divisible by num_kv_heads {kv}")
        return LlamaConfig(
            vocab_size=vocab, hidden_size=r["hidden_size"], intermediate_size=r.get("intermediate_size",
            4 * r["hidden_size"]), num_hidden_layers=r["num_layers"], num_attention_heads=r["num_heads"],
            num_key_value_heads=kv, max_position_embeddings=ctx, attention_dropout=attn_drop,
            tie_word_embeddings=r.get("tie_word_embeddings", False), hidden_act=act, **ids)
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab, n_positions=ctx, n_embd=r["hidden_size"], n_layer=r["num_layers"],
            n_head=r["num_heads"], n_inner=r.get("intermediate_size"), resid_pdrop=drop, embd_pdrop=drop,
            attn_pdrop=attn_drop, tie_word_embeddings=r.get("tie_word_embeddings", True), activation_function=act,
            **ids)
    if arch == "gptj":
        return GPTJConfig(
            vocab_size=vocab, n_positions=ctx, n_embd=r["hidden_size"], n_layer=r["num_layers"],
            n_head=r["num_heads"], rotary_dim=r.get("rotary_dim", r["hidden_size"] // r["num_heads"]),
            n_inner=r.get("intermediate_size"), resid_pdrop=drop, embd_pdrop=drop, attn_pdrop=attn_drop,
            tie_word_embeddings=r.get("tie_word_embeddings", False), activation_function=act, **ids)
    raise UserError(f"model.architecture '{arch}' is not one of llama, gpt2, gptj")  # pragma: no cover


def build_model(cfg: ModelConfig, tokenizer=None, seed: int | None = None):
    """A freshly initialised ``AutoModelForCausalLM`` for the config (and the tokenizer's vocabulary)."""
    from transformers import AutoModelForCausalLM, set_seed

    kw = {}
    if tokenizer is not None:
        kw = dict(vocab_size=len(tokenizer), bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id,
                  pad_id=tokenizer.pad_token_id)
    if seed is not None:
        set_seed(seed)
    if cfg.init_from:
        model = load_model(cfg.init_from, "model.init_from")
        if tokenizer is not None and model.config.vocab_size != len(tokenizer):
            raise UserError(f"model.init_from {cfg.init_from} has vocabulary size {model.config.vocab_size}, the "
                            f"tokenizer {len(tokenizer)}; use the tokenizer it was trained with")
        return model
    return AutoModelForCausalLM.from_config(hf_config(cfg, **kw))


def resolve_model_path(name: str | Path, what: str = "model") -> Path:
    """A local model directory, or the snapshot of a hub id already in the local Hugging Face cache; babyllama
    never downloads at run time, so a hub id that is not cached is one line saying how to fetch it."""
    p = Path(name)
    if p.exists() or str(name).startswith((".", "/", "~")) or str(name).count("/") != 1:
        return p
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(name), local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise UserError(f"{what} '{name}' is neither a directory nor a hub id in the local Hugging Face cache; "
                        f"babyllama never downloads at run time: fetch it first on a machine with network "
                        f"(`hf download {name}`), or pass a local directory") from None


def load_model(path: str | Path, what: str = "model", dtype: torch.dtype = torch.float32):
    """``AutoModelForCausalLM`` from a local directory or a cached hub id (offline), with one clear line for a
    missing or corrupt checkpoint. ``what`` names the role in that line ("teacher", "model")."""
    from transformers import AutoModelForCausalLM

    p = resolve_model_path(path, what)
    if not (p / "config.json").is_file():
        raise UserError(f"{what} {p}: no config.json; point to a Hugging Face model directory (a finished run)")
    try:
        return AutoModelForCausalLM.from_pretrained(str(p), dtype=dtype, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the loader says, the directory is the user's to fix
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(f"{what} {p}: cannot load the checkpoint ({msg}); re-train or re-copy it") from None


def count_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def config_params(cfg: ModelConfig, vocab_size: int | None = None) -> int:
    """Parameter count of a model config (at ``vocab_size``, else its own), built on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config(cfg, vocab_size=vocab_size))
    return count_params(model)


def preset_params(name: str) -> int:
    """Parameter count of a preset at its nominal vocabulary."""
    return config_params(ModelConfig(preset=name))


def list_presets() -> list[dict[str, Any]]:
    return [{"name": n, "architecture": p["architecture"], "params": preset_params(n)} for n, p in PRESETS.items()]


def layer_list(body: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The repeated blocks of a transformers base model (LLaMA-like ``layers``, GPT-2-like ``h``), else None."""
    for name in ("layers", "h"):
        layers = getattr(body, name, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return layers
    return None
