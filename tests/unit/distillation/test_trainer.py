"""The distillation Trainer's own loss path, on 2-token distributions worked out by hand (the TRL way)."""

import math

import pytest
import torch
from transformers import TrainingArguments
from transformers.modeling_outputs import CausalLMOutput

from babyllama.config import DistillConfig
from babyllama.distillation.loss import DistillationLoss
from babyllama.distillation.trainer import DistillationTrainer


class FixedLogits(torch.nn.Module):
    """A 'language model' whose logits are a parameter: (1, 2 positions, 2 tokens)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def forward(self, input_ids, attention_mask=None, **kw):
        return CausalLMOutput(logits=self.logits.expand(input_ids.size(0), -1, -1))


STUDENT = [[[0.0, math.log(3)], [math.log(2), 0.0]]]  # q = [1/4, 3/4] then [2/3, 1/3] at T = 1
TEACHER = [[[0.0, 0.0], [0.0, math.log(3)]]]  # p = [1/2, 1/2] then [1/4, 3/4]
INPUTS = {"input_ids": torch.tensor([[0, 1]]), "labels": torch.tensor([[0, 1]])}


def softmax(z, t):
    e = [math.exp(x / t) for x in z]
    return [x / sum(e) for x in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def trainer(tmp_path, **distill):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=1)
    return DistillationTrainer(model=FixedLogits(STUDENT), args=args, teachers=[FixedLogits(TEACHER)],
                               loss_fn=DistillationLoss.from_config(DistillConfig(**distill)))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("reduction", ["per_token", "paper"])
def test_compute_loss_by_hand(tmp_path, temperature, reduction):
    alpha = 0.3
    tr = trainer(tmp_path, alpha=alpha, temperature=temperature, kl_reduction=reduction)
    ce = -math.log(0.75)  # position 0 predicts label 1 with q = 3/4; position 1 has no next token
    kls = [kl(softmax(t, temperature), softmax(s, temperature)) for s, t in zip(STUDENT[0], TEACHER[0])]
    kl_red = sum(kls) / 2 if reduction == "per_token" else sum(kls) / 1  # batchmean: divided by the batch (1)
    tr.model.train()
    loss = tr.compute_loss(tr.model, INPUTS)
    assert loss.item() == pytest.approx(alpha * ce + (1 - alpha) * temperature**2 * kl_red, rel=1e-6)
    # the parts are logged separately; evaluation scores the plain CE (comparable with non-distilled models)
    tr.model.eval()
    assert tr.compute_loss(tr.model, INPUTS).item() == pytest.approx(ce, rel=1e-6)
    assert tr._mean_terms("train") == pytest.approx({"ce": ce, "kl": kl_red}, rel=1e-6)
    assert tr._mean_terms("eval") == pytest.approx({"ce": ce, "kl": kl_red}, rel=1e-6)


def test_gradient_flows_to_the_student_only(tmp_path):
    tr = trainer(tmp_path, alpha=0.5, temperature=2.0)
    tr.model.train()
    tr.compute_loss(tr.model, INPUTS).backward()
    assert tr.model.logits.grad is not None and tr.model.logits.grad.abs().sum() > 0
    assert all(p.grad is None for m in tr.teachers.models for p in m.parameters())


def test_cached_entries_give_the_live_loss(tmp_path):
    """With every token of the vocabulary cached (K = 2), the batch's cached entries give the live loss."""
    T = 2.0
    tr = trainer(tmp_path, alpha=0.4, temperature=T)
    tr.model.train()
    live = tr.compute_loss(tr.model, INPUTS).item()
    p = [softmax(t, T) for t in TEACHER[0]]
    cached = {**INPUTS, "teacher_ids": torch.tensor([[[0, 1], [0, 1]]]),
              "teacher_weight": torch.tensor([p]), "teacher_tail": torch.zeros(1, 2),
              "teacher_plogp": torch.tensor([[sum(a * math.log(a) for a in row) for row in p]])}
    tr.teachers = None  # the cached path must not need the teachers
    assert tr.compute_loss(tr.model, cached).item() == pytest.approx(live, rel=1e-5)
