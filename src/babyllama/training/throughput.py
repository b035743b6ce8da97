"""Training and scoring throughput of a config on this machine, measured through the path `babyllama train` uses
(the runner's up-front estimate and ``benchmarks/train_step.py`` both time steps this way). Data are random token
ids: content costs nothing, and no corpus or tokenizer is needed."""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from ..config import Config


def random_tokens(vocab: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random token ids below ``vocab``."""
    return np.random.default_rng(seed).integers(0, vocab, size=n, dtype=np.uint16 if vocab <= 65536 else np.uint32)


class StepTimer:
    """Trainer callback recording the wall time at the end of each optimizer step."""

    def __init__(self):
        self.times: list[float] = []

    def __getattr__(self, name):  # every other callback event is a no-op
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter())

    def seconds_per_step(self, warmup: int) -> float:
        """The median step after ``warmup`` steps (a shared machine's stray slow step does not count)."""
        t = np.diff(self.times[warmup - 1:])
        return float(np.median(t))


def fresh_model(cfg: Config, vocab_size: int | None = None):
    """A randomly initialised model of ``cfg.model`` at ``vocab_size`` (else its preset's vocabulary)."""
    from transformers import AutoModelForCausalLM

    from ..models import hf_config

    return AutoModelForCausalLM.from_config(hf_config(cfg.model, vocab_size=vocab_size))


def timing_config(cfg: Config, steps: int, warmup: int) -> Config:
    """``cfg`` for a timing run: ``steps + warmup`` optimizer steps, no evaluation, checkpoint, log or bar."""
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={
        "max_steps": steps + warmup, "warmup_steps": 0, "eval_strategy": "no", "report_to": ["none"],
        "progress": False, "logging_steps": 10**6, "gradient_accumulation_steps": 1})})


def step_seconds(cfg: Config, steps: int = 4, warmup: int = 2, vocab_size: int | None = None) -> float:
    """Seconds per optimizer step of ``cfg``'s model at its batch, sequence length and precision, through the
    Trainer and loss `babyllama train` uses (a fresh model at ``vocab_size``, else its config's)."""
    from transformers import Trainer, default_data_collator
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ..data.dataset import ChunkDataset
    from ..hardware import configure_attention
    from ..losses import trainer_causal_lm_loss
    from .trainer import training_arguments

    cfg = timing_config(cfg, steps, warmup)
    t, seq = cfg.training, cfg.data.seq_len
    model = configure_attention(fresh_model(cfg, vocab_size), cfg)
    ds = ChunkDataset(random_tokens(model.config.vocab_size, (steps + warmup + 2) * t.batch_size * seq + seq), seq,
                      random_offset=True, seed=0)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(cfg, out, save_strategy="no", load_best_model_at_end=False)
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=default_data_collator,
                          callbacks=[timer], compute_loss_func=trainer_causal_lm_loss)
        for quiet in (PrinterCallback, ProgressCallback):  # a timing run prints nothing of its own
            trainer.remove_callback(quiet)
        trainer.train()
    return timer.seconds_per_step(warmup)


def forward_seconds_per_token(cfg: Config, batch: int = 32, seq: int = 128, reps: int = 3,
                              vocab_size: int | None = None, bf16: bool = False) -> float:
    """Seconds per token of a scoring forward pass (inference mode, fp32 or under bf16 autocast, the fp32
    log-softmax of the logits) of ``cfg``'s model, best of ``reps`` after one untimed pass."""
    model = fresh_model(cfg, vocab_size).eval()
    ids = torch.from_numpy(random_tokens(model.config.vocab_size, batch * seq).astype(np.int64)).view(batch, seq)
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(reps + 1):
            t = time.perf_counter()
            model(input_ids=ids).logits.float().log_softmax(-1)
            if i:
                best = min(best, time.perf_counter() - t)
    return best / (batch * seq)
