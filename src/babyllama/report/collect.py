"""What a run directory holds, read once for the report: each model stage with its metrics and its evaluation.

Stage directories come from the run's ``plan.json`` resolved against where the run directory is now, and a stage
counts only in the state the runner itself would see (:func:`babyllama.runner.state.stage_state`).
"""

from __future__ import annotations

from pathlib import Path

from ..io import read_json
from ..runner.kinds import result_file, trains_model
from ..runner.plan import Plan, load_plan
from ..runner.state import stage_state


def collect(run_dir: str | Path) -> tuple[Plan, list[dict]]:
    """(plan, models): each model stage as ``{name, role, seed, dir, metrics, eval, finetune}`` (None where not
    done), then the teacher ensemble of each teacher set (role ``ensemble``: an eval, no training)."""
    plan = load_plan(run_dir)
    names = {s.name for s in plan.stages}

    def finished(stage: str, file: str) -> dict | None:
        """The result file of a stage that is done, else None."""
        if stage in names and stage_state(plan, plan.stage(stage)) == "done":
            return read_json(plan.path(stage) / file)
        return None

    models = []
    for s in plan.stages:
        if trains_model(s.kind):
            models.append({"name": s.name, "role": s.role, "seed": s.seed, "dir": plan.path(s),
                           "metrics": finished(s.name, result_file(s.kind)),
                           "eval": finished(f"eval:{s.name}", result_file("eval")),
                           "finetune": finished(f"finetune:{s.name}", result_file("finetune"))})
    for s in plan.stages:
        if s.kind == "eval" and s.role == "ensemble":
            models.append({"name": s.name.removeprefix("eval:"), "role": "ensemble", "seed": s.seed,
                           "dir": plan.path(s), "metrics": None, "eval": finished(s.name, result_file("eval")),
                           "finetune": None})
    return plan, models


def label(m: dict) -> str:
    return m["name"].replace("teacher:", "").replace("baseline:", "baseline ").replace("student:", "student ")


def pair_suite(models: list[dict], prefix: str) -> str | None:
    """The first evaluated suite whose name starts with ``prefix`` (blimp, supplement, ewok)."""
    for m in models:
        if m["eval"]:
            for s in m["eval"]["suites"]:
                if s.startswith(prefix):
                    return s
    return None


def suite_block(m: dict, suite: str | None) -> dict | None:
    if not suite or not m["eval"]:
        return None
    return m["eval"]["suites"].get(suite)


def ppl(m: dict) -> dict | None:
    return (m["eval"] or {}).get("perplexity") or None


def dev_chunks(m: dict, split: str = "dev") -> list[float] | None:
    p = ppl(m)
    if not p or split not in p:
        return None
    return [c for d in sorted(p[split]["domains"]) for c in p[split]["domains"][d].get("chunk_ce", [])]
