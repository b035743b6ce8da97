"""The sweep report from a study made here: the trial table (values, not prior quantiles), states, errors, the best
trial, and the figures each kind of study gets."""

import csv

import optuna

from babyllama.sweep.config import SweepConfig
from babyllama.sweep.report import write_sweep_report

STATES = optuna.trial.TrialState


def config(space: dict, sampler: str = "grid", **kw) -> SweepConfig:
    return SweepConfig.model_validate({
        "name": "r", "recipe": "x.yaml", "sweep_dir": "d", "space": space, "sampler": {"type": sampler},
        "objective": {"stage": "eval:student:s1", "metric": "suites.blimp_fast.macro.acc", "direction": "maximize"},
        **kw})


def test_a_one_parameter_grid_gets_a_line_with_cis_and_a_table_of_values(tmp_path):
    cfg = config({"base.data.train_fraction": {"distribution": "categorical", "choices": [0.25, 0.5, 1.0]}})
    study = optuna.create_study(direction="maximize")
    for i, x in enumerate((0.25, 0.5, 1.0)):
        t = study.ask()
        t.suggest_categorical("base.data.train_fraction", [0.25, 0.5, 1.0])
        t.set_user_attr("values", {"base.data.train_fraction": x})
        if x == 0.5:
            t.set_user_attr("error", "training loss is nan at step 3")
            study.tell(t, state=STATES.FAIL)
            continue
        t.set_user_attr("ci", [0.5 + i / 10 - 0.02, 0.5 + i / 10 + 0.02])
        study.tell(t, 0.5 + i / 10)
    summary = write_sweep_report(tmp_path, cfg, study)
    report = (tmp_path / "report.md").read_text()
    assert "Trials: 3 (2 complete, 0 pruned, 1 failed, 0 running)" in summary
    assert "**Best: trial 2, suites.blimp_fast.macro.acc = 0.7**" in report
    assert "suites.blimp_fast.macro.acc against base.data.train_fraction with 95% CIs" in report
    assert (tmp_path / "figures" / "grid.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "history.png").is_file()
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["complete", "fail", "complete"]
    assert rows[1]["error"] == "training loss is nan at step 3" and rows[2]["base.data.train_fraction"] == "1.0"


def test_named_variants_are_points_and_ordered_values_a_line(tmp_path, monkeypatch):
    import matplotlib.axes

    styles = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, *a, **k: styles.append(k.get("ls")) or real(self, *a, **k))
    for space, values in (({"teachers": {"distribution": "variants", "variants": {"llama": {}, "gpt2": {}}}},
                           ["llama", "gpt2"]),
                          ({"distill.temperature": {"distribution": "categorical", "choices": [1.0, 2.0]}}, [1.0, 2.0])):
        (name,) = space
        study = optuna.create_study(direction="maximize")
        for v in values:
            t = study.ask()
            t.suggest_categorical(name, values)
            t.set_user_attr("values", {name: v})
            study.tell(t, 0.5)
        write_sweep_report(tmp_path / name, config(space), study)
    assert styles == ["none", "-"]  # teacher sets are not a continuum; temperatures are


def test_a_continuous_study_gets_importances_and_the_contour_of_the_top_two(tmp_path):
    cfg = config({"a": {"distribution": "log_normal", "mu": -7.0, "sigma": 0.7},
                  "b": {"distribution": "uniform", "low": 0.0, "high": 1.0},
                  "c": {"distribution": "categorical", "choices": ["linear", "cosine"]}},
                 sampler="random", trials=12,
                 pruner={"type": "hyperband"})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        t = study.ask()
        u, b, c = t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1), t.suggest_categorical("c", ["linear", "cosine"])
        t.set_user_attr("values", {"a": 1e-3 * u, "b": b, "c": c})
        t.report(b, 1)
        if b < 0.2:
            study.tell(t, state=STATES.PRUNED)
        else:
            study.tell(t, 3 * u + 0.1 * b)
    write_sweep_report(tmp_path, cfg, study)
    report = (tmp_path / "report.md").read_text()
    assert "hyperband (epochs, min 1, eta 2)" in report
    assert "![Parameter importances (fANOVA)](figures/importances.png)" in report
    assert "(a as prior quantiles)" in report  # the contour's axis for a log-normal prior is its quantile
    assert not (tmp_path / "figures" / "grid.png").exists()
    assert all((tmp_path / "figures" / f).is_file() for f in ("history.png", "importances.png", "contour.png"))
