"""The run's ETA prices the stages left by what this run's finished stages cost per unit of work."""

import time

import pytest

from babyllama.config import load_recipe
from babyllama.runinfo import write_run_info
from babyllama.runner.clock import RunClock, run_clock, stage_params, stage_work
from babyllama.runner.plan import make_plan
from babyllama.runner.state import finish_stamps
from helpers import REPO

SMOKE = REPO / "recipes" / "smoke.yaml"


@pytest.fixture
def plan(data_root, tmp_path):
    return make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "r")


def test_work_follows_parameters_and_tokens(plan):
    teacher, student = plan.stage("teacher:llama-tiny"), plan.stage("student:s1")
    assert stage_params(plan, teacher) > stage_params(plan, student) > 0
    # an eval stage scores the model of its stage; the ensemble's eval scores both teachers
    assert stage_params(plan, plan.stage("eval:teacher:llama-tiny")) == stage_params(plan, teacher)
    assert stage_params(plan, plan.stage("eval:ensemble")) == \
        stage_params(plan, teacher) + stage_params(plan, plan.stage("teacher:gpt2-tiny"))
    # the student pays for its teachers' forward pass on top of its own training
    baseline = plan.stage("baseline:s1")
    assert stage_work(plan, student) > stage_work(plan, baseline)


def test_eta_after_the_first_stage_of_each_kind(plan):
    todo = [s for s in plan.stages]
    run = RunClock(plan, todo)
    assert run.eta() == "ETA after the first training stage"
    for s in plan.stages[:2]:
        run.finished(s, 1.0)  # prepare, tokenizer: not priced
    teacher = plan.stage("teacher:llama-tiny")
    run.finished(teacher, 10.0)
    rate = 10.0 / stage_work(plan, teacher)
    left = sum(stage_work(plan, s) for s in plan.stages if s.kind in ("pretrain", "distill") and s is not teacher)
    eta = run.eta()
    assert eta.startswith("ETA ") and eta.endswith(" + evals + fine-tuning")
    h, m, sec = map(int, eta.split()[1].split(":"))
    assert abs(3600 * h + 60 * m + sec - left * rate) <= 1
    for s in plan.stages:
        if s.kind in ("pretrain", "distill") and s is not teacher:
            run.finished(s, 10.0)
    run.finished(plan.stage("eval:teacher:llama-tiny"), 2.0)
    assert run.eta().endswith(" + fine-tuning")  # evals are priced now


def seconds(eta: str) -> int:
    h, m, sec = map(int, eta.split()[1].split(":"))
    return 3600 * h + 60 * m + sec


def test_a_stage_run_by_make_keeps_the_whole_runs_clock(plan, monkeypatch):
    baseline, teacher = plan.stage("baseline:s1"), plan.stage("teacher:llama-tiny")
    assert run_clock(plan, [baseline]).todo == [baseline]  # outside make: this process's stages
    for s in plan.stages[:2]:
        write_run_info(plan.path(s), s.kind, {}, run_dir=plan.run_dir, wall_s=1.0)
    write_run_info(plan.path(teacher), "pretrain", {}, run_dir=plan.run_dir, wall_s=100.0)
    monkeypatch.setenv("BABYLLAMA_RUN_STARTED", str(int(time.time()) - 600))
    monkeypatch.setenv("BABYLLAMA_PARALLEL_STAGES", "2")
    run = run_clock(plan, [baseline])
    assert run.todo == plan.stages[3:]  # every stage not done, whichever process runs it
    assert run.elapsed() in ("0:10:00", "0:10:01")
    alone = RunClock(plan, plan.stages[3:])
    alone.finished(teacher, 100.0)  # the finished teacher's recorded wall time prices the training left
    assert abs(seconds(run.eta()) - seconds(alone.eta()) / 2) <= 1  # two jobs share the work
    assert seconds(alone.eta()) > 100


def test_a_make_runs_clock_refreshes_from_the_stages_others_finished(plan, monkeypatch):
    for s in plan.stages[:3]:  # prepare, tokenizer, the first teacher
        write_run_info(plan.path(s), s.kind, {}, run_dir=plan.run_dir, wall_s=100.0)
    monkeypatch.setenv("BABYLLAMA_RUN_STARTED", str(int(time.time())))
    run = run_clock(plan, [])
    assert run.eta().endswith(" + evals + fine-tuning")
    ev = plan.stage("eval:teacher:llama-tiny")  # another process of the make run finishes an eval stage
    write_run_info(plan.path(ev), "eval", {}, run_dir=plan.run_dir, wall_s=5.0,
                   model_finished_at=finish_stamps(plan, ev))
    assert run.eta().endswith(" + evals + fine-tuning")  # what this process saw when it started
    fresh = run.refreshed()
    assert ev not in fresh.todo and fresh.eta().endswith(" + fine-tuning")
    assert RunClock(plan, plan.stages).refreshed().todo == plan.stages  # outside make: the clock stays this process's
