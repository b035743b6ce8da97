"""Each divergence's cost in a student training step, against the forward KL, in one run.

One JSON line for the machine (CPU, threads, measured fp32/bf16 matmul peaks), then one per (teacher source,
divergence): the step time of a whole student step (forward, :class:`DistillationLoss`, backward, fused AdamW)
of the CPU recipe's student (llama-cpu-4m, vocabulary 8,000, batch 8 x 128, bf16 autocast where the CPU has it
natively), its tokens/s, its ratio to the forward KL's step (target: at most 1.15), the loss alone (forward and
backward of the loss on fixed logits), and, in a fresh process, the peak resident memory during three steps above
what the process held before them; ``forward_kl-autograd`` is the same loss through autograd on dense float
tensors, for the memory the fused kernels save.
Teacher sources: ``cached`` (entries as the CPU recipe's cache holds them: K = 64, 48 of them sampled) and
``live`` (dense log-probabilities of two teachers' logits, ensembled every step as in live distillation; the
teachers' own forwards are left out, since they cost the same for every divergence). Configurations are
interleaved and each keeps its best repeat, so a slow minute of a shared machine hits all alike.

    python benchmarks/divergences.py                     # all, ~3 minutes on 2 cores
    python benchmarks/divergences.py --repeats 5 --steps 10
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_step import machine_info, matmul_peak  # noqa: E402

from babyllama.config import DistillConfig, ModelConfig  # noqa: E402
from babyllama.distillation.loss import CachedTeacher, DistillationLoss  # noqa: E402
from babyllama.models import build_model  # noqa: E402
from babyllama.hardware import autocast, cpu_has_native_bf16  # noqa: E402

SETTINGS = {"forward_kl": {}, "reverse_kl": {}, "jsd-0.1": {"divergence": "jsd", "jsd_beta": 0.1},
            "jsd-0.5": {"divergence": "jsd", "jsd_beta": 0.5}, "jsd-0.9": {"divergence": "jsd", "jsd_beta": 0.9},
            "skew_kl": {}, "skew_reverse_kl": {}, "tvd": {}, "alpha_beta": {}}
NAMES = [*SETTINGS, "forward_kl-autograd"]
B, L, V, K, S = 8, 128, 8000, 64, 48


def distill_config(name: str) -> DistillConfig:
    # the recipe's alpha and T; a name without settings is the divergence's own name at its defaults
    return DistillConfig(alpha=0.5, temperature=2.0, **(SETTINGS[name] or {"divergence": name}))


class Bench:
    """A student, its optimizer, one batch, and both teacher forms."""

    def __init__(self, precision: str):
        torch.manual_seed(0)
        self.precision = precision
        self.model = build_model(ModelConfig(preset="llama-cpu-4m", vocab_size=V), None, seed=0)
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=True)
        g = torch.Generator().manual_seed(1)
        self.x = torch.randint(0, V, (B, L), generator=g)
        teacher_lp = torch.log_softmax(torch.randn(B, L, V, generator=g) * 2, -1)
        top = teacher_lp.topk(K - S, -1)
        samp = torch.randint(0, V, (B, L, S), generator=g)
        rest = 1 - top.values.exp().sum(-1, keepdim=True)
        self.cached = CachedTeacher(torch.cat([top.indices, samp], -1),
                                    torch.cat([top.values.exp(), (rest / S).expand(-1, -1, S)], -1),
                                    torch.zeros(B, L), (teacher_lp.exp() * teacher_lp).sum(-1), S)
        self.teacher_logits = [torch.randn(B, L, V, generator=g) * 2 for _ in range(2)]
        self.fixed_logits = torch.randn(B, L, V, generator=g).to(torch.bfloat16 if precision == "bf16"
                                                                   else torch.float32)

    def teacher(self, source: str) -> dict:
        return {"cached": self.cached} if source == "cached" else {"teacher_logits": self.teacher_logits}

    def step(self, loss_fn: DistillationLoss, source: str) -> None:
        with autocast(self.precision, torch.device("cpu")):
            logits = self.model(input_ids=self.x).logits
        loss_fn(logits, self.x, **self.teacher(source)).loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def loss_only(self, loss_fn: DistillationLoss, source: str) -> None:
        z = self.fixed_logits.clone().requires_grad_()
        loss_fn(z, self.x, **self.teacher(source)).loss.backward()


def best_ms(fn, steps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps * 1e3


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def step_memory(name: str, source: str, precision: str) -> dict:
    """In a fresh process that builds the bench: the peak resident memory (MiB) while its first 3 steps of one
    setting run (the optimizer's state included, the same for all), above what the process held before them
    (sampled every millisecond)."""
    out = subprocess.run([sys.executable, __file__, "--peak-of", name, source, precision], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_peak(name: str, source: str, precision: str) -> dict:
    import threading

    bench = Bench(precision)
    lf = loss_of(name)
    before, peak, done = rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.001)

    th = threading.Thread(target=sample)
    th.start()
    for _ in range(3):
        bench.step(lf, source)
    done.set()
    th.join()
    return {"rss_before_mb": round(before), "step_peak_above_mb": round(max(peak[0] - before, 0.0), 1)}


def loss_of(name: str) -> DistillationLoss:
    if name == "forward_kl-autograd":  # the same loss through autograd on dense float tensors: the memory saved
        return DistillationLoss.from_config(distill_config("forward_kl"), fused=False)
    return DistillationLoss.from_config(distill_config(name))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--peak-of", nargs=3, metavar=("NAME", "SOURCE", "PRECISION"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    precision = "bf16" if cpu_has_native_bf16() else "fp32"
    if a.peak_of:
        print(json.dumps(measure_peak(*a.peak_of)))
        return
    print(json.dumps({"machine": machine_info(), "precision": precision,
                      "peak_gflops": {"fp32": round(matmul_peak(torch.float32), 1),
                                      "bf16": round(matmul_peak(torch.bfloat16), 1)}}), flush=True)
    bench = Bench(precision)
    losses = {n: loss_of(n) for n in NAMES}
    step, alone = {}, {}
    for _ in range(a.repeats):
        for source in ("cached", "live"):
            for n, lf in losses.items():
                ms = best_ms(lambda: bench.step(lf, source), a.steps)
                step[source, n] = min(step.get((source, n), ms), ms)
                ms = best_ms(lambda: bench.loss_only(lf, source), a.steps)
                alone[source, n] = min(alone.get((source, n), ms), ms)
    for source in ("cached", "live"):
        ref = step[source, "forward_kl"]
        for n in NAMES:
            ms = step[source, n]
            print(json.dumps({"source": source, "divergence": n, "step_ms": round(ms, 1),
                              "tokens_per_s": round(B * L / ms * 1e3), "vs_forward_kl": round(ms / ref, 3),
                              "loss_ms": round(alone[source, n], 1),
                              **step_memory(n, source, precision)}), flush=True)


if __name__ == "__main__":
    main()
