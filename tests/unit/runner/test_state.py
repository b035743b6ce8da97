"""One definition of a stage's state, used by `run` and `status` alike, from any directory."""

import json
import os

import pytest

from babyllama.config import load_recipe
from babyllama.runinfo import write_run_info
from babyllama.runner.plan import load_plan, make_plan, write_plan
from babyllama.runner.state import stage_state, status_table
from helpers import parse_status, run_cli
from helpers import REPO

SMOKE = REPO / "recipes" / "smoke.yaml"


@pytest.fixture
def finished_run(data_root, tmp_path):
    """A run directory whose stages are all marked finished (no training: only the state files matter here)."""
    plan = make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "run")
    write_plan(plan)
    for s in plan.stages:
        if not s.evaluated:
            write_run_info(plan.path(s), s.kind, {}, run_dir=plan.run_dir)
    for s in plan.stages:
        if s.evaluated:  # eval and finetune stages, the teachers' ensemble among them
            stamps = [json.loads((plan.path(m) / "run_info.json").read_text())["finished_at"] for m in s.evaluated]
            write_run_info(plan.path(s), s.kind, {}, run_dir=plan.run_dir,
                           model_finished_at=stamps if s.role == "ensemble" else stamps[0])
    return plan


def test_states(finished_run):
    plan = finished_run
    assert {stage_state(plan, s) for s in plan.stages} == {"done"}
    # a model trained again after its evaluation: the eval is stale, not done
    write_run_info(plan.path("student:s1"), "distill", {}, run_dir=plan.run_dir)
    assert stage_state(plan, plan.stage("eval:student:s1")) == "stale"
    assert stage_state(plan, plan.stage("finetune:student:s1")) == "stale"
    # the ensemble's eval goes stale when any of its teachers is trained again
    assert stage_state(plan, plan.stage("eval:ensemble")) == "done"
    write_run_info(plan.path("teacher:gpt2-tiny"), "pretrain", {}, run_dir=plan.run_dir)
    assert stage_state(plan, plan.stage("eval:ensemble")) == "stale"
    assert stage_state(plan, plan.stage("eval:teacher:llama-tiny")) == "done"
    # an interrupted training stage with a checkpoint: partial; nothing at all: todo
    (plan.path("baseline:s1") / "run_info.json").unlink()
    (plan.path("baseline:s1") / "checkpoint-10").mkdir()
    assert stage_state(plan, plan.stage("baseline:s1")) == "partial"
    (plan.path("teacher:gpt2-tiny") / "run_info.json").unlink()
    assert stage_state(plan, plan.stage("teacher:gpt2-tiny")) == "todo"


def test_status_is_right_from_any_directory_and_after_a_move(finished_run, tmp_path):
    plan = finished_run
    write_run_info(plan.path("student:s1"), "distill", {}, run_dir=plan.run_dir)  # its eval is stale now
    want = {s.name: stage_state(plan, s) for s in plan.stages}
    assert want["eval:student:s1"] == "stale" and want["prepare"] == "done"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_cli("status", plan.run_dir, cwd=elsewhere)
    assert r.returncode == 0 and parse_status(r.stdout) == want, r.stdout + r.stderr
    moved = tmp_path / "moved"
    os.rename(plan.run_dir, moved)
    r = run_cli("status", "moved", cwd=tmp_path)
    assert r.returncode == 0 and parse_status(r.stdout) == want
    assert parse_status(status_table(load_plan(moved))) == want
