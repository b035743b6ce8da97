"""When fine-tuning compiles its decoder layers."""

from __future__ import annotations

import pytest

from babyllama import regional
from babyllama.errors import UserError
from babyllama.finetuning.compiled import AUTO_MIN_POSITIONS, AUTO_MIN_POSITIONS_GPU, resolve_compile


def test_auto_compiles_long_runs_only(monkeypatch):
    monkeypatch.setattr(regional, "has_compiler", lambda: True)
    assert resolve_compile("auto", "cpu", AUTO_MIN_POSITIONS) == (True, None)
    assert resolve_compile("auto", "cpu", AUTO_MIN_POSITIONS - 1) == (False, None)  # the compile would not pay
    assert resolve_compile("auto", "cuda", AUTO_MIN_POSITIONS_GPU - 1) == (False, None)  # GPU steps gain less
    assert resolve_compile("auto", "cuda", AUTO_MIN_POSITIONS_GPU) == (True, None)
    assert resolve_compile("auto", "mps", 10 * AUTO_MIN_POSITIONS_GPU) == (False, None)
    assert resolve_compile(True, "cpu", 10) == (True, None) and resolve_compile(False, "cpu", 10**9) == (False, None)
    monkeypatch.setattr(regional, "has_compiler", lambda: False)
    on, why = resolve_compile("auto", "cpu", 10 * AUTO_MIN_POSITIONS)
    assert not on and "C++ compiler" in why
    with pytest.raises(UserError, match="finetune.compile: true needs a C\\+\\+ compiler"):
        resolve_compile(True, "cpu", 10)
