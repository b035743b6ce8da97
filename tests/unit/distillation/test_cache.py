import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from babyllama.config import ModelConfig
from babyllama.distillation.cache import CacheSpec, build_cache, sparse_entries, windows
from babyllama.distillation.sources import CachedChunkDataset
from babyllama.distillation.divergences import divergence_from
from babyllama.distillation.loss import CachedTeacher, cached_kl_reference
from babyllama.losses import ensemble_log_probs
from babyllama.models import build_model


@pytest.fixture(scope="module")
def models(tiny_tokenizer):
    """Two small teachers of different architectures (LLaMA, GPT-2), randomly initialised, frozen."""
    return [build_model(ModelConfig(preset=p), tiny_tokenizer, seed=i).eval().requires_grad_(False)
            for i, p in enumerate(("llama-tiny", "gpt2-tiny"))]


def spec(seq_len, temperature, k, window="aligned", sampled=0, seed=0, batch_size=32, **kw):
    return CacheSpec(teachers=("a", "b"), tokenizer="tok", data="data", seq_len=seq_len, temperature=temperature,
                     top_k=k, sampled=sampled, window=window, seed=seed, batch_size=batch_size, **kw)


@pytest.mark.parametrize("n,seq,window", [(100, 16, "sliding"), (97, 16, "sliding"), (96, 16, "aligned"),
                                          (101, 10, "aligned"), (16, 16, "sliding")])
def test_windows_cover_every_position_once(n, seq, window):
    recorded = np.zeros(n, int)
    for start, first in windows(n, seq, window):
        assert start <= first <= start + seq and start + seq <= n
        recorded[first : start + seq] += 1
        if window == "sliding" and start > 0:
            assert first - start >= seq // 2 or start == n - seq  # at least seq/2 tokens of context
    assert (recorded == 1).all()


def kl_per_position(teacher_lp, student_logits, t):
    return divergence_from("forward_kl").per_position(teacher_lp, F.log_softmax(student_logits / t, -1))


def kl_per_position_cached(student_logits, ids, w, tail, plogp, t):
    return cached_kl_reference(F.log_softmax(student_logits / t, -1), CachedTeacher(ids, w, tail, plogp))


def _cached_kl(s, tl, k, sampled, T, gen=None):
    ids, w, tail, plogp = sparse_entries(tl.view(-1, tl.size(-1)), k, sampled, gen)
    shape = tl.shape[:-1]
    return kl_per_position_cached(s, ids.view(*shape, -1), w.view(*shape, -1), tail.view(shape), plogp.view(shape),
                                  T)


def test_cached_kl_with_full_vocabulary_equals_full_kl():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        s, t = torch.randn(2, 5, 9, generator=g), torch.randn(2, 5, 9, generator=g)
        tl = F.log_softmax(t / 2, -1)
        assert torch.allclose(_cached_kl(s, tl, 9, 0, 2.0), kl_per_position(tl, s, 2.0), atol=1e-5)


def test_top_k_tail_bucket_by_hand():
    # teacher p = [0.5, 0.3, 0.2], keep K = 1 (token 0) + the bucket 0.5; student q = [0.25, 0.25, 0.5]
    s = torch.log(torch.tensor([[[0.25, 0.25, 0.5]]]))
    tl = torch.log(torch.tensor([[[0.5, 0.3, 0.2]]]))
    plogp = 0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)
    want = plogp - 0.5 * math.log(0.25) - 0.5 * math.log(0.75)
    assert _cached_kl(s, tl, 1, 0, 1.0).item() == pytest.approx(want, rel=1e-5)


def test_sampled_entries_give_an_unbiased_kl():
    torch.manual_seed(0)
    s, t = torch.randn(1, 1, 50), torch.randn(1, 1, 50) * 0.3  # a flat teacher: top-4 holds little mass
    tl = F.log_softmax(t, -1)
    exact = kl_per_position(tl, s, 1.0).item()
    gen = torch.Generator().manual_seed(1)
    est = np.mean([_cached_kl(s, tl, 8, 4, 1.0, gen).item() for _ in range(4000)])
    biased = _cached_kl(s, tl, 8, 0, 1.0).item()
    assert est == pytest.approx(exact, abs=0.01)
    assert abs(biased - exact) > 5 * abs(est - exact)  # pure top-K with a bucket is off


def test_cached_loss_equals_live_loss_with_full_k_and_aligned_windows(models, tiny_tokenizer, tmp_path):
    vocab = len(tiny_tokenizer)
    seq = 32
    tokens = np.random.default_rng(0).integers(3, vocab, size=seq * 6 + 5).astype(np.uint16)
    cache = build_cache(models, tokens, tmp_path / "c", spec(seq, 2.0, vocab, batch_size=4), progress=False)
    assert cache.meta["k"] == vocab and cache.ids.shape == (len(tokens), vocab)
    ds = CachedChunkDataset(tokens, seq, cache, random_offset=False)
    batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ds[0]}
    with torch.no_grad():
        live = ensemble_log_probs([m(input_ids=batch["input_ids"]).logits for m in models], 2.0)
    student = torch.randn(len(ds), seq, vocab)
    a = kl_per_position(live, student, 2.0)
    b = kl_per_position_cached(student, batch["teacher_ids"], batch["teacher_weight"], batch["teacher_tail"],
                               batch["teacher_plogp"], 2.0)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    # the cache is reused
    again = build_cache(models, tokens, tmp_path / "c", spec(seq, 2.0, vocab, batch_size=4), progress=False)
    assert again.meta["build_s"] == cache.meta["build_s"]


def test_cache_key_covers_everything_the_content_depends_on():
    """Temperature, teachers, and also the precision the teachers ran under and the batch size that seeds the
    sampled entries: a cache built under bf16, or with other batches, is another cache."""
    import dataclasses

    base = spec(32, 2.0, 64, window="sliding", sampled=16)
    changed = {"temperature": 1.0, "teachers": ("a", "c"), "precision": "bf16", "batch_size": 16, "seed": 1,
               "device": "cuda", "sampled": 8, "window": "aligned", "data": "other", "tokenizer": "other",
               "weights": (0.7, 0.3), "ensemble": "probs_mean", "top_k": 32, "seq_len": 64}
    assert set(changed) == {f.name for f in dataclasses.fields(CacheSpec)}  # every field is tested
    for field, value in changed.items():
        assert dataclasses.replace(base, **{field: value}).key() != base.key(), field
    assert dataclasses.replace(base).key() == base.key()


def test_sampled_entries_depend_on_the_batching_the_key_names(models, tiny_tokenizer, tmp_path):
    vocab, seq = len(tiny_tokenizer), 16
    tokens = np.random.default_rng(2).integers(3, vocab, size=seq * 8).astype(np.uint16)
    a = build_cache(models, tokens, tmp_path / "a", spec(seq, 2.0, 16, sampled=8, batch_size=2), progress=False)
    b = build_cache(models, tokens, tmp_path / "b", spec(seq, 2.0, 16, sampled=8, batch_size=4), progress=False)
    assert not np.array_equal(np.asarray(a.ids)[:, 8:], np.asarray(b.ids)[:, 8:])  # other samples
    assert np.array_equal(np.asarray(a.ids)[:, :8], np.asarray(b.ids)[:, :8])  # the same exact top entries


def test_sliding_cache_records_each_position_from_its_window(models, tiny_tokenizer, tmp_path):
    """Every cached position holds the ensemble distribution of the window `windows()` assigns it (only the
    recorded rows get logits; batches mix the full first window with half windows and an odd last one)."""
    vocab, seq = len(tiny_tokenizer), 16
    tokens = np.random.default_rng(1).integers(3, vocab, size=seq * 5 + 3).astype(np.uint16)
    cache = build_cache(models, tokens, tmp_path / "c", spec(seq, 2.0, vocab, window="sliding", batch_size=3),
                        progress=False)
    got = np.zeros((len(tokens), vocab), np.float32)
    np.put_along_axis(got, cache.ids.astype(np.int64), cache.weight, axis=1)
    want = np.full((len(tokens), vocab), np.nan, np.float32)
    with torch.no_grad():
        for s, first in windows(len(tokens), seq, "sliding"):
            x = torch.from_numpy(tokens[s : s + seq].astype(np.int64))[None]
            lp = ensemble_log_probs([m(input_ids=x).logits for m in models], 2.0)[0]
            want[first : s + seq] = lp[first - s :].exp().numpy()
    assert not np.isnan(want).any()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_damaged_cache_is_built_again(models, tiny_tokenizer, tmp_path, capsys):
    vocab, seq = len(tiny_tokenizer), 16
    tokens = np.random.default_rng(3).integers(3, vocab, size=seq * 4).astype(np.uint16)
    s = spec(seq, 2.0, 8, sampled=4)
    good = build_cache(models, tokens, tmp_path / "c", s, progress=False)
    want = np.asarray(good.ids).copy()
    (tmp_path / "c" / "weight.npy").write_bytes(b"truncated")
    again = build_cache(models, tokens, tmp_path / "c", s, progress=False)
    assert "is damaged" in capsys.readouterr().out and np.array_equal(np.asarray(again.ids), want)
    np.save(tmp_path / "c" / "tail.npy", np.zeros(3, np.float32))  # whole file, wrong shape
    assert np.array_equal(np.asarray(build_cache(models, tokens, tmp_path / "c", s, progress=False).ids), want)


BUILD_ONE = """
import json, sys, numpy as np
from babyllama.config import ModelConfig
from babyllama.distillation.cache import CacheSpec, build_cache
from babyllama.models import build_model
from babyllama.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[1])
models = [build_model(ModelConfig(preset=p), tok, seed=i).eval().requires_grad_(False)
          for i, p in enumerate(("llama-tiny", "gpt2-tiny"))]
tokens = np.random.default_rng(0).integers(3, len(tok), size=16 * 40 + 3).astype(np.uint16)
spec = CacheSpec(teachers=("a", "b"), tokenizer="tok", data="data", seq_len=16, temperature=2.0, top_k=8,
                 sampled=4, window="aligned", seed=0, batch_size=4)
c = build_cache(models, tokens, sys.argv[2], spec, progress=False)
print(json.dumps({"build_s": c.meta["build_s"], "ids": int(np.asarray(c.ids, dtype=np.int64).sum()),
                  "w": float(np.asarray(c.weight, dtype=np.float64).sum())}))
"""


def test_two_processes_building_one_cache_build_it_once(tiny_tokenizer_dir, tmp_path):
    """Two processes (two sweep trials) asking for the same cache at the same moment: one builds it under the lock,
    the other waits and loads it; the folder holds one whole cache and nothing half-written."""
    import json
    import subprocess
    import sys

    out = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_ONE, str(tiny_tokenizer_dir), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-2000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]  # the same build (its build_s), the same content
    assert [x.name for x in tmp_path.iterdir() if not x.name.startswith(".cache.lock")] == ["cache"]  # no temp left
    assert sorted(x.name for x in out.iterdir()) == ["ids.npy", "meta.json", "plogp.npy", "tail.npy", "weight.npy"]
