"""The distillation loss object: hand-computed cases, the reductions, the T^k mix, the cached forms, and its
construction from the config."""

import math

import pytest
import torch
import torch.nn.functional as F

from babyllama.config import DistillConfig
from babyllama.distillation.divergences import divergence_from, reduce_positions
from babyllama.distillation.loss import CachedTeacher, DistillationLoss, cached_kl_reference
from babyllama.losses import causal_ce

torch.manual_seed(0)


def kl_per_position(teacher_lp, student_logits, t):
    return divergence_from("forward_kl").per_position(teacher_lp, F.log_softmax(student_logits / t, -1))


def kl_loss(teacher_lp, student_logits, t, reduction, mask=None):
    return reduce_positions(kl_per_position(teacher_lp, student_logits, t), reduction, mask)


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
    # and the loss object computes the same, fused or not
    labels = torch.randint(0, 11, (3, 6))
    for fused in (True, False):
        lf = DistillationLoss(alpha=0.0, temperature=T, reduction="paper", fused=fused)
        assert lf(s, labels, teacher_logits=[t]).div.item() == pytest.approx(ref.item(), rel=1e-5)


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
    # the loss object masks with the labels: -100 positions are padding
    labels = torch.where(mask.bool(), torch.zeros_like(mask), torch.full_like(mask, -100))
    lf = DistillationLoss(alpha=0.0, temperature=1.0)
    assert lf(s2, labels, teacher_log_probs=tl).div.item() == pytest.approx(
        lf(s, labels, teacher_log_probs=tl).div.item(), rel=1e-6)


def test_alpha_one_equals_plain_ce_training():
    from transformers import LlamaConfig, LlamaForCausalLM

    m = LlamaForCausalLM(LlamaConfig(vocab_size=13, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2))
    x = torch.randint(0, 13, (2, 6))
    out = m(input_ids=x, labels=x)
    teacher = F.log_softmax(torch.randn(2, 6, 13), -1)
    res = DistillationLoss(alpha=1.0, temperature=2.0)(out.logits, x, teacher_log_probs=teacher)
    assert res.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)
    assert causal_ce(out.logits, x).item() == pytest.approx(out.loss.item(), rel=1e-6)
    g1 = torch.autograd.grad(res.loss, m.lm_head.weight)[0]
    g2 = torch.autograd.grad(m(input_ids=x, labels=x).loss, m.lm_head.weight)[0]
    assert torch.allclose(g1, g2, atol=1e-6)


def test_t_squared_factor_and_mix():
    ce, kl = torch.tensor(2.0), torch.tensor(0.5)
    assert DistillationLoss(0.0, 3.0).mix(ce, kl).item() == pytest.approx(9 * 0.5)
    assert DistillationLoss(0.5, 2.0).mix(ce, kl).item() == pytest.approx(0.5 * 2.0 + 0.5 * 4 * 0.5)
    # the TVD is not smooth: its gradient scales as 1/T, so it takes T^1
    assert DistillationLoss(0.0, 3.0, divergence="tvd").mix(ce, kl).item() == pytest.approx(3 * 0.5)
    s, t = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    labels = torch.randint(0, 4, (1, 3))
    r = DistillationLoss(alpha=0.0, temperature=3.0)(s, labels, teacher_log_probs=F.log_softmax(t / 3, -1))
    assert r.loss.item() == pytest.approx(9 * r.div.item(), rel=1e-6)


def test_teachers_logits_are_ensembled_by_the_loss_at_its_temperature():
    a, b = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    s, labels = torch.randn(2, 3, 6), torch.randint(0, 6, (2, 3))
    for how in ("logits_mean", "probs_mean"):
        lf = DistillationLoss(0.3, 2.0, ensemble=how, teacher_weights=[1, 3])
        from babyllama.losses import ensemble_log_probs

        want = lf(s, labels, teacher_log_probs=ensemble_log_probs([a, b], 2.0, how, [1, 3]))
        assert lf(s, labels, teacher_logits=[a, b]).loss.item() == pytest.approx(want.loss.item(), rel=1e-6)


def test_from_config_reads_every_setting_once():
    d = DistillConfig(alpha=0.2, temperature=4.0, kl_reduction="paper", ensemble="probs_mean",
                      teacher_weights=[1.0, 2.0], divergence="jsd", jsd_beta=0.9)
    lf = DistillationLoss.from_config(d)
    assert (lf.alpha, lf.temperature, lf.reduction, lf.ensemble, lf.teacher_weights) == (
        0.2, 4.0, "paper", "probs_mean", [1.0, 2.0])
    assert lf.divergence.name == "jsd" and lf.divergence.beta == 0.9
    with pytest.raises(ValueError, match="paper or per_token"):
        DistillationLoss(reduction="mean")


def _cached_inputs(g, B, L, V, K, with_tail):
    ids = torch.stack([torch.randperm(V, generator=g)[:K] for _ in range(B * L)]).view(B, L, K)
    w = torch.rand(B, L, K, generator=g) * 0.1
    tail = torch.rand(B, L, generator=g) * 0.3 if with_tail else torch.zeros(B, L)
    plogp = torch.randn(B, L, generator=g)
    return CachedTeacher(ids, w, tail, plogp)


@pytest.mark.parametrize("with_tail", [False, True])
def test_fused_ce_and_cached_kl_equals_autograd(with_tail):
    g = torch.Generator().manual_seed(3)
    B, L, V, K = 2, 7, 50, 6
    logits = torch.randn(B, L, V, generator=g, requires_grad=True)
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[0, 3] = -100
    cached = _cached_inputs(g, B, L, V, K, with_tail)
    for red in ("paper", "per_token"):
        ref = DistillationLoss(0.3, 2.0, red, fused=False)(logits, labels, cached=cached)
        got = DistillationLoss(0.3, 2.0, red, chunk=3)(logits, labels, cached=cached)
        assert got.ce.item() == pytest.approx(ref.ce.item(), rel=1e-6)
        assert got.div.item() == pytest.approx(ref.div.item(), rel=1e-5, abs=1e-6)
        ga, = torch.autograd.grad(ref.loss, logits)
        gb, = torch.autograd.grad(got.loss, logits)
        assert torch.allclose(ga, gb, atol=1e-6)
    # the reference itself: the cached KL per position from its definition
    s = F.log_softmax(logits.detach() / 2.0, -1)
    want = cached.plogp - (cached.weight * s.gather(-1, cached.ids)).sum(-1)
    if with_tail:
        want = want - cached.tail * torch.log(1 - s.gather(-1, cached.ids).exp().sum(-1))
    assert torch.allclose(cached_kl_reference(s, cached), want, atol=1e-6)
