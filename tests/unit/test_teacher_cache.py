import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from babyllama.losses import ensemble_log_probs, kl_per_position, kl_per_position_topk
from babyllama.teacher_cache import CachedChunkDataset, build_cache, cache_key, windows
from babyllama.train.distill import load_teachers


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


def test_topk_kl_with_full_vocabulary_equals_full_kl():
    s, t = torch.randn(2, 5, 9), torch.randn(2, 5, 9)
    tl = F.log_softmax(t / 2, -1)
    top, ids = tl.topk(9, -1)
    tail = torch.zeros(2, 5)
    assert torch.allclose(kl_per_position_topk(s, ids, top, tail, 2.0), kl_per_position(tl, s, 2.0), atol=1e-6)


def test_topk_kl_tail_bucket_by_hand():
    # teacher p = [0.5, 0.3, 0.2], keep K = 1 (token 0) + tail 0.5; student q = [0.25, 0.25, 0.5]
    s = torch.log(torch.tensor([[[0.25, 0.25, 0.5]]]))
    ids = torch.tensor([[[0]]])
    top = torch.log(torch.tensor([[[0.5]]]))
    tail = torch.tensor([[0.5]])
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_per_position_topk(s, ids, top, tail, 1.0).item() == pytest.approx(want, rel=1e-5)


def test_cached_loss_equals_live_loss_with_full_k_and_aligned_windows(teachers, tokenizer, tmp_path):
    models = load_teachers([str(t) for t in teachers], tokenizer)
    vocab = len(tokenizer)
    seq = 32
    tokens = np.random.default_rng(0).integers(3, vocab, size=seq * 6 + 5).astype(np.uint16)
    cache = build_cache(models, tokens, tmp_path / "c", seq, temperature=2.0, k=vocab, window="aligned",
                        batch_size=4, progress=False)
    assert cache.meta["k"] == vocab and cache.ids.shape == (len(tokens), vocab)
    ds = CachedChunkDataset(tokens, seq, cache, random_offset=False)
    batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ds[0]}
    with torch.no_grad():
        live = ensemble_log_probs([m(input_ids=batch["input_ids"]).logits for m in models], 2.0)
    student = torch.randn(len(ds), seq, vocab)
    a = kl_per_position(live, student, 2.0)
    b = kl_per_position_topk(student, batch["teacher_ids"], batch["teacher_logp"], batch["teacher_tail"], 2.0)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    # the cache is reused, and its key changes with what it depends on
    again = build_cache(models, tokens, tmp_path / "c", seq, temperature=2.0, k=vocab, window="aligned")
    assert again.meta["build_s"] == cache.meta["build_s"]
    k1 = cache_key([str(teachers[0])], "tok", "data", 2.0, 64, "logits_mean", None, "sliding", seq)
    assert k1 != cache_key([str(teachers[0])], "tok", "data", 1.0, 64, "logits_mean", None, "sliding", seq)
    assert k1 != cache_key([str(teachers[1])], "tok", "data", 2.0, 64, "logits_mean", None, "sliding", seq)
