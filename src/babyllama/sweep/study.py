"""The study on Optuna: its storage (SQLite in the sweep directory, or any database URL), sampler and pruner.

Storage is Optuna's ``RDBStorage`` with its heartbeat on: a running trial beats every ``heartbeat.interval``
seconds, and a trial whose last beat is older than ``heartbeat.grace`` (its worker was killed) is marked failed by
the next trial any worker starts, and queued once more with the same parameters. SQLite waits up to a minute for a
lock another worker holds instead of failing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError
from .config import SweepConfig
from .space import grid_space

STUDY_FILE = "study.db"


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"


def open_storage(url: str, cfg: SweepConfig):
    """Optuna's RDB storage at ``url``; a URL that cannot be opened is one line naming it."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat's
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=cfg.heartbeat.interval, grace_period=cfg.heartbeat.grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as e:  # sqlalchemy's errors name the driver or the server; keep the first line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if isinstance(e, ImportError):
            first += (f" - no module {e.__cause__.name!r}" if isinstance(e.__cause__, ImportError) else "") + \
                "; for PostgreSQL: pip install 'babyllama[postgres]'"
        raise UserError(f"study storage {safe_url(url)}: cannot open the study storage ({type(e).__name__}: {first}); "
                        "pass a database URL Optuna accepts (sqlite:///PATH, postgresql://USER@HOST/DB, "
                        "mysql://...) whose server is up and whose driver is installed") from None


def safe_url(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def make_sampler(cfg: SweepConfig, worker: int = 0):
    import optuna

    s = cfg.sampler
    if s.type == "grid":
        # every worker must shuffle the grid alike: trial n takes grid point n of the shuffled list
        return optuna.samplers.GridSampler(grid_space(cfg), seed=s.seed or 0)
    seed = None if s.seed is None else s.seed + worker  # workers drawing alike would repeat each other's trials
    if s.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials)


def make_pruner(cfg: SweepConfig):
    import optuna

    p = cfg.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=p.max_resource,
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def open_study(cfg: SweepConfig, storage_url: str, worker: int = 0, create: bool = True):
    """The sweep's study, created on first use; an existing study of another direction is one line."""
    import optuna

    logging.getLogger("optuna").setLevel(logging.WARNING)
    storage = open_storage(storage_url, cfg)
    kw = dict(study_name=cfg.name, storage=storage, sampler=make_sampler(cfg, worker), pruner=make_pruner(cfg))
    try:
        if create:
            study = optuna.create_study(direction=cfg.objective.direction, load_if_exists=True, **kw)
        else:
            study = optuna.load_study(**kw)
    except KeyError:
        raise UserError(f"no study '{cfg.name}' in {safe_url(storage_url)}; run `babyllama sweep SWEEP.yaml` "
                        "first") from None
    if study.direction.name.lower() != cfg.objective.direction:
        raise UserError(f"study '{cfg.name}' in {safe_url(storage_url)} {study.direction.name.lower()}s its objective, "
                        f"the sweep file says {cfg.objective.direction}; use another name: or sweep directory")
    return study
