"""Pretraining a teacher or a baseline with the stock transformers Trainer.

Run: ``babyllama train configs/train/llama-cpu-4m.yaml --set training.output_dir=runs/t1``.

The output directory ends up holding the best model (lowest eval loss) and the tokenizer in Hugging Face format,
``babyllama_config.yaml`` (the resolved config), ``metrics.json`` (eval loss at step 0 and per epoch, train loss,
tokens/s, parameter count) and ``run_info.json`` (versions, git SHA, data and tokenizer hashes), written last.
Interrupted runs resume from their last checkpoint when the same command is run again.
"""

from __future__ import annotations

import time

from ..config import Config
from ..losses import trainer_causal_lm_loss
from .trainer import fit, setup_run, training_run


def train(cfg: Config, overwrite: bool = False, callbacks: list | None = None) -> dict:
    """Pretrain ``cfg.model`` on ``cfg.data`` with ``cfg.training``; returns metrics. ``callbacks``: extra
    ``TrainerCallback`` objects (a sweep's pruning reporter)."""
    t_start = time.time()
    with training_run(cfg):
        return fit(cfg, setup_run(cfg, overwrite), "pretrain", t_start, callbacks=callbacks,
                   compute_loss_func=trainer_causal_lm_loss)
