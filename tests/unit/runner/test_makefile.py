"""`babyllama run --makefile`: the plan as a Makefile whose rules are the plan's stages and dependencies; make runs
them through the runner, two at a time, each on its share of the cores."""

import json
import os
import re
import shutil
import subprocess

import pytest

from babyllama.config import load_recipe
from babyllama.errors import UserError
from babyllama.runner.makefile import makefile_text, target, write_makefile
from babyllama.runner.plan import make_plan
from babyllama.runner.state import stage_state
from helpers import REPO, run_here

SMOKE = REPO / "recipes" / "smoke.yaml"


def rules(text: str) -> dict[str, tuple[list[str], str]]:
    """target -> (prerequisites, first recipe line) of a Makefile's rules."""
    out, lines = {}, text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Za-z0-9_.-]+):(?!=)\s*(.*)$", line)
        if m:
            recipe = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("\t") else ""
            out[m.group(1)] = (m.group(2).split(), recipe)
    return out


def test_every_stage_is_a_rule_with_the_plans_dependencies(data_root, tmp_path):
    plan = make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "r")
    text = makefile_text(plan, str(SMOKE), ["distill.alpha=0.3", "x.y=$HOME"], str(data_root))
    r = rules(text)
    for s in plan.stages:
        deps, recipe = r[target(s.name)]
        assert deps == [target(d) for d in s.deps]
        assert recipe == f"\t$(call stage,{s.name},{target(s.name)})"
    assert r["all"][0] == ["report"] and set(r["report"][0]) == {target(s.name) for s in plan.stages}
    run_line = next(line for line in text.splitlines() if line.startswith("RUN := "))
    assert f"--run-dir {plan.run_dir}" in run_line and "--set distill.alpha=0.3" in run_line
    assert "--set 'x.y=$$HOME'" in run_line  # quoted for the shell, $ doubled for make


def test_a_file_it_did_not_write_is_left_alone(data_root, tmp_path, capsys):
    mine = tmp_path / "Makefile"
    mine.write_text("all:\n\techo mine\n")
    common = ["run", SMOKE, "--data-root", data_root, "--run-dir", tmp_path / "r"]
    r = run_here(capsys, *common, "--makefile", mine)
    assert r.returncode == 2 and "was not written by babyllama" in r.stderr and str(mine) in r.stderr
    assert mine.read_text() == "all:\n\techo mine\n"
    ours = tmp_path / "stages.mk"
    assert run_here(capsys, *common, "--makefile", ours).returncode == 0
    assert run_here(capsys, *common, "--set", "distill.alpha=0.3", "--makefile", ours).returncode == 0  # rewritten
    assert "--set distill.alpha=0.3" in ours.read_text()
    r = run_here(capsys, *common, "--makefile", ours, "--only", "tokenizer")
    assert r.returncode == 2 and "--makefile writes every stage" in r.stderr
    plan = make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "r")
    with pytest.raises(UserError, match="not written by babyllama"):
        write_makefile(plan, mine, str(SMOKE), [], str(data_root))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_runs_stages_through_the_runner_on_their_share_of_the_cores(data_root, tmp_path, capsys):
    mk, run_dir = tmp_path / "stages.mk", tmp_path / "r"
    small = "tokenizer.vocab_size=300"  # what the tiny corpus supports
    common = ["run", SMOKE, "--data-root", data_root, "--run-dir", run_dir, "--set", small]
    assert run_here(capsys, *common, "--makefile", mk).returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MAKEFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-j2", "-f", str(mk), "tokenizer"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "== prepare done in" in r.stdout and "== tokenizer done in" in r.stdout
    assert "recipe smoke:" not in r.stdout  # each stage's plan listing stays in its log
    plan = make_plan(load_recipe(SMOKE, [small], data_root=str(data_root)), run_dir)
    assert [stage_state(plan, s) for s in plan.stages[:3]] == ["done", "done", "todo"]
    assert "recipe smoke:" in (run_dir / "logs" / "tokenizer.log").read_text()
    info = json.loads((plan.path("tokenizer") / "run_info.json").read_text())
    assert info["machine"]["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
    assert 0 <= info["startup_s"] < info["wall_s"] + 60  # from the stage's client start to the stage's
    assert not (run_dir / "report.md").exists()
    # a failing stage stops make with its name, its log and its error line on the console
    (plan.path("tokenizer") / "tokenizer.json").write_text("{}")
    r = subprocess.run(["make", "-f", str(mk), "teacher-gpt2-tiny"], capture_output=True, text=True, env=env)
    assert r.returncode != 0
    assert "stage teacher:gpt2-tiny failed; its log: " in r.stdout
    assert "babyllama: error: stage teacher:gpt2-tiny reads stage tokenizer, which is damaged" in r.stdout
