"""A tiny LLaMA trains for a few steps on a slice of the shared corpus; the result reloads with transformers."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from babyllama.errors import UserError
from babyllama.hardware import has_compiler
from babyllama.runinfo import read_run_info
from babyllama.training.pretrain import train
from helpers import tiny_config


def test_pretrain_eval_loss_falls_and_checkpoint_reloads(prepared, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    m = train(tiny_config(prepared, tokenizer_dir, out, max_steps=40, eval_steps=20))
    assert m["eval_loss_best"] < m["eval_loss_start"] - 0.5
    assert m["eval_history"][0]["step"] == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    x = torch.tensor([tok(" the cat", add_special_tokens=False)["input_ids"]])
    assert model(x).logits.shape[-1] == len(tok)
    info = read_run_info(out)
    assert info["status"] == "complete"
    for key in ("git_sha", "versions", "train_data_hash", "tokenizer_hash", "config"):
        assert key in info
    assert info["versions"]["torch"] and info["config"]["model"]["preset"] == "llama-tiny"
    assert json.loads((out / "metrics.json").read_text())["params"] > 0
    assert (out / "babyllama_config.yaml").is_file()


def test_finished_run_is_not_overwritten_and_interrupted_run_resumes(prepared, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(prepared, tokenizer_dir, out, max_steps=20, eval_steps=10)
    train(cfg)
    # simulate an interruption after the first checkpoint: drop the final files, keep checkpoint-10
    shutil.rmtree(out / "checkpoint-20")
    (out / "run_info.json").unlink()
    capsys.readouterr()
    m = train(cfg)
    assert f"resuming from {out / 'checkpoint-10'}" in capsys.readouterr().out
    assert m["global_step"] == 20 and m["eval_history"][0]["step"] == 0  # history carried over from the start
    with pytest.raises(UserError, match="already holds a finished run"):
        train(cfg)


@pytest.mark.slow
def test_cli_train_end_to_end(prepared, tokenizer_dir, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
data: {{corpus: {prepared}, tokenizer: {tokenizer_dir}, seq_len: 32, max_eval_tokens: 2048}}
model: {{preset: gpt2-tiny}}
training: {{output_dir: {tmp_path / 'out'}, max_steps: 6, batch_size: 4, warmup_steps: 1,
           eval_strategy: steps, eval_steps: 3, report_to: [tensorboard]}}
""")
    r = subprocess.run([sys.executable, "-m", "babyllama.cli", "train", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["global_step"] == 6
    # into a pipe: readable lines with the throughput and the ETA, no bar redraws, no raw Trainer dicts
    assert "train  step 1/6" in r.stdout and "tok/s" in r.stdout and "ETA" in r.stdout
    assert "eval   step 3/6" in r.stdout and "\r" not in r.stderr and "{'loss'" not in r.stdout
    assert list((tmp_path / "out" / "runs").rglob("events.out.tfevents*")), "tensorboard logs by default"


@pytest.mark.slow
@pytest.mark.skipif(not has_compiler(), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_layers_train_as_the_eager_ones_and_evaluate_eagerly(prepared, tokenizer_dir, tmp_path):
    """training.compile: true compiles the decoder layers for the training steps: dynamo compiles one graph (the
    layers' forward under gradients, whose backward AOT autograd compiles with it), the losses follow the eager
    run's to float rounding, and the evaluations (at the start, every few steps and of the best checkpoint) compile
    nothing more: they run the layers' eager code."""
    import torch._dynamo

    runs = {}
    for flag in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        runs[flag] = train(tiny_config(prepared, tokenizer_dir, tmp_path / str(flag), max_steps=8, eval_steps=4,
                                       logging_steps=1, precision="fp32", compile=flag))
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert graphs == (1 if flag else 0), dict(torch._dynamo.utils.counters["stats"])
    torch._dynamo.reset()
    assert runs[True]["compiled"] is True and runs[False]["compiled"] is False
    losses = {flag: [e["loss"] for e in m["train_history"]] for flag, m in runs.items()}
    assert len(losses[True]) == 8
    assert losses[True] == pytest.approx(losses[False], rel=2e-3)
    evals = {flag: [e["eval_loss"] for e in m["eval_history"]] for flag, m in runs.items()}
    assert len(evals[True]) == 3 and evals[True] == pytest.approx(evals[False], rel=2e-3)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "True").config.model_type == "llama"


def test_auto_compiles_runs_long_enough_only(prepared, tokenizer_dir, tmp_path, monkeypatch):
    """training.compile: auto counts the positions a run trains (steps x batch x sequence) against the threshold."""
    from babyllama import regional
    from babyllama.training import trainer

    monkeypatch.setattr(regional, "has_compiler", lambda: True)
    cfg = tiny_config(prepared, tokenizer_dir, tmp_path / "r", max_steps=100, precision="fp32", device="cpu")
    positions = trainer.planned_steps(cfg, 10_000) * trainer.tokens_per_step(cfg)
    assert positions == 100 * 8 * 64
    monkeypatch.setattr(trainer, "AUTO_COMPILE_POSITIONS", positions)
    assert trainer.resolve_training_compile(cfg, "cpu", positions)
    assert not trainer.resolve_training_compile(cfg, "cpu", positions - 1)
    epochs = tiny_config(prepared, tokenizer_dir, tmp_path / "r", max_steps=-1, num_epochs=2.5, batch_size=8)
    assert trainer.planned_steps(epochs, 81) == 28  # ceil(81 / 8) = 11 steps an epoch, as the Trainer counts them
    # an architecture with no list of decoder layers has nothing to compile: it trains, and says so, uncompiled
    monkeypatch.setattr(trainer, "compile_layers", lambda body: False)
    m = train(tiny_config(prepared, tokenizer_dir, tmp_path / "nothing", max_steps=2, eval_steps=2, compile=True,
                          device="cpu"))
    assert m["compiled"] is False
    monkeypatch.setattr(regional, "has_compiler", lambda: False)
    with pytest.raises(UserError, match="^training.compile: true needs a C\\+\\+ compiler"):
        train(tiny_config(prepared, tokenizer_dir, tmp_path / "refused", compile=True, device="cpu"))
    assert not (tmp_path / "refused").exists()  # refused before the first write
