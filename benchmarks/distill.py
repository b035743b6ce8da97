"""Distillation cost: plain student training vs live 2-teacher distillation vs cached teacher outputs.

Cached distillation is measured with three choices: ``sliding`` (every cached position had at least seq_len/2
tokens of teacher context, two teacher passes over the data), ``aligned`` (one pass, fixed windows; the student
then trains on the same fixed chunks) and ``aligned`` with ``cache.random_offset`` (the same one-pass cache, the
student keeps the papers' random-offset chunks; ``*_aligned_random``). With ``--steps`` covering several epochs,
the eval CEs show what fixed chunks cost against new offsets every epoch.

One process per mode (so peak RSS is each mode's own), same seed, same steps, batch 32 x 128, on a slice of the
shared corpus: student `llama-cpu-4m` (4.1M parameters), teachers `llama-cpu-12m` (12.5M) and `gpt2-cpu-10m`
(10.0M), trained first by this script (or reused from --work). Prints one JSON line:

    student_only_tokens_per_s, live_tokens_per_s, cached_tokens_per_s, cache_build_s, peak_rss_mb_{student,live,
    cached}, eval_ce_{student,live,cached}, cached_over_student_speed, six_epoch_live_s, six_epoch_cached_s,
    six_epoch_speedup, eval_ce_cached_over_live, and the same cached figures for the two one-pass choices

    python benchmarks/distill.py --work /tmp/bench-distill        # ~25 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def base_config(work: Path, preset: str, out: Path, steps: int, lr: float, train_tokens: int, seed: int = 1):
    """Batch 32 x 128; an evaluation every epoch (as the paper recipes), or once at the end of a shorter run."""
    from babyllama.config import Config

    return Config.model_validate({
        "data": {"corpus": str(work / "corpus"), "tokenizer": str(work / "tokenizer"), "seq_len": 128,
                 "max_train_tokens": train_tokens, "max_eval_tokens": 65536},
        "model": {"preset": preset},
        "training": {"output_dir": str(out), "seed": seed, "batch_size": 32, "max_steps": steps,
                     "warmup_steps": max(1, steps // 10), "learning_rate": lr, "weight_decay": 0.1,
                     "eval_strategy": "steps",
                     "eval_steps": max(1, min(steps, train_tokens // (32 * 128))), "eval_on_start": False,
                     "report_to": ["none"], "progress": False, "logging_steps": 25},
    })


def setup(work: Path, corpus: Path, train_tokens: int, teacher_steps: int) -> list[Path]:
    from babyllama.data.corpus import prepare
    from babyllama.runinfo import is_complete
    from babyllama.data.bpe import train_tokenizer
    from babyllama.training.pretrain import train

    if not (work / "corpus" / "stats.json").is_file():
        prepare(corpus, work / "corpus")
    if not (work / "tokenizer" / "tokenizer.json").is_file():
        train_tokenizer(work / "corpus", work / "tokenizer", vocab_size=8000)
    teachers = []
    for preset in ("llama-cpu-12m", "gpt2-cpu-10m"):
        out = work / f"teacher-{preset}"
        if not is_complete(out):
            train(base_config(work, preset, out, teacher_steps, 2e-3, train_tokens, seed=7))
        teachers.append(out)
    return teachers


def run_mode(mode: str, work: Path, steps: int, train_tokens: int, k: int, teachers: list[str]) -> dict:
    """Runs in its own process: one training mode, then its numbers (and this process's peak RSS)."""
    from babyllama.config import CacheConfig
    from babyllama.distillation.trainer import distill
    from babyllama.training.pretrain import train

    out = work / f"run-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = base_config(work, "llama-cpu-4m", out, steps, 3e-3, train_tokens)
    t0 = time.time()
    if mode == "student":
        m = train(cfg)
    else:
        cfg.distill.teachers = teachers
        cfg.distill.temperature = 2.0
        cfg.distill.alpha = 0.5
        if mode.startswith("cached"):
            # built fresh (the build is timed); the aligned cache is kept for the next mode, which reuses it
            cfg.distill.cache = CacheConfig(
                enabled=True, window="sliding" if mode == "cached" else "aligned",
                random_offset=mode != "cached-aligned", top_k=k,
                dir=str(work / ("cache-sliding" if mode == "cached" else "cache-aligned")))
            if mode != "cached-aligned-random":
                shutil.rmtree(cfg.distill.cache.dir, ignore_errors=True)
        m = distill(cfg)
        if cfg.distill.cache.enabled and mode != "cached-aligned":
            shutil.rmtree(cfg.distill.cache.dir, ignore_errors=True)  # built to be timed, not kept
    return {"mode": mode, "tokens_per_s": m["train_tokens_per_s"], "eval_ce": m["eval_loss"],
            "cache_build_s": m.get("teacher_cache_s"), "wall_s": time.time() - t0,
            "eval_ce_history": [round(e["eval_loss"], 4) for e in m["eval_history"]],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "corpus"))
    ap.add_argument("--work", default="/tmp/babyllama-bench-distill", help="reused between runs")
    ap.add_argument("--train-tokens", type=int, default=600_000, help="training tokens (one epoch)")
    ap.add_argument("--teacher-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=150, help="student steps per mode")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if a.mode:
        teachers = [str(work / "teacher-llama-cpu-12m"), str(work / "teacher-gpt2-cpu-10m")]
        print("RESULT " + json.dumps(run_mode(a.mode, work, a.steps, a.train_tokens, a.k, teachers)), flush=True)
        return
    setup(work, Path(a.corpus), a.train_tokens, a.teacher_steps)
    res = {}
    for mode in ("student", "live", "cached", "cached-aligned", "cached-aligned-random"):
        p = subprocess.run([sys.executable, __file__, "--mode", mode, "--work", str(work), "--steps", str(a.steps),
                            "--train-tokens", str(a.train_tokens), "--k", str(a.k)], capture_output=True, text=True)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode or not line:
            sys.exit(f"mode {mode} failed:\n{p.stderr[-3000:]}")
        res[mode] = json.loads(line[7:])
    s, lv, c, ca, cr = (res[m] for m in ("student", "live", "cached", "cached-aligned", "cached-aligned-random"))
    epoch = a.train_tokens
    six_live = 6 * epoch / lv["tokens_per_s"]
    six_cached = c["cache_build_s"] + 6 * epoch / c["tokens_per_s"]
    six_aligned = ca["cache_build_s"] + 6 * epoch / ca["tokens_per_s"]
    six_random = ca["cache_build_s"] + 6 * epoch / cr["tokens_per_s"]  # the same cache: built once, by `aligned`
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_step import machine_info

    from babyllama.hardware import resolve_precision

    print(json.dumps({
        **machine_info(), "precision": resolve_precision("auto"), "batch": "32x128", "steps": a.steps,
        "epoch_tokens": epoch, "k": a.k,
        "student_only_tokens_per_s": round(s["tokens_per_s"], 1), "live_tokens_per_s": round(lv["tokens_per_s"], 1),
        "cached_tokens_per_s": round(c["tokens_per_s"], 1), "cache_build_s": round(c["cache_build_s"], 1),
        "peak_rss_mb_student": round(s["peak_rss_mb"]), "peak_rss_mb_live": round(lv["peak_rss_mb"]),
        "peak_rss_mb_cached": round(c["peak_rss_mb"]),
        "eval_ce_student": round(s["eval_ce"], 4), "eval_ce_live": round(lv["eval_ce"], 4),
        "eval_ce_cached": round(c["eval_ce"], 4),
        "cached_over_student_speed": round(c["tokens_per_s"] / s["tokens_per_s"], 3),
        "six_epoch_live_s": round(six_live), "six_epoch_cached_s": round(six_cached),
        "six_epoch_speedup": round(six_live / six_cached, 3),
        "eval_ce_cached_over_live": round(c["eval_ce"] / lv["eval_ce"], 4),
        "cached_tokens_per_s_aligned": round(ca["tokens_per_s"], 1),
        "cache_build_s_aligned": round(ca["cache_build_s"], 1), "peak_rss_mb_cached_aligned": round(ca["peak_rss_mb"]),
        "eval_ce_cached_aligned": round(ca["eval_ce"], 4),
        "six_epoch_cached_s_aligned": round(six_aligned), "six_epoch_speedup_aligned": round(six_live / six_aligned, 3),
        "eval_ce_cached_aligned_over_live": round(ca["eval_ce"] / lv["eval_ce"], 4),
        "cached_tokens_per_s_aligned_random": round(cr["tokens_per_s"], 1),
        "peak_rss_mb_cached_aligned_random": round(cr["peak_rss_mb"]),
        "eval_ce_cached_aligned_random": round(cr["eval_ce"], 4),
        "six_epoch_cached_s_aligned_random": round(six_random),
        "six_epoch_speedup_aligned_random": round(six_live / six_random, 3),
        "eval_ce_cached_aligned_random_over_live": round(cr["eval_ce"] / lv["eval_ce"], 4),
        "eval_ce_history": {m: r["eval_ce_history"] for m, r in res.items()},
    }))


if __name__ == "__main__":
    main()
