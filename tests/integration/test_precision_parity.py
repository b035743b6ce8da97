"""bf16 autocast (the CPU default where AVX512-BF16/AMX exist) trains as well as fp32 over a short run."""

import pytest

from babyllama.training.pretrain import train
from helpers import tiny_config


@pytest.mark.slow
def test_bf16_eval_loss_within_one_percent_of_fp32(prepared, tokenizer_dir, tmp_path):
    losses = {}
    for prec in ("fp32", "bf16"):
        m = train(tiny_config(prepared, tokenizer_dir, tmp_path / prec, max_steps=60, eval_steps=60,
                              precision=prec, learning_rate=2e-3))
        losses[prec] = m["eval_loss"]
        assert m["precision"] == prec
    assert losses["fp32"] < 6.0  # it learned something: the untrained loss is ln(512) = 6.24
    assert abs(losses["bf16"] / losses["fp32"] - 1) < 0.01, losses
