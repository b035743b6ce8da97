"""Trainer set-up shared by pretraining and distillation: arguments, callbacks, the output directory, the
datasets and provenance at the start of a run, and the model, metrics and provenance at its end.

We use the stock transformers ``Trainer``; everything here is configuration and callbacks (no copied internals).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import TrainerCallback, TrainingArguments, default_data_collator, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..config import Config, dump_yaml, location_free
from ..data.dataset import ChunkDataset, build_datasets
from ..errors import UserError
from ..io import LOCK_FILE, exclusive, require_folders, write_json, write_text
from ..models import PAPER_CONTEXT, build_model, count_params, hf_config
from ..progress import Bar, clock, number, say
from ..runinfo import METRICS_FILE, RUN_INFO, is_complete, write_run_info
from ..tokenizer import finalize_tokenizer_config, load_tokenizer, model_context, tokenizer_hash, vocab_hash
from ..hardware import configure_attention, device_type, resolve_device, resolve_precision
from ..regional import compile_layers, eager_scoring, resolve_compile
from .checkpoints import CheckpointMarker, last_good_checkpoint
from .words import WordCheckpoints

CONFIG_FILE = "babyllama_config.yaml"


def tokens_per_step(cfg: Config, world_size: int = 1) -> int:
    t = cfg.training
    return t.batch_size * t.gradient_accumulation_steps * cfg.data.seq_len * world_size


def training_arguments(cfg: Config, output_dir: str | Path, **overrides) -> TrainingArguments:
    t = cfg.training
    device = resolve_device(t.device)
    precision = resolve_precision(t.precision, device)
    strategy = t.eval_strategy
    cpu = device == "cpu"
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
        optim="adamw_torch_fused",  # fused AdamW: CPU and CUDA in every torch we support
        bf16=precision == "bf16",
        fp16=precision == "fp16",  # autocast with the Trainer's (accelerate's) dynamic loss scaling
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
        use_cpu=cpu,
        ddp_backend="gloo" if cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
    )
    kw.update(overrides)
    return TrainingArguments(**kw)


class GuardedTrainer(transformers.Trainer):
    """The stock Trainer, stopping at the first non-finite training loss: before its backward pass, so neither the
    weights nor any checkpoint ever hold what it would have done; the last checkpoint stays the resume point.
    ``layers_compiled``: the model's decoder layers are compiled (:func:`fit`); evaluation runs their eager code."""

    def __init__(self, *args, layers_compiled: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.layers_compiled = layers_compiled

    def evaluation_loop(self, *args, **kwargs):
        # compiled for the training steps: a no-grad graph would be one more compile for a few seconds of scoring
        with eager_scoring() if self.layers_compiled else nullcontext():
            return super().evaluation_loop(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                   num_items_in_batch=num_items_in_batch)
        self.check_finite(out[0] if return_outputs else out)
        return out

    tokens_per_step: int | None = None  # set by attach_progress: training tokens/s join every train log

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs and self.tokens_per_step:
            now, step = time.perf_counter(), self.state.global_step
            last = getattr(self, "_last_log", None)
            if last and now > last[0] and step > last[1]:
                logs["train_tokens_per_s"] = round((step - last[1]) * self.tokens_per_step / (now - last[0]), 1)
            self._last_log = (now, step)
        super().log(logs, start_time)

    def check_finite(self, loss: torch.Tensor) -> None:
        if self.model.training and not bool(torch.isfinite(loss.detach()).all()):
            last = last_good_checkpoint(self.args.output_dir, say=lambda _: None)
            raise UserError(f"training loss is {float(loss.detach())} at step {self.state.global_step + 1} in "
                            f"{self.args.output_dir}; lower training.learning_rate or training.max_grad_norm and "
                            f"run again (it resumes from {last or 'the start'})")


# Trainer log keys as people read them, in this order; the rest of a log dict is not printed (it is in
# metrics.json and TensorBoard)
TRAIN_KEYS = (("loss", "loss"), ("ce", "CE"), ("kl", "KL"), ("learning_rate", "lr"), ("grad_norm", "grad norm"))
EVAL_KEYS = (("eval_loss", "CE"), ("eval_kl", "KL"), ("eval_objective", "objective"))


class ReadableProgress(TrainerCallback):
    """One progress bar for the stage (on a terminal) and one line per log and per evaluation, with the figures
    formatted: ``step 40/220 (epoch 0.91) | loss 3.907 | CE 6.692 | KL 0.2807 | lr 0.00234 | 5,918 tok/s |
    ETA 0:02:01``. It replaces the Trainer's ProgressCallback, which prints raw dicts with numbers as strings and
    opens a second bar for every evaluation."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.bar = None
        self._t0, self._step0 = None, 0
        self.ended = False

    def _rate(self, state) -> tuple[float | None, float | None]:
        """(tokens/s, seconds left) over the steps this process ran."""
        if self._t0 is None:
            return None, None
        dt, done = time.perf_counter() - self._t0, state.global_step - self._step0
        if dt <= 0 or done <= 0:
            return None, None
        return done * self.tokens_per_step / dt, (state.max_steps - state.global_step) * dt / done

    def _where(self, state) -> str:
        return f"step {state.global_step}/{state.max_steps} (epoch {state.epoch or 0:.2f})"

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._t0, self._step0 = time.perf_counter(), state.global_step
        self.bar = Bar(state.max_steps, "training", "steps", initial=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            rate, _ = self._rate(state)
            self.bar.update(state.global_step - self.bar.n, f"{rate:,.0f} tok/s" if rate else None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "eval_loss" in logs:
            parts = [f"{name} {number(logs[k])}" for k, name in EVAL_KEYS if k in logs]
            if "eval_runtime" in logs:
                parts.append(f"{logs['eval_runtime']:.1f} s")
            # after training, the evaluation is of the best checkpoint, which the stage keeps
            where = "best checkpoint" if self.ended else self._where(state)
            say(f"eval   {where} | " + " | ".join(parts))
        elif "loss" in logs:
            rate, left = self._rate(state)
            parts = [f"{name} {number(logs[k])}" for k, name in TRAIN_KEYS if k in logs]
            if rate:
                parts += [f"{rate:,.0f} tok/s", f"ETA {clock(left)}"]
            say(f"train  {self._where(state)} | " + " | ".join(parts))
        elif "train_runtime" in logs:
            say(f"training done: {state.global_step} steps in {clock(logs['train_runtime'])}"
                + (f", mean training loss {number(logs['train_loss'])}" if "train_loss" in logs else ""))

    def on_train_end(self, args, state, control, **kwargs):
        self.ended = True
        if self.bar is not None:
            self.bar.close(summary=False)  # the summary is the "training done" line
            self.bar = None


class EpochCallback(TrainerCallback):
    """Tells the training dataset the epoch, so its random chunk offsets change each epoch (seeded)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(math.floor(state.epoch or 0)))


class ConfigHparams(TrainerCallback):
    """The resolved config as TensorBoard hyperparameters (the hparams dashboard), once the writer exists."""

    def __init__(self, tensorboard, cfg: Config):
        self.tensorboard, self.cfg = tensorboard, cfg

    def on_train_begin(self, args, state, control, **kwargs):
        writer = getattr(self.tensorboard, "tb_writer", None)
        if writer is None or not state.is_world_process_zero:
            return
        flat = {}

        def walk(node, prefix=""):
            for k, v in node.items():
                if isinstance(v, dict):
                    walk(v, f"{prefix}{k}.")
                elif not any(p in k for p in ("dir", "corpus", "tokenizer", "teachers", "data_root")):
                    flat[prefix + k] = v if isinstance(v, int | float | str | bool) else str(v)
        walk(self.cfg.model_dump(mode="json"))
        writer.add_hparams(flat, {"hparam/placeholder": 0.0}, run_name=".")


def attach_progress(trainer: transformers.Trainer, cfg: Config) -> None:
    from transformers.integrations import TensorBoardCallback

    trainer.tokens_per_step = tokens_per_step(cfg, trainer.args.world_size)
    for cb in list(trainer.callback_handler.callbacks):
        if isinstance(cb, TensorBoardCallback):
            trainer.add_callback(ConfigHparams(cb, cfg))
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # what the Trainer adds instead with disable_tqdm
    if cfg.training.progress:
        trainer.add_callback(ReadableProgress(tokens_per_step(cfg, trainer.args.world_size)))


def relocate_best_checkpoint(checkpoint: str | Path, out: Path) -> None:
    """Point the resumed state's best checkpoint at this output directory.

    The Trainer records ``best_model_checkpoint`` as a path; after the output directory was moved or copied it
    names the old place, and the Trainer would drop it (and with it the best model) on resume.
    """
    state_file = Path(checkpoint) / "trainer_state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return
    best = state.get("best_model_checkpoint")
    if best and not Path(best).is_dir() and (out / Path(best).name).is_dir():
        state["best_model_checkpoint"] = str(out / Path(best).name)
        write_json(state_file, state)


def prepare_output_dir(output_dir: str | Path, overwrite: bool = False) -> str | None:
    """Check the output directory; return the checkpoint to resume from, if any.

    A finished run (``run_info.json`` complete) is never overwritten unless asked; a directory with checkpoints
    resumes from the newest whole one; a non-empty directory that is not ours is refused.
    """
    out = Path(output_dir)
    require_folders([out], "training.output_dir")
    if not out.exists() or not any(out.iterdir()):
        return None
    if is_complete(out):
        if overwrite:
            return None
        raise UserError(f"{out} already holds a finished run; choose another output directory or pass --overwrite")
    last = last_good_checkpoint(out)
    if last:
        relocate_best_checkpoint(last, out)
        return last
    ours = {"runs", CONFIG_FILE, RUN_INFO, LOCK_FILE}
    if not set(os.listdir(out)) <= ours:
        raise UserError(f"{out} is not empty and holds no babyllama checkpoint; choose another output directory")
    return None


def eval_history(log_history: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in e.items() if k in ("step", "epoch") or k.startswith("eval_")}
        for e in log_history if "eval_loss" in e
    ]


REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}


def validate_for_training(cfg: Config, tokenizer) -> None:
    """Everything about the stage that can be checked before the first write (one line each, naming the key)."""
    t = cfg.training
    model_cfg = hf_config(cfg.model, vocab_size=len(tokenizer), bos_id=tokenizer.bos_token_id,
                          eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    context = model_context(model_cfg) or PAPER_CONTEXT
    if cfg.data.seq_len > context:
        raise UserError(f"data.seq_len {cfg.data.seq_len} is longer than the model's context ({context} positions); "
                        f"shorten data.seq_len or set model.max_position_embeddings >= {cfg.data.seq_len}")
    device = resolve_device(t.device)
    resolve_precision(t.precision, device)
    if t.compile is True:
        resolve_training_compile(cfg, device, 0)  # refused here, before any write, where it cannot compile
    for name in t.report_to:
        if name == "none":
            continue
        if name not in REPORTERS:
            raise UserError(f"training.report_to: unknown tracker '{name}'; use tensorboard, wandb or none")
        if not any(importlib.util.find_spec(m) for m in REPORTERS[name]):
            raise UserError(f"training.report_to: {name} is not installed; `pip install {REPORTERS[name][0]}` or "
                            "drop it from training.report_to")
    if t.eval_strategy == "steps" and not t.eval_steps:
        raise UserError("training.eval_steps is needed with training.eval_strategy: steps")


@dataclass
class RunSetup:
    """What a training run starts from: where it writes, what it resumes, its tokenizer, data and provenance."""

    out: Path
    resume: str | None
    tokenizer: object
    train_ds: ChunkDataset
    eval_ds: ChunkDataset
    provenance: dict
    checked: Any = None  # what the caller's own check returned (distillation: the loaded teachers)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def training_run(cfg: Config) -> Iterator[None]:
    """One process at a time per output directory; unfinished checkpoints removed when the run stops early."""
    if not cfg.training.output_dir:
        raise UserError("training.output_dir is not set; add it to the config or pass --set training.output_dir=DIR")
    out = Path(cfg.training.output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"training.output_dir {out} is a file; choose a directory")
    created = not out.exists()
    with exclusive(out, "training.output_dir") if is_main_process() else nullcontext():
        try:
            yield
        except BaseException:
            if is_main_process():
                last_good_checkpoint(out, say=lambda _: None)  # a save cut short is no resume point
                if created and {p.name for p in out.iterdir()} <= {LOCK_FILE}:
                    shutil.rmtree(out, ignore_errors=True)  # refused before anything was written: leave no trace
            raise


def setup_run(cfg: Config, overwrite: bool = False, check: Callable[[Any], Any] | None = None) -> RunSetup:
    """Shared by train and distill: check the output dir, the config and ``check(tokenizer)`` before anything is
    written; then the datasets and the resolved config."""
    if not cfg.training.output_dir:
        raise UserError("training.output_dir is not set; add it to the config or pass --set training.output_dir=DIR")
    if not cfg.data.tokenizer:
        raise UserError("data.tokenizer is not set; train one with `babyllama tokenizer train` and point to it")
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    out = Path(cfg.training.output_dir)
    resume = prepare_output_dir(out, overwrite)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    validate_for_training(cfg, tokenizer)
    checked = check(tokenizer) if check else None
    set_seed(cfg.training.seed)
    train_ds, eval_ds, prov = build_datasets(cfg.data, tokenizer, cfg.training.seed)
    prov.update(tokenizer_hash=tokenizer_hash(tokenizer), vocab_hash=vocab_hash(tokenizer))
    if is_main_process():
        write_text(out / CONFIG_FILE, dump_yaml(cfg, run_dir=cfg.run_dir))
    return RunSetup(out, resume, tokenizer, train_ds, eval_ds, prov, checked)


def standard_callbacks(train_ds, cfg: Config | None = None, provenance: dict | None = None) -> list:
    """Epoch-dependent chunk offsets, the checkpoint marker, and checkpoints by words seen when asked for."""
    out = [EpochCallback(train_ds), CheckpointMarker()]
    if cfg is not None and cfg.training.save_at_words:
        ratio = (provenance or {}).get("train_words_per_token")
        if not ratio:
            raise UserError(f"training.save_at_words: {cfg.data.corpus} gives no word count (its stats.json); "
                            "prepare the corpus with `babyllama data prepare`")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        out.append(WordCheckpoints(cfg.training.save_at_words, ratio, tokens_per_step(cfg, world),
                                   Path(cfg.training.output_dir)))
    return out


def finish_run(trainer: GuardedTrainer, cfg: Config, out: Path, kind: str, prov: dict, t_start: float, train_result,
               extra_metrics: dict | None = None) -> dict:
    """Save the best model, tokenizer, metrics and provenance (run_info.json last)."""
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        finalize_tokenizer_config(out, model_context(trainer.model.config))
    hist = trainer.state.log_history
    evals = eval_history(hist)
    final = trainer.evaluate() if evals else {}
    tps = tokens_per_step(cfg, trainer.args.world_size)
    m = dict(train_result.metrics)
    metrics = {
        "kind": kind,
        "params": count_params(trainer.model),
        "precision": resolve_precision(cfg.training.precision, trainer.args.device),
        "device": str(trainer.args.device),
        "global_step": trainer.state.global_step,
        "train_tokens_seen": trainer.state.global_step * tps,
        "train_loss": m.get("train_loss"),
        "train_runtime_s": m.get("train_runtime"),
        "train_tokens_per_s": ((trainer.state.global_step * tps / m["train_runtime"]) if m.get("train_runtime")
                               else None),
        "eval_loss_start": evals[0]["eval_loss"] if evals else None,
        "eval_loss_best": trainer.state.best_metric,
        "eval_loss": final.get("eval_loss"),
        "eval_history": evals,
        "train_history": [e for e in hist if "loss" in e and "eval_loss" not in e],
        "wall_s": time.time() - t_start,
        "world_size": trainer.args.world_size,
        **(extra_metrics or {}),
    }
    if trainer.is_world_process_zero():
        write_json(out / METRICS_FILE, location_free(metrics, cfg.run_dir))
        write_run_info(out, kind, cfg.model_dump(mode="json"), run_dir=cfg.run_dir, **prov)
    return metrics


# positions trained (steps x batch x sequence x processes) from which training.compile: auto compiles the layers:
# where the first compile is paid back by faster steps (benchmarks/README.md, "Item 3 in the real training path":
# the break-evens of whole stages, with inductor's cache warm and cold)
AUTO_COMPILE_POSITIONS = 1_500_000
AUTO_COMPILE_POSITIONS_GPU = 10_000_000


def planned_steps(cfg: Config, train_chunks: int, world_size: int = 1) -> int:
    """Optimizer steps of the run, as the Trainer counts them: ``max_steps``, else the epochs' update steps."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    per_epoch = max(1, math.ceil(train_chunks / (t.batch_size * world_size)) // t.gradient_accumulation_steps)
    return math.ceil(t.num_epochs * per_epoch)


def resolve_training_compile(cfg: Config, device, positions: int) -> bool:
    """Whether the run's decoder layers are compiled (``training.compile``, for ``positions`` trained positions);
    says why not where auto would and cannot. An error where ``true`` cannot compile."""
    on, why_not = resolve_compile(cfg.training.compile, device_type(device), positions, "training.compile",
                                  AUTO_COMPILE_POSITIONS, AUTO_COMPILE_POSITIONS_GPU)
    if why_not:
        say(f"note: {why_not}")
    return on


def fit(cfg: Config, setup: RunSetup, kind: str, t_start: float, trainer_class: type = GuardedTrainer,
        train_ds: ChunkDataset | None = None, eval_ds: ChunkDataset | None = None, callbacks: list | None = None,
        extra: dict | None = None, **trainer_kwargs) -> dict:
    """The skeleton every training stage shares: a fresh ``cfg.model`` for the run's tokenizer, a Trainer of
    ``trainer_class`` over the set-up's datasets (or ``train_ds`` / ``eval_ds`` in their place) with the standard
    callbacks, training resumed from the run's last checkpoint, and the finished run's metrics (``kind``:
    pretrain or distill)."""
    train_ds = setup.train_ds if train_ds is None else train_ds
    eval_ds = setup.eval_ds if eval_ds is None else eval_ds
    world = int(os.environ.get("WORLD_SIZE", "1"))
    positions = planned_steps(cfg, len(train_ds), world) * tokens_per_step(cfg, world)
    model = build_model(cfg.model, setup.tokenizer, seed=cfg.training.seed)
    # an architecture without a list of decoder layers has nothing to compile: it trains as it would uncompiled
    compiled = (resolve_training_compile(cfg, resolve_device(cfg.training.device), positions)
                and compile_layers(model.base_model))
    model = configure_attention(model, cfg, compiled)
    if compiled and is_main_process():
        say(f"decoder layers compiled for training ({positions / 1e6:.1f}M positions to train)")
    trainer = trainer_class(model=model, args=training_arguments(cfg, setup.out), train_dataset=train_ds,
                            eval_dataset=eval_ds, processing_class=setup.tokenizer, data_collator=default_data_collator,
                            callbacks=[*standard_callbacks(train_ds, cfg, setup.provenance), *(callbacks or [])],
                            layers_compiled=compiled, **trainer_kwargs)
    attach_progress(trainer, cfg)
    if setup.resume:
        print(f"resuming from {setup.resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=setup.resume)
    return finish_run(trainer, cfg, setup.out, kind, setup.provenance, t_start, result,
                      {"compiled": compiled, **(extra or {})})
