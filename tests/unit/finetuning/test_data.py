"""Length-grouped batches, dynamic padding and the tokenization cache."""

import numpy as np
import torch

from babyllama.finetuning.data import Encoded, collate, encode_split, eval_batches, train_batches
from babyllama.finetuning.tasks import Split


def _lengths(n=500, seed=0):
    return np.random.default_rng(seed).integers(3, 128, n)


def test_each_example_once_per_epoch_only_the_last_batch_short():
    lengths = _lengths(501)
    for grouping in (True, False):
        batches = train_batches(lengths, 64, torch.Generator().manual_seed(1), False, grouping)
        assert sorted(np.concatenate(batches).tolist()) == list(range(501))
        assert sum(len(b) < 64 for b in batches) == 1
        dropped = train_batches(lengths, 64, torch.Generator().manual_seed(1), True, grouping)
        assert all(len(b) == 64 for b in dropped) and len(dropped) == 501 // 64


def test_grouping_cuts_padding_and_is_seeded():
    lengths = _lengths(3200)

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    grouped = train_batches(lengths, 64, torch.Generator().manual_seed(1), False, True)
    random = train_batches(lengths, 64, torch.Generator().manual_seed(1), False, False)
    assert padded(grouped) < 0.7 * padded(random)
    again = train_batches(lengths, 64, torch.Generator().manual_seed(1), False, True)
    assert all((a == b).all() for a, b in zip(grouped, again))
    other = train_batches(lengths, 64, torch.Generator().manual_seed(2), False, True)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(grouped, other))


def test_grouped_batches_are_the_trainers_group_by_length_batches():
    """The Hugging Face Trainer's ``group_by_length=True`` sampler, cut into batches as its DataLoader cuts it: at
    least four megabatches per epoch (RTE's 2,490 examples: 9 batches each), not one sorted epoch."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = _lengths(2490, seed=3)
    ours = train_batches(lengths, 64, torch.Generator().manual_seed(12), False, True)
    order = list(LengthGroupedSampler(64, lengths=lengths.tolist(), generator=torch.Generator().manual_seed(12)))
    assert [b.tolist() for b in ours] == [order[i:i + 64] for i in range(0, len(order), 64)]
    longest = [int(lengths[b].max()) for b in ours]
    restarts = sum(b > a for a, b in zip(longest, longest[1:]))  # a new megabatch starts long again
    assert restarts >= 3


def test_grouped_batches_leave_out_random_examples_not_the_shortest():
    """With ``drop_last`` (the 2025 protocol) the examples an epoch leaves out are as long, on average, as the rest."""
    lengths = np.arange(1, 554 + 1)  # WSC's size; batch 32 leaves 10 out per epoch
    left_out = []
    for seed in range(100):
        kept = np.concatenate(train_batches(lengths, 32, torch.Generator().manual_seed(seed), True, True))
        assert len(kept) == 544 and len(set(kept.tolist())) == 544
        left_out += sorted(set(range(554)) - set(kept.tolist()))
    assert abs(np.mean(lengths[left_out]) / np.mean(lengths) - 1) < 0.1


def test_collate_pads_to_the_longest_in_the_batch_either_side():
    enc = Encoded([np.array([5, 6, 7]), np.array([8])], np.array([1, 0]))
    ids, mask, labels = collate(enc, np.array([0, 1]), pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask, _ = collate(enc, np.array([0, 1]), pad_id=0, padding_side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and labels.tolist() == [1, 0]
    assert [len(b) for b in eval_batches(np.array([1, 9, 4]), 2)] == [2, 1]


def test_encoding_is_the_tokenizer_pair_call_and_cached(tiny_tokenizer, tmp_path):
    split = Split(tmp_path / "x", "sha-x", [("the cat sees", "a dog"), ("she reads", "the ball")], [0, 1])
    enc = encode_split(tiny_tokenizer, "tok", "rte", split, 128, cache_dir=tmp_path)
    want = tiny_tokenizer(["the cat sees", "she reads"], ["a dog", "the ball"], truncation=True, max_length=128)
    assert [x.tolist() for x in enc.ids] == want["input_ids"]
    assert len(list(tmp_path.glob("*.npz"))) == 1
    from babyllama.finetuning import data

    data._MEMORY.clear()
    again = encode_split(tiny_tokenizer, "tok", "rte", split, 128, cache_dir=tmp_path)  # from disk
    assert [x.tolist() for x in again.ids] == want["input_ids"] and again.labels.tolist() == [0, 1]
    short = encode_split(tiny_tokenizer, "tok", "rte", split, 2)
    assert max(len(x) for x in short.ids) == 2
