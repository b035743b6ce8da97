"""The sweep file is validated before anything runs: each mistake is one line naming its key; every shipped study
loads and its objective is a stage of its recipe."""

import itertools
from pathlib import Path

import pytest

from babyllama.config import load_recipe
from babyllama.errors import UserError
from babyllama.runner.plan import make_plan
from babyllama.sweep.config import load_sweep
from babyllama.sweep.worker import check_stages
from helpers import REPO, SHARED, need_shared

STUDIES = sorted((REPO / "recipes" / "studies").glob("*.yaml"))
BASE = """name: t
recipe: {recipe}
sweep_dir: d
objective: {{stage: eval:student:s1, metric: suites.blimp_fast.macro.acc, direction: maximize}}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(BASE.format(recipe=REPO / "recipes" / "smoke.yaml") + text)
    return p


@pytest.mark.parametrize("text, words", [
    ("space: {a: {distribution: uniform, low: 0, high: 1}}\nsampler: {type: grid}\n", "a grid needs categorical"),
    ("space: {a: {distribution: log_normal, mu: 1}}\ntrials: 2\n", "needs sigma"),
    ("space: {a: {distribution: uniform, low: 0, high: 1}}\nsampler: {type: tpe}\n", "needs trials"),
    ("space: {a: {distribution: log_uniform, low: 0, high: 1}}\ntrials: 2\n", "low > 0"),
    ("space: {a: {distribution: uniform, low: 2, high: 1}}\ntrials: 2\n", "must be below high"),
    ("space: {a: {distribution: categorical, choices: [1]}}\nsampler: {type: grid, sed: 1}\n", "'sampler.sed'"),
    ("space: {}\n", "at least one parameter"),
])
def test_a_bad_sweep_file_is_one_line_naming_the_key(tmp_path, text, words):
    with pytest.raises(UserError) as e:
        load_sweep(write(tmp_path, text))
    assert words in str(e.value) and str(tmp_path / "s.yaml") in str(e.value)
    assert "\n" not in str(e.value)


def test_a_verdict_objective_needs_its_comparison_and_the_recipe_path_is_relative_to_the_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: t\nrecipe: missing.yaml\nsweep_dir: d\nspace: {a: {distribution: categorical, choices: [1]}}"
                 "\nsampler: {type: grid}\nobjective: {stage: verdicts, metric: blimp.diff, direction: maximize}\n")
    with pytest.raises(UserError, match="needs objective.comparison"):
        load_sweep(p)
    p.write_text(p.read_text().replace("direction: maximize", "direction: maximize, comparison: student - baseline"))
    with pytest.raises(UserError, match=f"looked for {tmp_path / 'missing.yaml'}"):
        load_sweep(p)


def test_the_objective_and_pruned_stages_must_be_in_the_plan(tmp_path):
    need_shared()
    cfg, recipe = load_sweep(write(tmp_path, "space: {a: {distribution: categorical, choices: [1]}}\n"
                                             "sampler: {type: grid}\n"))
    plan = make_plan(load_recipe(recipe, [], str(SHARED)), tmp_path / "run")
    check_stages(cfg, plan)
    bad = cfg.model_copy(update={"objective": cfg.objective.model_copy(update={"stage": "eval:student:s9"})})
    with pytest.raises(UserError, match="is not a stage of the recipe; the stages are: prepare, tokenizer"):
        check_stages(bad, plan)
    pruned = cfg.model_copy(update={"pruner": cfg.pruner.model_copy(update={"type": "median", "stage": "eval:student:s1"})})
    with pytest.raises(UserError, match="pruner.stage 'eval:student:s1' is not a training stage"):
        check_stages(pruned, plan)


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_every_shipped_study_plans_on_the_shared_data_for_every_draw(path, tmp_path):
    """The fixed overrides, each grid point or variant (or 20 random draws of a continuous space) make a valid
    recipe whose plan holds the objective's stage."""
    import optuna

    from babyllama.sweep.space import draw, overrides_for

    need_shared()
    cfg, recipe = load_sweep(path)
    if cfg.sampler.type == "grid":  # every point (GridSampler itself would stop a study outside optimize)
        names = list(cfg.space)
        draws = [dict(zip(names, point)) for point in itertools.product(*(cfg.space[n].grid_values for n in names))]
    else:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        draws = []
        for _ in range(20):
            t = study.ask()
            draws.append(draw(t, cfg))
            study.tell(t, 0.0)
    seen = set()
    for values in draws:
        seen.add(repr(values))
        plan = make_plan(load_recipe(recipe, overrides_for(cfg, values), str(SHARED)), tmp_path / "run")
        check_stages(cfg, plan)
    assert len(seen) == len(draws)
