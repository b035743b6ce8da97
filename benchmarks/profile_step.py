"""Where the time of one training step goes (torch.profiler), for a model shape at batch 32 x 128.

Runs forward + backward + fused AdamW step under the same autocast the Trainer uses, and sums the self CPU time
of the profiled operators into categories: matmuls, attention, softmax/loss over the vocabulary, optimizer,
other elementwise/norm ops; data loading (ChunkDataset + default collator) is timed separately. Prints one JSON
line with milliseconds per category and their shares. With ``--compile`` the decoder layers are compiled as
``training.compile`` does (:mod:`babyllama.regional`, eager attention under gradients); inductor's generated kernels
then count as ``fused``. Beside the categories: the matmuls' achieved rate (the step's matmul FLOPs over the
matmuls' time) against the measured matmul peak of the precision, which bounds the MFU the step could reach if
everything else took no time.

    python benchmarks/profile_step.py --preset babyllama-58m --precision bf16
    python benchmarks/profile_step.py --preset babyllama-58m --precision bf16 --compile
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from collections import defaultdict

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import default_data_collator

sys.path.insert(0, str(Path(__file__).resolve().parent))

from babyllama.config import ModelConfig
from babyllama.data.dataset import ChunkDataset
from babyllama.losses import fused_causal_ce
from babyllama.models import PRESETS, build_model, count_params
from babyllama.hardware import resolve_attention, set_attention
from babyllama.regional import compile_layers

CATEGORIES = [
    ("fused", ("cpp_fused", "compiledfxgraph", "torch-compiled region", "compiledfunction")),
    ("optimizer", ("adam", "_foreach", "fused_adam")),
    ("attention", ("scaled_dot_product", "attention", "flash", "_efficient_attention")),
    ("softmax_loss", ("log_softmax", "nll_loss", "cross_entropy", "softmax", "logsumexp", "scatter_add", "_fusedce")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn", "onednn")),
]


EXACT = {"aten::exp": "softmax_loss", "aten::exp_": "softmax_loss"}  # a substring would catch aten::expand


def category(name: str) -> str:
    n = name.lower()
    if n in EXACT:
        return EXACT[n]
    for cat, keys in CATEGORIES:
        if any(k in n for k in keys):
            return cat
    return "other"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="babyllama-58m")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--attention", default="auto", choices=["auto", "sdpa", "eager"],
                    help="training.attention (auto: eager under grad on CPU bf16, as `babyllama train`)")
    ap.add_argument("--loss", default="fused", choices=["fused", "hf"],
                    help="our chunked CE (as in training) or the model's own loss")
    ap.add_argument("--compile", action="store_true", help="the decoder layers compiled, as training.compile")
    a = ap.parse_args(argv)
    from train_step import machine_info, matmul_peak
    vocab = PRESETS[a.preset]["vocab_size"]
    model = set_attention(build_model(ModelConfig(preset=a.preset), seed=0),
                          resolve_attention(a.attention, a.precision, a.compile))
    model.config.use_cache = False  # as the Trainer sets it (TrainingArguments.use_cache): no KV cache per step
    if a.compile:
        compile_layers(model.base_model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    toks = np.random.default_rng(0).integers(0, vocab, size=(a.steps + 3) * a.batch * a.seq + a.seq, dtype=np.uint16)
    ds = ChunkDataset(toks, a.seq, random_offset=True)
    t0 = time.perf_counter()
    batches = [default_data_collator([ds[i * a.batch + j] for j in range(a.batch)]) for i in range(a.steps + 2)]
    data_ms = (time.perf_counter() - t0) / len(batches) * 1e3
    bf16 = a.precision == "bf16"

    def step(b):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if a.loss == "fused":  # what `babyllama train` does (Trainer compute_loss_func)
                loss = fused_causal_ce(model(input_ids=b["input_ids"]).logits, b["labels"])
            else:  # transformers' own loss: upcast logits, F.cross_entropy
                loss = model(input_ids=b["input_ids"], labels=b["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # the unprofiled steps, where a compile happens, run under a profiler too: compiled code guards on the
    # profiler's state, so a first profiled step would otherwise compile the layers again inside the timing
    with profile(activities=[ProfilerActivity.CPU]):
        for b in batches[:2]:
            step(b)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for b in batches[2:]:
            step(b)
        wall = (time.perf_counter() - t0) / a.steps * 1e3
    cats: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        cats[category(ev.key)] += ev.self_cpu_time_total / 1e3 / a.steps
    total = sum(cats.values())
    # the step's matmul FLOPs, the strict count of train_step.py: 6 x the parameters that multiply (an untied input
    # embedding is a lookup) + 12 x layers x hidden x seq for the attention scores, per token
    c = model.config
    lookup = 0 if getattr(c, "tie_word_embeddings", False) else model.get_input_embeddings().weight.numel()
    flops = (6 * (count_params(model) - lookup) + 12 * c.num_hidden_layers * c.hidden_size * a.seq) * a.batch * a.seq
    issue = 6 * count_params(model) * a.batch * a.seq  # the 6 x parameters count train_step.py's mfu uses
    peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32) * 1e9
    mm_s = cats["matmul"] / 1e3
    print(json.dumps({
        **machine_info(), "matmul_peak_gflops": round(peak / 1e9, 1),
        "preset": a.preset, "loss": a.loss, "params": count_params(model), "precision": a.precision,
        "compiled": a.compile, "batch": f"{a.batch}x{a.seq}",
        "mfu": round(issue / (wall / 1e3) / peak, 3), "mfu_strict": round(flops / (wall / 1e3) / peak, 3),
        "matmul_gflops_achieved": round(flops / mm_s / 1e9, 1),
        "mfu_if_only_matmuls": round(issue / mm_s / peak, 3),
        "mfu_strict_if_only_matmuls": round(flops / mm_s / peak, 3),
        "step_ms_wall": round(wall, 1), "data_loading_ms_per_batch": round(data_ms, 2),
        "ms": {k: round(v, 1) for k, v in sorted(cats.items(), key=lambda x: -x[1])},
        "share": {k: round(v / total, 3) for k, v in sorted(cats.items(), key=lambda x: -x[1])},
        "top_ops": [(e.key, round(e.self_cpu_time_total / 1e3 / a.steps, 1)) for e in
                    sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]],
    }))


if __name__ == "__main__":
    main()
