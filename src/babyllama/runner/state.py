"""The state of a stage, defined once (``babyllama run`` decides by it, ``babyllama status`` prints it).

* ``done``: the stage directory's ``run_info.json`` says complete and, for an eval stage, the model(s) it evaluated
  are the ones their stages hold now (same finish stamps; an ensemble's are all its members');
* ``stale``: an eval stage whose model was trained again after it ran;
* ``partial``: a training stage with checkpoints to resume from;
* ``todo``: nothing usable yet.
"""

from __future__ import annotations

from ..io import read_json
from ..runinfo import is_complete, read_run_info
from .kinds import METRICS_FILE, trains_model
from .plan import Plan, Stage

ACTIONS = {"done": "reuse", "stale": "rerun", "partial": "resume", "todo": "run"}


def stage_state(plan: Plan, stage: Stage) -> str:
    d = plan.path(stage)
    if is_complete(d):
        if not stage.evaluated:
            return "done"
        now = finish_stamps(plan, stage)
        ran_on = (read_run_info(d) or {}).get("model_finished_at")
        return "done" if ran_on is not None and ran_on == now else "stale"
    if d.is_dir() and any(d.glob("checkpoint-*")):
        return "partial"
    return "todo"


def finish_stamps(plan: Plan, stage: Stage):
    """The finish stamp of the model an eval/finetune stage scores (a list of them for an ensemble): recorded by
    the stage, compared by :func:`stage_state`."""
    stamps = [(read_run_info(plan.path(m)) or {}).get("finished_at") for m in stage.evaluated]
    return stamps if stage.role == "ensemble" else stamps[0]


def stage_wall_s(plan: Plan, stage: Stage, metrics: dict | None = None) -> float | None:
    """Seconds a finished stage took: a training stage's own figure (``metrics.json``, or ``metrics`` when the
    caller has read it already), else its run_info's."""
    d = plan.path(stage)
    met = metrics if metrics is not None else read_json(d / METRICS_FILE) if trains_model(stage.kind) else None
    return (met or {}).get("wall_s", (read_run_info(d) or {}).get("wall_s"))


def status_table(plan: Plan) -> str:
    rows = [("stage", "state", "directory")]
    rows += [(s.name, stage_state(plan, s), str(s.dir)) for s in plan.stages]
    w = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{a:<{w[0]}}  {b:<{w[1]}}  {c}" for a, b, c in rows)
