"""The paper-scale path on one GPU, measured: one JSON line per measurement (benchmarks/gpu.sh runs it).

    machine          the GPU, torch and CUDA versions, the measured bf16 matmul peak (TFLOP/s)
    train            training tokens/s and MFU (6 x params x tokens/s over the measured peak; mfu_strict counts
                     the FLOPs done) of each shape through `babyllama train`'s Trainer, bf16 autocast
    student          the babyllama-58m student through `babyllama distill`'s trainer, from a teacher cache and with
                     the two paper-1 teachers live, against its plain training (target: cached >= 0.9 x plain)
    teacher_cache    building the top-K cache of the two paper-1 teachers over N tokens against the teachers'
                     bare forward passes over the same tokens (target: <= 1.2 x)
    blimp            full BLiMP for babyllama-58m in the prefix-tree layout, its decisions against the padded
                     layout's (needs --eval-root with blimp/ and --tokenizer, a 16,000-token BPE)
    projection       each paper recipe's wall time from these throughputs and its token counts (target for
                     recipes/babyllama-58m.yaml: <= 1 hour)

Random weights and random tokens: speed does not depend on what a model knows. On a CPU (``--device cpu
--quick``) the same code runs with the CPU presets, to check the script, not to measure.

    python benchmarks/gpu.py --eval-root EVAL --tokenizer TOK_DIR --words-per-token 0.6957
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import matmul_peak, measure, sync, tokens  # noqa: E402

PAPER_WORDS = 10_000_000  # both papers' corpus: the BabyLM 10M-word track


def emit(**line) -> dict:
    print(json.dumps(line), flush=True)
    return line


def machine(device: str, n: int) -> dict:
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"
    return emit(measurement="machine", gpu=gpu, torch=torch.__version__, cuda=torch.version.cuda,
                bf16_peak_tflops=round(matmul_peak(torch.bfloat16, n, 20, device) / 1000, 1))


def train_line(shape: str, batch: int, steps: int, warmup: int, peak: float, precision: str, **kw) -> dict:
    r = measure(shape, precision, False, steps, batch, 128, warmup, **kw)
    strict = r.pop("flops_per_token_strict")
    r["mfu"] = round(6 * r["params"] * r["tokens_per_s"] / (peak * 1e12), 3)
    r["mfu_strict"] = round(strict * r["tokens_per_s"] / (peak * 1e12), 3)
    return r


def random_teachers(presets: list[str], device: str, vocab: int | None = None):
    from babyllama.config import ModelConfig
    from babyllama.models import build_model

    with torch.device(device):  # initialised on the device: a 705M init on a CPU takes long
        return [build_model(ModelConfig(preset=p, vocab_size=vocab), seed=i).eval().requires_grad_(False)
                for i, p in enumerate(presets)]


def cache_spec(seq: int, batch: int, precision: str, device: str, top_k: int = 64, sampled: int = 48):
    from babyllama.distillation.cache import CacheSpec
    from babyllama.hardware import device_type

    return CacheSpec(teachers=("bench-a", "bench-b"), tokenizer="bench", data="bench", seq_len=seq,
                     temperature=2.0, top_k=top_k, sampled=sampled, window="aligned", seed=0, batch_size=batch,
                     precision=precision, device=device_type(device))


def student(shape: str, teachers: dict, batch: int, steps: int, warmup: int, peak: float, precision: str,
            device: str, work: Path, plain: dict) -> dict:
    """The student's training tokens/s from a cache (built by small teachers: the student's step does not depend
    on who filled the cache) and with the paper's teachers live, against ``plain`` (its `train_line`)."""
    from babyllama.config import ModelConfig
    from babyllama.distillation.cache import build_cache
    from babyllama.models import hf_config
    from train_step import SHAPES

    vocab = hf_config(ModelConfig(**SHAPES[shape])).vocab_size
    n = (steps + warmup + 2) * batch * 128 + 128
    small = random_teachers(["llama-tiny", "gpt2-tiny"], device, vocab)
    cache = build_cache(small, tokens(vocab, n), work / "student-cache", cache_spec(128, 64, precision, device),
                        progress=False)
    del small
    cached = train_line(shape, batch, steps, warmup, peak, precision, distill={"cache": cache})
    live = train_line(shape, batch, steps, warmup, peak, precision, distill={"teachers": list(teachers.values())})
    ratio = cached["tokens_per_s"] / plain["tokens_per_s"]
    return emit(measurement="student", shape=shape, batch=batch, plain_tokens_per_s=plain["tokens_per_s"],
                cached_tokens_per_s=cached["tokens_per_s"], live_tokens_per_s=live["tokens_per_s"],
                live_teachers=list(teachers), cached_over_plain=round(ratio, 3), target=">= 0.9", met=ratio >= 0.9)


def teacher_cache(teachers: dict, n_tokens: int, batch: int, precision: str, device: str, work: Path) -> dict:
    """Cache building over ``n_tokens`` against the teachers' bare forward passes (bf16 autocast, full logits)."""
    from babyllama.distillation.cache import build_cache
    from babyllama.hardware import autocast

    models = list(teachers.values())
    vocab = models[0].config.vocab_size
    seq = 128
    tok = tokens(vocab, n_tokens // seq * seq)
    x_all = torch.from_numpy(tok.astype(np.int64)).view(-1, seq)
    with torch.inference_mode(), autocast(precision, device):
        for m in models:  # warm-up: kernels chosen, memory pools filled
            m(input_ids=x_all[:batch].to(device)).logits
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(precision, device):
        for b in range(0, len(x_all), batch):
            x = x_all[b : b + batch].to(device)
            for m in models:
                m(input_ids=x).logits
    sync(device)
    forward_s = time.perf_counter() - t0
    shutil.rmtree(work / "teacher-cache", ignore_errors=True)  # a cache left by an earlier run would be reused
    t0 = time.perf_counter()
    with torch.inference_mode():
        build_cache(models, tok, work / "teacher-cache", cache_spec(seq, batch, precision, device), progress=False)
    build_s = time.perf_counter() - t0
    ratio = build_s / forward_s
    return emit(measurement="teacher_cache", teachers=list(teachers), tokens=len(tok), batch=batch, top_k=64,
                forward_s=round(forward_s, 2), build_s=round(build_s, 2),
                tokens_per_s=round(len(tok) / build_s, 1), over_forward=round(ratio, 3), target="<= 1.2",
                met=ratio <= 1.2)


def blimp(preset: str, eval_root: Path | None, tokenizer_dir: Path | None, device: str) -> dict | None:
    from babyllama.config import ModelConfig
    from babyllama.eval.scoring import Scorer
    from babyllama.eval.suites import load_items
    from babyllama.models import build_model
    from babyllama.tokenizer import load_tokenizer

    missing = [w for w, p in (("--eval-root with blimp/", eval_root and (eval_root / "blimp").is_dir()),
                              ("--tokenizer", tokenizer_dir and (tokenizer_dir / "tokenizer.json").is_file()))
               if not p]
    if missing:
        return emit(measurement="blimp", skipped=f"needs {' and '.join(missing)}")
    tok = load_tokenizer(tokenizer_dir)
    model = build_model(ModelConfig(preset=preset), tok, seed=0).to(device).eval()
    items = load_items("blimp", eval_root)
    out = {}
    for layout in ("prefix_tree", "padded"):
        scorer = Scorer(model, tok, tree=layout == "prefix_tree")
        scorer.score_items(items[:200])  # warm-up
        sync(device)
        t0 = time.perf_counter()
        correct, _ = scorer.score_items(items)
        sync(device)
        out[layout] = (time.perf_counter() - t0, correct, scorer.rescored)
    (tree_s, tree_dec, rescored), (padded_s, padded_dec, _) = out["prefix_tree"], out["padded"]
    return emit(measurement="blimp", preset=preset, pairs=len(items), seconds=round(tree_s, 2),
                padded_seconds=round(padded_s, 2), rescored_near_ties=rescored,
                identical_decisions=tree_dec == padded_dec,
                differing_decisions=sum(a != b for a, b in zip(tree_dec, padded_dec)))


def projection(recipe_path: Path, throughput: dict[str, float], student_rates: dict[str, float],
               cache_rate: float | None, blimp_s: float | None, train_tokens: int, eval_items: int) -> dict:
    """The recipe's training stages (as the runner resolves them), each its epochs x ``train_tokens`` over the
    measured rate of its model, plus per-epoch evaluation on ``eval_samples`` chunks as forward passes at 3x that
    rate; the zero-shot evaluation of every model (and the ensemble) scaled from babyllama-58m's BLiMP seconds by
    parameters and items. Fine-tuning is not included."""
    from babyllama.config import load_recipe
    from babyllama.models import preset_params
    from babyllama.runner.plan import baseline_spec, stage_config

    recipe = load_recipe(recipe_path, data_root="/data")
    here = Path("/run")

    def resolved(spec, seed, distill):
        return stage_config(recipe, spec, here, here / "corpus", here / "tokenizer", seed, distill)

    def training_s(cfg, rate: float) -> float:
        return cfg.training.num_epochs * (train_tokens + (cfg.data.eval_samples or 0) * 128 / 3) / rate

    stages, evaluated = {}, []
    for t in recipe.teachers:
        cfg = resolved(t, recipe.seeds[0], False)
        stages[f"teacher:{t.name}"] = training_s(cfg, throughput[cfg.model.preset])
        evaluated.append(cfg.model.preset)
    for seed in recipe.seeds:
        cfg = resolved(baseline_spec(recipe), seed, False)
        stages[f"baseline:s{seed}"] = training_s(cfg, throughput[cfg.model.preset])
        cfg = resolved(recipe.student, seed, True)
        preset, cached = cfg.model.preset, cfg.distill.cache.enabled
        rate = student_rates.get((preset, "cached" if cached else "live"))
        if rate is None:  # a student this script did not distil: its plain rate, the live teachers' forward on top
            t_params = sum(preset_params(t.model.preset) for t in recipe.teachers)
            rate = 1 / (1 / throughput[preset] + 2 * t_params / (6 * preset_params(preset) * throughput[preset]))
        stages[f"student:s{seed}"] = training_s(cfg, rate) + (train_tokens / cache_rate if cached else 0)
        evaluated += [preset, preset]
    if blimp_s:
        if len(recipe.teachers) > 1:
            evaluated += [t.model.preset for t in recipe.teachers]  # the ensemble runs every teacher
        per_58m = blimp_s * eval_items / 67_000
        stages[f"zero-shot eval ({len(evaluated)} model passes)"] = sum(
            per_58m * preset_params(p) / preset_params("babyllama-58m") for p in evaluated)
    total = sum(stages.values())
    return emit(measurement="projection", recipe=f"recipes/{recipe_path.name}", train_tokens=train_tokens,
                stages_s={k: round(v) for k, v in stages.items()}, total_s=round(total),
                total_h=round(total / 3600, 2), teacher_cache=recipe.distill.cache.enabled, excluded="fine-tuning",
                **({"target": "<= 1 h", "met": total <= 3600} if recipe_path.name == "babyllama-58m.yaml" else {}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="CPU check: CPU presets, few steps, no projection")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per training measurement")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--cache-tokens", type=int, default=1_048_576, help="tokens of the teacher-cache measurement")
    ap.add_argument("--eval-root", type=Path, help="folder with blimp/ (the shared data's eval/)")
    ap.add_argument("--tokenizer", type=Path, help="a 16,000-token BPE for the BLiMP measurement")
    ap.add_argument("--words-per-token", type=float, default=0.6957,
                    help="of the 16,000-token BPE on the BabyLM corpus: the projection's 10M words in tokens")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "babyllama-bench-gpu")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    precision = "bf16" if a.device.startswith("cuda") and torch.cuda.is_bf16_supported() else \
        ("fp16" if a.device.startswith("cuda") else "fp32")
    peak = machine(a.device, 1024 if a.quick else 8192)["bf16_peak_tflops"]
    if a.quick:
        shapes = {"llama-4m": 8, "llama-2.4m": 8}
        teachers, student_shape = ["llama-cpu-4m", "llama-cpu-2m"], "llama-2.4m"
        a.steps, a.warmup, a.cache_tokens = 3, 2, 16_384
    else:
        shapes = {"babyllama-58m": 32, "llama-360m": 128, "gpt2-705m": 128, "smollama-345m": 128}
        teachers, student_shape = ["llama-360m", "gpt2-705m"], "babyllama-58m"
    from train_step import SHAPES

    rates, plain = {}, {}
    for shape, batch in shapes.items():
        r = train_line(shape, batch, a.steps, a.warmup, peak, precision)
        emit(measurement="train", **r, **({"target_mfu": ">= 0.45", "met": r["mfu"] >= 0.45}
                                          if shape in ("llama-360m", "gpt2-705m") else {}))
        plain[shape] = r
        rates[SHAPES[shape]["preset"]] = r["tokens_per_s"]
    models = dict(zip(teachers, random_teachers(teachers, a.device)))
    st = student(student_shape, models, shapes[student_shape], a.steps, a.warmup, peak, precision, a.device,
                 a.work, plain[student_shape])
    tc = teacher_cache(models, a.cache_tokens, 128 if not a.quick else 8, precision, a.device, a.work)
    del models
    bl = blimp("babyllama-58m" if not a.quick else "llama-cpu-2m", a.eval_root, a.tokenizer, a.device) or {}
    if a.quick:
        return
    train_tokens = round(PAPER_WORDS / a.words_per_token)
    items = 67_000  # filtered BLiMP, the supplement and EWoK hold about as many pairs as full BLiMP together
    for recipe in ("babyllama-58m.yaml", "babyllama2-345m.yaml"):
        projection(REPO / "recipes" / recipe, rates, {(student_shape, "cached"): st["cached_tokens_per_s"],
                                                      (student_shape, "live"): st["live_tokens_per_s"]},
                   tc["tokens_per_s"], bl.get("seconds"), train_tokens, items)


if __name__ == "__main__":
    sys.exit(main())
