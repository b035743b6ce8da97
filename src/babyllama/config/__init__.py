"""One typed configuration tree: every stage's config (data, model, training, distillation), the eval settings,
and the recipe that runs a whole experiment; the loader that reads, overrides and validates them.

A YAML file maps onto :class:`Config` (one training stage: ``babyllama train`` / ``babyllama distill``) or
:class:`Recipe` (``babyllama run``); ``key=value`` overrides (``--set training.learning_rate=1e-3``) are applied on
top, then everything is validated. An unknown key or a value of the wrong type fails with the key's full dotted
path and, for unknown keys, the keys allowed at that level (nanoGPT's configurator, OLMo-core).

Strings may use ``${data_root}``: it is replaced by ``--data-root``, else ``$BABYLLAMA_DATA``, else the top-level
``data_root`` key. Configs the runner saves inside a run directory write the paths of that directory as
``${run_dir}/...`` so that the directory can be moved; ``run_dir`` (or the run directory found above the config
file) fills it when such a file is loaded again. Other relative paths are relative to the working directory.

Every field has a description: ``babyllama train CONFIG --dry-run`` prints the resolved tree.

The modules: :mod:`~babyllama.config.loader` (generic: sections, overrides, YAML, validation, error lines),
:mod:`~babyllama.config.stage` (a training stage's sections), :mod:`~babyllama.config.evaluation` (eval and
fine-tuning), :mod:`~babyllama.config.recipe` (a whole experiment). The sections stay together in this bottom
layer rather than beside their consumers: the runner, the report and the sweep read every section, and the
training code reads the whole :class:`Config`, so a section kept in its consumer's package would make the config
import upwards.
"""

from .evaluation import DEVICE_FIELD, EvalConfig, FinetuneConfig, LoraSettings
from . import loader
from .loader import (PLAN_FILE, Section, apply_overrides, dotted, dump_yaml, find_run_dir, format_validation_error,
                     location_free, overrides_from_file, overrides_from_tree, parse_override, read_yaml,
                     resolve_data_root, validate_tree, yaml_value)
from .recipe import (BASELINE_MODEL_KEYS, RUNNER_OWNED, BaselineSpec, BaseSections, ModelSpec, Recipe, TokenizerSpec,
                     explicit_keys, load_recipe)
from .stage import CacheConfig, Config, DataConfig, DistillConfig, ModelConfig, TrainingConfig

__all__ = ["BASELINE_MODEL_KEYS", "DEVICE_FIELD", "PLAN_FILE", "RUNNER_OWNED", "BaseSections", "BaselineSpec",
           "CacheConfig", "Config", "DataConfig", "DistillConfig", "EvalConfig", "FinetuneConfig", "LoraSettings",
           "ModelConfig", "ModelSpec", "Recipe", "Section", "TokenizerSpec", "TrainingConfig", "apply_overrides",
           "describe", "dotted", "dump_yaml", "explicit_keys", "find_run_dir", "format_validation_error",
           "load_config", "load_recipe", "location_free", "overrides_from_file", "overrides_from_tree",
           "parse_override", "read_yaml", "resolve_data_root", "validate_tree", "yaml_value"]


def load_config(path, overrides: list[str] | None = None, data_root: str | None = None, cls=Config):
    """Read a YAML config (or start from defaults), apply ``key=value`` overrides, validate (a stage's
    :class:`Config` unless ``cls`` says otherwise)."""
    return loader.load_config(path, overrides, data_root, cls)


def describe(cls=Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf field: the config reference."""
    return loader.describe(cls, prefix)
