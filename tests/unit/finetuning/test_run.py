"""Planning the runs (MNLI-mm per protocol) and reading the hyperparameter table, before anything trains."""

import pytest
from helpers import REPO

from babyllama.config import FinetuneConfig
from babyllama.errors import UserError
from babyllama.finetuning.run import _plan_tasks, hparams_table


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
