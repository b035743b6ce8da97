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


def causal_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits[:, t] predicts labels[:, t + 1]; -100 labels are ignored."""
    v = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


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
        z = sum(wi * t.float() for wi, t in zip(w, teacher_logits))
        return F.log_softmax(z / temperature, dim=-1)
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


def kl_per_position_topk(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_log_probs: torch.Tensor,
                         teacher_tail: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) per position, ``(B, L)``, from a cached top-K teacher distribution.

    The teacher keeps K token ids with their tempered log-probabilities and the remaining tail mass
    ``p_tail = 1 - sum_k p_k``; the student's distribution is collapsed onto the same K tokens plus one tail bucket
    ``q_tail = 1 - sum_k q_k``. Then ``KL = sum_k p_k (log p_k - log q_k) + p_tail (log p_tail - log q_tail)``,
    which equals the full KL when K is the vocabulary size (tail 0) and is a lower bound of it otherwise.
    The student's log-probabilities are never materialised over the vocabulary: only the tempered log-sum-exp
    and the K gathered logits are needed.
    """
    z = student_logits.float() / temperature
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    s_top = torch.gather(z, -1, teacher_ids.long()) - lse
    t = teacher_log_probs.float()
    kl = (t.exp() * (t - s_top)).sum(-1)
    p_tail = teacher_tail.float().clamp_min(0)
    q_tail = (1 - s_top.exp().sum(-1)).clamp_min(1e-12)
    tail_term = torch.where(p_tail > 0, p_tail * (torch.log(p_tail.clamp_min(1e-30)) - torch.log(q_tail)),
                            torch.zeros_like(p_tail))
    return kl + tail_term
