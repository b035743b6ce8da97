"""Two CPU processes under torchrun (gloo): sharded teacher-cache building and distributed distillation."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from babyllama.distillation.cache import CacheSpec, TeacherCache, build_cache
from babyllama.distillation.sources import load_teachers


def _torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", "-m", "babyllama.cli", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_two_process_cached_and_live_distillation(prepared, tokenizer_dir, tokenizer, teachers, tmp_path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
data: {{corpus: {prepared}, tokenizer: {tokenizer_dir}, seq_len: 32, max_train_tokens: 20000, max_eval_tokens: 2048}}
model: {{preset: llama-tiny, num_layers: 1}}
training: {{output_dir: {tmp_path / 'cached'}, max_steps: 6, batch_size: 4, warmup_steps: 1, eval_strategy: steps,
           eval_steps: 3, report_to: [none], precision: fp32}}
distill: {{cache: {{enabled: true, top_k: 8, sampled: 4, dir: {tmp_path / 'cache'}}}}}
""")
    t = [str(x) for x in teachers]
    r = _torchrun("distill", str(cfg), "--teacher", t[0], "--teacher", t[1], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    m = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["global_step"] == 6
    train_cache = next(p for p in (tmp_path / "cache").iterdir() if p.name.startswith("train-"))
    sharded = TeacherCache.load(train_cache)
    # the same cache built by one process is identical
    built = TeacherCache.load(train_cache).meta["spec"]
    spec = CacheSpec(**{**built, "teachers": tuple(built["teachers"])})
    single = build_cache(load_teachers(t, tokenizer), _train_tokens(prepared, tokenizer), tmp_path / "single", spec,
                         progress=False)
    assert (spec.seed, spec.batch_size, spec.top_k, spec.sampled, spec.precision) == (42, 4, 8, 4, "fp32")
    assert np.array_equal(np.asarray(single.ids), np.asarray(sharded.ids))
    for a in ("weight", "tail", "plogp"):
        assert np.allclose(np.asarray(getattr(single, a)), np.asarray(getattr(sharded, a)), atol=1e-5), a

    r = _torchrun("distill", str(cfg), "--teacher", t[0], "--teacher", t[1], "--set", "distill.cache=false",
                  "--set", f"training.output_dir={tmp_path / 'live'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads((tmp_path / "live" / "metrics.json").read_text())["world_size"] == 2


def _train_tokens(prepared, tokenizer):
    from babyllama.data.dataset import load_split

    return load_split(prepared, "train", tokenizer, max_tokens=20000).flat()
