"""The run's ETA: the stages still to run, priced by what the finished ones of this run cost.

A training stage's work is taken as parameters x planned training tokens (the 6ND rule's N x D; a distilled student
adds a forward pass of its teachers over the data, a third of a training pass per parameter); an eval or finetune
stage's as the parameters it scores. Seconds per unit of work are measured per kind on the stages this process ran
(distillation is priced at the pretraining rate until a student has finished), so the ETA appears once the first
stage of a kind has run and sharpens as more do. Kinds not measured yet are named instead of guessed.

A stage run by `make -f` (see :mod:`babyllama.runner.makefile`) is one process of many: :func:`run_clock` then
gives the whole run's clock - elapsed since make started (``BABYLLAMA_RUN_STARTED``), every stage not done still to
run, priced by the finished stages' recorded wall times, the work shared by ``BABYLLAMA_PARALLEL_STAGES`` jobs.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache

from ..progress import clock
from .kinds import trains_model
from .plan import Plan, Stage
from .state import stage_state, stage_wall_s


@lru_cache(maxsize=64)
def _params(model_json: str, vocab_size: int | None) -> int:
    """models.config_params (not preset_params: a stage's model is a preset with overrides, at the recipe's
    vocabulary), cached by the config's JSON: the plan asks for the same models many times per ETA."""
    from ..config import ModelConfig
    from ..models import config_params

    return config_params(ModelConfig.model_validate_json(model_json), vocab_size)


def stage_params(plan: Plan, stage: Stage) -> int | None:
    """Parameters of a training stage's model (or of the models an eval/finetune stage scores)."""
    if stage.config is not None:
        return _params(stage.config.model.model_dump_json(), plan.recipe.get("tokenizer", {}).get("vocab_size"))
    counts = [stage_params(plan, plan.stage(m)) for m in stage.evaluated]
    return sum(counts) if counts and None not in counts else None


def stage_work(plan: Plan, stage: Stage) -> float | None:
    n = stage_params(plan, stage)
    if n is None:
        return None
    if stage.config is None:
        return float(n)
    t, d = stage.config.training, stage.config.data
    tokens_per_step = t.batch_size * t.gradient_accumulation_steps * d.seq_len
    data = (d.max_train_tokens or 1e6) * d.train_fraction
    tokens = t.max_steps * tokens_per_step if t.max_steps and t.max_steps > 0 else data * t.num_epochs
    work = float(n) * tokens
    if stage.kind == "distill":
        work += sum(stage_params(plan, plan.stage(x)) or 0 for x in stage.deps if x.startswith("teacher")) * data / 3
    return work


def rate_kind(kind: str) -> str | None:
    """Which measured rate predicts a stage of ``kind``: the training stages share one; eval and finetune have
    their own; prepare and tokenizer take no time worth predicting (None)."""
    if trains_model(kind):
        return "train"
    return kind if kind in ("eval", "finetune") else None


class RunClock:
    """Elapsed time and ETA of the stages a run still has to do."""

    def __init__(self, plan: Plan, todo: list[Stage], started: float | None = None, parallel: int = 1,
                 whole_run: bool = False):
        self.plan, self.todo, self.parallel = plan, list(todo), max(1, parallel)
        self.t0 = time.time() if started is None else started
        self.spent: dict[str, list[float]] = {}  # kind -> [seconds, work]
        self.whole_run = whole_run  # built by run_clock from a make run's stages on disk

    def refreshed(self) -> RunClock:
        """A make run's clock as the run stands on disk now (other processes finish stages meanwhile, and a stage
        of a kind this one has not seen prices the rest); this process's own clock as it is."""
        return run_clock(self.plan, self.todo) if self.whole_run else self

    def finished(self, stage: Stage, seconds: float) -> None:
        if stage in self.todo:
            self.todo.remove(stage)
        kind, work = rate_kind(stage.kind), stage_work(self.plan, stage)
        if kind and work:
            acc = self.spent.setdefault(kind, [0.0, 0.0])
            acc[0] += seconds
            acc[1] += work

    def skipped(self, stage: Stage) -> None:
        if stage in self.todo:
            self.todo.remove(stage)

    def eta(self) -> str:
        """``ETA 0:12:30``, ``ETA 0:12:30 + evals`` (a kind not priced yet), or ``ETA after the first training
        stage``."""
        left, unpriced = 0.0, []
        for s in self.todo:
            kind = rate_kind(s.kind)
            if kind is None:
                continue  # prepare and tokenizer: short, and first
            work = stage_work(self.plan, s)
            rate = self.spent.get(kind)
            if rate is None or work is None:
                unpriced.append({"train": "training", "eval": "evals", "finetune": "fine-tuning"}[kind])
                continue
            left += work * rate[0] / rate[1] / self.parallel
        if not self.spent.get("train") and "training" in unpriced:
            return "ETA after the first training stage"
        extra = "".join(f" + {k}" for k in dict.fromkeys(unpriced))
        return f"ETA {clock(left)}{extra}"

    def elapsed(self) -> str:
        return clock(time.time() - self.t0)


def run_clock(plan: Plan, todo: list[Stage]) -> RunClock:
    """This process's clock over ``todo``; inside a `make -f` run, the whole run's (see the module's docstring)."""
    started = os.environ.get("BABYLLAMA_RUN_STARTED", "")
    if not started.isdigit():
        return RunClock(plan, todo)
    parallel = os.environ.get("BABYLLAMA_PARALLEL_STAGES", "1")
    states = {s.name: stage_state(plan, s) for s in plan.stages}
    run = RunClock(plan, [s for s in plan.stages if states[s.name] != "done"], started=float(started),
                   parallel=int(parallel) if parallel.isdigit() else 1, whole_run=True)
    for s in plan.stages:
        wall = stage_wall_s(plan, s) if states[s.name] == "done" else None
        if wall:
            run.finished(s, wall)
    return run
