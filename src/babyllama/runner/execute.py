"""`babyllama run RECIPE.yaml`: plan the stages, run those not done (one runner per stage kind), write the report.

Interrupted training stages resume from their last checkpoint (same directory); finished stages are reused;
``--dry-run`` prints what would run. See :mod:`babyllama.runner.plan` for keys and directories.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Recipe, load_recipe
from ..errors import UserError, writing
from ..io import exclusive, write_json
from ..progress import clock
from ..report.markdown import write_report
from ..runinfo import manifest_problem, write_run_info
from .plan import Plan, Stage, make_plan, write_plan
from .clock import run_clock
from .state import ACTIONS, finish_stamps, stage_state


@dataclass
class StageContext:
    recipe: Recipe
    plan: Plan
    stage: Stage
    callbacks: list = field(default_factory=list)  # extra TrainerCallbacks of a training stage
    started: float = field(default_factory=time.time)

    def wall_s(self) -> float:
        """Seconds since the stage started: the report's compute table reads it from run_info.json."""
        return round(time.time() - self.started, 2)

    @property
    def dir(self) -> Path:
        return self.plan.path(self.stage)

    @property
    def corpus(self) -> Path:
        return self.plan.path("prepare") / "corpus"


def run_prepare(ctx: StageContext) -> None:
    from ..data.corpus import prepare

    if ctx.dir.exists():
        shutil.rmtree(ctx.dir)  # not complete (else it would not run): the corpus inside is rebuilt whole
    r = ctx.recipe
    stats = prepare(r.corpus, ctx.corpus, size=r.corpus_size)
    write_run_info(ctx.dir, "prepare", {"source": r.corpus, "size": r.corpus_size}, run_dir=ctx.plan.run_dir,
                   stats=stats, wall_s=ctx.wall_s())


def run_tokenizer(ctx: StageContext) -> None:
    from ..tokenizer import train_tokenizer

    spec = ctx.recipe.tokenizer
    train_tokenizer(ctx.corpus, ctx.dir, vocab_size=spec.vocab_size, min_frequency=spec.min_frequency,
                    overwrite=True)
    write_run_info(ctx.dir, "tokenizer", spec.model_dump(), run_dir=ctx.plan.run_dir, corpus=str(ctx.corpus),
                   wall_s=ctx.wall_s())


def run_pretrain(ctx: StageContext) -> None:
    from ..training.pretrain import train

    train(ctx.stage.config, callbacks=ctx.callbacks)


def run_distill(ctx: StageContext) -> None:
    from ..distillation.trainer import distill

    distill(ctx.stage.config, callbacks=ctx.callbacks)


def run_eval(ctx: StageContext) -> None:
    from ..eval.ensemble import EnsembleSpec
    from ..eval.evaluate import evaluate, load_for_eval

    s, d = ctx.stage, ctx.recipe.distill
    if s.role == "ensemble":
        model_dir = EnsembleSpec(tuple(str(ctx.plan.path(m)) for m in s.evaluated), d.ensemble,
                                 None if d.teacher_weights is None else tuple(d.teacher_weights),
                                 name=s.name.removeprefix("eval:"))
        what = {"members": s.evaluated, "rule": d.ensemble, "temperature": 1.0}
    else:
        model_dir, what = ctx.plan.path(s.model_stage), {}
    model, tok = load_for_eval(model_dir, ctx.recipe.eval.device)
    res = evaluate(model, tok, ctx.recipe.eval, ctx.corpus, keep_chunks=True)
    for line in eval_lines(res):
        print(f"  {line}", flush=True)
    write_json(ctx.dir / "eval.json", {"model": s.model_stage or s.name.removeprefix("eval:"), **what, **res})
    write_run_info(ctx.dir, "eval", ctx.recipe.eval.model_dump(mode="json"), run_dir=ctx.plan.run_dir,
                   model=str(model_dir) if not what else what, model_finished_at=finish_stamps(ctx.plan, s),
                   wall_s=ctx.wall_s())


def eval_lines(res: dict) -> list[str]:
    """One line per suite of an eval stage: ``blimp_fast: 53.3% [52.2, 54.4] macro, 6,700 pairs / 67 paradigms,
    7.8 s``."""
    out = []
    for name, s in res["suites"].items():
        m = s["macro"]
        out.append(f"{name}: {100 * m['acc']:.1f}% [{100 * m['ci'][0]:.1f}, {100 * m['ci'][1]:.1f}] macro, "
                   f"{m['items']:,} pairs / {m['paradigms']} paradigms, {res['timing'][name]:.1f} s")
    for split, p in (res.get("perplexity") or {}).items():
        took = f", {res['timing']['perplexity']:.1f} s" if split == "dev" else ""
        out.append(f"perplexity {split}: CE {p['ce']:.4f} nats/token ({p['bpw']:.3f} bits/word) over "
                   f"{len(p['domains'])} domains{took}")
    return out


def run_finetune(ctx: StageContext) -> None:
    from ..finetuning.markdown import markdown
    from ..finetuning.run import finetune_models

    model_dir = ctx.plan.path(ctx.stage.model_stage)
    res = finetune_models([model_dir], ctx.recipe.finetune, names=[ctx.stage.model_stage],
                          cache_dir=ctx.plan.run_dir / "cache" / "finetune")
    write_json(ctx.dir / "finetune.json", {"model": ctx.stage.model_stage, **res})
    print(markdown(res))
    write_run_info(ctx.dir, "finetune", ctx.recipe.finetune.model_dump(mode="json"), run_dir=ctx.plan.run_dir,
                   model=str(model_dir), model_finished_at=finish_stamps(ctx.plan, ctx.stage), wall_s=ctx.wall_s())


STAGE_RUNNERS: dict[str, Callable[[StageContext], None]] = {
    "prepare": run_prepare, "tokenizer": run_tokenizer, "pretrain": run_pretrain, "distill": run_distill,
    "eval": run_eval, "finetune": run_finetune,
}


def check_inputs(plan: Plan, stage: Stage) -> None:
    """Every finished stage this one reads must still hold what it wrote (its manifest)."""
    for dep in stage.deps:
        problem = manifest_problem(plan.path(dep))
        if problem:
            raise UserError(f"stage {stage.name} reads stage {dep}, which is damaged: {problem}; delete "
                            f"{plan.path(dep)} and run the same command again to rebuild it")


def select_stages(plan: Plan, only: list[str], from_stage: str | None) -> list[Stage]:
    """The stages ``--only`` / ``--from`` ask for (all by default); unknown names are one line."""
    names = [s.name for s in plan.stages]
    for n in [*only, *([from_stage] if from_stage else [])]:
        if n not in names:
            raise UserError(f"no stage '{n}' in this recipe; the stages are: {', '.join(names)}")
    if only:
        return [s for s in plan.stages if s.name in only]
    if from_stage:
        return plan.stages[names.index(from_stage):]
    return plan.stages


def run_recipe(path: str, overrides: list[str], data_root: str | None, run_dir: str | None,
               dry_run: bool = False, only: list[str] | None = None, from_stage: str | None = None,
               makefile: str | None = None) -> int:
    """Run a recipe's stages that are not done. With ``only``, just those stages (each under its own lock, so
    workers of a user's scheduler can share the run directory); otherwise the whole run holds the run directory.
    With ``makefile``, write the plan as a Makefile for `make -j N` and run nothing."""
    if makefile and (only or from_stage or dry_run):
        raise UserError("--makefile writes every stage and runs none; drop --only, --from and --dry-run (make "
                        "TARGET -f FILE runs one stage and what it needs)")
    recipe = load_recipe(path, overrides, data_root)
    plan = make_plan(recipe, run_dir or recipe.run_dir)
    selected = select_stages(plan, only or [], from_stage)
    if makefile:
        from .makefile import write_makefile

        write_makefile(plan, makefile, path, overrides, data_root)
        print(f"wrote {makefile}: `make -j2 -f {makefile}` runs the {len(plan.stages)} stages of recipe "
              f"{recipe.name}, two at a time, into {plan.run_dir}; stage logs in {plan.run_dir / 'logs'}")
        return 0
    print_plan(recipe, plan, selected)
    if dry_run:
        return 0
    t0 = time.time()
    summary = run_stages(recipe, plan, selected, stage_locks="try" if only else "none")
    if summary is None:
        print(f"\nselected stages done in {clock(time.time() - t0)}; once every stage is done, "
              f"`babyllama report {plan.run_dir}` writes the report")
        return 0
    print(summary)
    print(f"\nall stages done in {clock(time.time() - t0)}; report: {plan.run_dir / 'report.md'}")
    return 0


def print_plan(recipe: Recipe, plan: Plan, selected: list[Stage]) -> None:
    states = {s.name: stage_state(plan, s) for s in plan.stages}
    print(f"recipe {recipe.name}: {len(plan.stages)} stages in {plan.run_dir}")
    width = max(len(s.name) for s in plan.stages)
    for s in plan.stages:
        action = ACTIONS[states[s.name]] if s in selected else "skip"
        print(f"  {action:<7} {s.name:<{width}}  {s.dir}")


def run_stages(recipe: Recipe, plan: Plan, selected: list[Stage], stage_locks: str = "none",
               callbacks: dict[str, list] | None = None) -> str | None:
    """Run the selected stages that are not done, in order; write the report once every stage is done and return
    its summary (else None).

    ``stage_locks``: ``none`` - the whole run holds the run directory; ``try`` - each stage holds its own lock and a
    stage another process holds is one error line (``--only``, a user's scheduler); ``wait`` - each stage waits for
    its lock, then reuses the stage if the holder finished it (sweep trials sharing one stage store).
    ``callbacks``: extra ``TrainerCallback`` objects for named training stages (a sweep's pruning reporter).
    """
    whole_run = exclusive(plan.run_dir, "run directory") if stage_locks == "none" else nullcontext()
    run = run_clock(plan, [s for s in selected if stage_state(plan, s) != "done"])
    with whole_run, writing(plan.run_dir):
        write_plan(plan)
        for i, s in enumerate(plan.stages, 1):
            if s not in selected or stage_state(plan, s) == "done":
                continue
            waiting = [d for d in s.deps if stage_state(plan, plan.stage(d)) != "done"]
            if waiting:
                raise UserError(f"stage {s.name} needs {', '.join(waiting)}, not done yet; run those first "
                                f"(--only {' --only '.join(waiting)}) or without --only")
            check_inputs(plan, s)
            # training stages lock their own folder (``try``); the others are locked beside theirs (they replace it
            # whole); a shared stage store (``wait``) locks every stage beside its folder and waits for it
            lock = nullcontext()
            if stage_locks == "wait" or (stage_locks == "try" and s.kind not in ("pretrain", "distill")):
                lock = exclusive(plan.path(s).parent, f"stage {s.name} in", wait=stage_locks == "wait",
                                 name=f".{s.dir.name}.lock")
            with lock:
                if stage_state(plan, s) == "done":  # another worker finished it while this one waited
                    print(f"== {s.name}: finished by another worker, reused ==", flush=True)
                    run.skipped(s)
                    continue
                print(f"\n== stage {i}/{len(plan.stages)}: {s.name} (elapsed {run.elapsed()}, {run.eta()}) ==",
                      flush=True)
                ts = time.time()
                with writing(plan.path(s)):
                    STAGE_RUNNERS[s.kind](StageContext(recipe, plan, s, (callbacks or {}).get(s.name, [])))
                run.finished(s, time.time() - ts)
                run = run.refreshed()
                print(f"== {s.name} done in {clock(time.time() - ts)} (elapsed {run.elapsed()}"
                      + (f", {run.eta()}" if run.todo else "") + ") ==", flush=True)
        # stages of a user's scheduler (``try``) may finish together: its last job writes the report, not each stage
        all_done = stage_locks != "try" and all(stage_state(plan, s) == "done" for s in plan.stages)
        return write_report(plan.run_dir) if all_done else None
