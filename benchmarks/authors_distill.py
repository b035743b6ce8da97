"""The authors' distillation script and ours, side by side: same machine, data, teachers, student shape and steps.

Runs timinar/BabyLlama's ``distill-ensemble-pretraining-baby-llama.py`` as published, in its own virtual
environment with a transformers release it runs on unchanged (4.45.2: the last whose Trainer still accepts
``evaluation_strategy`` and calls ``compute_loss(model, inputs, return_outputs)``), and ``babyllama``'s
``distill`` with its default settings, one after the other, each in a fresh process, nothing else running.

What both get:

* the same teachers: LLaMA-12.5M (``llama-cpu-12m``) and GPT2-10M (``gpt2-cpu-10m``), trained first by this
  script's setup (the one of ``benchmarks/distill.py``) or reused from ``--work``;
* the same training tokens: the stream our data pipeline takes from the prepared corpus (``--train-tokens``) is
  written where the authors' ``BabylmDataset`` looks for its tokenized cache (``data/babylm_10M_clean/
  tokenized_GPT2TokenizerFast_<vocab>.pt``), so both cut chunks of 128 at random offsets from one array; the
  held-out tokens likewise (``data/babylm_dev_clean``), their ``EVAL_SAMPLES`` set to all of its chunks;
* the same student shape (``llama-cpu-4m``: the authors' ``LlamaConfig`` call with our preset's four sizes), the
  same hyperparameters (the script's: batch 32 x 128, lr 2.5e-4, cosine, weight decay 0.1, T = 2, alpha = 0.5)
  and the same steps (``--steps``, warm-up a tenth of them: the script's 200 warm-up steps would outlast a
  benchmark).

The published script's lines changed, each a literal substitution asserted to exist (``PATCHES``): wandb off (no
network), ``fp16=True`` off (the Trainer refuses fp16 without a GPU, so on a CPU the script trains in fp32; with
``--authors-bf16`` it gets ``bf16=True`` instead, the strongest setting its Trainer offers here), six epochs ->
``max_steps``, the warm-up, ``EVAL_SAMPLES``, the per-epoch evaluation and checkpoint off (neither side evaluates
inside the timed loop), and the student's four sizes.

Ours runs with every default: precision ``auto`` (bf16 where it pays), live teachers (the cache is off by
default), the per-token KL, ``training.compile: auto`` (which leaves a run this short eager). With ``--cached`` a
further run adds the offline teacher cache the CPU recipe uses; with ``--compiled`` one with ``training.compile:
true`` (the student's and the teachers' layers compiled), its steady rate beside its whole one.

Reported: each side's training rate (tokens / the Trainer's ``train_runtime``, teachers' forward passes included),
its whole process's wall time, and the student's CE on the same held-out chunks (both final students loaded in
this environment and scored by one function, fp32). Prints one JSON line; ``--out`` writes it too.

    git clone https://github.com/timinar/BabyLlama /tmp/BabyLlama          # 3035185 was used
    python -m venv /tmp/authorsvenv && /tmp/authorsvenv/bin/pip install torch==2.13.0
    /tmp/authorsvenv/bin/pip install transformers==4.45.2 accelerate==0.34.2
    python benchmarks/authors_distill.py --authors /tmp/BabyLlama --python /tmp/authorsvenv/bin/python \\
        --work /tmp/babyllama-bench-distill --out authors_distill.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
SCRIPT = "distill-ensemble-pretraining-baby-llama.py"
STUDENT = "llama-cpu-4m"
TEACHERS = ("llama-cpu-12m", "gpt2-cpu-10m")
LR, BATCH, SEQ = 2.5e-4, 32, 128  # the script's (weight decay 0.1: distill.base_config's too)


def patches(steps: int, eval_samples: int, shape: dict, bf16: bool) -> list[tuple[str, str]]:
    return [
        ("import wandb\n", "\n"),  # not installed: nothing reaches the network here
        ("wandb_log = True", "wandb_log = False"),
        ('report_to="wandb"', 'report_to="none"'),
        ("fp16=True", "bf16=True" if bf16 else "fp16=False"),
        ("num_train_epochs=6", f"max_steps={steps}"),
        ("warmup_steps=200", f"warmup_steps={max(1, steps // 10)}"),
        ("EVAL_SAMPLES = 8192", f"EVAL_SAMPLES = {eval_samples}"),
        # no evaluation inside the timed loop (it would run the teachers too): both students are scored after
        ('save_strategy = "epoch"', 'save_strategy = "no"'),
        ('evaluation_strategy = "epoch"', 'evaluation_strategy = "no"'),
        ("load_best_model_at_end=True", "load_best_model_at_end=False"),
        ("hidden_size=512", f"hidden_size={shape['hidden_size']}"),
        ("num_hidden_layers=16", f"num_hidden_layers={shape['num_layers']}"),
        ("intermediate_size=1024", f"intermediate_size={shape['intermediate_size']}"),
        ("num_attention_heads=8", f"num_attention_heads={shape['num_heads']}"),
    ]


def token_streams(work: Path, train_tokens: int, eval_tokens: int):
    """The training and held-out token arrays exactly as our ``distill`` will read them."""
    from babyllama.data.dataset import load_split
    from babyllama.tokenizer import load_tokenizer

    tok = load_tokenizer(work / "tokenizer")
    train = load_split(work / "corpus", "train", tok, max_tokens=train_tokens).flat()
    dev = load_split(work / "corpus", "dev", tok, max_tokens=eval_tokens).flat()
    return tok, train, dev


def authors_tree(work: Path, authors: Path, teachers: list[Path], steps: int, train, dev, bf16: bool) -> Path:
    """The layout the script expects under its working directory, and the patched script."""
    import torch
    from transformers import GPT2TokenizerFast

    from babyllama.models import PRESETS

    root = work / ("authors-bf16" if bf16 else "authors")
    shutil.rmtree(root, ignore_errors=True)
    (root / "models").mkdir(parents=True)
    shutil.copy(work / "tokenizer" / "tokenizer.json", root / "models" / "gpt-clean-16000.json")
    (root / "models" / "Llama-360M").symlink_to(teachers[0].resolve())
    (root / "models" / "gpt-705M").symlink_to(teachers[1].resolve())
    vocab = GPT2TokenizerFast(tokenizer_file=str(root / "models" / "gpt-clean-16000.json")).vocab_size
    for name, arr in (("babylm_10M_clean", train), ("babylm_dev_clean", dev)):
        (root / "data" / name).mkdir(parents=True)
        torch.save(torch.tensor(arr.astype("int64")), root / "data" / name / f"tokenized_GPT2TokenizerFast_{vocab}.pt")
    text = (authors / SCRIPT).read_text()
    for old, new in patches(steps, len(dev) // SEQ, PRESETS[STUDENT], bf16):
        if old not in text:
            sys.exit(f"{authors / SCRIPT}: no {old!r} to change; use the published script (timinar/BabyLlama 3035185)")
        text = text.replace(old, new, 1)
    (root / SCRIPT).write_text(text)
    shutil.copy(authors / "babylm_dataset.py", root / "babylm_dataset.py")
    return root


def run_authors(python: str, root: Path, steps: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    p = subprocess.run([python, SCRIPT], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        sys.exit(f"the authors' script failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = re.search(r"'train_runtime': ([0-9.]+)", p.stdout + p.stderr)
    if not m:
        sys.exit(f"no train_runtime in the authors' output:\n{p.stdout[-2000:]}")
    runtime = float(m.group(1))
    return {"train_runtime_s": runtime, "tokens_per_s": steps * BATCH * SEQ / runtime, "process_wall_s": wall,
            "student": str(root / "models" / "Baby-Llama-58M")}


def run_ours(work: Path, teachers: list[Path], steps: int, train_tokens: int, eval_tokens: int, cached: bool,
             compiled: bool = False) -> dict:
    """``babyllama distill`` in its own process, every setting not named here at its default (``compiled``:
    ``training.compile: true``, where auto leaves a run this short eager)."""
    from distill import base_config

    out = work / ("ours-cached" if cached else "ours-compiled" if compiled else "ours")
    shutil.rmtree(out, ignore_errors=True)
    cfg = base_config(work, STUDENT, out, steps, LR, train_tokens, seed=42)  # 42: the training default
    cfg.data.max_eval_tokens = eval_tokens
    cfg.training.eval_strategy = "no"
    cfg.distill.teachers = [str(t) for t in teachers]
    if compiled:
        cfg.training.compile = True
    if cached:
        cfg.distill.cache.enabled, cfg.distill.cache.dir = True, str(work / "ours-cache")
        shutil.rmtree(work / "ours-cache", ignore_errors=True)  # built inside the timed run
    (work / "ours.json").write_text(json.dumps(cfg.model_dump(mode="json")))
    code = ("import json,sys; from babyllama.config import Config; from babyllama.distillation.trainer import distill;"
            "m = distill(Config.model_validate(json.load(open(sys.argv[1])))); print('RESULT ' + json.dumps("
            "{**{k: m.get(k) for k in ('train_runtime_s', 'teacher_cache_s', 'precision', 'compiled')}, 'rates': ["
            "e['train_tokens_per_s'] for e in m['train_history'] if 'train_tokens_per_s' in e]}))")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, str(work / "ours.json")], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if p.returncode or not line:
        sys.exit(f"our distill failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = json.loads(line[7:])
    runtime = m["train_runtime_s"] + (m.get("teacher_cache_s") or 0)  # the cache's teacher passes count too
    return {"train_runtime_s": runtime, "tokens_per_s": steps * BATCH * SEQ / runtime, "process_wall_s": wall,
            "teacher_cache_s": m.get("teacher_cache_s"), "compiled": m.get("compiled"), "student": str(out),
            # the training logs' rates after the first log (which holds the first step, and a compile)
            "steady_tokens_per_s": round(statistics.median(m["rates"][1:]), 1) if len(m["rates"]) > 1 else None}


def heldout_ce(model_dir: str, dev) -> float:
    """Mean next-token CE (nats) over the held-out stream's 128-token chunks, fp32, one function for both."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    n = len(dev) // SEQ
    ids = torch.tensor(dev[: n * SEQ].astype("int64")).view(n, SEQ)
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, n, 64):
            x = ids[i:i + 64]
            logits = model(input_ids=x).logits[:, :-1].float()
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1),
                                                   reduction="sum")
            total, count = total + float(ce), count + x[:, 1:].numel()
    return total / count


def teacher_share(teachers: list[Path], step_s: float, reps: int = 5, compiled_step_s: float | None = None) -> dict:
    """What bounds a live step: the two teachers' forward passes at batch 32 x 128 under our precision (bf16
    autocast where it pays, no grad), timed alone (median of ``reps``), as a share of our measured step, and the
    operators that take most of their time (torch.profiler, self CPU time); with ``compiled_step_s`` (the compiled
    run's steady step) also the passes with the teachers' layers compiled, against that step."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM

    from babyllama.hardware import resolve_precision

    bf16 = resolve_precision("auto") == "bf16"
    models = [AutoModelForCausalLM.from_pretrained(t).eval() for t in teachers]
    x = torch.randint(3, models[0].config.vocab_size, (BATCH, SEQ))

    def forward():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as LiveTeachers
            for m in models:
                m(input_ids=x, use_cache=False).logits.float()

    def timed() -> float:
        with profile(activities=[ProfilerActivity.CPU]):  # compiled code guards on the profiler's state
            forward()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            forward()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    med = timed()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    out = {"teachers_forward_s": round(med, 3), "our_step_s": round(step_s, 3),
           "teachers_share_of_step": round(med / step_s, 3),
           "teachers_top_ops": {e.key: round(e.self_cpu_time_total / total, 3) for e in ops[:5]}}
    if compiled_step_s:  # the same passes with the teachers' layers compiled, as training.compile runs them
        from babyllama.regional import compile_layers

        for m in models:
            compile_layers(m.base_model)
        med = timed()
        out.update(teachers_forward_compiled_s=round(med, 3), our_compiled_step_s=round(compiled_step_s, 3),
                   teachers_compiled_share_of_step=round(med / compiled_step_s, 3))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", type=Path, required=True, help="a checkout of timinar/BabyLlama")
    ap.add_argument("--python", required=True, help="the Python of the authors' environment")
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "corpus"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/babyllama-bench-distill"), help="reused between runs")
    ap.add_argument("--train-tokens", type=int, default=600_000)
    ap.add_argument("--eval-tokens", type=int, default=65_536)
    ap.add_argument("--teacher-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=60, help="student steps on each side")
    ap.add_argument("--authors-bf16", action="store_true", help="also run the script with bf16=True for fp16=True")
    ap.add_argument("--cached", action="store_true", help="also run ours with the offline teacher cache")
    ap.add_argument("--compiled", action="store_true",
                    help="also run ours with training.compile: true (student's and teachers' layers compiled)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--profile-only", type=Path, metavar="JSON",
                    help="only add the teachers' share of our step to a JSON this script wrote")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (a.authors / SCRIPT).is_file():
        sys.exit(f"{a.authors}: no {SCRIPT}; point --authors at a checkout of timinar/BabyLlama")
    from distill import setup
    from train_step import machine_info, peaks_for

    from babyllama.hardware import resolve_precision

    a.work.mkdir(parents=True, exist_ok=True)
    if a.profile_only:
        res = json.loads(a.profile_only.read_text())
        teachers = [a.work / f"teacher-{t}" for t in TEACHERS]
        res["bound"] = teacher_share(teachers, res["runs"]["ours"]["train_runtime_s"] / res["steps"])
        print(json.dumps(res["bound"]), flush=True)
        a.profile_only.write_text(json.dumps(res, indent=1) + "\n")
        return
    teachers = setup(a.work, Path(a.corpus), a.train_tokens, a.teacher_steps)
    _, train, dev = token_streams(a.work, a.train_tokens, a.eval_tokens)
    runs = {"authors_fp32": run_authors(a.python, authors_tree(a.work, a.authors, teachers, a.steps, train, dev,
                                                               False), a.steps)}
    if a.authors_bf16:
        runs["authors_bf16"] = run_authors(a.python, authors_tree(a.work, a.authors, teachers, a.steps, train, dev,
                                                                  True), a.steps)
    runs["ours"] = run_ours(a.work, teachers, a.steps, a.train_tokens, a.eval_tokens, cached=False)
    if a.cached:
        runs["ours_cached"] = run_ours(a.work, teachers, a.steps, a.train_tokens, a.eval_tokens, cached=True)
    if a.compiled:
        runs["ours_compiled"] = run_ours(a.work, teachers, a.steps, a.train_tokens, a.eval_tokens, cached=False,
                                         compiled=True)
    for r in runs.values():
        r["heldout_ce"] = round(heldout_ce(r.pop("student"), dev), 4)
        r["tokens_per_s"] = round(r["tokens_per_s"], 1)
    base = runs["authors_fp32"]
    info = machine_info()
    res = {**info, "matmul_peak_gflops": peaks_for(("fp32", "bf16"), info["native_bf16"]),
           "our_precision": resolve_precision("auto"), "steps": a.steps,
           "batch": f"{BATCH}x{SEQ}", "train_tokens": int(len(train)), "heldout_tokens": int(len(dev) // SEQ * SEQ),
           "student": STUDENT, "teachers": list(TEACHERS), "runs": runs,
           "speedup_over_authors_fp32": {k: round(r["tokens_per_s"] / base["tokens_per_s"], 2)
                                         for k, r in runs.items()},
           "heldout_ce_minus_authors_fp32": {k: round(r["heldout_ce"] - base["heldout_ce"], 4)
                                             for k, r in runs.items()}}
    compiled_run = runs.get("ours_compiled")
    res["bound"] = teacher_share(teachers, runs["ours"]["train_runtime_s"] / a.steps,
                                 compiled_step_s=compiled_run and BATCH * SEQ / compiled_run["steady_tokens_per_s"])
    print(json.dumps(res), flush=True)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
