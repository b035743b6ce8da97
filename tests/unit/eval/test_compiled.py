"""Scoring with compiled decoder layers: the auto rule, the layers handed back, the decisions unchanged."""

import numpy as np
import pytest

from babyllama import regional
from babyllama.config import ModelConfig
from babyllama.errors import UserError
from babyllama.eval import compiled
from babyllama.eval.compiled import compiled_layers, resolve_scoring_compile
from babyllama.eval.scoring import Scorer
from babyllama.models import build_model
from tests.unit.eval.test_scoring import _pair_items


def test_auto_compiles_only_large_evaluations_on_a_cpu_with_a_compiler(monkeypatch):
    monkeypatch.setattr(regional, "has_compiler", lambda: True)
    work = compiled.AUTO_MIN_WORK
    assert resolve_scoring_compile("auto", "cpu", 58_000_000, 160_000)  # the whole BLiMP, supplement, EWoK
    assert not resolve_scoring_compile("auto", "cpu", 12_500_000, 160_000)  # a 12.5M model gains too little
    assert not resolve_scoring_compile("auto", "cpu", 58_000_000, 10_000)  # too few sentences to pay back
    assert resolve_scoring_compile("auto", "cpu", 1_000, int(work / 1_000)) and not resolve_scoring_compile(
        "auto", "cpu", 1_000, int(work / 1_000) - 1)
    assert not resolve_scoring_compile("auto", "cuda", 58_000_000, 160_000)  # not measured there
    assert resolve_scoring_compile(True, "cpu", 1, 1) and not resolve_scoring_compile(False, "cpu", 10**9, 10**9)
    monkeypatch.setattr(regional, "has_compiler", lambda: False)
    assert not resolve_scoring_compile("auto", "cpu", 58_000_000, 160_000)
    with pytest.raises(UserError, match="eval.compile: true needs a C.. compiler"):
        resolve_scoring_compile(True, "cpu", 58_000_000, 160_000)


def test_the_layers_run_compiled_inside_and_are_handed_back_after(tiny_tokenizer):
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    layers = model.model.layers
    own = [layer.forward for layer in layers]
    with compiled_layers(model) as done:
        assert done and all("forward" in vars(layer) for layer in layers)
    assert all("forward" not in vars(layer) for layer in layers) and [l.forward for l in layers] == own
    with compiled_layers(model, enabled=False) as done:
        assert not done and all("forward" not in vars(layer) for layer in layers)
    layers[0].forward = marker = lambda *a, **k: None  # compiled by someone else (fine-tuning): left alone
    with compiled_layers(model):
        assert layers[0].forward is marker
    assert layers[0].forward is marker


@pytest.mark.skipif(not regional.has_compiler(), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_scoring_decides_as_eager_scoring(tiny_tokenizer):
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    items = _pair_items()
    from torch._dynamo.utils import counters

    want, lp = Scorer(model, tiny_tokenizer).score_items(items)
    compiled_before = counters["frames"]["ok"]
    with compiled_layers(model):
        got, lp_c = Scorer(model, tiny_tokenizer).score_items(items)
        got_exact, _ = Scorer(model, tiny_tokenizer, exact_bf16=True).score_items(items)
    assert counters["frames"]["ok"] > compiled_before  # dynamo did compile the layers
    assert got == want == got_exact
    assert np.array(lp_c) == pytest.approx(np.array(lp), abs=1e-4)
