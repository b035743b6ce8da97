"""Pieces of a trial: reading the objective, reporting eval losses to the pruner, the shared stage store."""

import optuna
import pytest

from babyllama.errors import UserError
from babyllama.sweep.worker import (INTERRUPTED, PruningReporter, counted, link_stage_store, metric_at,
                                    retry_interrupted)


def test_the_metric_is_read_by_its_dotted_path_with_the_ci_beside_it():
    res = {"suites": {"blimp_fast": {"macro": {"acc": 0.61, "ci": [0.58, 0.64]}}}, "eval_loss": 3.2}
    assert metric_at(res, "suites.blimp_fast.macro.acc", "eval.json") == (0.61, [0.58, 0.64])
    assert metric_at(res, "eval_loss", "metrics.json") == (3.2, None)
    with pytest.raises(UserError, match="no 'blimp' in eval.json \\(it has: suites, eval_loss\\)"):
        metric_at(res, "blimp.macro.acc", "eval.json")
    with pytest.raises(UserError, match="is .* not a number"):
        metric_at(res, "suites.blimp_fast.macro", "eval.json")


class FakeTrial:
    def __init__(self, prune_at=None):
        self.reports, self.prune_at = [], prune_at

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune_at is not None and self.reports[-1][0] >= self.prune_at


def test_the_reporter_sends_each_epoch_once_in_the_study_direction_and_prunes_on_request():
    t = FakeTrial(prune_at=3)
    r = PruningReporter(t, "epoch", sign=-1.0)
    r.report(0.0, 0, 9.0)  # the eval before training is no resource spent
    r.report(1.0000001, 40, 5.0)
    r.report(1.0, 40, 5.0)  # the final evaluate() repeats the last epoch
    r.report(2.0, 80, float("nan"))  # a non-finite loss is for the trainer's guard, not the pruner
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 3"):
        r.report(3.0, 120, 4.0)
    assert t.reports == [(1, -5.0), (3, -4.0)]
    s = FakeTrial()
    by_step = PruningReporter(s, "step", sign=1.0)
    by_step.report(0.5, 12, 6.0)
    assert s.reports == [(12, 6.0)]
    from transformers import TrainerCallback

    assert isinstance(by_step, TrainerCallback)


def test_trial_run_directories_link_one_stage_store(tmp_path):
    store = tmp_path / "sweep" / "stages"
    for n in (1, 2):
        link_stage_store(tmp_path / "sweep" / "trials" / f"t{n}", store)
    (store / "prepare-x").mkdir()
    assert (tmp_path / "sweep" / "trials" / "t2" / "stages" / "prepare-x").is_dir()
    assert (tmp_path / "sweep" / "trials" / "t1" / "stages").readlink().as_posix() == "../../stages"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "stages").mkdir()
    with pytest.raises(UserError, match="is not the sweep's shared stages folder"):
        link_stage_store(tmp_path / "other", store)


def test_an_interrupted_trial_is_retried_once_with_its_parameters_and_counted_once():
    study = optuna.create_study()
    t = study.ask()
    t.suggest_float("x", 0, 1)
    t.set_user_attr("error", INTERRUPTED)
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    crashed = study.ask()
    crashed.suggest_float("x", 0, 1)
    crashed.set_user_attr("error", "training loss is nan")
    study.tell(crashed, state=optuna.trial.TrialState.FAIL)
    retry_interrupted(study)
    retry_interrupted(study)  # idempotent: one retry per interrupted trial
    trials = study.get_trials()
    assert [x.state for x in trials][2:] == [optuna.trial.TrialState.WAITING]
    assert trials[2].params == trials[0].params and trials[2].system_attrs["retry_history"] == [0]
    assert [x.number for x in counted(trials)] == [1]  # the crash counts; the interrupted one is replaced
    again = study.ask()
    assert again.number == 2 and again.suggest_float("x", 0, 1) == trials[0].params["x"]
