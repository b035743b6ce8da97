"""The divergences a student can be distilled with, each D(p || q) between the tempered teacher ensemble p and
the tempered student q at one position, written as a sum over the vocabulary of an elementwise term phi(p_v, q_v).

| name              | D(p, q) per position                                  | from                                   |
|-------------------|-------------------------------------------------------|----------------------------------------|
| `forward_kl`      | KL(p || q) = sum p log(p / q)                         | both papers; Hinton et al.             |
| `reverse_kl`      | KL(q || p)                                            | MiniLLM; torchtune's ReverseKLLoss     |
| `jsd`             | beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q; beta 0 is forward KL, beta 1 reverse KL, exactly as TRL's `generalized_jsd_loss` special-cases them | GKD; TRL |
| `skew_kl`         | KL(p || s p + (1 - s) q)                              | DistiLLM (skew s, default 0.1)         |
| `skew_reverse_kl` | KL(q || (1 - s) p + s q)                              | DistiLLM                               |
| `tvd`             | 1/2 sum abs(p - q)                                    | DistillKit, DistiLLM's baselines       |
| `alpha_beta`      | -1 / (a b) sum (p^a q^b - a/(a+b) p^(a+b) - b/(a+b) q^(a+b)) and its limits | ABKD (Cichocki et al. 2011's AB-divergence) |

Every divergence here is zero iff p = q. DistiLLM's code drops the teacher-entropy constant of skew KL (a loss
with the same gradient, not zero at p = q); ours is the divergence itself. The AB-divergence's limits (a = 0,
b = 0, a + b = 0, a = b = 0) are the continuous ones of Cichocki et al., e.g. (a, b) = (0, b):
1/b^2 sum (q^b log(q^b / p^b) - q^b + p^b); ABKD's code divides those limit cases by b (or a) instead of b^2, which
agrees at (1, 0) (forward KL) and (0, 1) (reverse KL) and nowhere else.

The student's gradient needs one more elementwise function per divergence, ``u = q * d phi / d q``: with
s = z / T the student's tempered logits and ``q = softmax(s)``, ``dD/ds_v = u_v - q_v sum_w u_w`` (the softmax
Jacobian), so one pass over the vocabulary gives the value and a second one the gradient
(:mod:`babyllama.distillation.fused`).

Which temperature factor: the loss mixes ``alpha CE + (1 - alpha) T^k D``. For every smooth divergence D behaves
as a squared distance for close distributions, so its gradient w.r.t. the logits scales as 1 / T^2 and Hinton's
``k = 2`` keeps it independent of T; the TVD is not smooth (its gradient scales as 1 / T), so it takes ``k = 1``.

From a teacher cache (K stored entries per position, see :mod:`babyllama.distillation.cache`): the forward KL
keeps its unbiased sampled estimator. The others are evaluated between the *coarse-grained* distributions over the
cache's exact top entries plus one bucket for all other tokens (the teacher's remaining mass against the student's
remaining mass); the sampled entries are not used, because they carry no teacher probability of their own. For
an f-divergence (all but `alpha_beta`, whose general member is not one) the data-processing inequality makes this
a lower bound of the full divergence: the bias is towards zero, and zero exactly when p_v / q_v is constant over
the bucketed tokens (or the bucket holds no mass). It is the bias we accept; tests/unit/distillation pins it.
A cache with ``sampled: 0`` gives these divergences all K entries exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import DIVERGENCES

EPS = 1e-12  # the floor of a coarse-grained bucket's mass
TINY = 1e-38  # about float32's smallest normal: the floor of a mixture's probability before its log
LOG_EPS = math.log(EPS)
REST_FLOOR = 1e-6  # a teacher remainder below this is the float error of 1 - sum p (see bucketed)


def _mix_log(log_a: torch.Tensor, log_b: torch.Tensor, wa: float) -> torch.Tensor:
    """log(wa * a + (1 - wa) * b) from log a and log b, without leaving log space."""
    if wa <= 0:
        return log_b
    if wa >= 1:
        return log_a
    return torch.logaddexp(log_a + math.log(wa), log_b + math.log1p(-wa))


@dataclass(frozen=True)
class Divergence:
    """One divergence with its parameters bound: elementwise ``phi`` (value), ``u = q dphi/dq`` and ``dphi``
    (``dphi/dq``, for the cache's remaining-mass bucket) of teacher and student log-probabilities."""

    name: str
    beta: float = 0.5  # jsd
    skew: float = 0.1  # skew_kl, skew_reverse_kl
    a: float = 0.5  # alpha_beta
    b: float = 0.5

    @property
    def temperature_power(self) -> int:
        return 1 if self.name == "tvd" else 2

    @property
    def kind(self) -> str:
        """The divergence actually computed (jsd at beta 0 and 1 is TRL's forward and reverse KL)."""
        if self.name == "jsd" and self.beta in (0.0, 1.0):
            return "forward_kl" if self.beta == 0.0 else "reverse_kl"
        return self.name

    def phi(self, lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        k = self.kind
        p, q = lp.exp(), lq.exp()
        if k == "forward_kl":
            return p * (lp - lq)
        if k == "reverse_kl":
            return q * (lq - lp)
        if k == "jsd":
            lm = _mix_log(lp, lq, self.beta)
            return self.beta * p * (lp - lm) + (1 - self.beta) * q * (lq - lm)
        if k == "skew_kl":
            return p * (lp - _mix_log(lp, lq, self.skew))
        if k == "skew_reverse_kl":
            return q * (lq - _mix_log(lq, lp, self.skew))
        if k == "tvd":
            return 0.5 * (p - q).abs()
        return self._ab_phi(lp, lq)

    def u(self, lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        k = self.kind
        if k == "forward_kl":
            return -lp.exp()
        if k == "alpha_beta":
            return self._ab_u(lp, lq)
        return lq.exp() * self.dphi(lp, lq)

    def dphi(self, lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        k = self.kind
        if k == "forward_kl":
            return -(lp - lq).exp()
        if k == "reverse_kl":
            return lq - lp + 1
        if k == "jsd":
            return (1 - self.beta) * (lq - _mix_log(lp, lq, self.beta))
        if k == "skew_kl":
            return -(1 - self.skew) * (lp - _mix_log(lp, lq, self.skew)).exp()
        if k == "skew_reverse_kl":
            lm = _mix_log(lq, lp, self.skew)
            return lq - lm + 1 - self.skew * (lq - lm).exp()
        if k == "tvd":
            return 0.5 * torch.sign(lq - lp)
        return self._ab_u(lp, lq) / lq.exp().clamp_min(EPS)

    # the AB-divergence: the general member and its four continuous limits
    def _ab_phi(self, lp, lq):
        a, b = self.a, self.b
        if a == 0 and b == 0:
            return 0.5 * (lp - lq) ** 2
        if a == 0:
            return (b * (b * lq).exp() * (lq - lp) - (b * lq).exp() + (b * lp).exp()) / b**2
        if b == 0:
            return (a * (a * lp).exp() * (lp - lq) - (a * lp).exp() + (a * lq).exp()) / a**2
        if a + b == 0:
            return (a * (lq - lp) + (a * (lp - lq)).exp() - 1) / a**2
        s = a + b
        return -((a * lp + b * lq).exp() - a / s * (s * lp).exp() - b / s * (s * lq).exp()) / (a * b)

    def _ab_u(self, lp, lq):
        a, b = self.a, self.b
        if a == 0 and b == 0:
            return lq - lp
        if a == 0:
            return (b * lq).exp() * (lq - lp)
        return ((a + b) * lq).exp().sub_(torch.add(lp * a, lq, alpha=b).exp_()).div_(a)

    # the live path's two passes over dense (rows, vocab) log-probabilities. The same quantities as phi(...).sum(-1)
    # and u(...), rearranged so that the mixtures and the AB-divergence make fewer passes over the vocabulary: a
    # mixture in probability space (one lerp and one log, not a logaddexp of two shifted logs), the value as dot
    # products of whole rows (sum p log p - sum xlogy(m, m), ...). Probabilities below TINY (exp of a log-probability
    # under -87) are where the two forms differ, by terms of that size.
    def row_values(self, lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """D per row of dense log-probabilities, ``(rows,)``."""
        k, dot = self.kind, torch.linalg.vecdot
        if k in ("jsd", "skew_kl", "skew_reverse_kl"):
            p, q = lp.exp(), lq.exp()
            if k == "jsd":
                m = torch.lerp(q, p, self.beta)  # beta p + (1 - beta) q
                return self.beta * dot(p, lp) + (1 - self.beta) * dot(q, lq) - torch.xlogy(m, m).sum(-1)
            if k == "skew_kl":
                return dot(p, lp) - torch.xlogy(p, torch.lerp(q, p, self.skew)).sum(-1)  # s p + (1 - s) q
            return dot(q, lq) - torch.xlogy(q, torch.lerp(p, q, self.skew)).sum(-1)  # (1 - s) p + s q
        a, b = self.a, self.b
        if k == "alpha_beta" and a != 0 and b != 0 and a + b != 0:
            s = a + b
            pq = torch.add(lp * a, lq, alpha=b).exp_().sum(-1)
            return -(pq - a / s * (lp * s).exp_().sum(-1) - b / s * (lq * s).exp_().sum(-1)) / (a * b)
        return self.phi(lp, lq).sum(-1)

    def u_rows(self, lp: torch.Tensor, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``u`` of dense log-probabilities, ``(rows, vocab)``, a new tensor; and ``q = exp(lq)`` where it was
        computed on the way (else None), which the softmax Jacobian needs again."""
        k = self.kind
        if k in ("jsd", "skew_kl", "skew_reverse_kl"):
            p, q = lp.exp(), lq.exp()
            if k == "jsd":  # (1 - beta) q (log q - log m)
                lm = torch.lerp(q, p, self.beta).clamp_min_(TINY).log_()
                return torch.sub(lq, lm, out=lm).mul_(q).mul_(1 - self.beta), q
            if k == "skew_kl":  # -(1 - s) q p / m
                m = torch.lerp(q, p, self.skew).clamp_min_(TINY)
                return p.mul_(q).div_(m).mul_(-(1 - self.skew)), q
            m = torch.lerp(p, q, self.skew).clamp_min_(TINY)  # q (log q - log m + 1 - s q / m)
            r = torch.div(q, m).mul_(-self.skew).add_(lq).add_(1)
            return r.sub_(m.log_()).mul_(q), q
        return self.u(lp, lq), None

    def per_position(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        """D at each position, ``(...,)``, from dense log-probabilities ``(..., V)`` (the reference path)."""
        return self.phi(teacher_log_probs, student_log_probs).sum(-1)


def divergence_from(name: str, jsd_beta: float = 0.5, skew: float = 0.1, ab_alpha: float = 0.5,
                    ab_beta: float = 0.5) -> Divergence:
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence '{name}': one of {', '.join(DIVERGENCES)}")
    return Divergence(name, beta=float(jsd_beta), skew=float(skew), a=float(ab_alpha), b=float(ab_beta))


def reduce_positions(values: torch.Tensor, reduction: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position values ``(B, L)`` to a scalar: ``paper`` (sum / B, no mask: ``KLDivLoss(batchmean)``) or
    ``per_token`` (the mean over ``mask``'s positions)."""
    if reduction == "paper":
        return values.sum() / values.size(0)
    if reduction == "per_token":
        if mask is None:
            return values.mean()
        m = mask.to(values.dtype)
        return (values * m).sum() / m.sum().clamp_min(1)
    raise ValueError(f"unknown reduction '{reduction}': paper or per_token")


def bucketed(teacher_p: torch.Tensor, student_lq: torch.Tensor, student_lq_rest: torch.Tensor):
    """The coarse-grained distributions: teacher and student log-probabilities over K exact entries plus the
    bucket of the rest, ``(..., K + 1)``, and whether that bucket counts, ``(..., 1)``.

    ``teacher_p``: the entries' probabilities; ``student_lq``: the student's log-probabilities at those ids;
    ``student_lq_rest``: the log of the student's mass outside them (from a log-sum-exp over the other logits, not
    ``1 - sum q``, which cancels to float noise when the entries hold nearly all the mass). A teacher remainder
    below ``REST_FLOOR`` is float noise of ``1 - sum p`` (all the mass is in the entries): the bucket is dropped,
    since log-ratio divergences (the AB family at a or b <= 0) would weigh that noise as a real disagreement.
    """
    rest_p = 1 - teacher_p.sum(-1, keepdim=True)
    lp = torch.cat([teacher_p.clamp_min(1e-38).log(), rest_p.clamp_min(EPS).log()], -1)
    return lp, torch.cat([student_lq, student_lq_rest], -1), rest_p > REST_FLOOR


def bucketed_per_position(div: Divergence, lp: torch.Tensor, lq: torch.Tensor, rest_on: torch.Tensor):
    """D between coarse-grained distributions (:func:`bucketed`), per position."""
    phi = div.phi(lp, lq)
    return phi[..., :-1].sum(-1) + phi[..., -1] * rest_on[..., 0]


def log_mass_outside(logits: torch.Tensor, ids: torch.Tensor, lse: torch.Tensor | None = None) -> torch.Tensor:
    """log of softmax(logits)'s mass outside ``ids``, ``(..., 1)``, given the rows' log-sum-exp ``lse`` (None:
    ``logits`` are log-probabilities already)."""
    rest = torch.logsumexp(logits.scatter(-1, ids, float("-inf")), -1, keepdim=True)
    if lse is not None:
        rest = rest - lse.unsqueeze(-1)
    return rest.clamp_min(LOG_EPS)  # ids covering the vocabulary: an empty bucket
