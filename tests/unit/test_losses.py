"""The causal-LM CE (plain and fused) and the teachers' ensemble rule."""

import pytest
import torch
import torch.nn.functional as F

from babyllama.losses import ensemble_log_probs

torch.manual_seed(0)


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
