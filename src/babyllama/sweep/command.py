"""What the `babyllama sweep` subcommands do, as functions (the CLI's handlers in :mod:`babyllama.cli` call them):
run (or continue) a sweep, write its report, export its best overrides."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from ..config import parse_override, validate_tree
from ..errors import UserError
from ..io import read_json, require_folders, write_text
from .config import SweepConfig, load_sweep
from .study import open_study
from .worker import SWEEP_FILE, Sweep


def run_sweep(path: str | Path, *, trials: int | None = None, workers: int = 1, storage: str | None = None,
              sweep_dir: str | Path | None = None, data_root: str | None = None, worker_index: int = 0,
              final: bool = True, overrides: list[str] | None = None) -> Path:
    """Run (or continue) a sweep until its study holds ``trials`` trials; then, unless ``final`` is off (a spawned
    worker), the final run of a ``final: true`` sweep and the report. Returns the sweep directory."""
    cfg, recipe = load_sweep(path, trials, overrides)
    require_folders([Path(sweep_dir or cfg.sweep_dir)], "sweep folder")
    sweep = Sweep(cfg, recipe, Path(sweep_dir or cfg.sweep_dir), storage, data_root)
    recorded = read_json(sweep.dir / SWEEP_FILE)
    if recorded and recorded.get("sweep", {}).get("name") != cfg.name:
        raise UserError(f"{sweep.dir} holds the sweep '{recorded['sweep'].get('name')}', not '{cfg.name}'; pass "
                        "another --sweep-dir")
    sweep.check()  # the recipe, the overrides and the objective's stage, before anything is written
    sweep.dir.mkdir(parents=True, exist_ok=True)
    study = sweep.study(worker_index)
    if worker_index == 0:
        sweep.record()
    started = len(study.get_trials(deepcopy=False))
    where = sweep.storage if sweep.storage.startswith("sqlite") else "the storage"
    print(f"sweep {cfg.name}: {sweep.n_trials} trials ({started} started before), {cfg.sampler.type} sampler, "
          f"pruner {cfg.pruner.type}, objective: {cfg.objective.direction} {cfg.objective.metric} of "
          f"{cfg.objective.stage}; study in {where}; trials in {sweep.dir / 'trials'}", flush=True)
    t0 = time.time()
    if workers > 1:
        tail = [str(path), "--sweep-dir", str(sweep.dir), "--trials", str(sweep.n_trials)]
        if data_root:
            tail += ["--data-root", str(data_root)]
        for item in overrides or []:
            tail += ["--set", item]
        sweep.spawn(workers, tail)
    else:
        sweep.work(worker_index)
    if not final:
        return sweep.dir
    if cfg.final:
        if sweep.finished():
            print(sweep.final_run() or "", flush=True)
        else:
            print("trials of other workers are still running: the final run waits for the last of them "
                  "(run the same command again once they end)", flush=True)
    from .report import write_sweep_report

    print(write_sweep_report(sweep.dir, cfg, study), flush=True)
    print(f"\nsweep wall time here {time.time() - t0:.0f} s; report: {sweep.dir / 'report.md'}")
    return sweep.dir


def load_recorded(sweep_dir: str | Path) -> tuple[SweepConfig, dict]:
    rec = read_json(Path(sweep_dir) / SWEEP_FILE)
    if not isinstance(rec, dict) or "sweep" not in rec:
        raise UserError(f"{sweep_dir}: no readable {SWEEP_FILE}; is this a sweep directory made by `babyllama "
                        "sweep`?")
    return validate_tree(SweepConfig, rec["sweep"], str(Path(sweep_dir) / SWEEP_FILE)), rec


def study_of(sweep_dir: str | Path, cfg: SweepConfig, storage: str | None):
    rec = read_json(Path(sweep_dir) / SWEEP_FILE) or {}
    url = storage or rec.get("storage")
    if not url or "***" in url:
        raise UserError(f"{sweep_dir}: the storage URL is not recorded in full (it has a password); pass "
                        "--storage URL")
    return open_study(cfg, url, create=False)


def report(sweep_dir: str | Path, storage: str | None = None) -> str:
    """Write SWEEP_DIR/report.md (and its tables and figures); returns its summary lines."""
    from .report import write_sweep_report

    cfg, _ = load_recorded(sweep_dir)
    return write_sweep_report(Path(sweep_dir), cfg, study_of(sweep_dir, cfg, storage))


def export_best(sweep_dir: str | Path, out: str | Path, storage: str | None = None, overwrite: bool = False) -> str:
    """Write the best trial's overrides to ``out`` (a YAML file for `babyllama run --set-file`); returns the line
    that says so."""
    cfg, _ = load_recorded(sweep_dir)
    study = study_of(sweep_dir, cfg, storage)
    try:
        trial = study.best_trial
    except ValueError:
        raise UserError(f"{sweep_dir}: no trial has completed yet; nothing to export") from None
    if Path(out).exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    tree = {}
    for item in trial.user_attrs["overrides"]:
        keys, value = parse_override(item)
        tree[".".join(keys)] = value
    head = (f"# best trial of sweep {cfg.name}: trial {trial.number}, {cfg.objective.metric} of "
            f"{cfg.objective.stage} = {trial.value:.6g}\n# use: babyllama run RECIPE --set-file {Path(out).name}\n")
    write_text(out, head + yaml.safe_dump(tree, sort_keys=False, default_flow_style=None))
    return f"trial {trial.number} ({trial.value:.6g}): {len(tree)} overrides written to {out}"
