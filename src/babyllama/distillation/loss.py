"""The distillation loss as one object, built once from ``distill:`` and the only place its formula is written:

    loss = alpha * CE(student, labels) + (1 - alpha) * T^k * D(p_ens || p_student)

with both distributions softened at temperature T, D one of :mod:`babyllama.distillation.divergences` (the
forward KL of both papers by default, ``k = 2``) and ``p_ens`` the teachers' ensemble
(:func:`babyllama.losses.ensemble_log_probs`: ``logits_mean``, the papers', or ``probs_mean``).

Reductions of the per-position divergence:

* ``paper``: what the authors' code computes, ``KLDivLoss(reduction="batchmean")`` on ``(B, L, V)`` tensors: the
  sum over positions and vocabulary divided by the batch size ``B`` only. The divergence term is therefore summed
  over the ``L`` positions (about ``L`` times the per-token scale of the CE it is mixed with), and padded
  positions are not masked. Use it to reproduce the papers' numbers.
* ``per_token``: the mean over non-padding positions of the per-position divergence, on the CE's scale; padded
  positions (label -100) contribute nothing.

The CE is the usual causal-LM loss: logits at position t predict label t+1, ``-100`` labels are ignored, mean over
predicted tokens. The divergence compares the full distributions at every position (as the authors do), including
the last one, whose target lies beyond the chunk: teachers and student both predict it.

Teachers only give logits (live) or cached entries; everything else happens here. Two ways to compute it, equal
in value and gradient (tested): ``fused`` (the default: :mod:`babyllama.distillation.fused`, chunked with a
hand-written backward) and the autograd ``reference`` on dense float tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import IGNORE_INDEX, causal_ce, ensemble_log_probs, row_chunk, shift_labels
from .divergences import (EPS, Divergence, bucketed, bucketed_per_position, divergence_from, log_mass_outside,
                          reduce_positions)
from .fused import FusedBucketed, FusedCachedKL, FusedDense


@dataclass
class DistillLoss:
    loss: torch.Tensor
    ce: torch.Tensor
    div: torch.Tensor  # the reduced divergence term (before the T^k factor)


@dataclass
class CachedTeacher:
    """A batch's cached teacher entries (:class:`babyllama.distillation.sources.CachedChunkDataset`): per
    position K ids and weights, the unrepresented mass and ``sum p log p``; the first ``K - sampled`` entries are
    the exact top tokens."""

    ids: torch.Tensor
    weight: torch.Tensor
    tail: torch.Tensor
    plogp: torch.Tensor
    sampled: int = 0

    @classmethod
    def from_batch(cls, inputs: dict, sampled: int) -> CachedTeacher | None:
        if "teacher_ids" not in inputs:
            return None
        return cls(inputs["teacher_ids"], inputs["teacher_weight"], inputs["teacher_tail"], inputs["teacher_plogp"],
                   sampled)


class DistillationLoss:
    """alpha, T, the reduction, the ensemble rule and weights, and the divergence: everything the loss reads."""

    def __init__(self, alpha: float = 0.5, temperature: float = 2.0, reduction: str = "per_token",
                 ensemble: str = "logits_mean", teacher_weights=None, divergence: Divergence | str = "forward_kl",
                 fused: bool = True, chunk: int | None = None):
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.reduction, self.ensemble, self.teacher_weights = reduction, ensemble, teacher_weights
        self.divergence = divergence_from(divergence) if isinstance(divergence, str) else divergence
        self.fused = fused
        self.chunk = chunk  # rows of the fused kernels at once; default: losses.row_chunk
        reduce_positions(torch.zeros(1, 1), reduction)  # an unknown reduction fails here, not at the first step

    @classmethod
    def from_config(cls, d, fused: bool = True) -> DistillationLoss:
        """From a :class:`babyllama.config.DistillConfig`."""
        return cls(d.alpha, d.temperature, d.kl_reduction, d.ensemble, d.teacher_weights,
                   divergence_from(d.divergence, d.jsd_beta, d.skew, d.ab_alpha, d.ab_beta), fused)

    def mix(self, ce: torch.Tensor, div: torch.Tensor) -> torch.Tensor:
        """alpha * CE + (1 - alpha) * T^k * D (the T^k keeps D's gradients' scale independent of T)."""
        return self.alpha * ce + (1.0 - self.alpha) * self.temperature ** self.divergence.temperature_power * div

    def teacher_log_probs(self, teacher_logits: list[torch.Tensor]) -> torch.Tensor:
        """The tempered ensemble's log-probabilities ``(B, L, V)`` float32."""
        return ensemble_log_probs(teacher_logits, self.temperature, self.ensemble, self.teacher_weights)

    def __call__(self, student_logits: torch.Tensor, labels: torch.Tensor,
                 teacher_logits: list[torch.Tensor] | None = None, teacher_log_probs: torch.Tensor | None = None,
                 cached: CachedTeacher | None = None) -> DistillLoss:
        """The loss from the student's logits ``(B, L, V)`` and one teacher form: the teachers' logits, the
        ensemble's tempered log-probabilities, or cached entries."""
        if cached is None and teacher_log_probs is None:
            if not teacher_logits:
                raise ValueError("a batch without cached teacher entries, and no teachers to compute them")
            teacher_log_probs = self.teacher_log_probs(teacher_logits)
        ce, per_pos = self.ce_and_divergence(student_logits, labels, teacher_log_probs, cached)
        div = reduce_positions(per_pos, self.reduction, labels != IGNORE_INDEX)
        return DistillLoss(self.mix(ce, div), ce, div)

    def ce_and_divergence(self, logits: torch.Tensor, labels: torch.Tensor, teacher_lp: torch.Tensor | None,
                          cached: CachedTeacher | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean next-token CE, per-position divergence ``(B, L)``)."""
        b, l, v = logits.shape
        t, div = self.temperature, self.divergence
        if not self.fused:
            s = F.log_softmax(logits.float() / t, dim=-1)
            if cached is None:
                per_pos = div.per_position(teacher_lp.float(), s)
            elif div.kind == "forward_kl":
                per_pos = cached_kl_reference(s, cached)
            else:
                exact = cached.ids.size(-1) - cached.sampled
                ids = cached.ids[..., :exact].long()
                per_pos = bucketed_per_position(div, *bucketed(cached.weight[..., :exact].float(), s.gather(-1, ids),
                                                               log_mass_outside(s, ids)))
            return causal_ce(logits, labels), per_pos
        shifted = shift_labels(labels).reshape(-1)
        rows, chunk = logits.reshape(-1, v), self.chunk or row_chunk(logits)
        if cached is None:
            ce, per_pos = FusedDense.apply(rows, shifted, teacher_lp.reshape(-1, v), div, t, chunk)
        else:
            k = cached.ids.size(-1)
            ids, w = cached.ids.reshape(-1, k).long(), cached.weight.reshape(-1, k).float()
            if div.kind == "forward_kl":
                ce, per_pos = FusedCachedKL.apply(rows, shifted, ids, w, cached.tail.reshape(-1).float(),
                                                  cached.plogp.reshape(-1).float(), t, chunk)
            else:
                exact = k - cached.sampled
                ce, per_pos = FusedBucketed.apply(rows, shifted, ids[:, :exact].contiguous(),
                                                  w[:, :exact].contiguous(), div, t, chunk)
        n = (shifted != IGNORE_INDEX).sum().clamp_min(1)
        return ce.sum() / n, per_pos.view(b, l)


def cached_kl_reference(student_log_probs: torch.Tensor, cached: CachedTeacher) -> torch.Tensor:
    """KL(p_teacher || p_student) per position, ``(B, L)``, from the cached sparse teacher distribution
    (autograd; :class:`babyllama.distillation.fused.FusedCachedKL` computes the same in one pass):

    * exact top entries carry their probability ``w_k = p_k``;
    * sampled entries (ids drawn from the teacher beyond the top ones) carry ``w = p_rest / S`` each, so
      ``sum_j w_j (-log q_j)`` is an unbiased estimate of the cross-entropy over those tokens;
    * with no samples, the unrepresented mass forms one bucket against the student's remaining mass ``q_tail``.

    ``KL = sum_v p_v log p_v - sum_j w_j log q_j - p_tail log q_tail``: exact when K is the vocabulary size, an
    unbiased estimate (value and gradient) with sampling.
    """
    s = torch.gather(student_log_probs, -1, cached.ids.long())
    kl = cached.plogp.float() - (cached.weight.float() * s).sum(-1)
    p_tail = cached.tail.float().clamp_min(0)
    if bool((p_tail > 0).any()):
        q_tail = (1 - s.exp().sum(-1)).clamp_min(EPS)
        kl = kl - p_tail * torch.log(q_tail)
    return kl
