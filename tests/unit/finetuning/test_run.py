"""Planning the runs (MNLI-mm per protocol) and reading the hyperparameter table, before anything trains."""

import pytest
from helpers import REPO

from babyllama.config import FinetuneConfig, load_recipe, validate_tree
from babyllama.errors import UserError
from babyllama.finetuning.run import _plan_tasks, hparams_table, resolve_eval_root


def test_mnli_mm_shares_the_mnli_run_except_under_2023():
    cfg = FinetuneConfig(tasks=["mnli", "mnli-mm", "rte"], protocol="babylm2024")
    assert _plan_tasks(cfg) == [("mnli", ["mnli", "mnli-mm"]), ("rte", ["rte"])]
    cfg = FinetuneConfig(tasks=["mnli-mm"], protocol="babylm2025")
    assert _plan_tasks(cfg) == [("mnli", ["mnli-mm"])]
    cfg = FinetuneConfig(tasks=["mnli", "mnli-mm"], protocol="babylm2023")
    assert _plan_tasks(cfg) == [("mnli", ["mnli"]), ("mnli-mm", ["mnli-mm"])]


def test_unknown_task_is_one_line():
    with pytest.raises(UserError, match="unknown fine-tuning task 'glue'"):
        _plan_tasks(FinetuneConfig(tasks=["glue"]))


def test_the_shipped_table_and_bad_tables(tmp_path):
    table = hparams_table(str(REPO / "configs" / "finetune" / "baby-llama-card.yaml"))
    assert table["cola"].learning_rate == 4e-5 and table["wsc"].batch_size == 1
    assert hparams_table({"default": {"max_epochs": 2}})["default"].max_epochs == 2
    with pytest.raises(UserError, match="unknown fine-tuning task 'colaa'"):
        hparams_table({"colaa": {"max_epochs": 2}})
    with pytest.raises(UserError, match="batch_size"):
        hparams_table({"rte": {"batch_size": 0}})
    with pytest.raises(UserError, match="must map settings"):
        hparams_table({"rte": 3})
    bad = tmp_path / "t.yaml"
    bad.write_text("rte: [1\n")
    with pytest.raises(UserError, match="not valid UTF-8 YAML"):
        hparams_table(str(bad))
    with pytest.raises(UserError, match="not found"):
        hparams_table(str(tmp_path / "none.yaml"))


def test_eval_root_is_evals_name_and_the_former_data_dir_still_loads(tmp_path, monkeypatch):
    assert FinetuneConfig(eval_root=str(tmp_path)).eval_root == str(tmp_path)
    saved = FinetuneConfig(data_dir=str(tmp_path))  # a config written before the rename
    assert saved.eval_root == str(tmp_path) and "data_dir" not in saved.model_dump()
    assert FinetuneConfig(data_dir=tmp_path).eval_root == str(tmp_path)  # a path, as finetune(data_dir=...) gets it
    with pytest.raises(UserError, match="data_dir is the former name of eval_root"):
        validate_tree(FinetuneConfig, {"eval_root": "a", "data_dir": "b"}, "ft.yaml")
    recipe = load_recipe(REPO / "recipes" / "smoke.yaml", [f"eval.eval_root={tmp_path}"], data_root="/no/data")
    assert recipe.finetune.eval_root == str(tmp_path)  # a recipe's fine-tuning reads the eval section's root
    assert load_recipe(REPO / "recipes" / "smoke.yaml", data_root="/no/data").finetune.eval_root == "/no/data/eval"
    assert resolve_eval_root(FinetuneConfig(eval_root=str(tmp_path))) == tmp_path
    with pytest.raises(UserError, match=r"--eval-root .*none: not a folder"):
        resolve_eval_root(FinetuneConfig(eval_root=str(tmp_path / "none")))
    monkeypatch.delenv("BABYLLAMA_DATA", raising=False)
    with pytest.raises(UserError, match="pass --eval-root DIR"):
        resolve_eval_root(FinetuneConfig())
