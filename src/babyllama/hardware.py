"""Where and how a stage runs: the device (CPU, or the GPU of this process), precision (bf16 autocast where
native) and the attention kernel.

Why these rules: on CPUs with AVX512-BF16 or AMX bf16 matmuls run several times faster than fp32, while without
them bf16 is emulated and far slower; under CPU bf16 autocast the SDPA backward is the slow part of a step, so
eager attention trains faster there while SDPA still infers faster. The measurements are in benchmarks/README.md.
"""

from __future__ import annotations

import os
import shutil
import time
from functools import lru_cache
from pathlib import Path

import torch

from .config import Config
from .errors import UserError


def default_device() -> str:
    return resolve_device("auto")


def resolve_device(pref: str | None = "auto") -> str:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> the torch device this process computes on. ``cuda`` (and auto
    on a machine with a GPU) is the launcher's GPU for this process (``LOCAL_RANK`` under torchrun / accelerate
    launch), so N processes on one node use N GPUs; ``cuda:N`` names one."""
    pref = pref or "auto"
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not (pref in ("auto", "cuda") or (pref.startswith("cuda:") and pref[5:].isdigit())):
        raise UserError(f"device {pref!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"device {pref}: torch sees no CUDA device (torch {torch.__version__}, "
                        f"CUDA build: {torch.version.cuda or 'none'}); use device auto or cpu")
    index = int(pref[5:]) if pref.startswith("cuda:") else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise UserError(f"device cuda:{index}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return f"cuda:{index}"


def device_type(device: str | torch.device) -> str:
    """'cuda:1' -> 'cuda' (what torch.autocast and the precision rule take)."""
    return torch.device(device).type


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX (native bf16 matmuls)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


BF16_MATMUL_MIN_GAIN = 1.25  # bf16 autocast pays on a CPU when its matmuls run at least this much faster than fp32


@lru_cache(maxsize=1)
def cpu_bf16_matmul_gain(n: int = 512, reps: int = 5) -> float:
    """How much faster an n x n matmul runs in bf16 than in fp32 on this CPU, at this process's threads (best of
    ``reps``; a few milliseconds). Native bf16 is not enough: without AMX, this torch's bf16 matmuls can run slower
    than fp32 (benchmarks/README.md, "Without AMX")."""
    def best(dtype) -> float:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        t = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            t = min(t, time.perf_counter() - t0)
        return t

    return best(torch.float32) / best(torch.bfloat16)


def cpu_bf16_pays() -> bool:
    """Native bf16 whose matmuls here beat fp32's by BF16_MATMUL_MIN_GAIN (AMX: ~6x; AVX512-BF16 EPYC: ~2x)."""
    return cpu_has_native_bf16() and cpu_bf16_matmul_gain() >= BF16_MATMUL_MIN_GAIN


def resolve_precision(pref: str, device: str | None = None) -> str:
    """'auto' -> bf16 where the device runs it natively (on a CPU: and its bf16 matmuls are measurably faster than
    fp32's), else fp32 on a CPU and fp16 on an older GPU. fp16 is refused on a CPU."""
    device = device_type(device or default_device())
    if pref == "fp16" and device == "cpu":
        raise UserError("training.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if pref != "auto":
        return pref
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_pays() else "fp32"


def resolve_eval_precision(pref: str, device: str | None = None) -> str:
    """Scoring precision: 'auto' -> exact_bf16 where the device runs bf16 natively (the decisions stay fp32's,
    faster), else fp32."""
    if pref != "auto":
        return pref
    return "exact_bf16" if resolve_precision("auto", device) == "bf16" else "fp32"


def resolve_attention(pref: str, precision: str, compiled: bool = False, device: str | None = None) -> str:
    """'auto' -> 'by_grad' (eager while gradients are on, SDPA under no_grad / inference_mode) on a CPU with bf16
    autocast or with compiled decoder layers (:mod:`babyllama.regional`), else 'sdpa'. On a CPU the SDPA backward
    is the slow part under bf16; compiled, eager attention's scaling, mask and softmax fuse into their neighbours
    while the SDPA kernel stays opaque (benchmarks/README.md, "Fine-tuning")."""
    if pref != "auto":
        return pref
    device = device_type(device or default_device())
    return "by_grad" if device == "cpu" and (precision == "bf16" or compiled) else "sdpa"


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


def configure_attention(model, cfg: Config, compiled: bool = False):
    """The trained model's attention kernel, from ``training.attention``, the precision and whether its layers are
    compiled (``compiled``: ``training.compile`` resolved)."""
    t = cfg.training
    if not getattr(model, "_supports_sdpa", False):  # a class with no SDPA kernel: eager is all it has
        if t.attention == "sdpa":
            raise UserError(f"training.attention=sdpa: transformers has no SDPA attention for "
                            f"{model.config.model_type}; use training.attention: auto or eager")
        return model
    device = resolve_device(t.device)
    return set_attention(model, resolve_attention(t.attention, resolve_precision(t.precision, device), compiled,
                                                  device))


def autocast(precision: str, device: str | torch.device):
    """The autocast context of a resolved precision on ``device`` (fp32: none)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type(device), dtype=dtype, enabled=dtype is not None)


def has_compiler() -> bool:
    """Inductor on a CPU writes C++ and needs a compiler to build it."""
    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))
