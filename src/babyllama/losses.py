"""Distillation losses as pure tensor functions.

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(p_ens || p_student)

with both distributions softened at temperature T. Shapes: logits ``(B, L, V)``, labels and masks ``(B, L)``.

Teacher ensembles (:func:`ensemble_log_probs`):

* ``logits_mean`` (both papers): average the teachers' logits (weighted), then soften: ``log_softmax(mean_i z_i / T)``;
* ``probs_mean``: average the softened distributions: ``log(sum_i w_i softmax(z_i / T))``.

KL reductions (:func:`kl_loss`):

* ``paper``: what the authors' code computes, ``KLDivLoss(reduction="batchmean")`` on ``(B, L, V)`` tensors: the
  sum over positions and vocabulary divided by the batch size ``B`` only. The KL term is therefore summed over the
  ``L`` positions (about ``L`` times the per-token scale of the CE it is mixed with), and padded positions are not
  masked. Use it to reproduce the papers' numbers.
* ``per_token``: the mean over non-padding positions of the per-position KL, on the same scale as the CE; padded
  positions (``mask == 0``) contribute nothing.

The CE is the usual causal-LM loss: logits at position t predict label t+1, ``-100`` labels are ignored, mean over
predicted tokens. The KL compares the full distributions at every position (as the authors do), including the
last one, whose target lies beyond the chunk: teachers and student both predict it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Next-token targets aligned with the logits: ``labels[:, t + 1]`` at position t, -100 at the last position.

    The labels are shifted (padded with -100) rather than the logits sliced, which would copy the largest tensor
    of the step.
    """
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def causal_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits[:, t] predicts labels[:, t + 1]; -100 labels are ignored."""
    v = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, v).float(), shift_labels(labels).reshape(-1), ignore_index=IGNORE_INDEX)


def _weights(n: int, weights, device) -> torch.Tensor:
    w = torch.ones(n, device=device) if weights is None else torch.as_tensor(weights, dtype=torch.float32,
                                                                               device=device)
    if w.numel() != n or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"teacher weights must be {n} non-negative numbers with a positive sum, got {weights}")
    return w / w.sum()


def ensemble_log_probs(teacher_logits: list[torch.Tensor], temperature: float, how: str = "logits_mean",
                       weights=None) -> torch.Tensor:
    """Log-probabilities of the tempered teacher ensemble, ``(B, L, V)`` float32."""
    if not teacher_logits:
        raise ValueError("at least one teacher is needed")
    w = _weights(len(teacher_logits), weights, teacher_logits[0].device)
    if how == "logits_mean":
        z = teacher_logits[0].float() * (float(w[0]) / temperature)  # a new tensor: the teachers' stay untouched
        for wi, t in zip(w[1:], teacher_logits[1:]):
            z.add_(t, alpha=float(wi) / temperature)
        return F.log_softmax(z, dim=-1)
    if how == "probs_mean":
        stacked = torch.stack([F.log_softmax(t.float() / temperature, dim=-1) for t in teacher_logits])
        return torch.logsumexp(stacked + w.log().view(-1, *([1] * (stacked.dim() - 1))), dim=0)
    raise ValueError(f"unknown ensemble '{how}': logits_mean or probs_mean")


def kl_per_position(teacher_log_probs: torch.Tensor, student_logits: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) at each position, ``(B, L)``, both at temperature T."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = teacher_log_probs.float()
    return (t.exp() * (t - s)).sum(-1)


def reduce_kl(kl: torch.Tensor, reduction: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce per-position KL ``(B, L)`` to a scalar: ``paper`` (sum / B, no mask) or ``per_token``."""
    if reduction == "paper":
        return kl.sum() / kl.size(0)
    if reduction == "per_token":
        if mask is None:
            return kl.mean()
        m = mask.to(kl.dtype)
        return (kl * m).sum() / m.sum().clamp_min(1)
    raise ValueError(f"unknown KL reduction '{reduction}': paper or per_token")


def kl_loss(teacher_log_probs: torch.Tensor, student_logits: torch.Tensor, temperature: float, reduction: str,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    return reduce_kl(kl_per_position(teacher_log_probs, student_logits, temperature), reduction, mask)


@dataclass
class DistillLoss:
    loss: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor


def mix(ce: torch.Tensor, kl: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
    """alpha * CE + (1 - alpha) * T^2 * KL (the T^2 keeps the KL gradients' scale independent of T)."""
    return alpha * ce + (1.0 - alpha) * temperature**2 * kl


def distillation_loss(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, labels: torch.Tensor,
                      alpha: float, temperature: float, reduction: str = "per_token",
                      mask: torch.Tensor | None = None) -> DistillLoss:
    """The papers' loss from the student's logits and the (already ensembled, tempered) teacher log-probs."""
    ce = causal_ce(student_logits, labels)
    if mask is None:
        mask = labels != IGNORE_INDEX
    kl = kl_loss(teacher_log_probs, student_logits, temperature, reduction, mask)
    return DistillLoss(mix(ce, kl, alpha, temperature), ce, kl)


def kl_per_position_cached(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_weights: torch.Tensor,
                           teacher_tail: torch.Tensor, teacher_plogp: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) per position, ``(B, L)``, from a cached sparse teacher distribution.

    The cache stores, per position, K token ids with weights ``w``, the mass ``p_tail`` no entry represents, and the
    exact ``sum_v p_v log p_v`` of the tempered teacher (see :mod:`babyllama.distillation.cache`):

    * exact top entries carry their probability ``w_k = p_k``;
    * sampled entries (ids drawn from the teacher beyond the top ones) carry ``w = p_rest / S`` each, so
      ``sum_j w_j (-log q_j)`` is an unbiased estimate of the cross-entropy over those tokens;
    * with no samples, the unrepresented mass forms one bucket against the student's remaining mass ``q_tail``.

    ``KL = sum_v p_v log p_v - sum_j w_j log q_j - p_tail log q_tail``: exact when K is the vocabulary size, an
    unbiased estimate (value and gradient) with sampling. Only the student's tempered log-sum-exp and K gathered
    logits are needed, never its full log-probabilities.
    """
    z = student_logits.float() / temperature
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    s = torch.gather(z, -1, teacher_ids.long()) - lse
    w = teacher_weights.float()
    kl = teacher_plogp.float() - (w * s).sum(-1)
    p_tail = teacher_tail.float().clamp_min(0)
    if bool((p_tail > 0).any()):
        # only without samples (unique top-K ids): the student's mass outside them
        q_tail = (1 - s.exp().sum(-1)).clamp_min(1e-12)
        kl = kl - p_tail * torch.log(q_tail)
    return kl


class _FusedCEAndCachedKL(torch.autograd.Function):
    """Per-row CE and cached-teacher KL with a hand-written backward, computed in row chunks.

    Autograd through :func:`causal_ce` + :func:`kl_per_position_cached` materialises several ``(rows, vocab)``
    float32 tensors (the upcast logits, the tempered copy, two softmaxes and their gradients); here each chunk of
    rows is upcast, reduced and differentiated while it sits in cache, and the gradient is written once.
    """

    @staticmethod
    def forward(ctx, logits, labels, ids, w, tail, plogp, temperature, chunk):
        n = logits.size(0)
        ce = torch.zeros(n, dtype=torch.float32, device=logits.device)
        kl = torch.zeros(n, dtype=torch.float32, device=logits.device)
        lse1 = torch.empty_like(ce)
        lse_t = torch.empty_like(ce)
        valid = labels != IGNORE_INDEX
        safe = labels.clamp_min(0).unsqueeze(-1)
        # the tail term is zero where the tail mass is; on a GPU it is computed anyway rather than asking the
        # device (a synchronisation every step)
        has_tail = logits.device.type != "cpu" or bool((tail > 0).any())
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            z = logits[a:b].to(torch.float32, copy=True)  # never a view: z is scaled in place
            lse1[a:b] = torch.logsumexp(z, -1)
            ce[a:b] = (lse1[a:b] - z.gather(-1, safe[a:b]).squeeze(-1)) * valid[a:b]
            z.mul_(1.0 / temperature)
            lse_t[a:b] = torch.logsumexp(z, -1)
            s = z.gather(-1, ids[a:b]) - lse_t[a:b, None]
            kl[a:b] = plogp[a:b] - (w[a:b] * s).sum(-1)
            if has_tail:
                kl[a:b] -= tail[a:b] * torch.log((1 - s.exp().sum(-1)).clamp_min(1e-12))
        ctx.save_for_backward(logits, labels, ids, w, tail, lse1, lse_t)
        ctx.temperature, ctx.chunk, ctx.has_tail = temperature, chunk, has_tail
        return ce, kl

    @staticmethod
    def backward(ctx, g_ce, g_kl):
        logits, labels, ids, w, tail, lse1, lse_t = ctx.saved_tensors
        t, chunk = ctx.temperature, ctx.chunk
        grad = torch.empty_like(logits)
        valid = (labels != IGNORE_INDEX).float()
        safe = labels.clamp_min(0).unsqueeze(-1)
        gce = (g_ce.float() * valid).unsqueeze(-1)
        gkl = g_kl.float().unsqueeze(-1)
        for a in range(0, logits.size(0), chunk):
            b = min(a + chunk, logits.size(0))
            z = logits[a:b].to(torch.float32, copy=True)  # never a view: z is scaled in place
            # dCE/dz = softmax(z) - onehot(label)
            g = torch.exp(z - lse1[a:b, None]).mul_(gce[a:b])
            g.scatter_add_(-1, safe[a:b], -gce[a:b])
            # dKL/dz = (1/T) (scatter(c) - softmax(z/T) * sum(c)), c_k = -w_k (+ tail bucket term)
            c = -w[a:b].float()
            if ctx.has_tail:
                s = z.gather(-1, ids[a:b]) / t - lse_t[a:b, None]
                q_tail = (1 - s.exp().sum(-1, keepdim=True)).clamp_min(1e-12)
                c = c + tail[a:b, None] * s.exp() / q_tail
            c = c * (gkl[a:b] / t)
            p_t = torch.exp(z.mul_(1.0 / t).sub_(lse_t[a:b, None]))
            g.sub_(p_t.mul_(c.sum(-1, keepdim=True)))
            g.scatter_add_(-1, ids[a:b], c)
            grad[a:b] = g
        return grad, None, None, None, None, None, None, None


class _FusedCE(torch.autograd.Function):
    """Per-row cross-entropy with a hand-written backward, in row chunks (the plain-training twin of the class above).

    ``F.cross_entropy`` on the upcast logits makes an fp32 copy of the ``(rows, vocab)`` logits, a log-softmax, and
    in backward a zero-filled one-hot gradient and a softmax gradient: four passes over the step's largest tensor,
    each far out of cache. Here each chunk is upcast, reduced and (in backward) differentiated in cache, and the
    gradient is written once, in the logits' dtype.
    """

    @staticmethod
    def forward(ctx, logits, labels, chunk):
        n = logits.size(0)
        ce = torch.empty(n, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(ce)
        valid = labels != IGNORE_INDEX
        safe = labels.clamp_min(0).unsqueeze(-1)
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            z = logits[a:b].float()
            lse[a:b] = torch.logsumexp(z, -1)
            ce[a:b] = (lse[a:b] - z.gather(-1, safe[a:b]).squeeze(-1)) * valid[a:b]
        ctx.save_for_backward(logits, labels, lse)
        ctx.chunk = chunk
        return ce

    @staticmethod
    def backward(ctx, g_ce):
        logits, labels, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        g = (g_ce.float() * (labels != IGNORE_INDEX)).unsqueeze(-1)
        safe = labels.clamp_min(0).unsqueeze(-1)
        for a in range(0, logits.size(0), ctx.chunk):
            b = min(a + ctx.chunk, logits.size(0))
            d = torch.exp(logits[a:b].float().sub_(lse[a:b, None])).mul_(g[a:b])  # softmax - onehot(label)
            d.scatter_add_(-1, safe[a:b], -g[a:b])
            grad[a:b] = d
        return grad, None, None


def row_chunk(logits: torch.Tensor) -> int:
    """Rows of ``(rows, vocab)`` logits the fused losses handle at once. On a CPU as many as keep a chunk's float32
    copy within 1 MiB, and at least 32 (32 rows of an 8,000- or 16,000-token vocabulary), so that the chunk's
    several passes stay in a core's L2 cache (benchmarks/README.md, "Loss chunk size"); on a GPU as many as keep that
    copy within 256 MiB (4,194 rows of a 16,000-token vocabulary), because there each chunk costs a handful of kernel
    launches and memory is not the limit."""
    if logits.device.type == "cpu":
        return max(32, (1 << 18) // logits.size(-1))
    return max(256, (1 << 26) // logits.size(-1))


def fused_causal_ce(logits: torch.Tensor, labels: torch.Tensor, chunk: int | None = None,
                    num_items: int | torch.Tensor | None = None) -> torch.Tensor:
    """Equal to :func:`causal_ce` in value and gradient (tested), with a fused, chunked backward.

    The summed CE is divided by ``num_items`` when given (the Trainer's count of label tokens over all
    gradient-accumulation micro-batches), else by this batch's label tokens.
    """
    v = logits.size(-1)
    shifted = shift_labels(labels).reshape(-1)
    ce = _FusedCE.apply(logits.reshape(-1, v), shifted, chunk or row_chunk(logits))
    if num_items is None:
        num_items = (shifted != IGNORE_INDEX).sum().clamp_min(1)
    return ce.sum() / num_items


def trainer_causal_lm_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """``Trainer(compute_loss_func=...)``: the model's next-token CE through :func:`fused_causal_ce`."""
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(outputs.logits.device)
    return fused_causal_ce(outputs.logits, labels, num_items=num_items_in_batch)


def ce_and_cached_kl(student_logits: torch.Tensor, labels: torch.Tensor, teacher_ids: torch.Tensor,
                     teacher_weights: torch.Tensor, teacher_tail: torch.Tensor, teacher_plogp: torch.Tensor,
                     temperature: float, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean next-token CE, per-position KL ``(B, L)``) in one fused pass; equal to :func:`causal_ce` and
    :func:`kl_per_position_cached` (tested), several times cheaper in memory traffic."""
    b, l, v = student_logits.shape
    shifted = shift_labels(labels).reshape(-1)
    k = teacher_ids.size(-1)
    ce, kl = _FusedCEAndCachedKL.apply(student_logits.reshape(-1, v), shifted, teacher_ids.reshape(-1, k).long(),
                                       teacher_weights.reshape(-1, k).float(), teacher_tail.reshape(-1).float(),
                                       teacher_plogp.reshape(-1).float(), float(temperature),
                                       chunk or row_chunk(student_logits))
    n = (shifted != IGNORE_INDEX).sum().clamp_min(1)
    return ce.sum() / n, kl.view(b, l)
