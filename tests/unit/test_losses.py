"""Hand-computed cases for the distillation losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from babyllama.losses import (causal_ce, distillation_loss, ensemble_log_probs, kl_loss, kl_per_position, mix,
                              reduce_kl)

torch.manual_seed(0)


def test_identical_logits_give_zero_kl():
    z = torch.randn(2, 5, 7)
    for red in ("paper", "per_token"):
        assert kl_loss(F.log_softmax(z / 2, -1), z, 2.0, red).abs() < 1e-6


def test_two_token_kl_by_hand():
    # teacher p = [1/2, 1/2], student q = [1/4, 3/4]: KL = 1/2 ln 2 + 1/2 ln(2/3)
    t = torch.log(torch.tensor([[[0.5, 0.5]]]))
    s = torch.log(torch.tensor([[[0.25, 0.75]]]))
    want = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_loss(t, s, 1.0, "per_token").item() == pytest.approx(want, rel=1e-6)
    # at T = 2 the student logits are halved: q_T = softmax(log q / 2)
    qt = torch.softmax(s / 2, -1)[0, 0]
    want_t2 = sum(0.5 * math.log(0.5 / q) for q in qt.tolist())
    assert kl_loss(t, s, 2.0, "per_token").item() == pytest.approx(want_t2, rel=1e-5)


def test_paper_reduction_equals_kldivloss_batchmean():
    s, t = torch.randn(3, 6, 11), torch.randn(3, 6, 11)
    T = 2.0
    ref = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / T, -1), F.softmax(t / T, -1))
    ours = kl_loss(F.log_softmax(t / T, -1), s, T, "paper")
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    # ... which is the per-token mean times the sequence length when nothing is padded
    assert ours.item() == pytest.approx(6 * kl_loss(F.log_softmax(t / T, -1), s, T, "per_token").item(), rel=1e-5)


def test_paper_reduction_does_not_mask_padding_but_per_token_does():
    s, t = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    tl = F.log_softmax(t, -1)
    per_pos = kl_per_position(tl, s, 1.0)
    assert kl_loss(tl, s, 1.0, "per_token", mask).item() == pytest.approx(
        (per_pos[mask.bool()]).mean().item(), rel=1e-6)
    s2 = s.clone()
    s2[0, 3] += 10 * torch.randn(5)  # change only padded positions
    s2[1, 2:] += 10 * torch.randn(2, 5)
    assert kl_loss(tl, s2, 1.0, "per_token", mask).item() == pytest.approx(
        kl_loss(tl, s, 1.0, "per_token", mask).item(), rel=1e-6)
    assert kl_loss(tl, s2, 1.0, "paper", mask).item() != pytest.approx(kl_loss(tl, s, 1.0, "paper", mask).item())


def test_alpha_one_equals_plain_ce_training():
    from transformers import LlamaConfig, LlamaForCausalLM

    m = LlamaForCausalLM(LlamaConfig(vocab_size=13, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2))
    x = torch.randint(0, 13, (2, 6))
    out = m(input_ids=x, labels=x)
    teacher = F.log_softmax(torch.randn(2, 6, 13), -1)
    res = distillation_loss(out.logits, teacher, x, alpha=1.0, temperature=2.0)
    assert res.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)
    assert causal_ce(out.logits, x).item() == pytest.approx(out.loss.item(), rel=1e-6)
    g1 = torch.autograd.grad(res.loss, m.lm_head.weight)[0]
    g2 = torch.autograd.grad(m(input_ids=x, labels=x).loss, m.lm_head.weight)[0]
    assert torch.allclose(g1, g2, atol=1e-6)


def test_t_squared_factor_and_mix():
    ce, kl = torch.tensor(2.0), torch.tensor(0.5)
    assert mix(ce, kl, 0.0, 3.0).item() == pytest.approx(9 * 0.5)
    assert mix(ce, kl, 0.5, 2.0).item() == pytest.approx(0.5 * 2.0 + 0.5 * 4 * 0.5)
    s, t = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    labels = torch.randint(0, 4, (1, 3))
    r = distillation_loss(s, F.log_softmax(t / 3, -1), labels, alpha=0.0, temperature=3.0)
    assert r.loss.item() == pytest.approx(9 * r.kl.item(), rel=1e-6)


def test_ensembles():
    a = torch.log(torch.tensor([[[0.9, 0.1]]]))
    b = torch.log(torch.tensor([[[0.1, 0.9]]]))
    # logits mean of log-probs: equal weights -> uniform
    lm = ensemble_log_probs([a, b], 1.0, "logits_mean").exp()
    assert torch.allclose(lm, torch.tensor([[[0.5, 0.5]]]), atol=1e-6)
    pm = ensemble_log_probs([a, b], 1.0, "probs_mean", weights=[3, 1]).exp()
    assert torch.allclose(pm, torch.tensor([[[0.75 * 0.9 + 0.25 * 0.1, 0.75 * 0.1 + 0.25 * 0.9]]]), atol=1e-6)
    one = ensemble_log_probs([a], 2.0, "logits_mean")
    assert torch.allclose(one, F.log_softmax(a / 2, -1))
    with pytest.raises(ValueError):
        ensemble_log_probs([a, b], 1.0, "logits_mean", weights=[1])
    with pytest.raises(ValueError):
        reduce_kl(torch.zeros(1, 1), "mean")


@pytest.mark.parametrize("with_tail", [False, True])
def test_fused_ce_and_cached_kl_equals_autograd(with_tail):
    from babyllama.losses import ce_and_cached_kl, kl_per_position_cached

    g = torch.Generator().manual_seed(3)
    B, L, V, K = 2, 7, 50, 6
    logits = torch.randn(B, L, V, generator=g, requires_grad=True)
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[0, 3] = -100
    ids = torch.stack([torch.randperm(V, generator=g)[:K] for _ in range(B * L)]).view(B, L, K)
    w = torch.rand(B, L, K, generator=g) * 0.1
    tail = torch.rand(B, L, generator=g) * 0.3 if with_tail else torch.zeros(B, L)
    plogp = torch.randn(B, L, generator=g)
    ce_a, kl_a = causal_ce(logits, labels), kl_per_position_cached(logits, ids, w, tail, plogp, 2.0)
    ce_b, kl_b = ce_and_cached_kl(logits, labels, ids, w, tail, plogp, 2.0, chunk=3)
    assert ce_a.item() == pytest.approx(ce_b.item(), rel=1e-6)
    assert torch.allclose(kl_a, kl_b, atol=1e-6)
    for red in ("paper", "per_token"):
        ga, = torch.autograd.grad(0.3 * ce_a + 0.7 * reduce_kl(kl_a, red, labels != -100), logits, retain_graph=True)
        gb, = torch.autograd.grad(0.3 * ce_b + 0.7 * reduce_kl(kl_b, red, labels != -100), logits, retain_graph=True)
        assert torch.allclose(ga, gb, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_causal_ce_equals_cross_entropy(dtype):
    """Value and gradient of the chunked CE equal autograd through F.cross_entropy (padding ignored); the Trainer
    hook divides by the Trainer's token count when it passes one."""
    from transformers.modeling_outputs import CausalLMOutput

    from babyllama.losses import fused_causal_ce, trainer_causal_lm_loss

    g = torch.Generator().manual_seed(5)
    B, L, V = 3, 9, 40
    base = (torch.randn(B, L, V, generator=g) * 3).to(dtype)
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[1, 4:] = -100
    a = base.clone().requires_grad_()
    b = base.clone().requires_grad_()
    ref = F.cross_entropy(a[:, :-1].float().reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    got = fused_causal_ce(b, labels, chunk=4)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    (ga,), (gb,) = torch.autograd.grad(ref * 1.7, a), torch.autograd.grad(got * 1.7, b)
    assert gb.dtype == dtype and torch.allclose(ga.float(), gb.float(), atol=1e-6 if dtype == torch.float32 else 4e-3)
    n = int((labels[:, 1:] != -100).sum())
    halved = trainer_causal_lm_loss(CausalLMOutput(logits=b), labels, num_items_in_batch=torch.tensor(2 * n))
    assert halved.item() == pytest.approx(ref.item() / 2, rel=1e-6)


def test_row_chunks_are_cache_sized_on_the_cpu_and_large_elsewhere():
    from babyllama.losses import row_chunk

    assert row_chunk(torch.empty(8, 4000)) == 65  # 1 MiB of float32 rows
    assert row_chunk(torch.empty(8, 8000)) == 32
    assert row_chunk(torch.empty(8, 16000)) == 32  # at least 32 rows
    assert row_chunk(torch.empty(8, 16000, device="meta")) == 4194  # 256 MiB of float32 rows
    assert row_chunk(torch.empty(8, 1 << 20, device="meta")) == 256
