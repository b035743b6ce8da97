"""Two tiny teachers of different architectures (LLaMA, GPT-2) distilled into a tiny LLaMA, from the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from babyllama.errors import UserError
from babyllama.hardware import has_compiler
from babyllama.runinfo import read_run_info
from babyllama.data.bpe import train_tokenizer
from babyllama.config import CacheConfig
from babyllama.distillation.trainer import distill
from helpers import tiny_config


@pytest.mark.slow
def test_distill_cli_two_architectures(prepared, tokenizer_dir, teachers, tmp_path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
data: {{corpus: {prepared}, tokenizer: {tokenizer_dir}, seq_len: 64, max_eval_tokens: 4096}}
model: {{preset: llama-tiny, num_layers: 1}}
training: {{output_dir: {tmp_path / 'student'}, max_steps: 12, batch_size: 8, warmup_steps: 2, learning_rate: 3.0e-3,
           eval_strategy: steps, eval_steps: 6, logging_steps: 3, report_to: [none]}}
distill: {{alpha: 0.5, temperature: 2.0, kl_reduction: paper}}
""")
    r = subprocess.run([sys.executable, "-m", "babyllama.cli", "distill", str(cfg), "--teacher", str(teachers[0]),
                        "--teacher", str(teachers[1])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "tok/s" in r.stdout and "| KL " in r.stdout and "{'" not in r.stdout
    out = tmp_path / "student"
    AutoModelForCausalLM.from_pretrained(out)
    m = json.loads((out / "metrics.json").read_text())
    train_logs = [e for e in m["train_history"] if "kl" in e]
    assert train_logs and all(e["ce"] > 0 and e["kl"] > 0 for e in train_logs)
    assert all("eval_kl" in e for e in m["eval_history"])
    assert m["eval_loss_best"] < m["eval_loss_start"]
    info = read_run_info(out)
    assert info["kind"] == "distill" and len(info["teachers"]) == 2


def test_teacher_with_other_tokenizer_is_refused(prepared, tokenizer_dir, teachers, tmp_path):
    other_tok = tmp_path / "tok"
    train_tokenizer(prepared, other_tok, vocab_size=400)
    cfg = tiny_config(prepared, other_tok, tmp_path / "s")
    cfg.distill.teachers = [str(teachers[1])]
    with pytest.raises(UserError, match=rf"teacher {teachers[1]} uses a different tokenizer"):
        distill(cfg)
    assert not (tmp_path / "s" / "run_info.json").exists()


def test_corrupt_teacher_checkpoint(prepared, tokenizer_dir, teachers, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(teachers[0], bad)
    (bad / "model.safetensors").write_bytes(b"not a tensor file")
    cfg = tiny_config(prepared, tokenizer_dir, tmp_path / "s")
    cfg.distill.teachers = [str(bad)]
    with pytest.raises(UserError, match="cannot load the checkpoint"):
        distill(cfg)


@pytest.mark.slow
def test_cached_distillation_end_to_end(prepared, tokenizer_dir, teachers, tmp_path):
    cfg = tiny_config(prepared, tokenizer_dir, tmp_path / "s", max_steps=12, eval_steps=6)
    cfg.distill.teachers = [str(t) for t in teachers]
    # the default window, aligned, runs end to end in the DDP test
    cfg.distill.cache = CacheConfig(enabled=True, sampled=8, top_k=16, dir=str(tmp_path / "cache"), window="sliding")
    m = distill(cfg)
    assert m["eval_loss_best"] < m["eval_loss_start"] and m["teacher_cache_s"] > 0
    caches = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(caches) == 2 and caches[0].startswith("eval-") and caches[1].startswith("train-")
    assert all(e["kl"] > 0 for e in m["train_history"] if "kl" in e)
    assert all(e["eval_kl"] > 0 for e in m["eval_history"])
    # a second student with the same teachers/data/T/K reuses the cache
    cfg2 = tiny_config(prepared, tokenizer_dir, tmp_path / "s2", max_steps=4, eval_steps=4)
    cfg2.distill = cfg.distill
    distill(cfg2)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == caches


def test_cache_covers_only_the_evaluated_chunks_and_offsets_follow_the_config(prepared, tokenizer_dir, teachers,
                                                                              tmp_path):
    from babyllama.data.dataset import build_datasets
    from babyllama.distillation.sources import cached_datasets, load_teachers
    from babyllama.tokenizer import load_tokenizer

    cfg = tiny_config(prepared, tokenizer_dir, tmp_path / "s")
    cfg.data.eval_samples = 5
    cfg.distill.teachers = [str(t) for t in teachers]
    cfg.distill.cache = CacheConfig(enabled=True, sampled=8, top_k=16, window="aligned", dir=str(tmp_path / "cache"))
    tok = load_tokenizer(cfg.data.tokenizer)
    train_ds, eval_ds, prov = build_datasets(cfg.data, tok, cfg.training.seed)
    prov["tokenizer_hash"] = "t"
    models = load_teachers(cfg.distill.teachers, tok)
    assert len(eval_ds) == 5 and len(eval_ds.tokens) >= 20 * cfg.data.seq_len  # a real subset
    tr, ev, _ = cached_datasets(cfg, models, train_ds, eval_ds, dict(prov))
    # the eval cache holds the 5 evaluated chunks only, and serves them in the live eval dataset's order
    assert len(ev.cache.ids) == 5 * cfg.data.seq_len and len(ev) == 5
    for i in range(5):
        assert torch.equal(ev[i]["input_ids"], eval_ds[i]["input_ids"])
    assert not tr.random_offset  # aligned: fixed chunks by default
    cfg.distill.cache.random_offset = True
    tr, ev2, _ = cached_datasets(cfg, models, train_ds, eval_ds, dict(prov))
    assert tr.random_offset and ev2.cache.dir == ev.cache.dir  # same caches, student offsets differ
    tr.set_epoch(1)
    assert tr.offsets.any()
    s = tr.start(0)
    assert np.array_equal(tr[0]["teacher_ids"].numpy(), np.asarray(tr.cache.ids[s : s + cfg.data.seq_len]))


@pytest.mark.slow
@pytest.mark.skipif(not has_compiler(), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_distillation_compiles_student_and_live_teachers(prepared, tokenizer_dir, teachers, tmp_path):
    """With training.compile, the student's layers compile for its training steps and the live teachers' (a LLaMA
    and a GPT-2) for their no-grad forward passes: three graphs, and the evaluations compile none. The losses
    follow the eager run's."""
    import torch._dynamo

    runs = {}
    for flag in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        cfg = tiny_config(prepared, tokenizer_dir, tmp_path / str(flag), max_steps=6, eval_steps=3, logging_steps=1,
                          precision="fp32", compile=flag)
        cfg.distill.teachers = [str(t) for t in teachers]
        runs[flag] = distill(cfg)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert graphs == (3 if flag else 0), dict(torch._dynamo.utils.counters["stats"])
    torch._dynamo.reset()
    assert runs[True]["compiled"] is True
    for key in ("loss", "ce", "kl"):
        got, want = ([e[key] for e in runs[f]["train_history"]] for f in (True, False))
        assert len(got) == 6 and got == pytest.approx(want, rel=2e-3), key
