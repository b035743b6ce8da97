"""What a run directory holds, read once for the report: each model stage with its metrics and its evaluation.

Stage directories come from the run's ``plan.json`` resolved against where the run directory is now, and a stage
counts only in the state the runner itself would see (:func:`babyllama.runner.state.stage_state`).
"""

from __future__ import annotations

from pathlib import Path

from ..io import read_json
from ..runner.plan import Plan, load_plan
from ..runner.state import stage_state


def collect(run_dir: str | Path) -> tuple[Plan, list[dict]]:
    """(plan, models): each model stage as ``{name, role, seed, dir, metrics, eval, finetune}`` (None where not
    done)."""
    plan = load_plan(run_dir)
    names = {s.name for s in plan.stages}
    models = []
    for s in plan.stages:
        if s.kind not in ("pretrain", "distill"):
            continue
        d = plan.path(s)
        done = stage_state(plan, s) == "done"
        ev_name = f"eval:{s.name}"
        ev = None
        if ev_name in names and stage_state(plan, plan.stage(ev_name)) == "done":
            ev = read_json(plan.path(ev_name) / "eval.json")
        ft_name = f"finetune:{s.name}"
        ft = None
        if ft_name in names and stage_state(plan, plan.stage(ft_name)) == "done":
            ft = read_json(plan.path(ft_name) / "finetune.json")
        models.append({"name": s.name, "role": s.role, "seed": s.seed, "dir": d,
                       "metrics": read_json(d / "metrics.json") if done else None, "eval": ev, "finetune": ft})
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
