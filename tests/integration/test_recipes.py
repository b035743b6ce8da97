"""Recipes plan on the shared data; `babyllama run recipes/smoke.yaml` runs every stage, reuses finished ones, reruns
what changed, resumes an interrupted training stage, and its run directory works from anywhere and after a move."""

import json
import os
import shutil
from pathlib import Path

import pytest

from babyllama.config import load_recipe
from babyllama.runner.plan import load_plan, make_plan
from helpers import REPO, SHARED, need_shared, one_error_line, parse_plan_lines, parse_status, run_cli

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
SMOKE = REPO / "recipes" / "smoke.yaml"


PAPER = {"babyllama-58m.yaml", "babyllama2-345m.yaml"}
SHARED_TASKS = "finetune.tasks=[cola,mrpc,qqp,mnli,mnli-mm,rte,wsc]"  # what the incomplete shared copy can train


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_plans_on_the_shared_data(path):
    need_shared()
    overrides = [SHARED_TASKS] if path.name in PAPER else []
    stages = make_plan(load_recipe(path, overrides, str(SHARED)), Path("/tmp/unused-run-dir")).stages
    names = [s.name for s in stages]
    assert names[:2] == ["prepare", "tokenizer"] and any(n.startswith("student:") for n in names)
    models = sum(s.kind in ("pretrain", "distill") for s in stages)
    ensembles = len({s.seed for s in stages if s.role == "teacher"}) if sum(s.role == "teacher" for s in stages) > 1 \
        else 0
    assert sum(n.startswith("eval:") for n in names) == models + ensembles
    assert [s.name for s in stages if s.role == "ensemble"] == (["eval:ensemble"] if ensembles else [])
    assert sum(n.startswith("finetune:") for n in names) in (0, models)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipes_fine_tune_on_every_task_and_say_which_file_is_missing(name):
    need_shared()
    recipe = load_recipe(REPO / "recipes" / name, [], str(SHARED))
    assert len(recipe.finetune.tasks) == (22 if name == "babyllama-58m.yaml" else 11)
    assert recipe.finetune.protocol == ("babylm2023" if name == "babyllama-58m.yaml" else "babylm2024")
    r = run_cli("run", REPO / "recipes" / name, "--data-root", SHARED, "--dry-run")
    line = one_error_line(r)
    assert "train" in line and "not found" in line and "osf.io" in line


def test_paper_recipes_match_the_papers():
    p1 = load_recipe(REPO / "recipes" / "babyllama-58m.yaml", [], "/data")
    assert [t.model.preset for t in p1.teachers] == ["llama-360m", "gpt2-705m"]
    assert [t.training.learning_rate for t in p1.teachers] == [3e-4, 2.5e-4]
    assert p1.student.model.preset == "babyllama-58m" and p1.student.training.learning_rate == 2.5e-4
    assert (p1.distill.temperature, p1.distill.alpha, p1.distill.kl_reduction) == (2.0, 0.5, "paper")
    assert p1.tokenizer.vocab_size == 16000
    p2 = load_recipe(REPO / "recipes" / "babyllama2-345m.yaml", [], "/data")
    assert [t.model.preset for t in p2.teachers] == ["smollama-345m"] * 2
    assert len({t.training.seed for t in p2.teachers}) == 2
    assert all("seed" in t.training.model_fields_set for t in p2.teachers)
    assert (p2.distill.temperature, p2.distill.alpha) == (1.0, 0.5)
    assert p2.student.training.weight_decay == 5.0 and p2.student.training.learning_rate == 7e-4


@pytest.mark.slow
def test_smoke_recipe_end_to_end(tmp_path, capsys, monkeypatch):
    need_shared()

    def here(*args, cwd=None):
        """A command in this process (no interpreter start-up), from ``cwd``."""
        from types import SimpleNamespace

        from babyllama.cli import main

        capsys.readouterr()
        with monkeypatch.context() as m:
            if cwd is not None:
                m.chdir(cwd)
            code = main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    rd = tmp_path / "run"
    common = ["--data-root", str(SHARED), "--run-dir", str(rd)]
    r = here("run", SMOKE, *common)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "student - baseline" in r.stdout and "student - llama-tiny" in r.stdout
    assert "student - ensemble" in r.stdout and "| ensemble | ensemble | 1 | - | - | " in r.stdout
    report = (rd / "report.md").read_text()
    assert "## Verdict" in report and "dev CE" in report and "## Perplexity per domain" in report
    assert "## Fine-tuning" in report and "| rte (acc) | wsc (acc) | **macro** |" in report
    assert "- **student - baseline** (seeds 1; 2 pairs): rte " in report
    assert "## Fine-tuning verdict" in r.stdout
    fv = json.loads((rd / "finetune_verdicts.json").read_text())
    assert {v["comparison"] for v in fv} == {"student - llama-tiny", "student - gpt2-tiny", "student - baseline"}
    assert set(fv[0]["tasks"]) == {"rte", "wsc", "macro"} and fv[0]["tasks"]["rte"]["n"] == 2
    for fig in ("loss_curves.png", "blimp_phenomena.png", "perplexity_domains.png"):
        assert (rd / fig).stat().st_size > 10_000
    # what each figure was measured on, what it cost, what every model was, and the tables for a paper
    assert "minimal pairs over" in report and "**dev CE** (the one used in this report" in report
    assert "(one seed (1): the CIs cover item sampling only" in report
    assert "## Compute" in report and "| student:s1 | distill |" in report and "Stage wall times add up to " in report
    assert "from the first stage's start to the last one's end: 0:" in report
    assert "## Hyperparameters" in report and "## Appendix: accuracy per paradigm" in report
    for stem in ("models", "verdicts", "compute", "hyperparameters"):
        assert (rd / "tables" / f"{stem}.csv").is_file() and (rd / "tables" / f"{stem}.tex").is_file()
    vs = json.loads((rd / "verdicts.json").read_text())
    assert {v["comparison"] for v in vs} == {"student - llama-tiny", "student - gpt2-tiny", "student - ensemble",
                                             "student - baseline"}

    # run again: everything is reused
    r = here("run", SMOKE, *common, "--dry-run")
    actions = parse_plan_lines(r.stdout)
    assert r.returncode == 0 and len(actions) == 15 and set(actions.values()) == {"reuse"}

    # a changed distillation setting re-runs the student and its eval only
    r = here("run", SMOKE, *common, "--dry-run", "--set", "distill.alpha=0.3")
    assert [n for n, a in parse_plan_lines(r.stdout).items() if a != "reuse"] == [
        "student:s1", "eval:student:s1", "finetune:student:s1"]
    # a changed fine-tuning setting re-runs the finetune stages only
    r = here("run", SMOKE, *common, "--dry-run", "--set", "finetune.max_epochs=2")
    assert [n for n, a in parse_plan_lines(r.stdout).items() if a != "reuse"] == [
        "finetune:teacher:llama-tiny", "finetune:teacher:gpt2-tiny", "finetune:baseline:s1", "finetune:student:s1"]

    # an interrupted student stage resumes from its checkpoint
    plan = load_plan(rd)
    student = plan.path("student:s1")
    last = sorted(student.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(last) == 2
    shutil.rmtree(last[-1])
    (student / "run_info.json").unlink()
    r = here("status", rd)
    assert parse_status(r.stdout)["student:s1"] == "partial"
    r = here("run", SMOKE, *common)
    assert r.returncode == 0 and "resuming from" in r.stdout and "stage 6/15: student:s1" in r.stdout
    assert "stage 10/15: eval:student:s1" in r.stdout  # the re-finished model is evaluated again
    assert "stage 15/15: finetune:student:s1" in r.stdout  # and fine-tuned again
    assert "stage 7/15" not in r.stdout and "stage 3/15" not in r.stdout  # the others are reused
    assert "eval:ensemble" not in r.stdout.split("resuming from")[1]  # its teachers did not change
    r = here("report", rd)
    assert r.returncode == 0 and "student - baseline" in r.stdout

    # the run directory works from another directory, and after it was moved: nothing to redo, same verdicts
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = here("status", rd, cwd=elsewhere)
    assert set(parse_status(r.stdout).values()) == {"done"}, r.stdout
    before = (rd / "report.md").read_text()
    r = here("report", rd, cwd=elsewhere)
    assert r.returncode == 0 and "not trained" not in (rd / "report.md").read_text()
    assert json.loads((rd / "verdicts.json").read_text()) == vs  # seeded bootstrap: the same numbers
    moved = tmp_path / "moved"
    os.rename(rd, moved)
    r = here("status", moved, cwd=elsewhere)
    assert set(parse_status(r.stdout).values()) == {"done"}, r.stdout
    r = here("run", SMOKE, "--data-root", SHARED, "--run-dir", moved, "--dry-run")
    assert set(parse_plan_lines(r.stdout).values()) == {"reuse"}, r.stdout
    r = here("report", moved, cwd=elsewhere)
    assert r.returncode == 0 and "student - baseline" in r.stdout
    assert (moved / "report.md").read_text().split("## Models")[1] == before.split("## Models")[1]
    saved = (moved / "stages" / plan.path("student:s1").name / "babyllama_config.yaml").read_text()
    assert str(tmp_path) not in saved and "${run_dir}/stages/teacher-" in saved


def test_report_of_a_folder_without_finished_stages_keeps_what_is_there(tmp_path):
    (tmp_path / "report.md").write_text("a good report")
    (tmp_path / "plan.json").write_text(json.dumps({"recipe": {"name": "x"}, "stages": [
        {"name": "teacher:a", "kind": "pretrain", "key": "k", "dir": "stages/teacher-a-k", "role": "teacher"}]}))
    line = one_error_line(run_cli("report", tmp_path))
    assert "no finished model stage" in line
    assert (tmp_path / "report.md").read_text() == "a good report"


def test_stage_keys_follow_corpus_content_not_file_times(tmp_path):
    """A re-copied corpus (new modification times, same bytes) keeps every stage key; changed bytes change them."""
    root = tmp_path / "data"
    (root / "eval").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (root / "corpus" / split).mkdir(parents=True)
        (root / "corpus" / split / "a.txt").write_text(f"some {split} text\n")
    recipe = load_recipe(SMOKE, ["eval.suites=[perplexity]", "finetune=null"], str(root))
    keys = [s.key for s in make_plan(recipe, tmp_path / "r").stages]
    f = root / "corpus" / "train" / "a.txt"
    os.utime(f, (1, 1))
    assert [s.key for s in make_plan(recipe, tmp_path / "r").stages] == keys
    f.write_text("some train texT\n")  # same size, different bytes
    changed = [s.key for s in make_plan(recipe, tmp_path / "r").stages]
    assert changed[0] != keys[0] and all(a != b for a, b in zip(changed, keys))


GPU_RECIPE = REPO / "recipes" / "gpu-10m.yaml"
# the GPU recipe's plan with everything scaled down to what a CPU test runs in seconds: the same stages, suites,
# cache and report; only sizes, steps and items change
GPU_SCALED_DOWN = ["tokenizer.vocab_size=512", "base.data.max_train_tokens=20000", "base.data.max_eval_tokens=4096",
                   "base.data.eval_samples=null", "base.data.domains=[aochildes,cbt]", "base.training.batch_size=16",
                   "base.training.max_steps=6", "base.training.warmup_steps=2", "base.training.eval_strategy=steps",
                   "base.training.eval_steps=3",
                   "teachers.0.model={preset: llama-tiny}", "teachers.1.model={preset: gpt2-tiny}",
                   "student.model={preset: llama-tiny, num_layers: 1}", "seeds=[1, 2]", "eval.max_pairs=4",
                   "eval.ppl_max_tokens=1024", "eval.suites=[blimp_filtered, supplement, ewok, perplexity]"]


def test_gpu_recipe_dry_runs_on_the_cpu():
    need_shared()
    r = run_cli("run", GPU_RECIPE, "--data-root", SHARED, "--dry-run")
    assert r.returncode == 0, r.stderr
    names = list(parse_plan_lines(r.stdout))
    assert names[:4] == ["prepare", "tokenizer", "teacher:llama-80m", "teacher:gpt2-69m"]
    assert {f"{k}:s{s}" for k in ("baseline", "student") for s in (1, 2, 3)} <= set(names)
    assert "eval:ensemble" in names and not any(n.startswith("finetune:") for n in names)
    recipe = load_recipe(GPU_RECIPE, data_root=str(SHARED))
    assert recipe.base.data.max_train_tokens is None  # the whole corpus
    assert recipe.distill.cache.enabled and recipe.distill.cache.seed == 0  # one cache for the seeds


@pytest.mark.slow
def test_gpu_recipe_scaled_down_runs_end_to_end_on_the_cpu(tmp_path):
    need_shared()
    args = ["run", GPU_RECIPE, "--data-root", SHARED, "--run-dir", tmp_path / "gpu"]
    for s in GPU_SCALED_DOWN:
        args += ["--set", s]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    report = (tmp_path / "gpu" / "report.md").read_text()
    for line in ("**student - llama-80m**", "**student - gpt2-69m**", "**student - ensemble**",
                 "**student - baseline** (2 seeds (1,2) pooled)"):
        assert line in report
    status = parse_status(run_cli("status", tmp_path / "gpu").stdout)
    assert set(status.values()) == {"done"}
