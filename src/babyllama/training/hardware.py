"""What the machine runs fastest: precision (bf16 autocast where native) and the attention kernel.

Why these rules: on CPUs with AVX512-BF16 or AMX bf16 matmuls run several times faster than fp32, while without
them bf16 is emulated and far slower; under CPU bf16 autocast the SDPA backward is the slow part of a step, so
eager attention trains faster there while SDPA still infers faster. The measurements are in benchmarks/README.md.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import Config
from ..errors import UserError


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX (native bf16 matmuls)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(pref: str, device: str | None = None) -> str:
    """'auto' -> bf16 where the device runs it natively, else fp32. fp16 is refused on CPU."""
    device = device or default_device()
    if pref == "fp16" and device == "cpu":
        raise UserError("training.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if pref != "auto":
        return pref
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def resolve_attention(pref: str, precision: str, compile_: bool = False, device: str | None = None) -> str:
    """'auto' -> 'by_grad' (eager while gradients are on, SDPA under no_grad / inference_mode) on CPU with bf16
    autocast and no torch.compile, else 'sdpa'."""
    if pref != "auto":
        return pref
    device = device or default_device()
    return "by_grad" if device == "cpu" and precision == "bf16" and not compile_ else "sdpa"


def _attention_by_grad(module, args, kwargs):
    impl = "eager" if torch.is_grad_enabled() else "sdpa"
    if module.config._attn_implementation != impl:
        module.config._attn_implementation = impl  # read on every forward; all layers share this config


def set_attention(model, mode: str):
    """Apply a resolved ``training.attention`` mode to a transformers model (in place; not saved with it)."""
    if mode == "by_grad":
        model.register_forward_pre_hook(_attention_by_grad, with_kwargs=True)
    else:
        model.set_attn_implementation(mode)
    return model


def configure_attention(model, cfg: Config):
    """The trained model's attention kernel, from ``training.attention`` / precision / compile."""
    t = cfg.training
    if not getattr(model, "_supports_sdpa", False):  # a class with no SDPA kernel: eager is all it has
        if t.attention == "sdpa":
            raise UserError(f"training.attention=sdpa: transformers has no SDPA attention for "
                            f"{model.config.model_type}; use training.attention: auto or eager")
        return model
    return set_attention(model, resolve_attention(t.attention, resolve_precision(t.precision), t.compile))
