"""Selection and early stopping against the Trainer's own EarlyStoppingCallback."""

import numpy as np
import pytest

from babyllama.finetuning.train import Selection


@pytest.mark.parametrize("scores", [
    [0.5, 0.5005, 0.6, 0.6, 0.6, 0.6, 0.7],
    [0.3, 0.2, 0.1, 0.05, 0.9],
    [0.5, 0.5008, 0.5016, 0.5024, 0.5032, 0.6],
    list(np.random.default_rng(0).random(30)),
])
def test_selection_is_the_trainer_callback(scores):
    from transformers import EarlyStoppingCallback, TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir="unused", metric_for_best_model="f1", greater_is_better=True,
                             load_best_model_at_end=True, eval_strategy="epoch", save_strategy="epoch",
                             report_to=[])
    cb = EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.001)
    state, control = TrainerState(), TrainerControl()
    ours = Selection(3, 0.001)
    for s in scores:
        cb.on_evaluate(args, state, control, metrics={"eval_f1": s})  # compares with the best before
        hf_keep = state.best_metric is None or s > state.best_metric  # Trainer._determine_best_metric
        if hf_keep:
            state.best_metric = s
        keep, stop = ours.update(s)
        assert keep == hf_keep and stop == control.should_training_stop
        if stop:
            break


def test_no_patience_never_stops():
    sel = Selection(None, 0.0)
    assert all(not sel.update(s)[1] for s in [0.5, 0.4, 0.3, 0.2, 0.1])
    assert sel.best == 0.5
