"""Planning the smoke recipe on a data root made here: keys free of paths, stage configs, plan.json."""

import json
import shutil

from babyllama.config import load_recipe
from babyllama.runner.plan import load_plan, make_plan, write_plan
from helpers import REPO

SMOKE = REPO / "recipes" / "smoke.yaml"


def test_keys_do_not_depend_on_where_the_run_or_the_data_lie(data_root, tmp_path):
    recipe = load_recipe(SMOKE, data_root=str(data_root))
    a = make_plan(recipe, tmp_path / "here")
    b = make_plan(recipe, tmp_path / "elsewhere" / "deeper")
    assert [s.key for s in a.stages] == [s.key for s in b.stages]
    assert [str(s.dir) for s in a.stages] == [str(s.dir) for s in b.stages]
    moved = tmp_path / "moved-data"
    shutil.copytree(data_root, moved)
    c = make_plan(load_recipe(SMOKE, data_root=str(moved)), tmp_path / "here")
    assert [s.key for s in c.stages] == [s.key for s in a.stages]
    # nor on the device: a run started on a CPU is finished on a GPU machine
    on_gpu = load_recipe(SMOKE, ["base.training.device=cuda", "eval.device=cuda:1", "finetune.device=cuda"],
                         str(data_root))
    assert [s.key for s in make_plan(on_gpu, tmp_path / "here").stages] == [s.key for s in a.stages]
    # nor on whether scoring compiles the layers (a speed setting: the decisions are the same)
    compiled = load_recipe(SMOKE, ["eval.compile=true"], str(data_root))
    assert [s.key for s in make_plan(compiled, tmp_path / "here").stages] == [s.key for s in a.stages]
    # nor whether training compiles them: auto (the default), on and off are keyed alike
    for flag in ("true", "false"):
        trained = load_recipe(SMOKE, [f"base.training.compile={flag}"], str(data_root))
        assert [s.key for s in make_plan(trained, tmp_path / "here").stages] == [s.key for s in a.stages]


def test_stage_keys_follow_content_and_settings(data_root, tmp_path):
    recipe = load_recipe(SMOKE, data_root=str(data_root))
    keys = {s.name: s.key for s in make_plan(recipe, tmp_path / "r").stages}
    alpha = {s.name: s.key for s in make_plan(load_recipe(SMOKE, ["distill.alpha=0.3"], str(data_root)),
                                              tmp_path / "r").stages}
    assert {n for n in keys if keys[n] != alpha[n]} == {"student:s1", "eval:student:s1", "finetune:student:s1"}
    (data_root / "eval" / "blimp_fast" / "p.jsonl").write_text('{"sentence_good": "B.", "sentence_bad": "C."}\n')
    ev = {s.name: s.key for s in make_plan(recipe, tmp_path / "r").stages}
    assert {n for n in keys if keys[n] != ev[n]} == {n for n in keys if n.startswith("eval:")}
    # a changed fine-tuning file re-keys the finetune stages and nothing else
    rte = data_root / "eval" / "glue_filtered" / "rte.valid.jsonl"
    rte.write_text(rte.read_text().replace("a cat sees.", "a dog sees."))
    ft = {s.name: s.key for s in make_plan(recipe, tmp_path / "r").stages}
    assert {n for n in keys if ev[n] != ft[n]} == {n for n in keys if n.startswith("finetune:")} and len(ft) == 15


def test_the_teacher_ensemble_is_an_eval_stage_of_its_own(data_root, tmp_path):
    recipe = load_recipe(SMOKE, data_root=str(data_root))
    plan = make_plan(recipe, tmp_path / "r")
    ens = plan.stage("eval:ensemble")
    assert (ens.kind, ens.role, ens.model_stage) == ("eval", "ensemble", None)
    assert ens.deps == ens.evaluated == ["teacher:llama-tiny", "teacher:gpt2-tiny"]
    keys = {s.name: s.key for s in plan.stages}

    def changed(*overrides):
        other = {s.name: s.key for s in make_plan(load_recipe(SMOKE, list(overrides), str(data_root)),
                                                  tmp_path / "r").stages}
        return {n for n in keys if keys[n] != other.get(n)}

    # the combination rule changes the student and the ensemble, not the teachers
    assert changed("distill.ensemble=probs_mean") == {"student:s1", "eval:student:s1", "finetune:student:s1",
                                                      "eval:ensemble"}
    assert "eval:ensemble" in changed("teachers.1.training.learning_rate=0.005")
    assert "eval:ensemble" not in changed("distill.alpha=0.3")
    # one teacher: no ensemble; teachers per seed: one ensemble per seed
    one = make_plan(load_recipe(SMOKE, ["teachers=[{name: t, model: {preset: llama-tiny}}]"], str(data_root)),
                    tmp_path / "r")
    assert not [s for s in one.stages if s.role == "ensemble"]
    per_seed = make_plan(load_recipe(SMOKE, ["seeds=[1, 2]", "teacher_seeds=true"], str(data_root)), tmp_path / "r")
    assert [s.name for s in per_seed.stages if s.role == "ensemble"] == ["eval:ensemble:s1", "eval:ensemble:s2"]
    assert per_seed.stage("eval:ensemble:s2").deps == ["teacher:llama-tiny:s2", "teacher:gpt2-tiny:s2"]


def test_stage_configs_and_seeds(data_root, tmp_path):
    recipe = load_recipe(SMOKE, ["seeds=[1, 2]", "teachers.0.training.seed=11", "base.training.learning_rate=0.01",
                                 "student.training.learning_rate=0.02"], str(data_root))
    plan = make_plan(recipe, tmp_path / "r")
    cfg = {s.name: s.config for s in plan.stages if s.config is not None}
    assert cfg["teacher:llama-tiny"].training.seed == 11 and cfg["teacher:gpt2-tiny"].training.seed == 1
    assert [cfg[f"baseline:s{i}"].training.seed for i in (1, 2)] == [1, 2]
    assert cfg["teacher:llama-tiny"].training.learning_rate == 0.01  # base
    assert cfg["student:s2"].training.learning_rate == 0.02  # the model's own key wins
    assert cfg["student:s1"].distill.teachers == [str(plan.path("teacher:llama-tiny")),
                                                  str(plan.path("teacher:gpt2-tiny"))]
    assert cfg["baseline:s1"].training.output_dir == str(plan.path("baseline:s1"))
    assert cfg["student:s1"].run_dir == str((tmp_path / "r").resolve())


def test_plan_json_stores_relative_directories(data_root, tmp_path):
    plan = make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "r")
    write_plan(plan)
    stored = json.loads((tmp_path / "r" / "plan.json").read_text())
    assert all(not s["dir"].startswith("/") and s["dir"].startswith("stages/") for s in stored["stages"])
    (tmp_path / "r").rename(tmp_path / "r2")
    again = load_plan(tmp_path / "r2")
    assert again.path("tokenizer") == (tmp_path / "r2").resolve() / plan.stage("tokenizer").dir


def test_baseline_keys_tune_the_baseline_alone_and_keep_the_students_architecture(data_root, tmp_path):
    plain = {s.name: s for s in make_plan(load_recipe(SMOKE, data_root=str(data_root)), tmp_path / "r").stages}
    tuned = {s.name: s for s in make_plan(load_recipe(SMOKE, ["baseline.training.learning_rate=0.001",
                                                              "baseline.model.attention_dropout=0.2"],
                                                      str(data_root)), tmp_path / "r").stages}
    assert {n for n in plain if plain[n].key != tuned[n].key} == {"baseline:s1", "eval:baseline:s1",
                                                                  "finetune:baseline:s1"}
    b = tuned["baseline:s1"].config
    assert b.training.learning_rate == 0.001 and b.model.attention_dropout == 0.2
    assert b.model.num_layers == 1 and b.training.max_steps == 24  # the student's own and base keys stay
    assert tuned["student:s1"].config.training.learning_rate == plain["student:s1"].config.training.learning_rate
    import pytest

    from babyllama.errors import UserError

    with pytest.raises(UserError, match="baseline.model may set only dropout, attention_dropout .* remove "
                                        "hidden_size"):
        load_recipe(SMOKE, ["baseline.model.hidden_size=64"], str(data_root))
