"""Training throughput through the same path `babyllama train` uses (Trainer, our TrainingArguments, datasets).

Prints one JSON line per configuration: the machine's matmul peak (fp32, bf16) first, then for each model shape,
precision (fp32, bf16 autocast) and torch.compile setting: training tokens/s and model-FLOPs utilisation
``mfu = 6 * params * tokens_per_s / peak`` of the dtype used, and ``mfu_strict`` with the FLOPs actually done
(embedding lookups excluded, attention scores included). Data are random tokens in a ChunkDataset, so no corpus is
needed and data loading costs what it costs in real runs.

    python benchmarks/train_step.py                       # CPU presets + babyllama-58m, fp32/bf16, compile off
    python benchmarks/train_step.py --shapes llama-12.5m --compile both --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

from babyllama.config import Config
from babyllama.data.dataset import ChunkDataset
from babyllama.losses import trainer_causal_lm_loss
from babyllama.models import build_model, count_params
from babyllama.hardware import configure_attention, resolve_attention, resolve_device, resolve_precision
from babyllama.training.throughput import StepTimer
from babyllama.training.throughput import random_tokens as tokens  # the benchmarks' random data
from babyllama.training.trainer import training_arguments

SHAPES = {
    "babyllama-58m": dict(preset="babyllama-58m"),
    # the 12.5M LLaMA: hidden 256, 8 layers, MLP 1024, vocabulary 8000 (= preset llama-cpu-12m)
    "llama-12.5m": dict(preset="llama-cpu-12m"),
    "gpt2-10m": dict(preset="gpt2-cpu-10m"),
    # the same GPT-2 with transformers' original gelu_new (seven elementwise ops) instead of our fused tanh GELU
    "gpt2-10m-gelu_new": dict(preset="gpt2-cpu-10m", activation="gelu_new"),
    "llama-4m": dict(preset="llama-cpu-4m"),
    "llama-2.4m": dict(preset="llama-cpu-2m"),
    # the papers' teachers and students (benchmarks/gpu.py)
    "llama-360m": dict(preset="llama-360m"),
    "gpt2-705m": dict(preset="gpt2-705m"),
    "smollama-345m": dict(preset="smollama-345m"),
}


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10, device: str = "cpu") -> float:
    """Sustained GFLOP/s of an n x n matmul in ``dtype`` on ``device`` (best of ``reps``)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def sync(device: str) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously; a CPU needs nothing)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def machine_info() -> dict:
    """The CPU these numbers come from: benchmarks on machines with and without native bf16 differ in kind."""
    from babyllama.hardware import cpu_has_native_bf16

    try:
        cpu = next(x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return {"cpu": cpu, "cpus": os.cpu_count(), "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def peaks_for(precisions, native_bf16: bool, device: str = "cpu") -> dict[str, float]:
    """matmul_peak for each precision on ``device``. On a CPU, 2048 x 2048 products, and bf16 without native
    support is emulated (far slower): a smaller one. A GPU needs 8192 x 8192 to reach its peak."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if torch.device(device).type == "cuda":
        return {p: matmul_peak(dtypes[p], 8192, 10, device) for p in precisions}
    return {p: matmul_peak(torch.float32) if p == "fp32" else
            matmul_peak(torch.bfloat16, *((2048, 10) if native_bf16 else (512, 3))) for p in precisions}


def measure(shape: str, precision: str, compile_: bool | str, steps: int, batch: int, seq: int, warmup: int,
            attention: str = "auto", distill: dict | None = None) -> dict:
    """Training tokens/s of ``shape`` through the Trainer `babyllama train` builds. ``distill`` measures the
    distilled student instead, through `babyllama distill`'s trainer: ``{"cache": TeacherCache}`` (cached
    teacher entries of ``tokens(...)``) or ``{"teachers": [model, ...]}`` (live teachers). ``compile_``:
    False, True (``training.compile``: each decoder layer, the live teachers' too, eager attention under
    gradients on a CPU) or "whole" (the Trainer's ``torch_compile``: the whole model)."""
    from transformers import default_data_collator

    from babyllama.regional import compile_layers
    from babyllama.training.trainer import GuardedTrainer

    whole = compile_ == "whole"
    layers = compile_ is True
    spec = SHAPES[shape]
    cfg = Config.model_validate({
        "model": spec,
        "data": {"seq_len": seq},
        "training": {"batch_size": batch, "max_steps": steps + warmup, "warmup_steps": 0, "precision": precision,
                     "compile": layers, "attention": attention, "eval_strategy": "no", "report_to": ["none"],
                     "progress": False, "logging_steps": 10_000},
    })
    with torch.device(resolve_device("auto")):  # initialised where it trains (a 705M init on a CPU takes long)
        model = configure_attention(build_model(cfg.model, seed=0), cfg, layers)  # as `babyllama train`
    if layers:
        compile_layers(model.base_model)
    tok = tokens(model.config.vocab_size, (steps + warmup + 2) * batch * seq + seq)
    if distill and "cache" in distill:
        from babyllama.distillation.sources import CachedChunkDataset

        tok = tok[: len(distill["cache"].ids)]
        ds = CachedChunkDataset(tok, seq, distill["cache"], seed=0, random_offset=False)
    else:
        ds = ChunkDataset(tok, seq, random_offset=True, seed=0)
    params = count_params(model)
    # FLOPs per token the strict way (PaLM appendix B / nanoGPT estimate_mfu): 6 x the parameters that do matmuls
    # (an untied input embedding is a lookup, not a matmul) + 12 x layers x hidden x seq for attention scores.
    c = model.config
    lookup = 0 if getattr(c, "tie_word_embeddings", False) else model.get_input_embeddings().weight.numel()
    if hasattr(model, "transformer") and hasattr(model.transformer, "wpe"):  # GPT-2 position table: a lookup too
        lookup += model.transformer.wpe.weight.numel()
    flops_per_token = 6 * (params - lookup) + 12 * c.num_hidden_layers * c.hidden_size * seq
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(cfg, out, save_strategy="no", load_best_model_at_end=False, torch_compile=whole)
        timer = StepTimer()
        t_start = time.perf_counter()
        if distill:
            from babyllama.config import DistillConfig
            from babyllama.distillation.loss import DistillationLoss
            from babyllama.distillation.trainer import DistillationTrainer

            trainer = DistillationTrainer(model=model, args=args, train_dataset=ds,
                                          data_collator=default_data_collator, callbacks=[timer],
                                          teachers=distill.get("teachers", []), layers_compiled=layers,
                                          loss_fn=DistillationLoss.from_config(DistillConfig(kl_reduction="paper")))
        else:
            trainer = GuardedTrainer(model=model, args=args, train_dataset=ds, data_collator=default_data_collator,
                                     callbacks=[timer], compute_loss_func=trainer_causal_lm_loss,
                                     layers_compiled=layers)  # as `babyllama train`
        trainer.train()
    t_first = timer.times[0] - t_start  # the first step: where a compile is paid
    t = timer.times[warmup - 1 :]
    sec = (t[-1] - t[0]) / (len(t) - 1)
    tps = batch * seq / sec
    att = resolve_attention(attention, resolve_precision(precision), layers)
    return {"shape": shape, "params": params, "precision": precision,
            "compile": "whole" if whole else layers, "attention": att, "first_step_s": round(t_first, 2),
            "batch": batch,
            "seq_len": seq, "steps_timed": len(t) - 1, "s_per_step": round(sec, 4), "tokens_per_s": round(tps, 1),
            "flops_per_token_strict": flops_per_token}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["llama-4m", "gpt2-10m", "llama-12.5m", "babyllama-58m"])
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                    help="default: fp32, and bf16 where the CPU runs it natively (AVX512-BF16/AMX)")
    ap.add_argument("--compile", choices=["off", "on", "both", "whole", "all"], default="off",
                    help="on: training.compile (each decoder layer); whole: the Trainer's torch_compile of the whole "
                         "model; both: off and on; all: off, on and whole")
    ap.add_argument("--attention", nargs="+", choices=["auto", "sdpa", "eager"], default=["auto"],
                    help="training.attention settings to measure (auto: eager under grad on CPU bf16, else sdpa)")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=4, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    a = ap.parse_args(argv)
    info = machine_info()
    a.precisions = a.precisions or (["fp32", "bf16"] if info["native_bf16"] else ["fp32"])
    peaks = peaks_for(a.precisions, info["native_bf16"])
    print(json.dumps({**info, "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()}}), flush=True)
    compiles = {"off": [False], "on": [True], "both": [False, True], "whole": ["whole"],
                "all": [False, True, "whole"]}[a.compile]
    results = {}
    for shape in a.shapes:
        for prec in a.precisions:
            done = set()
            for c, att in [(c, att) for c in compiles for att in a.attention]:
                key = (c, resolve_attention(att, resolve_precision(prec), c is True))
                if key in done:
                    continue  # e.g. fp32 'auto' resolves to sdpa: measured once
                done.add(key)
                r = measure(shape, prec, c, a.steps, a.batch, a.seq, a.warmup, att)
                r["mfu"] = round(6 * r["params"] * r["tokens_per_s"] / (peaks[prec] * 1e9), 3)  # the issue's
                r["mfu_strict"] = round(r.pop("flops_per_token_strict") * r["tokens_per_s"] / (peaks[prec] * 1e9), 3)
                results.setdefault((shape, prec, c), r)
                print(json.dumps(r), flush=True)
        base = results.get((shape, "fp32", False))
        fast = results.get((shape, "bf16", False))
        if base and fast:
            print(json.dumps({"shape": shape, "bf16_over_fp32": round(fast["tokens_per_s"] / base["tokens_per_s"],
                                                                        2)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
