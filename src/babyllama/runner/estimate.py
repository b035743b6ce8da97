"""The whole job's time before its first training stage, from a few steps measured on this machine.

Each distinct training setup of the plan (model, batch, sequence length, precision) runs a few optimizer steps
through the Trainer `babyllama train` builds, on random tokens, at the threads one stage will have; each model also
runs a few scoring forward passes. Those two rates price every stage:

* a pretraining stage: its planned tokens at the training rate, and its per-epoch evaluations at the scoring rate;
* a distilled student: the same, times :data:`DISTILL_STEP_COST` (the cached KD loss), plus the teachers' forward
  passes over the training data at the training precision (the teacher cache, built by the first student that
  needs it; live teachers: at every step);
* an eval stage: the characters its suites score (the same files and subsets the stage reads), as tokens at the
  scoring rate of the model (an ensemble: every member): ranked suites at the eval precision (exact bf16: bf16,
  and :data:`RERANK_SHARE` of the items again in fp32), values (wug, reading, perplexity) in fp32;
* a finetune stage: each task's training examples x epochs (a training pass costs three forward passes) and its
  validation set once per epoch, at the scoring rate, plus a fixed set-up per run.

The first stage also pays a process's start-up (measured: the imports of the training and evaluation modules, timed
where this process pays them); the others are forked from a warm process that has paid it (:data:`WARM_STAGE_S`),
or with ``BABYLLAMA_WARM=0`` pay it each. The stages are then laid out as `make -j N` runs them (each stage as soon as its inputs are done and a
slot is free, in plan order), which gives the wall time. What is not measured is a constant below, each from the
main job's measured runs (benchmarks/README.md, "The main job's up-front estimate").
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..progress import clock
from .kinds import trains_model
from .plan import Plan, Stage

STEPS, WARMUP = 6, 2  # timed and untimed optimizer steps per training setup
FORWARD_BATCH, FORWARD_SEQ, FORWARD_REPS = 16, 128, 2
CHARS_PER_TOKEN = 4.0  # an English byte-level BPE of 8-16k entries (the shared corpus at 8k: 4.1)
# a training stage's steps against the timing steps': logging, TensorBoard, the progress line and, two at a time,
# the stage beside it (the main job's stages ran at 0.8-1.3x the rate three timing runs read within one hour: the
# machine's own spread is as large)
TRAIN_RUN_FACTOR = 1.05
DISTILL_STEP_COST = 1.1  # a cached distillation step against a plain one (the main job's students: 1.08-1.13x)
RERANK_SHARE = 0.15  # exact bf16: the share of items ranked again in fp32 (benchmarks/README.md)
# ranked suites run as prefix trees: shared sentence openings once, short rows (BLiMP: 58% of lm-eval's positions;
# the main job's suites took 0.5-0.7x their characters' worth of full rows)
PREFIX_TREE_SHARE = 0.7
FINETUNE_TRAIN_COST = 2.0  # a fine-tuning example's training pass, in scoring passes (bf16, short rows)
EVAL_SUITE_S = 0.5  # per suite and eval stage: loading, bootstrap CIs
READING_S = 2.0  # reading's 12 least-squares fits x 1000 resamples
# reading runs each distinct context alone (the pipeline's arithmetic, bit for bit): a forward pass's fixed cost,
# and distinct contexts per row (words of several tokens add some; 2,928 for the 1,726 rows at the 8k BPE)
READING_FORWARD_S, READING_CONTEXTS_PER_ROW = 0.0035, 1.7
FINETUNE_RUN_S = 0.5  # per task and seed: the classifier, its optimizer, compiling its layers
# a stage forked from the warm process (babyllama.runner.warm): its client, the fork, the plan, the exit; the first
# stage of a run pays the imports (starting the warm process), ``BABYLLAMA_WARM=0`` every stage (benchmarks/README.md,
# "Stages without start-up cost")
WARM_STAGE_S = 0.3
REPORT_S = 30.0  # the report: figures, tables and its paired bootstraps


@dataclass
class Rates:
    """Seconds per token measured on this machine, per training setup (train) and per model (forward)."""

    train: dict[str, float] = field(default_factory=dict)
    forward: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> {fp32, bf16}
    startup_s: float = 0.0
    measured_s: float = 0.0
    threads: int = 1
    shown: dict[str, float] = field(default_factory=dict)  # model name -> training tokens/s (for the line)


def _setup_key(stage: Stage) -> str:
    c = stage.config
    return "|".join([c.model.model_dump_json(), str(c.training.batch_size), str(c.data.seq_len),
                     c.training.precision, str(c.training.compile)])


def _model_key(stage: Stage) -> str:
    return stage.config.model.model_dump_json()


def _model_name(plan: Plan, stage: Stage) -> str:
    return stage.name.split(":", 1)[-1] if stage.role == "teacher" else plan.recipe["student"]["name"]


def stage_threads(parallel: int) -> int:
    """Torch threads of one stage: as the Makefile gives them (``OMP_NUM_THREADS``, else cores / jobs)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else max(1, (os.cpu_count() or 1) // max(1, parallel))


def import_seconds() -> float:
    """The imports every stage process pays before its work (torch, transformers, the trainers, the scorer),
    timed here where this process pays them first (0 where they are loaded already)."""
    t = time.perf_counter()
    import babyllama.distillation.trainer  # noqa: F401
    import babyllama.eval.evaluate  # noqa: F401
    import babyllama.training.pretrain  # noqa: F401

    return time.perf_counter() - t


def measure(plan: Plan, parallel: int, steps: int = STEPS, warmup: int = WARMUP) -> Rates:
    """Time every distinct training setup and model of the plan's training stages."""
    t0 = time.perf_counter()
    startup = import_seconds()
    import torch

    from ..hardware import resolve_precision
    from ..training.throughput import forward_seconds_per_token, step_seconds

    native_bf16 = resolve_precision("auto") == "bf16"

    vocab = plan.recipe.get("tokenizer", {}).get("vocab_size")
    threads, before = stage_threads(parallel), torch.get_num_threads()
    rates = Rates(threads=threads)
    torch.set_num_threads(threads)
    try:
        for s in plan.stages:
            if s.config is None:
                continue
            c = s.config
            key = _setup_key(s)
            if key not in rates.train:
                sec = step_seconds(c, steps, warmup, vocab)
                rates.train[key] = sec / (c.training.batch_size * c.data.seq_len)
                rates.shown.setdefault(_model_name(plan, s), 1 / rates.train[key])
            if _model_key(s) not in rates.forward:
                rates.forward[_model_key(s)] = {
                    p: forward_seconds_per_token(c, FORWARD_BATCH, FORWARD_SEQ, FORWARD_REPS, vocab, bf16=p == "bf16")
                    for p in (("fp32", "bf16") if native_bf16 else ("fp32",))}
    finally:
        torch.set_num_threads(before)
    rates.startup_s = startup
    rates.measured_s = time.perf_counter() - t0
    return rates


def _data_tokens(stage: Stage) -> float:
    d = stage.config.data
    return (d.max_train_tokens or 1e6) * d.train_fraction


def _train_tokens(stage: Stage) -> float:
    t, d = stage.config.training, stage.config.data
    if t.max_steps and t.max_steps > 0:
        return float(t.max_steps * t.batch_size * t.gradient_accumulation_steps * d.seq_len)
    return _data_tokens(stage) * t.num_epochs


def _eval_tokens(stage: Stage) -> float:
    c = stage.config
    if c.training.eval_strategy == "no":
        return 0.0
    per_eval = float(c.data.max_eval_tokens or _data_tokens(stage) * 0.05)
    return per_eval * (c.training.num_epochs if c.training.eval_strategy == "epoch" else 1)


def _suite_chars(items) -> float:
    """Characters the scorer reads for one suite's items (pairs, choices, reading rows)."""
    if hasattr(items, "itertuples"):  # reading: each word is scored after its sentence's context
        return float(sum(len(str(r.item)) + len(str(r.word)) for r in items.itertuples()))
    total = 0.0
    for it in items:
        if hasattr(it, "choices"):  # the context once (the prefix tree), both sentences
            total += len(it.context) + sum(len(c) for c in it.choices)
        else:  # ChoiceItem: the prefix once (the prefix tree), every completion
            total += len(it.sentences[0]) - len(it.completions[0]) + sum(len(c) for c in it.completions)
    return total


@dataclass
class EvalWork:
    """Forward tokens per model scored, by the precision they run at, and fixed seconds."""

    ranked: float  # decided by a ranking (pairs, entity tracking): exact bf16 where it is the precision
    values: float  # used as values (wug, reading, perplexity; fine-tuning): fp32 or the training precision
    overhead_s: float
    per_model_s: float = 0.0  # fixed seconds per model forwarded (an ensemble's members each): one-context passes


def eval_work(plan: Plan, corpus_domains: int = 10) -> EvalWork:
    """What one eval stage scores per model: its suites' items as the stage reads them, and perplexity."""
    from ..config import EvalConfig
    from ..eval.evaluate import load_suites
    from ..eval.suites import get_suite

    cfg = EvalConfig.model_validate(plan.recipe.get("eval") or {})
    ranked = values = 0.0
    per_model = 0.0
    for name, items in load_suites(cfg).items():
        tokens = _suite_chars(items) / CHARS_PER_TOKEN
        kind = get_suite(name).kind
        if kind in ("pairs", "entity_tracking"):
            ranked += tokens * PREFIX_TREE_SHARE
        else:
            values += tokens
        if kind == "reading":
            per_model += READING_FORWARD_S * READING_CONTEXTS_PER_ROW * len(items)
    if "perplexity" in cfg.suites:
        values += 2 * corpus_domains * (cfg.ppl_max_tokens or 65536)
    overhead = sum(READING_S if get_suite(s).kind == "reading" else EVAL_SUITE_S for s in cfg.suites)
    return EvalWork(ranked, values, overhead, per_model)


def finetune_work(plan: Plan) -> EvalWork:
    """Forward-token equivalents of one model's fine-tuning (training x FINETUNE_TRAIN_COST, validation once per
    epoch)."""
    from ..config import FinetuneConfig
    from ..finetuning.protocols import apply_overrides, protocol_hparams, protocol_seed
    from ..finetuning.run import _plan_tasks, _subsample, hparams_table, overrides_for, resolve_eval_root
    from ..finetuning.tasks import load_task

    cfg = FinetuneConfig.model_validate(plan.recipe["finetune"])
    root, table = resolve_eval_root(cfg), hparams_table(cfg.hparams)
    seeds = len(cfg.seeds or [protocol_seed(cfg.protocol)])
    tokens, runs = 0.0, 0
    for run_name, _ in _plan_tasks(cfg):
        data = load_task(run_name, root, cfg.protocol)
        h = apply_overrides(protocol_hparams(cfg.protocol, run_name, len(data.label_list), cfg.pooling),
                            overrides_for(table, run_name), cfg.max_epochs)

        def chars(texts) -> float:
            return sum(min(len(" ".join(t)), h.max_length * CHARS_PER_TOKEN) for t in texts)

        train = chars([data.train.texts[i] for i in _subsample(data, cfg.max_train_examples)])
        tokens += seeds * h.max_epochs * (FINETUNE_TRAIN_COST * train + chars(data.valid.texts)) / CHARS_PER_TOKEN
        runs += seeds
    return EvalWork(0.0, tokens, runs * FINETUNE_RUN_S)


def stage_seconds(plan: Plan, rates: Rates) -> dict[str, float]:
    """Predicted seconds of every stage of the plan (prepare and tokenizer: their start-up only)."""
    from ..config import EvalConfig
    from ..hardware import resolve_eval_precision, resolve_precision

    def fwd(stage_name: str, precision: str) -> float:
        by = rates.forward[_model_key(plan.stage(stage_name))]
        return by.get(precision, by["fp32"])

    def scoring(stage_name: str, precision: str) -> float:
        if precision == "exact_bf16":  # every item in bf16, the ones in doubt again in fp32
            return fwd(stage_name, "bf16") + RERANK_SHARE * fwd(stage_name, "fp32")
        return fwd(stage_name, "bf16" if precision == "bf16" else "fp32")

    has = {k: any(s.kind == k for s in plan.stages) for k in ("eval", "finetune")}
    ev = eval_work(plan) if has["eval"] else None
    ft = finetune_work(plan) if has["finetune"] else None
    eval_cfg = EvalConfig.model_validate(plan.recipe.get("eval") or {})
    eval_precision = resolve_eval_precision(eval_cfg.precision)
    out, cache_built = {}, False
    from .warm import enabled

    warm = enabled()
    for n, s in enumerate(plan.stages):
        sec = WARM_STAGE_S if warm and n else rates.startup_s
        if trains_model(s.kind):
            step = rates.train[_setup_key(s)] * TRAIN_RUN_FACTOR
            precision = resolve_precision(s.config.training.precision)
            sec += _train_tokens(s) * step + _eval_tokens(s) * fwd(s.name, precision)
            if s.kind == "distill":
                teacher_fwd = sum(fwd(d, precision) for d in s.deps if plan.stage(d).role == "teacher")
                if s.config.distill.cache.enabled:
                    sec += _train_tokens(s) * step * (DISTILL_STEP_COST - 1)
                    if not cache_built:  # one cache for every student of the recipe, built by the first
                        sec += _data_tokens(s) * teacher_fwd
                        cache_built = True
                else:
                    sec += _train_tokens(s) * teacher_fwd
        elif s.kind == "eval":
            sec += ev.overhead_s + sum(ev.per_model_s + ev.ranked * scoring(m, eval_precision)
                                       + ev.values * fwd(m, "fp32") for m in s.evaluated)
        elif s.kind == "finetune":
            # at the fp32 scoring rate: fine-tuning's small batches of short rows stay far from the bf16 peak
            sec += ft.overhead_s + sum(ft.values * fwd(m, "fp32") for m in s.evaluated)
        out[s.name] = sec
    return out


def makespan(plan: Plan, seconds: dict[str, float], parallel: int) -> float:
    """The wall time of running the stages ``parallel`` at a time, each once its inputs are done (plan order
    breaks ties, as make takes a target's prerequisites in order)."""
    done_at: dict[str, float] = {}
    slots = [0.0] * max(1, parallel)
    pending = list(plan.stages)
    while pending:
        slots.sort()
        free = slots[0]
        ready = [s for s in pending if all(d in done_at for d in s.deps)]
        # the stage that can start earliest on the first free slot (plan order among equals)
        s = min(ready, key=lambda x: max([free, *(done_at[d] for d in x.deps)]))
        start = max([free, *(done_at[d] for d in s.deps)])
        done_at[s.name] = start + seconds[s.name]
        slots[0] = done_at[s.name]
        pending.remove(s)
    return max(done_at.values(), default=0.0)


@dataclass
class Estimate:
    seconds: dict[str, float]
    wall_s: float
    parallel: int
    rates: Rates

    def line(self) -> str:
        how = "two stages at a time" if self.parallel == 2 else (
            "one stage at a time" if self.parallel == 1 else f"{self.parallel} stages at a time")
        shown = ", ".join(f"{n} {v:,.0f}" for n, v in self.rates.shown.items())
        train = sum(v for k, v in self.seconds.items() if k.split(":")[0] in ("teacher", "baseline", "student"))
        return (f"estimated time of the whole job on this machine: {clock(self.wall_s)} ({how}, "
                f"{self.rates.threads} thread{'s' if self.rates.threads > 1 else ''} each; stage time "
                f"{clock(sum(self.seconds.values()))}, of which training {clock(train)}), from "
                f"{self.rates.measured_s:.0f} s of measured steps: training tokens/s {shown}")

    def as_json(self) -> dict:
        return {"wall_s": round(self.wall_s, 1), "parallel": self.parallel, "threads": self.rates.threads,
                "measured_s": round(self.rates.measured_s, 1), "startup_s": round(self.rates.startup_s, 2),
                "train_tokens_per_s": {k: round(v, 1) for k, v in self.rates.shown.items()},
                "stages_s": {k: round(v, 1) for k, v in self.seconds.items()}}


def estimate(plan: Plan, parallel: int = 1, rates: Rates | None = None) -> Estimate:
    rates = rates or measure(plan, parallel)
    seconds = stage_seconds(plan, rates)
    return Estimate(seconds, makespan(plan, seconds, parallel) + REPORT_S, parallel, rates)
