"""Drawing a trial's parameters from the search space, and turning them into recipe overrides.

Optuna's own distributions carry the uniform, log-uniform, integer and categorical priors. The normal and
log-normal priors of Weights & Biases (BabyLlama-2's sweeps: batch size q-log-normal(5, 1.5), lr
log-normal(-7.3, 0.7), ...) have no Optuna distribution; each is drawn exactly as its quantile: Optuna samples
``u`` uniform on (0, 1) and the value is the prior's inverse CDF at ``u`` (``exp(mu + sigma * Phi^-1(u))`` for a
log-normal), rounded to a multiple of ``q`` for the q_ variants. Random search then samples the authors' prior
itself, and TPE models the quantile, a monotone reparametrisation. Such a parameter is stored in the study as its
quantile (named ``KEY``), and its value joins the trial as the user attribute ``values``.
"""

from __future__ import annotations

import math
from typing import Any

from scipy.special import ndtri

from .config import ParamSpec, SweepConfig

QUANTILE_PRIORS = ("normal", "log_normal", "q_normal", "q_log_normal")
_EDGE = 1e-6  # quantiles are kept off 0 and 1, where the normal's inverse CDF is infinite


def from_quantile(p: ParamSpec, u: float) -> float | int:
    """The value of a (q-)(log-)normal prior at quantile ``u``."""
    u = min(max(u, _EDGE), 1 - _EDGE)
    x = p.mu + p.sigma * float(ndtri(u))
    if "log" in p.distribution:
        x = math.exp(x)
    if p.bounds:
        x = min(max(x, p.bounds[0]), p.bounds[1])
    if p.distribution.startswith("q_"):
        q = p.q or 1.0
        x = max(q, round(x / q) * q)  # W&B rounds; a value of 0 (a batch size, epochs) is never usable
        if float(q).is_integer():
            return int(round(x))
    return x


def value_of(p: ParamSpec, draw: Any) -> Any:
    """The parameter's value for Optuna's draw (a quantile for the W&B priors), after ``transform``."""
    x = from_quantile(p, draw) if p.distribution in QUANTILE_PRIORS else draw
    if p.transform == "one_minus":
        x = 1 - x
    return x


def suggest(trial, name: str, p: ParamSpec) -> Any:
    """Optuna's draw of one parameter (the quantile for the W&B priors)."""
    d = p.distribution
    if d == "categorical":
        return trial.suggest_categorical(name, p.choices)
    if d == "variants":
        return trial.suggest_categorical(name, list(p.variants))
    if d == "uniform":
        return trial.suggest_float(name, p.low, p.high)
    if d == "log_uniform":
        return trial.suggest_float(name, p.low, p.high, log=True)
    if d == "int_uniform":
        return trial.suggest_int(name, int(p.low), int(p.high))
    return trial.suggest_float(name, 0.0, 1.0)


def overrides_for(cfg: SweepConfig, values: dict[str, Any]) -> list[str]:
    """The recipe overrides of one trial: the fixed ``set`` keys, then each parameter (a variant's whole set)."""
    from ..config import overrides_from_tree, yaml_value

    out = list(cfg.fixed_overrides)
    for name, p in cfg.space.items():
        if p.distribution == "variants":
            out += overrides_from_tree(p.variants[values[name]])
        else:
            out.append(f"{name}={yaml_value(values[name])}")
    return out


def draw(trial, cfg: SweepConfig) -> dict[str, Any]:
    """The trial's parameter values (what the recipe gets), drawn in the space's order."""
    return {name: value_of(p, suggest(trial, name, p)) for name, p in cfg.space.items()}


def grid_space(cfg: SweepConfig) -> dict[str, list]:
    """Optuna's GridSampler search space: each parameter's choices (variant names for variants)."""
    return {name: p.grid_values for name, p in cfg.space.items()}
