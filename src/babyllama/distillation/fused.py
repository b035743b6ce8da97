"""The student's CE and divergence in one chunked pass with a hand-written backward.

Autograd through a log-softmax, the divergence and the CE materialises several ``(rows, vocab)`` float32 tensors
(the upcast logits, the tempered copy, two softmaxes, their gradients). Here each chunk of rows is upcast, reduced
and (in backward) differentiated while it sits in cache, and the gradient is written once, in the logits' dtype;
only the per-row log-sum-exps are kept between the passes. Three teacher forms:

* :class:`FusedDense`: dense teacher log-probabilities (live teachers), any divergence;
* :class:`FusedCachedKL`: cached entries, the forward KL's unbiased estimator (sampled entries, tail bucket);
* :class:`FusedBucketed`: cached entries, any divergence between the coarse-grained distributions over the exact
  entries plus the remaining-mass bucket (:mod:`babyllama.distillation.divergences`).

Each returns per-row CE (zero where the label is ignored) and per-row divergence; the caller reduces them.
"""

from __future__ import annotations

import torch

from ..losses import IGNORE_INDEX
from .divergences import EPS, Divergence, bucketed, bucketed_per_position, log_mass_outside


def _ce_rows(z: torch.Tensor, safe: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lse = torch.logsumexp(z, -1)
    return lse, (lse - z.gather(-1, safe).squeeze(-1)) * valid


def _ce_grad(z: torch.Tensor, lse: torch.Tensor, safe: torch.Tensor, gce: torch.Tensor) -> torch.Tensor:
    """dCE/dz = softmax(z) - onehot(label), times the rows' upstream gradient ``gce`` ``(rows, 1)``."""
    g = torch.exp(z - lse[:, None]).mul_(gce)
    return g.scatter_add_(-1, safe, -gce)


def _backward_inputs(logits, labels, g_ce, g_div, temperature):
    """The gradient to fill, the safe label column, and the rows' upstream CE and divergence gradients (the latter
    with the 1/T of s = z / T folded in), each ``(rows, 1)``."""
    gce = (g_ce.float() * (labels != IGNORE_INDEX)).unsqueeze(-1)
    return (torch.empty_like(logits), labels.clamp_min(0).unsqueeze(-1), gce,
            (g_div.float() / temperature).unsqueeze(-1))


def _forward_rows(logits, labels, temperature, chunk):
    """(per-row CE, per-row divergence to fill, log-sum-exp of the logits and of the tempered logits, chunks): the
    chunks yield ``(a, b, z)`` with ``z`` the rows' tempered float32 logits, a copy the caller may overwrite, once
    their CE and both log-sum-exps are written."""
    n = logits.size(0)
    ce = torch.empty(n, dtype=torch.float32, device=logits.device)
    dv, lse1, lse_t = torch.empty_like(ce), torch.empty_like(ce), torch.empty_like(ce)
    valid = labels != IGNORE_INDEX
    safe = labels.clamp_min(0).unsqueeze(-1)

    def chunks():
        for a, b in _chunks(n, chunk):
            z = logits[a:b].to(torch.float32, copy=True)  # never a view: z is scaled in place
            lse1[a:b], ce[a:b] = _ce_rows(z, safe[a:b], valid[a:b])
            z.mul_(1.0 / temperature)
            lse_t[a:b] = torch.logsumexp(z, -1)
            yield a, b, z

    return ce, dv, lse1, lse_t, chunks()


def _chunks(n: int, chunk: int):
    for a in range(0, n, chunk):
        yield a, min(a + chunk, n)


class FusedDense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, teacher_lp, div: Divergence, temperature, chunk):
        ce, dv, lse1, lse_t, chunks = _forward_rows(logits, labels, temperature, chunk)
        for a, b, z in chunks:
            dv[a:b] = div.row_values(teacher_lp[a:b], z.sub_(lse_t[a:b, None]))
        ctx.save_for_backward(logits, labels, teacher_lp, lse1, lse_t)
        ctx.div, ctx.temperature, ctx.chunk = div, temperature, chunk
        return ce, dv

    @staticmethod
    def backward(ctx, g_ce, g_div):
        logits, labels, teacher_lp, lse1, lse_t = ctx.saved_tensors
        t = ctx.temperature
        grad, safe, gce, gdv = _backward_inputs(logits, labels, g_ce, g_div, t)
        for a, b in _chunks(logits.size(0), ctx.chunk):
            z = logits[a:b].to(torch.float32, copy=True)
            g = _ce_grad(z, lse1[a:b], safe[a:b], gce[a:b])
            lq = z.mul_(1.0 / t).sub_(lse_t[a:b, None])
            u, q = ctx.div.u_rows(teacher_lp[a:b], lq)
            q = lq.exp_() if q is None else q
            # dD/ds = u - q sum(u)
            g.add_(u.sub_(q.mul_(u.sum(-1, keepdim=True))).mul_(gdv[a:b]))
            grad[a:b] = g
        return grad, None, None, None, None, None


class FusedCachedKL(torch.autograd.Function):
    """``KL = sum_v p_v log p_v - sum_j w_j log q_j - p_tail log q_tail`` from the cache's entries: exact when K is
    the vocabulary, an unbiased estimate (value and gradient) with sampled entries; see
    :func:`babyllama.distillation.loss.cached_kl_reference`."""

    @staticmethod
    def forward(ctx, logits, labels, ids, w, tail, plogp, temperature, chunk):
        # the tail term is zero where the tail mass is; on a GPU it is computed anyway rather than asking the
        # device (a synchronisation every step)
        has_tail = logits.device.type != "cpu" or bool((tail > 0).any())
        ce, kl, lse1, lse_t, chunks = _forward_rows(logits, labels, temperature, chunk)
        for a, b, z in chunks:
            s = z.gather(-1, ids[a:b]) - lse_t[a:b, None]
            kl[a:b] = plogp[a:b] - (w[a:b] * s).sum(-1)
            if has_tail:
                kl[a:b] -= tail[a:b] * torch.log((1 - s.exp().sum(-1)).clamp_min(EPS))
        ctx.save_for_backward(logits, labels, ids, w, tail, lse1, lse_t)
        ctx.temperature, ctx.chunk, ctx.has_tail = temperature, chunk, has_tail
        return ce, kl

    @staticmethod
    def backward(ctx, g_ce, g_kl):
        logits, labels, ids, w, tail, lse1, lse_t = ctx.saved_tensors
        t = ctx.temperature
        grad, safe, gce, gkl_t = _backward_inputs(logits, labels, g_ce, g_kl, t)
        for a, b in _chunks(logits.size(0), ctx.chunk):
            z = logits[a:b].to(torch.float32, copy=True)  # never a view: z is scaled in place
            g = _ce_grad(z, lse1[a:b], safe[a:b], gce[a:b])
            # dKL/dz = (1/T) (scatter(c) - softmax(z/T) * sum(c)), c_k = -w_k (+ tail bucket term)
            c = -w[a:b].float()
            if ctx.has_tail:
                s = z.gather(-1, ids[a:b]) / t - lse_t[a:b, None]
                q_tail = (1 - s.exp().sum(-1, keepdim=True)).clamp_min(EPS)
                c = c + tail[a:b, None] * s.exp() / q_tail
            c = c * gkl_t[a:b]
            p_t = torch.exp(z.mul_(1.0 / t).sub_(lse_t[a:b, None]))
            g.sub_(p_t.mul_(c.sum(-1, keepdim=True)))
            g.scatter_add_(-1, ids[a:b], c)
            grad[a:b] = g
        return grad, None, None, None, None, None, None, None


class FusedBucketed(torch.autograd.Function):
    """Any divergence between the coarse-grained distributions over ``exact_ids`` (the cache's exact top entries,
    with teacher probabilities ``exact_p``) and one bucket for every other token.

    With bucket b(v) of token v, phi' = dphi/dq and u_b = q_b phi'_b, the student's gradient is
    ``dD/ds_v = q_v (phi'_{b(v)} - sum_b u_b)``: ``q (phi'_rest - sum u)`` everywhere, plus
    ``u_k - q_k phi'_rest`` at the exact ids.
    """

    @staticmethod
    def forward(ctx, logits, labels, exact_ids, exact_p, div: Divergence, temperature, chunk):
        ce, dv, lse1, lse_t, chunks = _forward_rows(logits, labels, temperature, chunk)
        lq_rest = torch.empty(logits.size(0), 1, dtype=torch.float32, device=logits.device)
        for a, b, z in chunks:
            ids = exact_ids[a:b]
            lq_rest[a:b] = log_mass_outside(z, ids, lse_t[a:b])  # kept: backward needs it, and it costs a pass
            lp, lq, on = bucketed(exact_p[a:b], z.gather(-1, ids) - lse_t[a:b, None], lq_rest[a:b])
            dv[a:b] = bucketed_per_position(div, lp, lq, on)
        ctx.save_for_backward(logits, labels, exact_ids, exact_p, lse1, lse_t, lq_rest)
        ctx.div, ctx.temperature, ctx.chunk = div, temperature, chunk
        return ce, dv

    @staticmethod
    def backward(ctx, g_ce, g_div):
        logits, labels, exact_ids, exact_p, lse1, lse_t, lq_rest = ctx.saved_tensors
        t, div = ctx.temperature, ctx.div
        grad, safe, gce, gdv = _backward_inputs(logits, labels, g_ce, g_div, t)
        for a, b in _chunks(logits.size(0), ctx.chunk):
            z = logits[a:b].to(torch.float32, copy=True)
            g = _ce_grad(z, lse1[a:b], safe[a:b], gce[a:b])
            ids = exact_ids[a:b]
            s = z.mul_(1.0 / t).sub_(lse_t[a:b, None])
            lp, lq, on = bucketed(exact_p[a:b], s.gather(-1, ids), lq_rest[a:b])
            q = s.exp_()
            u = div.u(lp, lq)  # (rows, K + 1): the exact entries, then the rest
            u[:, -1:] *= on  # a dropped bucket (see divergences.bucketed) adds nothing
            d_rest = div.dphi(lp[:, -1:], lq[:, -1:]) * on
            at_ids = (u[:, :-1] - lq[:, :-1].exp() * d_rest) * gdv[a:b]
            g.add_(q.mul_((d_rest - u.sum(-1, keepdim=True)) * gdv[a:b]))
            g.scatter_add_(-1, ids, at_ids)
            grad[a:b] = g
        return grad, None, None, None, None, None, None
