"""Recipes validate; `babyllama run recipes/smoke.yaml` runs every stage, reuses finished ones, reruns what changed,
and resumes an interrupted training stage."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from babyllama.pipeline import load_recipe, plan
from conftest import REPO, SHARED, need_shared

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates_and_has_header(path):
    need_shared()
    recipe = load_recipe(path, [], str(SHARED))
    assert path.read_text().startswith("#"), "a recipe starts with a comment saying what it reproduces"
    stages = plan(recipe, Path("/tmp/unused-run-dir"))
    names = [s.name for s in stages]
    assert names[:2] == ["prepare", "tokenizer"] and any(n.startswith("student:") for n in names)
    assert sum(n.startswith("eval:") for n in names) == sum(s.kind in ("pretrain", "distill") for s in stages)


def test_paper_recipes_match_the_papers():
    need_shared()
    p1 = load_recipe(REPO / "recipes" / "babyllama-58m.yaml", [], str(SHARED))
    assert [t.model.preset for t in p1.teachers] == ["llama-360m", "gpt2-705m"]
    assert [t.training["learning_rate"] for t in p1.teachers] == [3e-4, 2.5e-4]
    assert p1.student.model.preset == "babyllama-58m" and p1.student.training["learning_rate"] == 2.5e-4
    assert (p1.distill.temperature, p1.distill.alpha, p1.distill.kl_reduction) == (2.0, 0.5, "paper")
    assert p1.tokenizer.vocab_size == 16000
    p2 = load_recipe(REPO / "recipes" / "babyllama2-345m.yaml", [], str(SHARED))
    assert [t.model.preset for t in p2.teachers] == ["smollama-345m"] * 2
    assert len({t.training.get("seed") for t in p2.teachers}) == 2
    assert (p2.distill.temperature, p2.distill.alpha) == (1.0, 0.5)
    assert p2.student.training["weight_decay"] == 5.0 and p2.student.training["learning_rate"] == 7e-4


def _run(*args):
    return subprocess.run([sys.executable, "-m", "babyllama.cli", *args], capture_output=True, text=True)


def test_smoke_recipe_end_to_end(tmp_path):
    need_shared()
    rd = tmp_path / "run"
    common = ["--data-root", str(SHARED), "--run-dir", str(rd)]
    r = _run("run", str(REPO / "recipes" / "smoke.yaml"), *common)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "student - baseline" in r.stdout and "student - llama-tiny" in r.stdout
    report = (rd / "report.md").read_text()
    assert "## Verdict" in report and "dev CE" in report and "## Perplexity per domain" in report
    for fig in ("loss_curves.png", "blimp_phenomena.png", "perplexity_domains.png"):
        assert (rd / fig).stat().st_size > 10_000
    vs = json.loads((rd / "verdicts.json").read_text())
    assert {v["comparison"] for v in vs} == {"student - llama-tiny", "student - gpt2-tiny", "student - baseline"}

    # run again: everything is reused
    r = _run("run", str(REPO / "recipes" / "smoke.yaml"), *common, "--dry-run")
    assert r.returncode == 0 and " run " not in r.stdout and r.stdout.count("reuse") == 10

    # a changed distillation setting re-runs the student and its eval only
    r = _run("run", str(REPO / "recipes" / "smoke.yaml"), *common, "--dry-run", "--set", "distill.alpha=0.3")
    rerun = [line.split()[1] for line in r.stdout.splitlines() if line.strip().startswith("run ")]
    assert rerun == ["student:s1", "eval:student:s1"], r.stdout

    # an interrupted student stage resumes from its checkpoint
    pl = json.loads((rd / "plan.json").read_text())
    student = Path(next(s["dir"] for s in pl["stages"] if s["name"] == "student:s1"))
    last = sorted(student.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(last) == 2
    shutil.rmtree(last[-1])
    (student / "run_info.json").unlink()
    r = _run("status", str(rd))
    assert "student:s1                   partial" in r.stdout
    r = _run("run", str(REPO / "recipes" / "smoke.yaml"), *common)
    assert r.returncode == 0 and "resuming from" in r.stdout and "stage 6/10: student:s1" in r.stdout
    assert "stage 10/10: eval:student:s1" in r.stdout  # the re-finished model is evaluated again
    assert "stage 7/10" not in r.stdout and "stage 3/10" not in r.stdout  # the others are reused
    r = _run("report", str(rd))
    assert r.returncode == 0 and "student - baseline" in r.stdout


def test_missing_data_root_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("BABYLLAMA_DATA", raising=False)
    r = _run("run", str(REPO / "recipes" / "smoke.yaml"), "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "needs the data root" in r.stderr and "Traceback" not in r.stderr
    r = _run("run", str(REPO / "recipes" / "smoke.yaml"), "--run-dir", str(tmp_path / "r"), "--data-root",
             str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "corpus not found" in r.stderr and "BABYLLAMA_DATA" in r.stderr


def test_stage_keys_follow_corpus_content_not_file_times(tmp_path):
    """A re-copied corpus (new modification times, same bytes) keeps every stage key; changed bytes change them."""
    root = tmp_path / "data"
    (root / "eval").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (root / "corpus" / split).mkdir(parents=True)
        (root / "corpus" / split / "a.txt").write_text(f"some {split} text\n")
    recipe = load_recipe(REPO / "recipes" / "smoke.yaml", [], str(root))
    keys = [s.key for s in plan(recipe, tmp_path / "r")]
    f = root / "corpus" / "train" / "a.txt"
    os.utime(f, (1, 1))
    assert [s.key for s in plan(recipe, tmp_path / "r")] == keys
    f.write_text("some train texT\n")  # same size, different bytes
    changed = [s.key for s in plan(recipe, tmp_path / "r")]
    assert changed[0] != keys[0] and all(a != b for a, b in zip(changed, keys))
