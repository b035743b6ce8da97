"""Pretraining a teacher or a baseline with the stock transformers Trainer.

Run: ``babyllama train configs/train/llama-cpu-12m.yaml --set training.output_dir=runs/t1``.

The output directory ends up holding the best model (lowest eval loss) and the tokenizer in Hugging Face format,
``babyllama_config.yaml`` (the resolved config), ``metrics.json`` (eval loss at step 0 and per epoch, train loss,
tokens/s, parameter count) and ``run_info.json`` (versions, git SHA, data and tokenizer hashes), written last.
Interrupted runs resume from their last checkpoint when the same command is run again.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import Trainer, default_data_collator, set_seed

from ..config import Config, dump_yaml
from ..data.dataset import build_datasets
from ..errors import UserError
from ..losses import trainer_causal_lm_loss
from ..models import build_model, count_params
from ..runinfo import write_json_atomic, write_run_info
from ..tokenizer import load_tokenizer, tokenizer_hash, vocab_hash
from .trainer import (EpochCallback, TokenProgressCallback, configure_attention, eval_history, prepare_output_dir,
                      resolve_precision, tokens_per_step, training_arguments)


def setup_threads(cfg: Config) -> None:
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)


def common_setup(cfg: Config, overwrite: bool):
    """Shared by train and distill: output dir, tokenizer, datasets, provenance."""
    if not cfg.training.output_dir:
        raise UserError("training.output_dir is not set; add it to the config or pass --set training.output_dir=DIR")
    if not cfg.data.tokenizer:
        raise UserError("data.tokenizer is not set; train one with `babyllama tokenizer train` and point to it")
    setup_threads(cfg)
    out = Path(cfg.training.output_dir)
    resume = prepare_output_dir(out, overwrite)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    set_seed(cfg.training.seed)
    train_ds, eval_ds, prov = build_datasets(cfg.data, tokenizer, cfg.training.seed)
    prov.update(tokenizer_hash=tokenizer_hash(tokenizer), vocab_hash=vocab_hash(tokenizer))
    out.mkdir(parents=True, exist_ok=True)
    (out / "babyllama_config.yaml").write_text(dump_yaml(cfg))
    return out, resume, tokenizer, train_ds, eval_ds, prov


def finish(trainer: Trainer, cfg: Config, out: Path, kind: str, prov: dict, t_start: float, train_result,
           extra_metrics: dict | None = None) -> dict:
    """Save the best model, tokenizer, metrics and provenance (run_info.json last)."""
    trainer.save_model(str(out))
    hist = trainer.state.log_history
    evals = eval_history(hist)
    final = trainer.evaluate() if evals else {}
    tps = tokens_per_step(cfg, trainer.args.world_size)
    m = dict(train_result.metrics)
    metrics = {
        "kind": kind,
        "params": count_params(trainer.model),
        "precision": resolve_precision(cfg.training.precision),
        "global_step": trainer.state.global_step,
        "train_tokens_seen": trainer.state.global_step * tps,
        "train_loss": m.get("train_loss"),
        "train_runtime_s": m.get("train_runtime"),
        "train_tokens_per_s": (trainer.state.global_step * tps / m["train_runtime"]) if m.get("train_runtime") else None,
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
        write_json_atomic(out / "metrics.json", metrics)
        write_run_info(out, kind, cfg.model_dump(mode="json"), **prov)
    return metrics


def train(cfg: Config, overwrite: bool = False) -> dict:
    """Pretrain ``cfg.model`` on ``cfg.data`` with ``cfg.training``; returns metrics."""
    t_start = time.time()
    out, resume, tokenizer, train_ds, eval_ds, prov = common_setup(cfg, overwrite)
    model = configure_attention(build_model(cfg.model, tokenizer, seed=cfg.training.seed), cfg)
    args = training_arguments(cfg, out)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, data_collator=default_data_collator,
                      callbacks=[EpochCallback(train_ds)], compute_loss_func=trainer_causal_lm_loss)
    attach_progress(trainer, cfg)
    if resume:
        print(f"resuming from {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    return finish(trainer, cfg, out, "pretrain", prov, t_start, result)


def attach_progress(trainer: Trainer, cfg: Config) -> None:
    from transformers.trainer_callback import ProgressCallback

    if cfg.training.progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(TokenProgressCallback(tokens_per_step(cfg, trainer.args.world_size)))
