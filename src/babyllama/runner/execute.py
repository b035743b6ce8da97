"""`babyllama run RECIPE.yaml`: plan the stages, run those not done (each by its kind's executor,
:mod:`babyllama.runner.kinds`), then the report kind's executor once every stage is done.

Interrupted training stages resume from their last checkpoint (same directory); finished stages are reused;
``--dry-run`` prints what would run. See :mod:`babyllama.runner.plan` for keys and directories.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from ..config import Recipe, load_recipe
from ..errors import UserError, writing
from ..io import exclusive, require_file_path, require_folders
from ..progress import clock
from ..runinfo import manifest_problem
from .clock import run_clock
from .kinds import stage_kind, trains_model
from .plan import Plan, Stage, make_plan, write_plan
from .stages import StageContext
from .state import ACTIONS, stage_state


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
               makefile: str | None = None, estimate: bool = True) -> Path:
    """Run a recipe's stages that are not done; returns its run directory (``run_dir``, else the recipe's, as
    given). With ``only``, just those stages (each under its own lock, so workers of a user's scheduler can share
    the run directory); otherwise the whole run holds the run directory. With ``makefile``, write the plan as a
    Makefile for `make -j N` and run nothing. ``estimate``: before a run whose training stages have not started,
    print the whole job's time from a few steps measured here (:mod:`babyllama.runner.estimate`)."""
    if makefile and (only or from_stage or dry_run):
        raise UserError("--makefile writes every stage and runs none; drop --only, --from and --dry-run (make "
                        "TARGET -f FILE runs one stage and what it needs)")
    recipe = load_recipe(path, overrides, data_root)
    where = Path(run_dir or recipe.run_dir)
    plan = make_plan(recipe, where)
    selected = select_stages(plan, only or [], from_stage)
    require_folders([plan.run_dir, plan.run_dir / "logs", *(plan.path(s) for s in plan.stages)],
                    "run or stage folder")
    if makefile:
        require_file_path(makefile, "Makefile")
        from .makefile import write_makefile

        write_makefile(plan, makefile, path, overrides, data_root)
        print(f"wrote {makefile}: `make -j2 -f {makefile}` runs the {len(plan.stages)} stages of recipe "
              f"{recipe.name}, two at a time, into {plan.run_dir}; stage logs in {plan.run_dir / 'logs'}")
        if estimate:
            print_estimate(plan, plan.stages, parallel=2)
        return where
    print_plan(recipe, plan, selected)
    if dry_run:
        return where
    if estimate and not only:
        print_estimate(plan, selected, parallel=1)
    t0 = time.time()
    summary = run_stages(recipe, plan, selected, stage_locks="try" if only else "none")
    if summary is None:
        print(f"\nselected stages done in {clock(time.time() - t0)}; once every stage is done, "
              f"`babyllama report {plan.run_dir}` writes the report")
        return where
    print(summary)
    print(f"\nall stages done in {clock(time.time() - t0)}; report: {plan.run_dir / 'report.md'}")
    return where


def print_estimate(plan: Plan, selected: list[Stage], parallel: int) -> None:
    """The whole job's estimated time, printed (and kept as ``RUN_DIR/estimate.json``) when no selected training
    stage has started yet: a run resumed later has the run clock's ETA from its own finished stages instead."""
    from ..io import write_json
    from .estimate import estimate

    fresh = [s for s in selected if trains_model(s.kind) and stage_state(plan, s) == "todo"]
    if not fresh or len(fresh) < sum(trains_model(s.kind) for s in selected):
        return
    print("measuring a few training steps of each model for the time estimate ...", flush=True)
    try:
        est = estimate(plan, parallel)
    except UserError:
        raise  # a problem of the inputs, which the stages would meet later: say it now
    except Exception as e:  # noqa: BLE001 - an estimate that cannot be made must not stop the job
        print(f"no estimate: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        return
    print(est.line(), flush=True)
    write_json(plan.run_dir / "estimate.json", est.as_json())


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
    times = run_clock(plan, [s for s in selected if stage_state(plan, s) != "done"])
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
            if stage_locks == "wait" or (stage_locks == "try" and not trains_model(s.kind)):
                lock = exclusive(plan.path(s).parent, f"stage {s.name} in", wait=stage_locks == "wait",
                                 name=f".{s.dir.name}.lock")
            with lock:
                if stage_state(plan, s) == "done":  # another worker finished it while this one waited
                    print(f"== {s.name}: finished by another worker, reused ==", flush=True)
                    times.skipped(s)
                    continue
                print(f"\n== stage {i}/{len(plan.stages)}: {s.name} (elapsed {times.elapsed()}, {times.eta()}) ==",
                      flush=True)
                ts = time.time()
                with writing(plan.path(s)):
                    stage_kind(s.kind).run(StageContext(recipe, plan, s, (callbacks or {}).get(s.name, [])))
                times.finished(s, time.time() - ts)
                times = times.refreshed()
                print(f"== {s.name} done in {clock(time.time() - ts)} (elapsed {times.elapsed()}"
                      + (f", {times.eta()}" if times.todo else "") + ") ==", flush=True)
        # stages of a user's scheduler (``try``) may finish together: its last job writes the report, not each stage
        all_done = stage_locks != "try" and all(stage_state(plan, s) == "done" for s in plan.stages)
        # the report kind is registered by babyllama.report, above the runner (the front doors import it)
        return stage_kind("report").run(plan.run_dir) if all_done else None
