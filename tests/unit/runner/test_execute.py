"""The runner refuses to build on a damaged finished stage, naming the file and the fix."""

import json

from babyllama.cli import main
from babyllama.config import load_recipe
from babyllama.runinfo import manifest_problem, write_run_info
from babyllama.runner.plan import make_plan, write_plan
from helpers import REPO

SMOKE = REPO / "recipes" / "smoke.yaml"


def test_a_truncated_teacher_is_named_before_the_student_trains(data_root, tmp_path, capsys):
    plan = make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "run")
    write_plan(plan)
    for s in plan.stages:
        d = plan.path(s)
        d.mkdir(parents=True, exist_ok=True)
        if s.name == "teacher:llama-tiny":
            (d / "model.safetensors").write_bytes(b"w" * 1000)
        if s.kind == "eval" and s.model_stage != "student:s1":
            stamps = [json.loads((plan.path(m) / "run_info.json").read_text())["finished_at"] for m in s.evaluated]
            write_run_info(d, "eval", {}, run_dir=plan.run_dir,
                           model_finished_at=stamps if s.role == "ensemble" else stamps[0])
        elif s.kind != "eval" and s.name != "student:s1":
            write_run_info(d, s.kind, {}, run_dir=plan.run_dir)
    teacher = plan.path("teacher:llama-tiny")
    assert manifest_problem(teacher) is None
    (teacher / "model.safetensors").write_bytes(b"w" * 10)  # truncated after the stage finished
    assert "has 10 bytes, 1000 were written" in manifest_problem(teacher)
    (teacher / "model.safetensors").write_bytes(b"x" * 1000)  # same size, other bytes
    assert "differs from what was written" in manifest_problem(teacher)
    code = main(["run", str(SMOKE), "--data-root", str(data_root), "--run-dir", str(tmp_path / "run")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "stage student:s1 reads stage teacher:llama-tiny, which is damaged" in line
    assert str(teacher / "model.safetensors") in line and f"delete {teacher}" in line
    assert not (plan.path("student:s1") / "run_info.json").exists()
