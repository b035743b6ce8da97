"""The search space: W&B's normal priors drawn exactly through their quantiles, q rounding, transforms, bounds, and
the overrides a trial gives its recipe."""

import math

import numpy as np
import optuna
import pytest
from scipy import stats

from babyllama.config import parse_override
from babyllama.sweep.config import ParamSpec, SweepConfig
from babyllama.sweep.space import draw, from_quantile, grid_space, overrides_for, value_of


def spec(**kw) -> ParamSpec:
    return ParamSpec.model_validate(kw)


def sweep(space: dict, **kw) -> SweepConfig:
    tree = {"name": "t", "recipe": "r.yaml", "sweep_dir": "d", "space": space,
            "objective": {"stage": "baseline:s1", "metric": "eval_loss", "direction": "minimize"},
            "sampler": {"type": "random", "seed": 0}, "trials": 3, **kw}
    return SweepConfig.model_validate(tree)


def test_a_log_normal_is_the_inverse_cdf_of_its_quantile():
    p = spec(distribution="log_normal", mu=-7.3, sigma=0.7)
    for u in (0.01, 0.3, 0.5, 0.9):
        assert from_quantile(p, u) == pytest.approx(stats.lognorm.ppf(u, s=0.7, scale=math.exp(-7.3)), rel=1e-9)
    n = spec(distribution="normal", mu=1.0, sigma=2.0)
    assert from_quantile(n, 0.975) == pytest.approx(1.0 + 2.0 * 1.959964, rel=1e-6)


def test_q_log_normal_rounds_to_multiples_of_q_and_never_to_zero():
    p = spec(distribution="q_log_normal", mu=5.0, sigma=1.5)
    x = from_quantile(p, 0.5)
    assert isinstance(x, int) and x == round(math.exp(5.0))
    assert from_quantile(p, 1e-9) == 1  # exp(5 - 1.5 * 4.75) = 0.12 rounds to 0 in W&B; a batch of 0 is no batch
    q8 = spec(distribution="q_log_normal", mu=5.0, sigma=1.5, q=8)
    assert all(from_quantile(q8, u) % 8 == 0 for u in np.linspace(0.01, 0.99, 25))
    half = spec(distribution="q_normal", mu=1.0, sigma=1.0, q=0.5)
    assert from_quantile(half, 0.6) * 2 == int(from_quantile(half, 0.6) * 2)


def test_bounds_clip_and_one_minus_transforms():
    p = spec(distribution="q_log_normal", mu=1.8, sigma=0.7, bounds=[1, 12])
    assert from_quantile(p, 0.999999) == 12 and from_quantile(p, 1e-6) == 1
    beta = spec(distribution="log_uniform", low=1e-4, high=1e-2, transform="one_minus")
    assert value_of(beta, 1e-3) == pytest.approx(0.999)


def test_random_search_samples_the_authors_log_normal_prior():
    """4000 draws through Optuna's random sampler follow log-normal(-7.3, 0.7) (Kolmogorov-Smirnov)."""
    cfg = sweep({"training.learning_rate": {"distribution": "log_normal", "mu": -7.3, "sigma": 0.7}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = []
    for _ in range(4000):
        t = study.ask()
        values.append(draw(t, cfg)["training.learning_rate"])
        study.tell(t, 0.0)
    ks = stats.kstest(values, stats.lognorm(s=0.7, scale=math.exp(-7.3)).cdf)
    assert ks.pvalue > 1e-3, ks
    assert stats.kstest(values, stats.lognorm(s=0.7, scale=math.exp(-6.8)).cdf).pvalue < 1e-6  # the test has power


def test_overrides_are_the_fixed_keys_then_each_parameter_or_variant():
    cfg = sweep({"distill.temperature": {"distribution": "categorical", "choices": [1.0, 2.0]},
                 "teachers": {"distribution": "variants",
                              "variants": {"one": {"teachers": [{"name": "a", "model": {"preset": "llama-tiny"}}]},
                                           "same": {}}},
                 "training.adam_epsilon": {"distribution": "log_normal", "mu": -13.8, "sigma": 3.5}},
                set={"finetune": None, "base.data.max_train_tokens": 1000})
    out = overrides_for(cfg, {"distill.temperature": 2.0, "teachers": "one", "training.adam_epsilon": 1e-6})
    parsed = [(".".join(k), v) for k, v in map(parse_override, out)]
    assert parsed == [("finetune", None), ("base.data.max_train_tokens", 1000), ("distill.temperature", 2.0),
                      ("teachers", [{"name": "a", "model": {"preset": "llama-tiny"}}]),
                      ("training.adam_epsilon", 1e-6)]  # 1e-06 comes back a number, not the string '1e-06'
    assert overrides_for(cfg, {"distill.temperature": 1.0, "teachers": "same", "training.adam_epsilon": 0.1})[3] \
        == "training.adam_epsilon=0.1"
    assert grid_space(sweep({"a": {"distribution": "categorical", "choices": [1, 2]},
                             "b": {"distribution": "variants", "variants": {"x": {}, "y": {}}}},
                            sampler={"type": "grid"})) == {"a": [1, 2], "b": ["x", "y"]}
