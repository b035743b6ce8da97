"""Trainer set-up shared by pretraining and distillation: arguments, precision, progress, output directory.

We use the stock transformers ``Trainer``; everything here is configuration and callbacks (no copied internals).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from ..config import Config
from ..errors import UserError
from ..runinfo import is_complete


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX (where bf16 matmuls run at about 2.5x fp32 here)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(pref: str, device: str | None = None) -> str:
    """'auto' -> bf16 where the device runs it natively, else fp32. fp16 is refused on CPU."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "fp16" and device == "cpu":
        raise UserError("training.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if pref != "auto":
        return pref
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def resolve_attention(pref: str, precision: str, compile_: bool = False, device: str | None = None) -> str:
    """'auto' -> 'by_grad' on CPU with bf16 autocast and no torch.compile, else 'sdpa'.

    Measured on this project's CPU (benchmarks/README.md): under bf16 autocast the SDPA kernels' backward is slow, so
    a training step with eager attention is 1.09-1.46x faster, while for inference SDPA is up to 1.3x faster.
    'by_grad' gets both: eager while gradients are on, SDPA under no_grad / inference_mode (evaluation).
    """
    if pref != "auto":
        return pref
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
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


def tokens_per_step(cfg: Config, world_size: int = 1) -> int:
    t = cfg.training
    return t.batch_size * t.gradient_accumulation_steps * cfg.data.seq_len * world_size


def training_arguments(cfg: Config, output_dir: str | Path, **overrides) -> TrainingArguments:
    t = cfg.training
    precision = resolve_precision(t.precision)
    strategy = t.eval_strategy
    fused = hasattr(torch.optim, "AdamW")  # torch >= 2.4 has fused AdamW on CPU and CUDA
    kw = dict(
        output_dir=str(output_dir),
        seed=t.seed,
        data_seed=t.seed,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_epsilon,
        max_grad_norm=t.max_grad_norm,
        optim="adamw_torch_fused" if fused else "adamw_torch",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        torch_compile=t.compile,
        eval_strategy=strategy,
        eval_steps=t.eval_steps if strategy == "steps" else None,
        eval_on_start=t.eval_on_start and strategy != "no",
        save_strategy=strategy if strategy != "no" else "steps",
        save_steps=t.eval_steps if strategy == "steps" else 500,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=strategy != "no",
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        prediction_loss_only=True,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to=[r for r in t.report_to if r != "none"] or "none",
        dataloader_num_workers=t.dataloader_workers,
        remove_unused_columns=False,
        disable_tqdm=not t.progress,
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
    )
    kw.update(overrides)
    return TrainingArguments(**kw)


class TokenProgressCallback(ProgressCallback):
    """The Trainer's progress bar (steps, ETA) plus training tokens/s."""

    def __init__(self, tokens_per_step: int):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self._t0 = None
        self._step0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._t0, self._step0 = time.perf_counter(), state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        if self.training_bar is not None and self._t0 is not None:
            dt = time.perf_counter() - self._t0
            if dt > 0:
                rate = (state.global_step - self._step0) * self.tokens_per_step / dt
                self.training_bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)


class EpochCallback(TrainerCallback):
    """Tells the training dataset the epoch, so its random chunk offsets change each epoch (seeded)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(math.floor(state.epoch or 0)))


def prepare_output_dir(output_dir: str | Path, overwrite: bool = False) -> str | None:
    """Check the output directory; return the checkpoint to resume from, if any.

    A finished run (``run_info.json`` complete) is never overwritten unless asked; a directory with checkpoints
    resumes; a non-empty directory that is not ours is refused.
    """
    out = Path(output_dir)
    if not out.exists() or not any(out.iterdir()):
        return None
    if is_complete(out):
        if overwrite:
            return None
        raise UserError(f"{out} already holds a finished run; choose another output directory or pass --overwrite")
    last = get_last_checkpoint(str(out))
    if last:
        return last
    ours = {"runs", "babyllama_config.yaml", "run_info.json"}
    if not set(os.listdir(out)) <= ours:
        raise UserError(f"{out} is not empty and holds no babyllama checkpoint; choose another output directory")
    return None


def eval_history(log_history: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in e.items() if k in ("step", "epoch") or k.startswith("eval_")}
        for e in log_history if "eval_loss" in e
    ]
