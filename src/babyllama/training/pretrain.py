"""Pretraining a teacher or a baseline with the stock transformers Trainer.

Run: ``babyllama train configs/train/llama-cpu-4m.yaml --set training.output_dir=runs/t1``.

The output directory ends up holding the best model (lowest eval loss) and the tokenizer in Hugging Face format,
``babyllama_config.yaml`` (the resolved config), ``metrics.json`` (eval loss at step 0 and per epoch, train loss,
tokens/s, parameter count) and ``run_info.json`` (versions, git SHA, data and tokenizer hashes), written last.
Interrupted runs resume from their last checkpoint when the same command is run again.
"""

from __future__ import annotations

import time

from transformers import default_data_collator

from ..config import Config
from ..losses import trainer_causal_lm_loss
from ..models import build_model
from .hardware import configure_attention
from .trainer import (GuardedTrainer, attach_progress, finish_run, setup_run, standard_callbacks,
                      training_arguments, training_run)


def train(cfg: Config, overwrite: bool = False, callbacks: list | None = None) -> dict:
    """Pretrain ``cfg.model`` on ``cfg.data`` with ``cfg.training``; returns metrics. ``callbacks``: extra
    ``TrainerCallback`` objects (a sweep's pruning reporter)."""
    t_start = time.time()
    with training_run(cfg):
        run = setup_run(cfg, overwrite)
        model = configure_attention(build_model(cfg.model, run.tokenizer, seed=cfg.training.seed), cfg)
        trainer = GuardedTrainer(model=model, args=training_arguments(cfg, run.out), train_dataset=run.train_ds,
                                 eval_dataset=run.eval_ds, processing_class=run.tokenizer,
                                 data_collator=default_data_collator,
                                 callbacks=[*standard_callbacks(run.train_ds, cfg, run.provenance), *(callbacks or [])],
                                 compute_loss_func=trainer_causal_lm_loss)
        attach_progress(trainer, cfg)
        if run.resume:
            print(f"resuming from {run.resume}", flush=True)
        result = trainer.train(resume_from_checkpoint=run.resume)
        return finish_run(trainer, cfg, run.out, "pretrain", run.provenance, t_start, result)
