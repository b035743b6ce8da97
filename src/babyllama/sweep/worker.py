"""Running a sweep: trials as run directories over one shared stage store, the worker loop, ``--workers N``, and the
final run with the best overrides.

Layout of ``SWEEP_DIR``: ``sweep.json`` (the resolved sweep, its recipe and storage), ``study.db`` (the default
SQLite storage), ``stages/`` (every trial's stages), ``trials/trial-NNNN/`` (a run directory each, whose ``stages``
is a relative link to ``../../stages``), ``logs/worker-K.log`` (with ``--workers``), ``best/`` (``final: true``).

A worker takes a trial only while fewer than ``trials`` trials have started, checked and asked under one file
lock in the sweep directory (which workers on many machines share with the stage store), so the study never holds
more trials than asked for and no two workers ever take the same one.
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..config import load_recipe
from ..errors import UserError
from ..io import exclusive, read_json, write_json
from ..progress import clock
from ..report import markdown as _report  # noqa: F401  (registers the report stage kind the trials end with)
from ..runner.execute import print_plan, run_stages
from ..runner.kinds import METRICS_FILE, result_file, trains_model
from ..runner.plan import Plan, make_plan
from .config import SweepConfig
from .space import draw, overrides_for
from .study import default_storage, open_study, safe_url

SWEEP_FILE = "sweep.json"
INTERRUPTED = "interrupted"  # the error line of a trial stopped by Ctrl-C: the next run retries it


class AskLock:
    """The sweep directory's lock around "count the trials, then ask for one" (a blocking ``flock``)."""

    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / ".ask.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def link_stage_store(run_dir: Path, store: Path) -> None:
    """Make ``run_dir/stages`` (and its fine-tuning cache, ``cache``) the sweep's shared ones: relative links to
    ``store`` and the ``cache`` folder beside it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("stages", store), ("cache", store.parent / "cache")):
        target.mkdir(parents=True, exist_ok=True)
        link = run_dir / name
        if not link.is_symlink():
            if link.exists():
                raise UserError(f"{link} exists and is not the sweep's shared {name} folder; remove it")
            link.symlink_to(os.path.relpath(target, run_dir), target_is_directory=True)


def metric_at(result: Any, path: str, where: str) -> tuple[float, list | None]:
    """The number at dotted ``path`` in ``result``, with the ``ci`` beside it when there is one."""
    node, parent = result, None
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            have = ", ".join(node) if isinstance(node, dict) else type(node).__name__
            raise UserError(f"objective.metric {path}: no '{key}' in {where} (it has: {have}); fix the metric path")
        parent, node = node, node[key]
    if not isinstance(node, int | float) or isinstance(node, bool):
        raise UserError(f"objective.metric {path} in {where} is {node!r}, not a number; point it at a number")
    ci = parent.get("ci") if isinstance(parent, dict) else None
    return float(node), ci if isinstance(ci, list) and len(ci) == 2 else None


def read_objective(cfg: SweepConfig, plan: Plan) -> tuple[float, list | None]:
    o = cfg.objective
    if o.stage == "verdicts":
        path = plan.run_dir / "verdicts.json"
        rows = read_json(path) or []
        row = next((r for r in rows if r.get("comparison") == o.comparison), None)
        if row is None:
            names = ", ".join(r.get("comparison", "?") for r in rows)
            raise UserError(f"objective.comparison '{o.comparison}' is not in {path} (it has: {names})")
        return metric_at(row, o.metric, str(path))
    stage = plan.stage(o.stage)
    path = plan.path(stage) / result_file(stage.kind)
    result = read_json(path)
    if result is None:
        raise UserError(f"objective: {path} is missing or unreadable; the stage {o.stage} did not finish")
    return metric_at(result, o.metric, str(path))


def pruned_stage(cfg: SweepConfig, plan: Plan) -> str | None:
    """The training stage that reports intermediate values to the pruner, or None without a pruner."""
    if cfg.pruner.type == "none":
        return None
    name = cfg.pruner.stage
    if name is None:
        if cfg.objective.stage == "verdicts":
            raise UserError("pruner: with objective.stage 'verdicts' name the training stage to report from "
                            "(pruner.stage: e.g. student:s1)")
        s = plan.stage(cfg.objective.stage)
        name = s.model_stage or s.name
    if name not in [s.name for s in plan.stages] or not trains_model(plan.stage(name).kind):
        raise UserError(f"pruner.stage '{name}' is not a training stage of the recipe; the training stages are: "
                        f"{', '.join(s.name for s in plan.stages if trains_model(s.kind))}")
    return name


def check_stages(cfg: SweepConfig, plan: Plan) -> None:
    names = [s.name for s in plan.stages]
    if cfg.objective.stage != "verdicts" and cfg.objective.stage not in names:
        raise UserError(f"objective.stage '{cfg.objective.stage}' is not a stage of the recipe; the stages are: "
                        f"{', '.join(names)}")
    pruned_stage(cfg, plan)


class PruningReporter(TrainerCallback):
    """A ``TrainerCallback`` that reports each eval loss to the trial (per epoch or per step) and stops training
    when the pruner says so. The value is the loss when the study minimises, minus the loss when it maximises (a
    pruner compares intermediate values in the study's direction)."""

    def __init__(self, trial, resource: str, sign: float):
        self.trial, self.resource, self.sign, self.reported = trial, resource, sign, set()

    def report(self, epoch: float | None, step: int, loss: float) -> None:
        import optuna

        at = int(round(epoch or 0)) if self.resource == "epoch" else int(step)
        if at < 1 or at in self.reported or loss is None or not math.isfinite(loss):
            return
        self.reported.add(at)
        self.trial.report(self.sign * loss, at)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {self.resource} {at} (eval loss {loss:.4f})")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self.report(state.epoch, state.global_step, metrics["eval_loss"])

    def replay(self, metrics_file: Path) -> None:
        """Report a reused stage's eval history, so the study sees its curve too."""
        for e in (read_json(metrics_file) or {}).get("eval_history", []):
            self.report(e.get("epoch"), e.get("step", 0), e.get("eval_loss"))


def retried_numbers(trials) -> set[int]:
    """Trials another trial retries (Optuna's retry callback records each retry's predecessor)."""
    return {t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")}


def counted(trials) -> list:
    """The trials that count towards ``trials``: started ones that no retry replaced."""
    import optuna

    again = retried_numbers(trials)
    return [t for t in trials if t.state != optuna.trial.TrialState.WAITING and t.number not in again]


def retry_interrupted(study) -> None:
    """Queue a retry of every trial a Ctrl-C stopped (same parameters), so that a stopped sweep continues where it
    was; a killed worker's trial is retried by the storage's heartbeat callback."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    again = retried_numbers(trials)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
    for t in trials:
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("error") == INTERRUPTED \
                and t.number not in again:
            retry(study, t)


def trial_line(t) -> str:
    values = t.user_attrs.get("values", t.params)
    params = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
    dur = clock(t.duration.total_seconds()) if t.duration else "-"
    value = f"{t.value:.6g}" if t.value is not None else "-"
    err = f" ({t.user_attrs['error']})" if t.user_attrs.get("error") else ""
    return f"trial {t.number}: {t.state.name.lower()} {value} in {dur} [{params}]{err}"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Sweep:
    """One sweep directory: the config, its recipe, the storage, and what runs trials in it."""

    def __init__(self, cfg: SweepConfig, recipe: Path, sweep_dir: Path, storage: str | None,
                 data_root: str | None):
        self.cfg, self.recipe, self.dir, self.data_root = cfg, recipe, sweep_dir.resolve(), data_root
        self.storage = storage or default_storage(self.dir)
        self.store = Path(cfg.stage_store).resolve() if cfg.stage_store else self.dir / "stages"
        self._study = None

    def study(self, worker: int = 0):
        """The study, opened (and created on first use) once per Sweep: a poll reads it, it does not reconnect."""
        if self._study is None:
            self._study = open_study(self.cfg, self.storage, worker)
        return self._study

    @property
    def n_trials(self) -> int:
        return self.cfg.trials or self.cfg.grid_size

    def record(self) -> None:
        """sweep.json: what `sweep report` and `sweep best` read (the config, recipe, storage URL)."""
        # a password never goes to disk: `sweep report --storage URL` then names the storage again
        write_json(self.dir / SWEEP_FILE, {"sweep": self.cfg.model_dump(mode="json"), "recipe": str(self.recipe),
                                          "storage": safe_url(self.storage), "data_root": self.data_root,
                                          "trials": self.n_trials})

    def plan_for(self, overrides: list[str], run_dir: Path) -> tuple[Any, Plan]:
        recipe = load_recipe(self.recipe, overrides, self.data_root)
        return recipe, make_plan(recipe, run_dir)

    def check(self) -> None:
        """Validate the recipe with the fixed overrides and the objective's stage before anything is written."""
        _, plan = self.plan_for(self.cfg.fixed_overrides, self.dir / "trials" / "check")
        check_stages(self.cfg, plan)

    # ---------------------------------------------------------------------------------------------------------
    def objective(self, trial, ask_lock: AskLock | None = None) -> float:
        if ask_lock is not None:
            ask_lock.release()  # the trial exists now: other workers may ask for theirs
        import optuna

        values = draw(trial, self.cfg)
        overrides = overrides_for(self.cfg, values)
        run_dir = self.dir / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("values", values)
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("run_dir", os.path.relpath(run_dir, self.dir))
        trial.set_user_attr("host", f"{os.uname().nodename}:{os.getpid()}")
        trial.set_user_attr("error", "")  # a retry starts with the attributes of the trial it retries
        drawn = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        print(f"\n=== trial {trial.number} of {self.n_trials} ({drawn}) in {run_dir} ===", flush=True)
        try:
            recipe, plan = self.plan_for(overrides, run_dir)
            check_stages(self.cfg, plan)
            link_stage_store(run_dir, self.store)
            stage = self.cfg.objective.stage
            selected = plan.stages if stage == "verdicts" else plan.closure([stage])
            callbacks = {}
            prune_at = pruned_stage(self.cfg, plan)
            if prune_at:
                reporter = PruningReporter(trial, self.cfg.pruner.resource,
                                           1.0 if self.cfg.objective.direction == "minimize" else -1.0)
                callbacks[prune_at] = [reporter]
            try:
                run_stages(recipe, plan, selected, stage_locks="wait", callbacks=callbacks)
            except optuna.TrialPruned:
                # the stage holds this trial's parameters only; its checkpoints would only resume them
                shutil.rmtree(plan.path(prune_at), ignore_errors=True)
                raise
            if prune_at:
                reporter.replay(plan.path(prune_at) / METRICS_FILE)
            value, ci = read_objective(self.cfg, plan)
            if not math.isfinite(value):
                raise UserError(f"objective {self.cfg.objective.metric} of {self.cfg.objective.stage} is {value}")
            if ci:
                trial.set_user_attr("ci", ci)
            return value
        except optuna.TrialPruned as e:
            print(f"trial {trial.number}: {e}", flush=True)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("error", INTERRUPTED)
            raise
        except Exception as e:
            line = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not isinstance(e, UserError):
                line = f"{type(e).__name__}: {line}"
            trial.set_user_attr("error", line[:1000])
            print(f"trial {trial.number} failed: {line}", flush=True)
            raise

    def work(self, worker: int = 0) -> int:
        """Take trials until the study holds ``n_trials`` of them; returns how many this worker ran."""
        import optuna

        self.dir.mkdir(parents=True, exist_ok=True)
        study = self.study(worker)
        lock, ran = AskLock(self.dir), 0
        while True:
            lock.acquire()
            try:
                optuna.storages.fail_stale_trials(study)  # a killed worker's trial: failed, and queued again
                retry_interrupted(study)
                if len(counted(study.get_trials(deepcopy=False))) >= self.n_trials:
                    break
                study.optimize(lambda t: self.objective(t, lock), n_trials=1, catch=(Exception,),
                               gc_after_trial=True)
                ran += 1
            finally:
                lock.release()
            print(trial_line(_last_of(study)), flush=True)
        return ran

    # ---------------------------------------------------------------------------------------------------------
    def finished(self) -> bool:
        import optuna

        st = optuna.trial.TrialState
        trials = self.study().get_trials(deepcopy=False)
        done = [t for t in counted(trials) if t.state in (st.COMPLETE, st.PRUNED, st.FAIL)]
        return len(done) >= self.n_trials and not any(t.state in (st.RUNNING, st.WAITING) for t in trials)

    def final_run(self) -> str | None:
        """``final: true``: the whole recipe with the best trial's overrides in SWEEP_DIR/best; its report."""
        try:
            best = self.study().best_trial
        except ValueError:
            print("no trial completed: no final run", flush=True)
            return None
        run_dir = self.dir / "best"
        recipe, plan = self.plan_for(best.user_attrs["overrides"], run_dir)
        link_stage_store(run_dir, self.store)
        print(f"\n=== final run: the recipe with trial {best.number}'s overrides in {run_dir} ===", flush=True)
        print_plan(recipe, plan, plan.stages)
        with exclusive(run_dir, "final run directory"):
            summary = run_stages(recipe, plan, plan.stages, stage_locks="wait")
        write_json(run_dir / "best_trial.json", {"number": best.number, "value": best.value,
                                                  "values": best.user_attrs.get("values"),
                                                  "overrides": best.user_attrs["overrides"]})
        return summary

    def spawn(self, workers: int, argv_tail: list[str]) -> int:
        """Start ``workers`` worker processes here (each this command with ``--workers 1``), print each finished
        trial, and wait for them; Ctrl-C stops them (their trials are marked failed by the heartbeat)."""
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        procs = []
        env = dict(os.environ)
        # N workers on one machine share its cores: each gets its share of threads, not all of them each (unless
        # the user set OMP_NUM_THREADS)
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))
        for i in range(workers):
            cmd = [sys.executable, "-m", "babyllama", "sweep", "run", *argv_tail, "--workers", "1",
                   "--worker-index", str(i), "--storage", self.storage, "--no-final"]
            log = open(logs / f"worker-{i}.log", "ab")
            procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        print(f"{workers} workers started; their logs: {logs}/worker-*.log", flush=True)
        seen: set[int] = set()
        try:
            while True:
                alive = [p for p, _ in procs if p.poll() is None]
                self._print_new(seen)
                if not alive:
                    break
                time.sleep(2)
        except KeyboardInterrupt:
            for p, _ in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            for p, _ in procs:
                p.wait()
            raise
        finally:
            for _, log in procs:
                log.close()
        self._print_new(seen)
        bad = [i for i, (p, _) in enumerate(procs) if p.returncode != 0]
        if bad:
            raise UserError(f"worker(s) {', '.join(map(str, bad))} stopped with an error; see "
                            f"{logs}/worker-{bad[0]}.log")
        return 0

    def _print_new(self, seen: set[int]) -> None:
        import optuna

        st = optuna.trial.TrialState
        for t in self.study().get_trials(deepcopy=False):
            if t.number not in seen and t.state in (st.COMPLETE, st.PRUNED, st.FAIL):
                seen.add(t.number)
                print(trial_line(t), flush=True)


def _last_of(study):
    """The trial this process ran last (its host attribute), else the newest."""
    me = f"{os.uname().nodename}:{os.getpid()}"
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("host") == me]
    return (mine or study.get_trials(deepcopy=False))[-1]

