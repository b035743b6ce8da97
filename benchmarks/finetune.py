"""Fine-tuning speed: our `babyllama finetune` path against the BabyLM 2024 script's set-up, same tasks and seeds.

The reference is the plain Hugging Face Trainer set up as ``finetune_classification.py`` sets it up under
``finetune_model.sh`` (BabyLM 2024): every example padded to 128 tokens (``pad_to_max_length``,
``default_data_collator``), ``AutoModelForSequenceClassification``, lr 5e-5, batch 64, evaluation and a saved
checkpoint every epoch, ``load_best_model_at_end`` on F1, ``EarlyStoppingCallback(3, 0.001)``, seed 12 (and the
further seeds asked for), its ``compute_metrics`` and ``preprocess_logits_for_metrics``. Ours is
:func:`babyllama.finetuning.run.finetune_models` with the same protocol, in each precision asked for. Both run the
same epochs (``--epochs``, the protocol's 10 capped for time) on the same files, in one process, on one device
(``--device``: auto is the GPU where torch sees one; the reference's Trainer is put on the same device, in fp32 as
the script runs it). The reference runs
one seed after another, as one script call per seed does; ours is one call per task with every seed (``--compile``
and ``--jobs`` set ``finetune.compile`` and ``finetune.jobs``; several values give one path each). On a shared
machine whose speed drifts within the hour, each task's reference seeds are split around our calls (the first half
before, the rest after), so a slow spell falls on both sides. With ``--inductor-cache cold`` (the default)
torch.compile starts from an empty cache, as on a machine's first run, and the first task that compiles pays for
it; ``keep`` uses the cache earlier runs left.

Prints one JSON line: per path and task, examples/s (training examples processed / wall seconds of the whole call:
tokenization, model set-up, training, every evaluation, checkpoint selection) and the validation metrics per seed;
then the speedup of each of our paths over the reference and whether each task's mean metric (the one the results
table reports, and F1, which the 2024 script selects on) lies within the two paths' seed spread (the target), with
the per-seed paired difference, its 95% t interval and p-value (seeds are shared, so this is how `babyllama
finetune` itself would compare the two). ``matmul_share`` (on a CPU) says what the hardware leaves to gain: the
share of our first path's training step spent in matrix products (torch.profiler, real batches of the first task),
and ``speedup_bound`` the speedup that path would reach if nothing else took any time.

    python benchmarks/finetune.py                      # RTE and MRPC, 2 epochs, seeds 12 13, llama-cpu-4m, precision auto
    python benchmarks/finetune.py --model DIR --epochs 10 --seeds 12 13 14
    python benchmarks/finetune.py --seeds 12 13 14 15 --compile auto off   # also our path without compiling
    python benchmarks/finetune.py --batches grouped random                 # also our path with the script's batches
    python benchmarks/finetune.py --device cuda --compile auto on          # on a GPU (benchmarks/gpu.sh runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_blimp import model_for  # noqa: E402
from train_step import machine_info, peaks_for  # noqa: E402


def reference_run(model_dir: Path, task: str, data_dir: Path, epochs: int, seed: int, work: Path,
                  device: str) -> dict:
    """The 2024 script's Trainer set-up on one task and seed; its wall time and validation metrics."""
    import torch
    from sklearn.metrics import f1_score, matthews_corrcoef
    from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, EarlyStoppingCallback,
                              PrinterCallback, Trainer, TrainingArguments, default_data_collator, set_seed)

    from babyllama.finetuning.tasks import load_task

    t0 = time.perf_counter()
    set_seed(seed)
    d = load_task(task, data_dir, "babylm2024")
    config = AutoConfig.from_pretrained(model_dir, num_labels=d.num_labels, finetuning_task=None)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, config=config)

    def encode(split):
        cols = [list(c) for c in zip(*split.texts)]
        enc = tok(*cols, padding="max_length", max_length=128, truncation=True)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "label": split.labels[i]} for i in range(len(split))]

    train, valid = encode(d.train), encode(d.valid)

    def compute_metrics(p):
        preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        preds = np.argmax(preds, axis=1)
        return {"accuracy": float((preds == p.label_ids).mean()),
                "f1": f1_score(y_true=p.label_ids, y_pred=preds, average="binary"),
                "mcc": matthews_corrcoef(y_true=p.label_ids, y_pred=preds)}

    def preprocess_logits_for_metrics(logits, labels):
        if isinstance(logits, tuple):
            logits = logits[0]
        if labels is None:
            labels = torch.full((logits.shape[0],), -2)
        return logits, labels

    args = TrainingArguments(
        output_dir=str(work / f"ref-{task}-{seed}"), do_train=True, do_eval=True,
        per_device_train_batch_size=64, learning_rate=5e-5, num_train_epochs=epochs, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="f1",
        greater_is_better=True, seed=seed, report_to=[], disable_tqdm=True, logging_strategy="no",
        use_cpu=device == "cpu")
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                      compute_metrics=compute_metrics, preprocess_logits_for_metrics=preprocess_logits_for_metrics,
                      data_collator=default_data_collator,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.001)])
    trainer.remove_callback(PrinterCallback)  # keeps stdout to the one JSON line
    out = trainer.train()
    metrics = trainer.evaluate()
    seconds = time.perf_counter() - t0
    examples = round(out.metrics.get("epoch", epochs) * len(train))
    return {"seed": seed, "seconds": seconds, "examples": examples, "examples_per_s": examples / seconds,
            "accuracy": metrics["eval_accuracy"], "f1": metrics["eval_f1"], "mcc": metrics["eval_mcc"]}


def ours_runs(model_dir: Path, task: str, data_dir: Path, epochs: int, seeds: list[int], precision: str,
              jobs: int | str, compile_: bool | str, device: str, length_grouping: bool = True
              ) -> tuple[float, list[dict], bool]:
    """One `babyllama finetune` call on a task with every seed (the seeds side by side when jobs allow): its wall
    seconds and each run's figures."""
    from babyllama.config import FinetuneConfig
    from babyllama.finetuning.data import _MEMORY
    from babyllama.finetuning.run import finetune_models

    _MEMORY.clear()  # each call pays for its own tokenization, as the reference does
    t0 = time.perf_counter()
    cfg = FinetuneConfig(tasks=[task], protocol="babylm2024", seeds=seeds, eval_root=str(data_dir),
                         max_epochs=epochs, precision=precision, jobs=jobs, compile=compile_, device=device,
                         length_grouping=length_grouping)
    res = finetune_models([model_dir], cfg, log=lambda s: None)
    seconds = time.perf_counter() - t0
    runs = [{"seed": r["seed"], "run_seconds": r["seconds"], "examples": r["examples"],
             "padded_fraction": 1 - r["train_tokens"] / r["padded_tokens"], **r["metrics"]}
            for r in res["models"][0]["tasks"][task]["runs"]]
    return seconds, runs, res["models"][0]["compiled"]


def matmul_share(model_dir: Path, task: str, data_dir: Path, precision: str, compiled: bool,
                 length_grouping: bool = True, steps: int = 8) -> dict:
    """The share of a training step of our path that matrix products take: ``steps`` batches of ``task`` (as the
    path draws them) under torch.profiler, after three unprofiled ones (where a compile happens)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from babyllama.finetuning.data import collate, encode_split, train_batches
    from babyllama.finetuning.model import build_classifier, load_base
    from babyllama.finetuning.protocols import protocol_hparams
    from babyllama.finetuning.tasks import load_task
    from babyllama.finetuning.train import optimizer_for, training_step
    from babyllama.hardware import resolve_attention, resolve_precision
    from babyllama.regional import compile_layers

    precision = resolve_precision(precision, "cpu")
    attention = resolve_attention("auto", precision, compiled, "cpu")
    base = load_base(model_dir)
    d = load_task(task, data_dir, "babylm2024")
    h = protocol_hparams("babylm2024", task, d.num_labels, "auto")
    train = encode_split(base.tokenizer, base.tokenizer_id, task, d.train, h.max_length)
    model = build_classifier(base, h.head, d.num_labels, h.pooling, h.dropout, 0, attention)
    if compiled:
        compile_layers(model.body)
    opt, scaler = optimizer_for(model, h, precision, "cpu")
    batches = train_batches(train.lengths, h.batch_size, torch.Generator().manual_seed(0), False,
                            length_grouping)[:3 + steps]
    model.train()

    def step(index):  # a run's own step (its schedule aside)
        training_step(model, opt, scaler, *collate(train, index, base.pad_id), h.max_grad_norm, precision, "cpu")

    for index in batches[:3]:
        step(index)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for index in batches[3:]:
            step(index)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm",
                                                                      "aten::baddbmm"))
    return {"task": task, "precision": precision, "compiled": compiled, "attention": attention, "steps": steps,
            "share": round(matmul / total, 3)}


def record(block: dict, name: str, task: str, seconds: float, runs: list[dict], **extra) -> None:
    examples = sum(r["examples"] for r in runs)
    block[task] = {"examples_per_s": round(examples / seconds, 2), "seconds": round(seconds, 1), **extra,
                   "runs": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in runs]}
    print(json.dumps({"progress": name, "task": task, **block[task]}), file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: a fresh llama-cpu-4m with a BPE of the corpus)")
    ap.add_argument("--preset", default="llama-cpu-4m")
    ap.add_argument("--tasks", nargs="+", default=["rte", "mrpc"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", nargs="+", type=int, default=[12, 13])
    ap.add_argument("--precisions", nargs="+", default=["auto"],
                    help="our path's precisions (auto: bf16 where the CPU has it natively, else fp32)")
    ap.add_argument("--jobs", nargs="+", default=["1"],
                    help="finetune.jobs of our path (auto, or a number); several values: one path each")
    ap.add_argument("--compile", nargs="+", default=["auto"], choices=["auto", "on", "off"],
                    help="finetune.compile of our path; several values: one path each")
    ap.add_argument("--batches", nargs="+", default=["grouped"], choices=["grouped", "random"],
                    help="our path's training batches: the Trainer's group_by_length ones, or random ones as the "
                    "script draws them (finetune.length_grouping); several values: one path each")
    ap.add_argument("--inductor-cache", choices=["cold", "keep"], default="cold",
                    help="cold: a fresh torch.compile cache for this run (what a first run on a machine pays); "
                    "keep: the cache as earlier runs left it")
    ap.add_argument("--device", default="auto", help="auto (the GPU where torch sees one), cpu, cuda or cuda:N")
    ap.add_argument("--eval-root", "--data-dir", dest="data_dir", metavar="DIR", default=str(REPO.parent / "shared" / "data" / "eval"))
    ap.add_argument("--work", default=os.environ.get("BENCH_WORK", str(Path(tempfile.gettempdir()) / "bench")))
    a = ap.parse_args()
    if a.inductor_cache == "cold":  # inductor reads it when it first compiles
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
    import torch
    from transformers.utils import logging as hf_logging

    from babyllama.errors import UserError
    from babyllama.models import load_model
    from babyllama.hardware import device_type, resolve_device, resolve_precision

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        device = resolve_device(a.device)
    except UserError as e:
        sys.exit(f"--{e}")
    model_dir = Path(a.model) if a.model else model_for(a.preset, work)
    data_dir = Path(a.data_dir)
    info = machine_info()
    if device_type(device) == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    peaks = peaks_for(["fp32", "bf16"], info["native_bf16"], device)
    line = {"benchmark": "finetune", **info, "device": device, "matmul_peak_gflops": peaks,
            "model": str(model_dir), "params": None, "tasks": a.tasks, "epochs": a.epochs, "seeds": a.seeds,
            "protocol": "babylm2024", "inductor_cache": a.inductor_cache, "paths": {}}
    line["params"] = sum(p.numel() for p in load_model(model_dir).parameters())
    line["paths"]["reference"] = {}
    flags = {"auto": "auto", "on": True, "off": False}
    paths = [(f"ours_{prec}" + ("" if comp == "auto" else f"_compile_{comp}") + ("" if jobs == "1" else f"_jobs{jobs}")
              + ("" if batches == "grouped" else f"_{batches}_batches"), prec, comp, jobs, batches)
             for prec in a.precisions for comp in a.compile for jobs in a.jobs for batches in a.batches]
    for name, *_ in paths:
        line["paths"][name] = {}
    half = (len(a.seeds) + 1) // 2
    for task in a.tasks:
        ref_runs = [reference_run(model_dir, task, data_dir, a.epochs, s, work, device) for s in a.seeds[:half]]
        for name, prec, comp, jobs, batches in paths:
            seconds, runs, compiled = ours_runs(model_dir, task, data_dir, a.epochs, a.seeds, prec,
                                                jobs if jobs == "auto" else int(jobs), flags[comp], device,
                                                batches == "grouped")
            record(line["paths"][name], name, task, seconds, runs, compiled=compiled,
                   precision=resolve_precision(prec, device))
        ref_runs += [reference_run(model_dir, task, data_dir, a.epochs, s, work, device) for s in a.seeds[half:]]
        record(line["paths"]["reference"], "reference", task, sum(r["seconds"] for r in ref_runs), ref_runs)
    ref = line["paths"]["reference"]
    line["speedup"] = {n: {t: round(p[t]["examples_per_s"] / ref[t]["examples_per_s"], 2) for t in a.tasks}
                       for n, p in line["paths"].items() if n != "reference"}

    def overall(p):  # every task's examples over every task's seconds
        return sum(sum(r["examples"] for r in p[t]["runs"]) for t in a.tasks) / sum(p[t]["seconds"] for t in a.tasks)

    for n, p in line["paths"].items():
        if n != "reference":
            line["speedup"][n]["all_tasks"] = round(overall(p) / overall(ref), 2)
    from babyllama.finetuning.stats import metric_range, paired
    from babyllama.finetuning.tasks import get_task

    agree = {}
    for n, p in line["paths"].items():
        if n == "reference":
            continue
        agree[n] = {}
        for t in a.tasks:
            reported = get_task(t).metric  # what the results table shows; the 2024 script selects on F1
            agree[n][t] = {"reported": reported}
            for metric in dict.fromkeys([reported, "f1"]):
                theirs = [r[metric] for r in ref[t]["runs"]]
                by_seed = {r["seed"]: r[metric] for r in p[t]["runs"]}
                ours = [by_seed[r["seed"]] for r in ref[t]["runs"]]  # in the reference's seed order
                spread = max(max(ours) - min(ours), max(theirs) - min(theirs))
                # same seeds, same files: the per-seed differences, as `babyllama finetune` compares two models
                diff = paired(ours, theirs, metric_range([metric]))
                agree[n][t][metric] = {"ours_mean": round(float(np.mean(ours)), 4),
                                       "reference_mean": round(float(np.mean(theirs)), 4),
                                       "seed_spread": round(spread, 4),
                                       "within_spread": bool(abs(np.mean(ours) - np.mean(theirs)) <= spread),
                                       "paired_diff": round(diff["diff"], 4),
                                       "paired_ci": diff["ci"] and [round(v, 4) for v in diff["ci"]],
                                       "paired_p": diff["p"] and round(diff["p"], 4)}
    line["metrics_agree"] = agree
    first, prec, _, _, first_batches = paths[0]
    if device == "cpu":  # on a GPU a step's wall time is not the sum of its kernels' times
        # the step that path ran: compiled or not as its first task's call decided
        share = matmul_share(model_dir, a.tasks[0], data_dir, prec, line["paths"][first][a.tasks[0]]["compiled"],
                             first_batches == "grouped")
        line["matmul_share"] = {"path": first, **share,
                                "speedup_bound": round(line["speedup"][first]["all_tasks"] / share["share"], 2)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
