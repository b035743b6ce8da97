"""The sweep file: base recipe, fixed overrides, search space, objective, sampler, pruner (validated like every
config: an unknown key or a bad value is one line naming its dotted path)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import Section, overrides_from_tree, read_yaml, validate_tree

# what the prior of a parameter is; the names and parameters are Weights & Biases' (BabyLlama-2's sweeps), whose
# q_* variants round to multiples of q
DISTRIBUTIONS = ("categorical", "variants", "uniform", "log_uniform", "int_uniform", "normal", "log_normal",
                 "q_normal", "q_log_normal")


class ParamSpec(Section):
    """One dimension of the search space."""

    distribution: Literal[DISTRIBUTIONS] = Field(description=f"The prior: {', '.join(DISTRIBUTIONS)}.")
    choices: list[Any] | None = Field(None, description="categorical: the values.")
    variants: dict[str, dict[str, Any]] | None = Field(
        None, description="variants: named sets of overrides ({name: {dotted.key: value, ...}}); the parameter's "
        "name is then a label, not a key.")
    low: float | None = Field(None, description="uniform, log_uniform, int_uniform: lower bound (a value).")
    high: float | None = Field(None, description="uniform, log_uniform, int_uniform: upper bound (a value).")
    mu: float | None = Field(None, description="normal, log_normal (of log x), q_*: mean.")
    sigma: float | None = Field(None, gt=0, description="normal, log_normal (of log x), q_*: standard deviation.")
    q: float | None = Field(None, gt=0, description="q_*: round to a multiple of q (at least q); default 1.")
    bounds: tuple[float, float] | None = Field(
        None, description="(q-)(log-)normal: clip values into [low, high] (a CPU-sized study's cap on epochs; not "
        "in the W&B priors).")
    transform: Literal["none", "one_minus"] = Field(
        "none", description="one_minus: the prior is on 1 - x (BabyLlama-2's 1 - beta1, 1 - beta2).")

    @model_validator(mode="after")
    def _arguments(self):
        d = self.distribution
        need = {"categorical": ["choices"], "variants": ["variants"], "uniform": ["low", "high"],
                "log_uniform": ["low", "high"], "int_uniform": ["low", "high"], "normal": ["mu", "sigma"],
                "log_normal": ["mu", "sigma"], "q_normal": ["mu", "sigma"], "q_log_normal": ["mu", "sigma"]}[d]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"distribution {d} needs {', '.join(missing)}")
        if d in ("categorical", "variants") and not (self.choices or self.variants):
            raise ValueError(f"distribution {d} needs at least one {'choice' if d == 'categorical' else 'variant'}")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if d == "log_uniform" and self.low <= 0:
            raise ValueError(f"log_uniform needs low > 0 (got {self.low})")
        return self

    @property
    def grid_values(self) -> list | None:
        """The values a grid takes (categorical choices, variant names), or None for a continuous prior."""
        if self.distribution == "categorical":
            return list(self.choices)
        if self.distribution == "variants":
            return list(self.variants)
        return None


class Objective(Section):
    stage: str = Field(description="A stage of the recipe's plan (e.g. baseline:s1, eval:student:s1), or "
                       "'verdicts' for a verdict's difference.")
    metric: str = Field(description="Dotted path into the stage's result: metrics.json of a training stage "
                        "(eval_loss), eval.json of an eval stage (suites.blimp_fast.macro.acc), finetune.json of a "
                        "finetune stage (macro.mean), a verdict row of verdicts.json (blimp.diff, dev_ce.diff).")
    direction: Literal["minimize", "maximize"] = Field(description="minimize or maximize.")
    comparison: str | None = Field(None, description="stage 'verdicts': which row (e.g. 'student - baseline').")

    @model_validator(mode="after")
    def _comparison(self):
        if self.stage == "verdicts" and not self.comparison:
            raise ValueError("objective.stage 'verdicts' needs objective.comparison, e.g. 'student - baseline'")
        return self


class SamplerSpec(Section):
    type: Literal["grid", "random", "tpe"] = Field("tpe", description="grid (every combination once), random, tpe.")
    seed: int | None = Field(None, description="Sampler seed; random and tpe: worker i of --workers uses seed + i "
                             "(a grid's order is the same for all workers).")
    n_startup_trials: int = Field(5, ge=0, description="tpe: random trials before the model.")


class PrunerSpec(Section):
    type: Literal["none", "median", "hyperband"] = Field("none", description="none, median, hyperband.")
    stage: str | None = Field(None, description="The training stage whose per-epoch eval loss is reported; "
                              "default: the objective's stage, or the model stage it evaluates.")
    resource: Literal["epoch", "step"] = Field(
        "epoch", description="What counts as the pruner's resource: epochs (eval at each epoch's end) or optimizer "
        "steps (eval_strategy: steps).")
    min_resource: int = Field(1, ge=1, description="hyperband: minimum resource (BabyLlama-2: 1 epoch).")
    max_resource: int | Literal["auto"] = Field("auto", description="hyperband: maximum resource.")
    reduction_factor: int = Field(2, ge=2, description="hyperband: eta (BabyLlama-2: 2).")
    n_startup_trials: int = Field(2, ge=0, description="median: trials before pruning starts.")
    n_warmup_steps: int = Field(1, ge=0, description="median: reports before a trial may be pruned.")


class Heartbeat(Section):
    interval: int = Field(60, gt=0, description="Seconds between a running trial's heartbeats.")
    grace: int = Field(180, gt=0, description="A trial whose heartbeat is this many seconds old is failed.")


class SweepConfig(Section):
    name: str = Field(description="Study name (in the storage).")
    description: str = Field("", description="What the study shows.")
    recipe: str = Field(description="Base recipe, relative to the sweep file.")
    sweep_dir: str = Field(description="Where trials, the stage store, the SQLite study and the report live.")
    stage_store: str | None = Field(
        None, description="The folder of stages shared by the trials; default SWEEP_DIR/stages. Studies of one base "
        "recipe may share one store, so that their common stages (the teachers) train once for all of them.")
    set: dict[str, Any] = Field(default_factory=dict, description="Fixed overrides of every trial {key: value}.")
    space: dict[str, ParamSpec] = Field(description="Parameters: {dotted.key or label: prior}.")
    objective: Objective
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    trials: int | None = Field(None, gt=0, description="Trials in the study (all workers, failed ones included); "
                               "default: the grid's size; --trials wins.")
    final: bool = Field(False, description="After the last trial, run the whole recipe with the best trial's "
                        "overrides in SWEEP_DIR/best (the tuned baseline against the distilled student).")
    heartbeat: Heartbeat = Field(default_factory=Heartbeat)
    compare_to: dict[str, Any] | None = Field(
        None, description="A reference trial by its parameter values ({parameter: value}, e.g. {divergence: "
        "forward_kl}): the report pairs every trial's students with the reference trial's, seed by seed, and gives "
        "the pooled verdicts (BLiMP and dev CE, paired CIs) beside each trial's own student - baseline.")

    @model_validator(mode="after")
    def _checks(self):
        if not self.space:
            raise ValueError("space needs at least one parameter")
        if self.sampler.type == "grid":
            continuous = [k for k, p in self.space.items() if p.grid_values is None]
            if continuous:
                raise ValueError(f"a grid needs categorical or variants parameters; {', '.join(continuous)} "
                                 "is continuous (use sampler: random or tpe)")
        elif self.trials is None:
            raise ValueError(f"sampler {self.sampler.type} needs trials: N (or --trials N)")
        for k, v in (self.compare_to or {}).items():
            if k not in self.space:
                raise ValueError(f"compare_to names {k}, which is not a parameter of space: ({', '.join(self.space)})")
            values = self.space[k].grid_values
            if values is not None and v not in values:
                raise ValueError(f"compare_to {k}: {v!r} is not one of its values ({', '.join(map(str, values))})")
        return self

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.grid_values or []) for p in self.space.values())

    @property
    def fixed_overrides(self) -> list[str]:
        return overrides_from_tree(self.set)


def load_sweep(path: str | Path, trials: int | None = None,
               overrides: list[str] | None = None) -> tuple[SweepConfig, Path]:
    """The validated sweep and its base recipe's path (resolved against the sweep file's folder). ``overrides``
    (``key=value``, the command line's ``--set``) join the file's fixed ``set:`` overrides, after them."""
    from ..config import parse_override

    tree = read_yaml(path, "sweep file", "a mapping (name:, recipe:, space:, objective:, ...)")
    if trials is not None:
        tree["trials"] = trials
    if overrides:
        fixed = dict(tree.get("set") or {}) if isinstance(tree.get("set") or {}, dict) else tree["set"]
        for item in overrides:
            keys, value = parse_override(item)
            fixed[".".join(keys)] = value
        tree["set"] = fixed
    cfg = validate_tree(SweepConfig, tree, str(path))
    recipe = Path(cfg.recipe)
    if not recipe.is_absolute():
        recipe = Path(path).resolve().parent / recipe
    if not recipe.is_file():
        from ..errors import UserError

        raise UserError(f"{path}: recipe {cfg.recipe} not found (looked for {recipe}); the path is relative to "
                        "the sweep file")
    return cfg, recipe
