import numpy as np
import pytest

from babyllama.data.dataset import ChunkDataset, encode_cached, load_split
from babyllama.errors import UserError


def test_random_chunks_are_seeded_and_change_per_epoch():
    toks = np.arange(1000, dtype=np.uint16)
    a, b = ChunkDataset(toks, 10, random_offset=True, seed=3), ChunkDataset(toks, 10, random_offset=True, seed=3)
    assert len(a) == 99
    assert [a.start(i) for i in range(len(a))] == [b.start(i) for i in range(len(b))]
    e0 = [a.start(i) for i in range(len(a))]
    a.set_epoch(1)
    e1 = [a.start(i) for i in range(len(a))]
    assert e0 != e1
    assert all(10 * i <= s < 10 * i + 10 for i, s in enumerate(e1))
    item = a[5]
    assert item["input_ids"].tolist() == list(range(e1[5], e1[5] + 10))
    assert item["labels"].tolist() == item["input_ids"].tolist()
    assert max(s for s in e1) + 10 <= len(toks)


def test_eval_chunks_fixed_and_seeded_subset():
    toks = np.arange(1000, dtype=np.uint16)
    ev = ChunkDataset(toks, 10)
    assert len(ev) == 100 and ev.start(7) == 70
    s1, s2 = ChunkDataset(toks, 10, subset=20, seed=1), ChunkDataset(toks, 10, subset=20, seed=1)
    assert len(s1) == 20 and list(s1.index) == list(s2.index)
    assert list(ChunkDataset(toks, 10, subset=20, seed=2).index) != list(s1.index)
    with pytest.raises(UserError, match="fewer than one chunk"):
        ChunkDataset(toks[:5], 10)


def test_cache_keyed_by_tokenizer_and_text(tiny_tokenizer, tmp_path):
    tokenizer = tiny_tokenizer
    a, ka = encode_cached(tokenizer, "hello world</s>", tmp_path)
    b, kb = encode_cached(tokenizer, "hello world</s>", tmp_path)
    c, kc = encode_cached(tokenizer, "hello there</s>", tmp_path)
    assert ka == kb != kc and list(a) == list(b)
    want = list(a)
    _, kd = encode_cached(tokenizer, "hello world</s>", tmp_path, tok_hash="another tokenizer")
    assert kd != ka
    (tmp_path / f"{ka}.npy").write_bytes(b"corrupt")
    again, _ = encode_cached(tokenizer, "hello world</s>", tmp_path)
    assert list(again) == want


def test_load_split_max_tokens_proportional(tiny_prepared, tiny_tokenizer, tmp_path):
    prepared, tokenizer = tiny_prepared, tiny_tokenizer
    full = load_split(prepared, "train", tokenizer, cache_dir=tmp_path)
    quarter = full.num_tokens // 4
    for subset in ("first", "spread"):
        cut = load_split(prepared, "train", tokenizer, max_tokens=quarter, cache_dir=tmp_path, subset=subset)
        assert abs(cut.num_tokens - quarter) < len(full.domains) + 1
        for d, a in full.domains.items():
            assert len(cut.domains[d]) == max(1, int(len(a) * quarter / full.num_tokens))
        assert cut.data_hash != full.data_hash
        if subset == "first":
            for d, a in full.domains.items():
                assert list(cut.domains[d]) == list(a[: len(cut.domains[d])])
    assert full.flat().dtype == np.uint16


def test_train_fraction_keeps_the_first_part_of_each_domain(tiny_prepared, tiny_tokenizer, tmp_path):
    full = load_split(tiny_prepared, "train", tiny_tokenizer, cache_dir=tmp_path)
    eighth = load_split(tiny_prepared, "train", tiny_tokenizer, cache_dir=tmp_path, fraction=0.125, subset="first")
    for d, a in full.domains.items():
        assert len(eighth.domains[d]) == int(len(a) * 0.125)
        assert list(eighth.domains[d]) == list(a[: len(eighth.domains[d])])
    assert eighth.data_hash != full.data_hash
    assert load_split(tiny_prepared, "train", tiny_tokenizer, cache_dir=tmp_path, fraction=1.0).data_hash \
        == full.data_hash


def test_a_spread_subset_is_whole_blocks_from_all_of_a_domain_nested_and_in_order():
    from babyllama.data.dataset import SUBSET_BLOCK, take_tokens

    tokens = np.arange(100 * SUBSET_BLOCK + 500)  # position = token, so the picked positions can be read off
    small, large = (take_tokens(tokens, n) for n in (10 * SUBSET_BLOCK + 7, 40 * SUBSET_BLOCK))
    assert len(small) == 10 * SUBSET_BLOCK + 7 and len(large) == 40 * SUBSET_BLOCK
    for part in (small, large):
        assert (np.diff(part) > 0).all()  # corpus order, no token twice
        assert (part[::SUBSET_BLOCK] % SUBSET_BLOCK == 0).all()  # whole blocks, each from its first token
        assert part.max() > 0.6 * len(tokens) and part.min() < 0.4 * len(tokens)  # drawn from all of it
    assert set(small.tolist()) <= set(large.tolist())  # a smaller subset lies inside a larger one
    assert list(take_tokens(tokens, 10 * SUBSET_BLOCK + 7)) == list(small)  # seeded: the same every time
    assert list(take_tokens(tokens, 5, "first")) == [0, 1, 2, 3, 4]
    assert take_tokens(tokens, len(tokens) + 1) is tokens


def test_spread_and_first_subsets_hash_apart(tiny_prepared, tiny_tokenizer, tmp_path):
    full = load_split(tiny_prepared, "train", tiny_tokenizer, cache_dir=tmp_path)
    half = {s: load_split(tiny_prepared, "train", tiny_tokenizer, cache_dir=tmp_path, fraction=0.5, subset=s)
            for s in ("first", "spread")}
    assert len({full.data_hash, half["first"].data_hash, half["spread"].data_hash}) == 3
    assert load_split(tiny_prepared, "train", tiny_tokenizer, cache_dir=tmp_path, subset="first").data_hash \
        == full.data_hash  # nothing cut: the subset rule does not enter the hash
