"""Loss chunk size on the CPU: the fused CE and the fused CE + cached-KL losses at several row chunks, alone and
inside a whole training step.

The fused losses (`babyllama.losses`) upcast, reduce and differentiate the ``(rows, vocab)`` logits a chunk of rows
at a time; `losses.row_chunk` picks the chunk. This measures, in one run and interleaved (noisy shared machines):

* the loss alone, forward + backward on bf16 logits of 1,024 rows (batch 8 x 128), for vocabularies of 8,000 and
  16,000 and chunks of 16-256 rows: the plain CE (`fused_causal_ce`) and the distillation loss with a 64-entry
  cached teacher (`DistillationLoss` from cached entries);
* one bf16 training step of `llama-cpu-4m` at batch 8 x 128 (forward, the fused CE, backward, clipping, fused
  AdamW) with the chunk `row_chunk` picks against 256 rows.

Prints one JSON line: milliseconds (the minimum over repeats) per case, and the step's speedup.

    python benchmarks/loss_chunk.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine_info, peaks_for  # noqa: E402


def mean_ms(fn, iters: int) -> float:
    """Milliseconds per call of ``fn`` over ``iters`` calls, after two untimed ones."""
    for _ in range(2):
        fn()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters * 1e3


def loss_cases(chunks: list[int], repeats: int) -> dict:
    from babyllama.distillation.loss import CachedTeacher, DistillationLoss
    from babyllama.losses import fused_causal_ce

    out = {}
    g = torch.Generator().manual_seed(0)
    for vocab in (8000, 16000):
        b, l, k = 8, 128, 64
        x = torch.randn(b, l, vocab, generator=g).bfloat16().requires_grad_()
        y = torch.randint(0, vocab, (b, l), generator=g)
        ids = torch.randint(0, vocab, (b, l, k), generator=g)
        w, tail, plogp = torch.rand(b, l, k, generator=g) / k, torch.zeros(b, l), -torch.rand(b, l, generator=g)

        def ce(c):
            x.grad = None
            fused_causal_ce(x, y, chunk=c).backward()

        def kl(c):
            x.grad = None
            DistillationLoss(0.5, 2.0, chunk=c)(x, y, cached=CachedTeacher(ids, w, tail, plogp)).loss.backward()

        res = {"ce": {}, "ce_cached_kl": {}}
        for _ in range(repeats):  # interleaved, so that a slow minute of the machine hits every chunk alike
            for c in chunks:
                for name, fn in (("ce", ce), ("ce_cached_kl", kl)):
                    ms = mean_ms(lambda: fn(c), 5)
                    res[name][c] = min(res[name].get(c, ms), ms)
        out[str(vocab)] = {n: {str(c): round(v, 2) for c, v in r.items()} for n, r in res.items()}
    return out


def step_case(repeats: int) -> dict:
    from babyllama import losses
    from babyllama.config import ModelConfig
    from babyllama.models import PRESETS, build_model
    from babyllama.hardware import resolve_attention, set_attention

    model = set_attention(build_model(ModelConfig(preset="llama-cpu-4m"), seed=0), resolve_attention("auto", "bf16"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    vocab = PRESETS["llama-cpu-4m"]["vocab_size"]
    ids = torch.randint(0, vocab, (8, 128), generator=torch.Generator().manual_seed(0))
    picked = losses.row_chunk(torch.empty(1, vocab))

    def step(chunk):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = losses.fused_causal_ce(model(input_ids=ids).logits, ids, chunk=chunk)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    res: dict[int, float] = {}
    for _ in range(repeats):
        for c in (256, picked):
            ms = mean_ms(lambda: step(c), 10)
            res[c] = min(res.get(c, ms), ms)
    return {"model": "llama-cpu-4m", "batch": "8x128", "picked_chunk": picked,
            "step_ms": {str(c): round(v, 1) for c, v in res.items()}, "speedup": round(res[256] / res[picked], 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", nargs="+", type=int, default=[16, 32, 64, 128, 256])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    info = machine_info()
    line = {"benchmark": "loss_chunk", **info, "matmul_peak_gflops": peaks_for(["bf16"], info["native_bf16"]),
            "rows": 1024, "loss_ms": loss_cases(a.chunks, a.repeats), "step": step_case(a.repeats)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
