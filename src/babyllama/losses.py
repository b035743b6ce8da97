"""The causal-LM cross-entropy (plain and fused) and the teacher ensemble's combination rule.

Shapes: logits ``(B, L, V)``, labels ``(B, L)``. The CE is the usual causal-LM loss: logits at position t predict
label t+1, ``-100`` labels are ignored, mean over predicted tokens. The distillation loss built on these is
:class:`babyllama.distillation.loss.DistillationLoss`.

Teacher ensembles (:func:`ensemble_log_probs`):

* ``logits_mean`` (both papers): average the teachers' logits (weighted), then soften: ``log_softmax(mean_i z_i / T)``;
* ``probs_mean``: average the softened distributions: ``log(sum_i w_i softmax(z_i / T))``.
"""

from __future__ import annotations

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


class _FusedCE(torch.autograd.Function):
    """Per-row cross-entropy with a hand-written backward, in row chunks (distillation's kernels: :mod:`babyllama.distillation.fused`).

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
