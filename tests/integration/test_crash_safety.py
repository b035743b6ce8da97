"""Killed at any moment, a run costs minutes, never the run: SIGKILL at a random training step, in the middle of a
checkpoint write, and in the middle of the teacher-cache build; the same command then finishes with weights
bit-identical to an uninterrupted run."""

import json
import random
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from babyllama.config import CacheConfig
from helpers import save_random_teachers, tiny_config

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent('''
    """Run one training stage; die by SIGKILL where told (the test's fault injection, not the library's)."""
    import json, os, signal, sys
    import transformers
    import babyllama.distillation.cache as cache_mod
    import babyllama.distillation.trainer as distill_mod
    import babyllama.training.pretrain as pretrain_mod
    import babyllama.training.trainer as trainer_mod
    from babyllama.config import Config

    cfg = Config.model_validate(json.loads(sys.argv[1]))
    where, at = sys.argv[2], int(sys.argv[3])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class KillAtStep(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == at:
                die()

    if where == "step":  # training.trainer.fit builds every stage's callbacks
        base = trainer_mod.standard_callbacks
        trainer_mod.standard_callbacks = lambda *a, **k: base(*a, **k) + [KillAtStep()]
    elif where == "checkpoint":  # after the weights of checkpoint-`at` are written, before its optimizer state
        save = transformers.Trainer._save_optimizer_and_scheduler
        def killing_save(self, output_dir):
            if self.state.global_step == at:
                die()
            return save(self, output_dir)
        transformers.Trainer._save_optimizer_and_scheduler = killing_save
    elif where == "cache":  # in the middle of the teacher-cache build: after `at` row blocks
        entries, calls = cache_mod.sparse_entries, [0]
        def killing_entries(*a, **k):
            calls[0] += 1
            if calls[0] == at:
                die()
            return entries(*a, **k)
        cache_mod.sparse_entries = killing_entries
    run = distill_mod.distill if cfg.distill.teachers else pretrain_mod.train
    print(json.dumps({"global_step": run(cfg)["global_step"]}))
''')


def _run(tmp_path, cfg, where="none", at=0):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.run([sys.executable, str(driver), cfg.model_dump_json(), where, str(at)], capture_output=True,
                          text=True, timeout=600)


def _weights(out):
    return load_file(str(out / "model.safetensors"))


def _assert_identical(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _config(tiny_prepared, tiny_tokenizer_dir, out, **kw):
    return tiny_config(tiny_prepared, tiny_tokenizer_dir, out, max_steps=20, eval_steps=5, warmup_steps=2, **kw)


def _killed_then_resumed(tmp_path, cfg, where, at):
    r = _run(tmp_path, cfg, where, at)
    assert r.returncode == -9, (where, at, r.stderr[-2000:])
    r = _run(tmp_path, cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["global_step"] == 20
    return r


@pytest.fixture(scope="module")
def uninterrupted(tiny_prepared, tiny_tokenizer_dir, tmp_path_factory):
    """The pretraining run that was never killed: what both pretraining tests must end bit-identical to."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    r = _run(tmp, _config(tiny_prepared, tiny_tokenizer_dir, tmp / "ref"))
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "ref"


def test_pretraining_killed_at_a_random_step_resumes_bit_identical(tiny_prepared, tiny_tokenizer_dir, uninterrupted,
                                                                   tmp_path):
    at = random.Random().randint(6, 19)  # after the first checkpoint (step 5), before the end
    cfg = _config(tiny_prepared, tiny_tokenizer_dir, tmp_path / "killed")
    r = _killed_then_resumed(tmp_path, cfg, "step", at)
    assert "resuming from" in r.stdout, at
    _assert_identical(uninterrupted, tmp_path / "killed")


def test_pretraining_killed_while_writing_a_checkpoint_resumes_from_the_one_before(tiny_prepared, tiny_tokenizer_dir,
                                                                                   uninterrupted, tmp_path):
    cfg = _config(tiny_prepared, tiny_tokenizer_dir, tmp_path / "killed")
    r = _run(tmp_path, cfg, "checkpoint", 10)
    assert r.returncode == -9
    half = tmp_path / "killed" / "checkpoint-10"
    assert (half / "model.safetensors").exists() and not (half / "trainer_state.json").exists()
    r = _run(tmp_path, cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "removing unfinished checkpoint" in r.stdout and f"resuming from {tmp_path / 'killed' / 'checkpoint-5'}" \
        in r.stdout
    _assert_identical(uninterrupted, tmp_path / "killed")


@pytest.fixture(scope="module")
def teacher_dirs(tiny_tokenizer, tmp_path_factory):
    return save_random_teachers(tiny_tokenizer, tmp_path_factory.mktemp("teachers"))


def _distill_config(tiny_prepared, tiny_tokenizer_dir, out, teachers):
    cfg = _config(tiny_prepared, tiny_tokenizer_dir, out)
    cfg.distill.teachers = teachers
    cfg.distill.cache = CacheConfig(enabled=True, top_k=16, sampled=8, dir=str(out.parent / f"{out.name}-cache"))
    return cfg


def test_cached_distillation_killed_in_training_and_in_the_cache_build(tiny_prepared, tiny_tokenizer_dir,
                                                                       teacher_dirs, tmp_path):
    import numpy as np

    ref = _distill_config(tiny_prepared, tiny_tokenizer_dir, tmp_path / "ref", teacher_dirs)
    assert _run(tmp_path, ref).returncode == 0
    # killed mid-training (the cache was built before): resumes, same weights
    cfg = _distill_config(tiny_prepared, tiny_tokenizer_dir, tmp_path / "step", teacher_dirs)
    _killed_then_resumed(tmp_path, cfg, "step", random.Random().randint(6, 19))
    _assert_identical(tmp_path / "ref", tmp_path / "step")
    # killed in the middle of the cache build: no cache left that looks finished; the rerun builds it again
    cfg = _distill_config(tiny_prepared, tiny_tokenizer_dir, tmp_path / "build", teacher_dirs)
    r = _run(tmp_path, cfg, "cache", 3)
    assert r.returncode == -9
    cache_root = tmp_path / "build-cache"
    assert not [p for p in cache_root.iterdir() if (p / "meta.json").exists()]
    r = _run(tmp_path, cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not [p for p in cache_root.iterdir() if ".tmp-" in p.name]  # the killed build's leftovers are gone
    _assert_identical(tmp_path / "ref", tmp_path / "build")
    for split in ("train", "eval"):
        a = next((tmp_path / "ref-cache").glob(f"{split}-*"))
        b = next(cache_root.glob(f"{split}-*"))
        assert a.name == b.name
        for arr in ("ids", "weight", "tail", "plogp"):
            assert np.array_equal(np.load(a / f"{arr}.npy"), np.load(b / f"{arr}.npy")), (split, arr)
