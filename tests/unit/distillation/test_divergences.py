"""Every divergence against a direct dense float64 implementation written from its definition (values and
gradients), the fused kernels against autograd, the libraries' semantics (TRL's generalized JSD, torchtune's
ReverseKLLoss), the AB-divergence's limits, and the cached (coarse-grained) form's bias."""

import math

import pytest
import torch
import torch.nn.functional as F

from babyllama.config import DistillConfig
from babyllama.distillation import DIVERGENCES, PARAMETERS
from babyllama.distillation.divergences import bucketed, bucketed_per_position, divergence_from
from babyllama.distillation.loss import CachedTeacher, DistillationLoss

SETTINGS = [("forward_kl", {}), ("reverse_kl", {}), ("jsd", {"jsd_beta": 0.1}), ("jsd", {"jsd_beta": 0.5}),
            ("jsd", {"jsd_beta": 0.9}), ("jsd", {"jsd_beta": 0.0}), ("jsd", {"jsd_beta": 1.0}),
            ("skew_kl", {"skew": 0.1}), ("skew_reverse_kl", {"skew": 0.3}), ("tvd", {}),
            ("alpha_beta", {"ab_alpha": 0.5, "ab_beta": 0.5}), ("alpha_beta", {"ab_alpha": 0.2, "ab_beta": 0.7}),
            ("alpha_beta", {"ab_alpha": 1.0, "ab_beta": 0.0}), ("alpha_beta", {"ab_alpha": 0.0, "ab_beta": 1.0}),
            ("alpha_beta", {"ab_alpha": 0.0, "ab_beta": 0.6}), ("alpha_beta", {"ab_alpha": 0.4, "ab_beta": 0.0}),
            ("alpha_beta", {"ab_alpha": 0.5, "ab_beta": -0.5}), ("alpha_beta", {"ab_alpha": 0.0, "ab_beta": 0.0})]
IDS = [f"{n}-{'-'.join(f'{v}' for v in kw.values())}" if kw else n for n, kw in SETTINGS]


def reference(name: str, p: torch.Tensor, q: torch.Tensor, jsd_beta=0.5, skew=0.1, ab_alpha=0.5, ab_beta=0.5):
    """D(p || q) per row, written out from each definition (float64, no shared code with the package)."""
    kl = lambda a, b: (a * (a.log() - b.log())).sum(-1)  # noqa: E731
    if name == "forward_kl" or (name == "jsd" and jsd_beta == 0):
        return kl(p, q)
    if name == "reverse_kl" or (name == "jsd" and jsd_beta == 1):
        return kl(q, p)
    if name == "jsd":
        m = jsd_beta * p + (1 - jsd_beta) * q
        return jsd_beta * kl(p, m) + (1 - jsd_beta) * kl(q, m)
    if name == "skew_kl":
        return kl(p, skew * p + (1 - skew) * q)
    if name == "skew_reverse_kl":
        return kl(q, (1 - skew) * p + skew * q)
    if name == "tvd":
        return 0.5 * (p - q).abs().sum(-1)
    a, b = ab_alpha, ab_beta  # Cichocki, Cruces & Amari (2011), eq. (12)-(16)
    if a == 0 and b == 0:
        return 0.5 * ((p.log() - q.log()) ** 2).sum(-1)
    if a == 0:
        return ((q**b * (q**b / p**b).log() - q**b + p**b) / b**2).sum(-1)
    if b == 0:
        return ((p**a * (p**a / q**a).log() - p**a + q**a) / a**2).sum(-1)
    if a + b == 0:
        return (((q**a / p**a).log() + (q**a / p**a) ** -1 - 1) / a**2).sum(-1)
    return -(p**a * q**b - a / (a + b) * p ** (a + b) - b / (a + b) * q ** (a + b)).sum(-1) / (a * b)


def test_every_divergence_is_in_the_config_and_keyed_by_its_settings():
    import typing

    assert typing.get_args(DistillConfig.model_fields["divergence"].annotation) == DIVERGENCES
    assert set(PARAMETERS) <= set(DIVERGENCES)
    assert all(f in DistillConfig.model_fields for fs in PARAMETERS.values() for f in fs)


@pytest.mark.parametrize("name,kw", SETTINGS, ids=IDS)
def test_values_and_gradients_equal_the_float64_definition(name, kw):
    g = torch.Generator().manual_seed(1)
    t = torch.randn(6, 17, generator=g, dtype=torch.float64) * 2
    z = (torch.randn(6, 17, generator=g, dtype=torch.float64) * 2).requires_grad_()
    div = divergence_from(name, **kw)
    ours = div.per_position(F.log_softmax(t, -1), F.log_softmax(z, -1))
    ref = reference(name, F.softmax(t, -1), F.softmax(z, -1), **kw)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    assert (ref >= -1e-12).all()
    (g_ours,), (g_ref,) = torch.autograd.grad(ours.sum(), z), torch.autograd.grad(ref.sum(), z)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-8, atol=1e-10)
    # zero at p = q
    assert div.per_position(F.log_softmax(t, -1), F.log_softmax(t, -1)).abs().max() < 1e-12


@pytest.mark.parametrize("name,kw", SETTINGS, ids=IDS)
def test_u_is_q_times_the_derivative_of_phi(name, kw):
    """The fused backward's elementwise ``u = q dphi/dq`` against autograd through phi (float64)."""
    g = torch.Generator().manual_seed(2)
    lp = F.log_softmax(torch.randn(4, 9, generator=g, dtype=torch.float64), -1)
    q = F.softmax(torch.randn(4, 9, generator=g, dtype=torch.float64), -1).requires_grad_()
    div = divergence_from(name, **kw)
    dq, = torch.autograd.grad(div.phi(lp, q.log()).sum(), q)
    torch.testing.assert_close(div.u(lp, q.detach().log()), q.detach() * dq, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(div.dphi(lp, q.detach().log()), dq, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,kw", SETTINGS, ids=IDS)
def test_the_live_paths_rearranged_passes_equal_phi_and_u(name, kw):
    """row_values and u_rows (the fused live path's fewer passes) against phi summed and u, in float64 and, with
    student log-probabilities down to -60 (probabilities of 1e-26), in float32."""
    g = torch.Generator().manual_seed(4)
    div = divergence_from(name, **kw)
    for dtype, scale, tol in ((torch.float64, 2.0, 1e-10), (torch.float32, 12.0, 2e-5)):
        lp = F.log_softmax(torch.randn(5, 300, generator=g, dtype=torch.float64) * 2, -1).to(dtype)
        lq = F.log_softmax(torch.randn(5, 300, generator=g, dtype=torch.float64) * scale, -1).to(dtype)
        ref_v = div.phi(lp.double(), lq.double()).sum(-1)
        torch.testing.assert_close(div.row_values(lp, lq).double(), ref_v, rtol=tol, atol=tol)
        ref_u = div.u(lp.double(), lq.double())
        u, q = div.u_rows(lp, lq)
        torch.testing.assert_close(u.double(), ref_u, rtol=tol, atol=tol)
        assert torch.isfinite(u).all() and (q is None or torch.equal(q, lq.exp()))


def fused_and_reference(d: DistillConfig, base: torch.Tensor, labels: torch.Tensor, chunk: int, **teacher):
    """The loss of ``distill:`` section ``d`` through the autograd reference and through the fused kernels (``chunk``
    rows at a time), each with its gradient w.r.t. a copy of the student logits ``base``."""
    a, b = base.clone().requires_grad_(), base.clone().requires_grad_()
    ref = DistillationLoss.from_config(d, fused=False)(a, labels, **teacher)
    fused = DistillationLoss.from_config(d)
    fused.chunk = chunk
    got = fused(b, labels, **teacher)
    (ga,), (gb,) = torch.autograd.grad(ref.loss, a), torch.autograd.grad(got.loss, b)
    return ref, got, ga, gb


@pytest.mark.parametrize("name,kw", SETTINGS, ids=IDS)
@pytest.mark.parametrize("reduction", ["paper", "per_token"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_live_path_equals_autograd(name, kw, reduction, dtype):
    g = torch.Generator().manual_seed(3)
    B, L, V = 2, 7, 50
    base = (torch.randn(B, L, V, generator=g) * 2).to(dtype)
    teachers = [torch.randn(B, L, V, generator=g) * 2 for _ in range(2)]
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[1, 4:] = -100
    for ensemble in ("logits_mean", "probs_mean"):
        d = DistillConfig(alpha=0.3, temperature=2.0, kl_reduction=reduction, ensemble=ensemble, divergence=name, **kw)
        ref, got, ga, gb = fused_and_reference(d, base, labels, 3, teacher_logits=teachers)
        assert got.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5, abs=1e-6)
        assert gb.dtype == dtype
        tol = 1e-6 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(gb.float(), ga.float(), atol=tol, rtol=0.02 if dtype == torch.bfloat16 else 1e-4)


def _cache_of(teacher_lp: torch.Tensor, exact: int, sampled: int = 0) -> CachedTeacher:
    from babyllama.distillation.cache import sparse_entries

    shape = teacher_lp.shape[:-1]
    ids, w, tail, plogp = sparse_entries(teacher_lp.reshape(-1, teacher_lp.size(-1)).clone(), exact + sampled,
                                         sampled, torch.Generator().manual_seed(0))
    return CachedTeacher(ids.view(*shape, -1), w.view(*shape, -1), tail.view(shape), plogp.view(shape), sampled)


BUCKETED = [(i, s) for i, s in zip(IDS, SETTINGS) if divergence_from(s[0], **s[1]).kind != "forward_kl"]


@pytest.mark.parametrize("name,kw", [s for _, s in BUCKETED], ids=[i for i, _ in BUCKETED])
@pytest.mark.parametrize("sampled", [0, 4])
def test_cached_path_is_the_coarse_grained_divergence(name, kw, sampled):
    """From cached entries: fused equals autograd through the bucketed definition (value and gradient); with the
    whole vocabulary exact it is the dense divergence; the sampled entries are not used."""
    g = torch.Generator().manual_seed(4)
    B, L, V, E = 2, 5, 30, 6
    t = torch.randn(B, L, V, generator=g) * 2
    base = torch.randn(B, L, V, generator=g) * 2
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[0, 3] = -100
    T = 2.0
    teacher_lp = F.log_softmax(t / T, -1)
    cached = _cache_of(teacher_lp, E, sampled)
    d = DistillConfig(alpha=0.4, temperature=T, divergence=name, **kw)
    ref, got, ga, gb = fused_and_reference(d, base, labels, 4, cached=cached)
    assert got.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(gb, ga, atol=1e-6, rtol=1e-4)
    # the bucketed reference from its definition, in float64
    p, q = teacher_lp.double().exp(), F.softmax(base.double() / T, -1)
    top = cached.ids[..., :E]
    pb = torch.cat([p.gather(-1, top), 1 - p.gather(-1, top).sum(-1, keepdim=True)], -1)
    qb = torch.cat([q.gather(-1, top), 1 - q.gather(-1, top).sum(-1, keepdim=True)], -1)
    want = reference(name, pb, qb, **kw)
    mask = (labels != -100).double()
    assert got.div.item() == pytest.approx(float((want * mask).sum() / mask.sum()), rel=1e-4)
    # every token exact: the dense divergence
    full = _cache_of(teacher_lp, V)
    dense = DistillationLoss.from_config(d)(base, labels, teacher_log_probs=teacher_lp)
    assert DistillationLoss.from_config(d)(base, labels, cached=full).div.item() == pytest.approx(
        dense.div.item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name,kw", [s for s in SETTINGS if s[0] not in ("forward_kl", "alpha_beta")],
                         ids=[i for i, s in zip(IDS, SETTINGS) if s[0] not in ("forward_kl", "alpha_beta")])
def test_coarse_graining_biases_f_divergences_towards_zero(name, kw):
    """The data-processing inequality: the bucketed f-divergence is at most the dense one, per position, and
    equal when p / q is constant over the bucketed tokens."""
    g = torch.Generator().manual_seed(5)
    p = F.softmax(torch.randn(200, 40, generator=g, dtype=torch.float64) * 2, -1)
    q = F.softmax(torch.randn(200, 40, generator=g, dtype=torch.float64) * 2, -1)
    div = divergence_from(name, **kw)
    top = p.topk(8, -1).indices
    def coarse_of(q):
        rest = (1 - q.gather(-1, top).sum(-1, keepdim=True)).log()
        return bucketed_per_position(div, *bucketed(p.gather(-1, top), q.gather(-1, top).log(), rest))

    coarse, dense = coarse_of(q), div.per_position(p.log(), q.log())
    assert (coarse <= dense + 1e-12).all() and (coarse < dense - 1e-6).float().mean() > 0.9
    # p / q constant outside the top: no bias
    q2 = p.clone()
    q2.scatter_(-1, top, F.softmax(torch.randn(200, 8, generator=g, dtype=torch.float64), -1)
                * p.gather(-1, top).sum(-1, keepdim=True))
    torch.testing.assert_close(coarse_of(q2), div.per_position(p.log(), q2.log()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_jsd_equals_trls_generalized_jsd_loss(beta, temperature):
    """TRL's GKDTrainer.generalized_jsd_loss (trl.experimental.gkd, installed with the dev extras): beta 0 is its
    forward KL, beta 1 its reverse KL, the mixture in between; reduction batchmean over the label mask = ours
    per_token, the T^2 being our mix's, not part of D."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    g = torch.Generator().manual_seed(6)
    s, t = torch.randn(3, 8, 21, generator=g) * 2, torch.randn(3, 8, 21, generator=g) * 2
    labels = torch.randint(0, 21, (3, 8), generator=g)
    labels[2, 5:] = -100
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    trl = GKDTrainer.generalized_jsd_loss(a, t, labels=labels, beta=beta, temperature=temperature)
    lf = DistillationLoss(alpha=0.0, temperature=temperature, divergence=divergence_from("jsd", jsd_beta=beta))
    ours = lf(b, labels, teacher_logits=[t]).div
    assert ours.item() == pytest.approx(trl.item(), rel=1e-5)
    (ga,), (gb,) = torch.autograd.grad(trl, a), torch.autograd.grad(ours, b)
    torch.testing.assert_close(gb, ga, atol=1e-7, rtol=1e-4)


def torchtune_reverse_kl(student_logits, teacher_logits, labels, ignore_index=-100):
    """torchtune.modules.loss.ReverseKLLoss.forward (torchtune 0.6, modules/loss/kd_losses.py), reproduced: no
    temperature, float32 softmaxes, infinite logits masked, the mean over positions whose label is not ignored."""
    student_prob = F.softmax(student_logits, dim=-1, dtype=torch.float32)
    student_logprob = F.log_softmax(student_logits, dim=-1, dtype=torch.float32)
    teacher_logprob = F.log_softmax(teacher_logits, dim=-1, dtype=torch.float32)
    inf_mask = torch.isinf(student_logits) | torch.isinf(teacher_logits)
    prod_probs = torch.masked_fill(student_prob * teacher_logprob, inf_mask, 0)
    prod_probs -= torch.masked_fill(student_prob * student_logprob, inf_mask, 0)
    x = torch.sum(prod_probs, dim=-1).view(-1)
    mask = (labels != ignore_index).int()
    if torch.sum(mask.view(-1), dim=0) == 0:
        return torch.tensor(0.0)
    return -torch.sum(x * mask.view(-1), dim=0) / torch.sum(mask.view(-1), dim=0)


def test_reverse_kl_has_torchtunes_reverse_kl_semantics_with_padding_masked():
    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(2, 9, 15, generator=g) * 2, torch.randn(2, 9, 15, generator=g) * 2
    labels = torch.randint(0, 15, (2, 9), generator=g)
    labels[0, 6:] = -100
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    tt = torchtune_reverse_kl(a, t, labels)
    ours = DistillationLoss(alpha=0.0, temperature=1.0, divergence="reverse_kl")(b, labels, teacher_logits=[t]).div
    assert ours.item() == pytest.approx(tt.item(), rel=1e-5)
    (ga,), (gb,) = torch.autograd.grad(tt, a), torch.autograd.grad(ours, b)
    torch.testing.assert_close(gb, ga, atol=1e-7, rtol=1e-4)
    # padded positions change nothing
    s2 = s.clone()
    s2[0, 6:] += 5 * torch.randn(3, 15, generator=g)
    again = DistillationLoss(alpha=0.0, temperature=1.0, divergence="reverse_kl")(s2, labels, teacher_logits=[t])
    assert again.div.item() == pytest.approx(ours.item(), rel=1e-6)


@pytest.mark.parametrize("limit", [(0.0, 0.7), (0.6, 0.0), (0.5, -0.5), (0.0, 0.0)])
def test_alpha_beta_limits_are_continuous(limit):
    g = torch.Generator().manual_seed(8)
    lp = F.log_softmax(torch.randn(5, 12, generator=g, dtype=torch.float64), -1)
    lq = F.log_softmax(torch.randn(5, 12, generator=g, dtype=torch.float64), -1)
    a, b = limit
    at = divergence_from("alpha_beta", ab_alpha=a, ab_beta=b).per_position(lp, lq)
    eps = 1e-5
    near = divergence_from("alpha_beta", ab_alpha=a + eps, ab_beta=b + 2 * eps).per_position(lp, lq)
    torch.testing.assert_close(at, near, rtol=1e-3, atol=1e-6)
    # (1, 0) is the forward KL and (0, 1) the reverse KL
    fwd = divergence_from("alpha_beta", ab_alpha=1.0, ab_beta=0.0).per_position(lp, lq)
    torch.testing.assert_close(fwd, divergence_from("forward_kl").per_position(lp, lq))
    rev = divergence_from("alpha_beta", ab_alpha=0.0, ab_beta=1.0).per_position(lp, lq)
    torch.testing.assert_close(rev, divergence_from("reverse_kl").per_position(lp, lq))


def test_two_token_cases_by_hand():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 0.75]])
    lp, lq = p.log(), q.log()
    rev = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert divergence_from("reverse_kl").per_position(lp, lq).item() == pytest.approx(rev, rel=1e-6)
    assert divergence_from("tvd").per_position(lp, lq).item() == pytest.approx(0.25, rel=1e-6)
    m = [0.5 * 0.5 + 0.5 * 0.25, 0.5 * 0.5 + 0.5 * 0.75]
    js = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + \
        0.5 * (0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1]))
    assert divergence_from("jsd").per_position(lp, lq).item() == pytest.approx(js, rel=1e-6)
    # AB at (0.5, 0.5): 2 sum (sqrt p - sqrt q)^2, twice the squared Hellinger distance's sum
    h = 2 * ((math.sqrt(0.5) - math.sqrt(0.25)) ** 2 + (math.sqrt(0.5) - math.sqrt(0.75)) ** 2)
    assert divergence_from("alpha_beta").per_position(lp, lq).item() == pytest.approx(h, rel=1e-6)


def test_bad_settings_are_one_line_naming_the_key():
    from babyllama.config import load_config
    from babyllama.errors import UserError

    with pytest.raises(UserError, match=r"distill\.divergence"):
        load_config(None, ["distill.divergence=kl"])
    with pytest.raises(UserError, match=r"distill\.jsd_beta.*less than or equal to 1"):
        load_config(None, ["distill.jsd_beta=1.5"])
    with pytest.raises(UserError, match=r"distill\.skew"):
        load_config(None, ["distill.skew=-0.1"])
