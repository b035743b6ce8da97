"""When fine-tuning compiles its decoder layers, and which layers those are."""

from __future__ import annotations

import pytest

from babyllama.errors import UserError
from babyllama.finetuning import compiled
from babyllama.finetuning.compiled import AUTO_MIN_POSITIONS, layer_list, resolve_compile


def test_auto_compiles_long_cpu_runs_only(monkeypatch):
    monkeypatch.setattr(compiled, "has_compiler", lambda: True)
    assert resolve_compile("auto", "cpu", AUTO_MIN_POSITIONS) == (True, None)
    assert resolve_compile("auto", "cpu", AUTO_MIN_POSITIONS - 1) == (False, None)  # the compile would not pay
    assert resolve_compile("auto", "cuda", 10 * AUTO_MIN_POSITIONS) == (False, None)
    assert resolve_compile(True, "cpu", 10) == (True, None) and resolve_compile(False, "cpu", 10**9) == (False, None)
    monkeypatch.setattr(compiled, "has_compiler", lambda: False)
    on, why = resolve_compile("auto", "cpu", 10 * AUTO_MIN_POSITIONS)
    assert not on and "C++ compiler" in why
    with pytest.raises(UserError, match="finetune.compile: true needs a C\\+\\+ compiler"):
        resolve_compile(True, "cpu", 10)


@pytest.mark.parametrize("preset,name", [("llama-tiny", "layers"), ("gpt2-tiny", "h")])
def test_the_blocks_of_llama_and_gpt2_bodies(tiny_tokenizer, preset, name):
    from babyllama.config import ModelConfig
    from babyllama.models import build_model

    body = build_model(ModelConfig(preset=preset), tiny_tokenizer, seed=0).base_model
    assert layer_list(body) is getattr(body, name) and len(layer_list(body)) > 0
    import torch

    assert layer_list(torch.nn.Linear(2, 2)) is None
