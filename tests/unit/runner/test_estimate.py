"""The up-front estimate: measured rates price each stage, and make's schedule gives the wall time."""

import json
from pathlib import Path

import pytest
import torch

from babyllama.config import load_recipe
from babyllama.runner.estimate import (DISTILL_STEP_COST, REPORT_S, TRAIN_RUN_FACTOR, WARM_STAGE_S, Rates, estimate, eval_work,
                                       finetune_work, makespan, measure, stage_seconds, _setup_key, _model_key,
                                       _train_tokens, _eval_tokens, _data_tokens)
from babyllama.runner.plan import Plan, Stage, make_plan
from helpers import REPO, need_shared, run_here

SMOKE = REPO / "recipes" / "smoke.yaml"


@pytest.fixture
def plan(data_root, tmp_path):
    return make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "r")


def _toy_plan(deps: dict[str, list[str]]) -> Plan:
    return Plan(Path("/tmp/x"), {}, [Stage(n, "pretrain", "k", Path(n), deps=d) for n, d in deps.items()])


def test_the_schedule_is_makes_with_n_slots():
    p = _toy_plan({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []})
    sec = {"a": 10.0, "b": 5.0, "c": 7.0, "d": 1.0, "e": 4.0}
    assert makespan(p, sec, 1) == pytest.approx(27.0)
    # two slots: a | e, then b and c side by side after a (e's slot frees at 4 and waits for a), d after c
    assert makespan(p, sec, 2) == pytest.approx(18.0)
    assert makespan(p, sec, 8) == pytest.approx(18.0)  # the critical path a -> c -> d


def _rates(plan, train=1e-4, fwd=1e-5, startup=2.0) -> Rates:
    """Every setup at ``train`` s/token, every model at ``fwd`` s/token in fp32 and half that in bf16."""
    r = Rates(startup_s=startup)
    for s in plan.stages:
        if s.config is not None:
            r.train[_setup_key(s)] = train
            r.forward[_model_key(s)] = {"fp32": fwd, "bf16": fwd / 2}
    return r


def test_stages_forked_warm_pay_the_start_up_once(plan, monkeypatch):
    rates = _rates(plan)
    monkeypatch.delenv("BABYLLAMA_WARM", raising=False)
    warm = stage_seconds(plan, rates)
    monkeypatch.setenv("BABYLLAMA_WARM", "0")
    fresh = stage_seconds(plan, rates)
    first = plan.stages[0].name
    assert warm[first] == fresh[first] and warm["tokenizer"] == pytest.approx(fresh["tokenizer"] - 2.0 + WARM_STAGE_S)
    assert all(warm[s.name] == pytest.approx(fresh[s.name] - 2.0 + WARM_STAGE_S) for s in plan.stages[1:])


def test_stages_are_priced_by_their_tokens_at_the_measured_rates(plan, monkeypatch):
    monkeypatch.setenv("BABYLLAMA_WARM", "0")  # each stage a fresh process, paying the start-up (warm: above)
    plan.recipe["eval"]["precision"] = "fp32"  # one rate for every suite (exact bf16 below)
    for s in plan.stages:
        if s.config is not None:
            s.config.training.precision = "fp32"
    rates = _rates(plan)
    sec = stage_seconds(plan, rates)
    step = 1e-4 * TRAIN_RUN_FACTOR
    teacher = plan.stage("teacher:llama-tiny")
    assert sec[teacher.name] == pytest.approx(2.0 + _train_tokens(teacher) * step + _eval_tokens(teacher) * 1e-5)
    assert sec["prepare"] == sec["tokenizer"] == 2.0
    base, student = plan.stage("baseline:s1"), plan.stage("student:s1")
    teachers = [d for d in student.deps if plan.stage(d).role == "teacher"]
    assert not student.config.distill.cache.enabled and len(teachers) == 2
    # live teachers: both run forward at every step
    assert sec[student.name] - sec[base.name] == pytest.approx(_train_tokens(student) * 2 * 1e-5)
    # cached: the first student builds the cache, both teachers' passes over the training data once
    student.config.distill.cache.enabled = True
    cached = stage_seconds(plan, rates)
    extra = _train_tokens(student) * step * (DISTILL_STEP_COST - 1) + _data_tokens(student) * 2 * 1e-5
    assert cached[student.name] - cached[base.name] == pytest.approx(extra)
    student.config.distill.cache.enabled = False
    work = eval_work(plan)
    assert work.ranked > 0 and work.values > 0
    per_model = work.per_model_s + work.ranked * 1e-5 + work.values * 1e-5
    assert sec["eval:student:s1"] == pytest.approx(2.0 + work.overhead_s + per_model)
    assert sec["eval:ensemble"] == pytest.approx(2.0 + work.overhead_s + 2 * per_model)  # both teachers
    ft = finetune_work(plan)
    assert sec["finetune:student:s1"] == pytest.approx(2.0 + ft.overhead_s + ft.values * 1e-5)
    # twice the measured seconds per token, twice the training time
    slow = stage_seconds(plan, _rates(plan, train=2e-4))
    assert slow[teacher.name] - 2.0 - _eval_tokens(teacher) * 1e-5 == \
        pytest.approx(2 * _train_tokens(teacher) * step)
    # exact bf16 ranks in bf16 and a share again in fp32: cheaper than fp32 here, values (perplexity) still fp32
    plan.recipe["eval"]["precision"] = "exact_bf16"
    exact = stage_seconds(plan, rates)["eval:student:s1"]
    assert 2.0 + work.overhead_s + work.per_model_s + work.values * 1e-5 < exact < sec["eval:student:s1"]


def test_measured_rates_cover_every_setup_and_leave_the_threads_as_they_were(plan):
    before = torch.get_num_threads()
    rates = measure(plan, parallel=1, steps=2, warmup=1)
    assert torch.get_num_threads() == before
    keys = {_setup_key(s) for s in plan.stages if s.config is not None}
    assert set(rates.train) == keys and all(v > 0 for v in rates.train.values())
    assert all(v > 0 for by in rates.forward.values() for v in by.values()) and rates.measured_s > 0
    est = estimate(plan, 2, rates)
    assert est.wall_s == pytest.approx(makespan(plan, est.seconds, 2) + REPORT_S)
    assert est.wall_s < estimate(plan, 1, rates).wall_s  # two at a time is shorter
    assert "estimated time of the whole job on this machine" in est.line() and "two stages at a time" in est.line()


def test_the_runner_prints_it_before_a_fresh_run_and_keeps_it(data_root, tmp_path, capsys):
    run_dir, mk = tmp_path / "r", tmp_path / "stages.mk"
    common = ["run", SMOKE, "--data-root", data_root, "--run-dir", run_dir, "--makefile", mk]
    r = run_here(capsys, *common)
    assert r.returncode == 0, r.stderr
    assert "estimated time of the whole job on this machine" in r.stdout and "two stages at a time" in r.stdout
    kept = json.loads((run_dir / "estimate.json").read_text())
    assert kept["parallel"] == 2 and kept["wall_s"] > 0 and "teacher:llama-tiny" in kept["stages_s"]
    r = run_here(capsys, *common, "--no-estimate")
    assert r.returncode == 0 and "estimated time" not in r.stdout


def test_reading_prices_its_one_context_passes_per_model_and_per_ensemble_member(plan, monkeypatch):
    monkeypatch.setenv("BABYLLAMA_WARM", "0")
    from babyllama.runner.estimate import READING_CONTEXTS_PER_ROW, READING_FORWARD_S

    without = eval_work(plan)
    assert without.per_model_s == 0
    plan.recipe["eval"]["suites"] = ["reading"]
    plan.recipe["eval"]["eval_root"] = str(need_shared() / "eval")
    plan.recipe["eval"]["precision"] = "fp32"
    work = eval_work(plan)
    rows = 1726  # the BabyLM 2025 reading_data.csv
    assert work.per_model_s == pytest.approx(READING_FORWARD_S * READING_CONTEXTS_PER_ROW * rows)
    sec = stage_seconds(plan, _rates(plan))
    single = sec["eval:student:s1"] - 2.0 - work.overhead_s
    assert sec["eval:ensemble"] - 2.0 - work.overhead_s == pytest.approx(2 * single)  # both members' passes
