"""The protocols' settings as their scripts set them, and the override table."""

import pytest

from babyllama.errors import UserError
from babyllama.finetuning.protocols import (TaskOverrides, apply_overrides, overrides_for, protocol_hparams,
                                          protocol_seed)


def test_babylm2024_is_finetune_model_sh():
    h = protocol_hparams("babylm2024", "rte", 2)
    assert (h.learning_rate, h.batch_size, h.max_epochs, h.max_length, h.patience) == (5e-5, 64, 10, 128, 3)
    assert h.eval_every is None and h.threshold == 0.001 and h.select_metric == "f1"
    assert (h.head, h.pooling, h.weight_decay, h.max_grad_norm) == ("sequence_classification", "last", 0.0, 1.0)
    assert protocol_hparams("babylm2024", "mnli", 3).select_metric == "accuracy"
    assert protocol_seed("babylm2024") == 12


def test_babylm2023_evaluates_every_200_steps_with_patience_10():
    h = protocol_hparams("babylm2023", "cola", 2)
    assert (h.eval_every, h.patience) == (200, 10)


def test_babylm2025_own_head_and_per_task_batches():
    h = protocol_hparams("babylm2025", "boolq", 2)
    assert (h.head, h.pooling, h.batch_size, h.max_length, h.learning_rate) == ("babylm2025", "first", 16, 512,
                                                                                3e-5)
    assert (h.weight_decay, h.warmup_ratio, h.scheduler, h.patience, h.drop_last) == (0.01, 0.06, "cosine_min",
                                                                                      None, True)
    assert protocol_hparams("babylm2025", "wsc", 2).max_epochs == 30
    assert protocol_hparams("babylm2025", "rte", 2).select_metric == "accuracy"
    assert protocol_hparams("babylm2025", "mrpc", 2).select_metric == "f1"
    assert protocol_seed("babylm2025") == 42
    assert protocol_hparams("babylm2025", "rte", 2, pooling="last").pooling == "last"
    with pytest.raises(UserError, match="--pooling first needs"):
        protocol_hparams("babylm2024", "rte", 2, pooling="first")


def test_overrides_task_row_over_default_row_then_the_cap():
    table = {"default": TaskOverrides(learning_rate=1e-4, max_epochs=6), "cola": TaskOverrides(max_epochs=3)}
    h = apply_overrides(protocol_hparams("babylm2024", "cola", 2), overrides_for(table, "cola"), None)
    assert (h.learning_rate, h.max_epochs, h.batch_size) == (1e-4, 3, 64)
    h = apply_overrides(protocol_hparams("babylm2024", "rte", 2), overrides_for(table, "rte"), 4)
    assert (h.learning_rate, h.max_epochs) == (1e-4, 4)
    assert overrides_for({}, "rte") is None
