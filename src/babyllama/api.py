"""The Python API: the same code the CLI calls, as small typed functions.

    import babyllama

    babyllama.prepare("../shared/data/corpus", "runs/corpus")
    babyllama.train_tokenizer("runs/corpus", "runs/tok", vocab_size=8000)
    metrics = babyllama.train({"data": {"corpus": "runs/corpus", "tokenizer": "runs/tok"},
                               "model": {"preset": "llama-cpu-4m"}, "training": {"output_dir": "runs/m"}})
    results = babyllama.evaluate("runs/m", suites=["blimp_fast"], eval_root="../shared/data/eval")
    scores = babyllama.finetune("runs/m", tasks=["rte", "wsc"], eval_root="../shared/data/eval", seeds=[1, 2, 3])
    babyllama.run("recipes/smoke.yaml", data_root="../shared/data")

Configs are :class:`babyllama.config.Config` objects, or plain dicts / YAML paths validated into one; errors the
user can fix are :class:`babyllama.errors.UserError` with the same one-line messages as the CLI.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .config import Config, EvalConfig, apply_overrides, load_config, validate_tree


def _config(config: Config | dict | str | Path, overrides: list[str] | None = None) -> Config:
    """A Config from a Config, a dict or a YAML path, with ``key=value`` overrides applied and validated."""
    if isinstance(config, Config):
        if not overrides:
            return config.model_copy(deep=True)  # validated already; the caller's object stays as it was
        config = config.model_dump(mode="json")
    if isinstance(config, dict):
        return validate_tree(Config, apply_overrides(copy.deepcopy(config), overrides or []), "config")
    return load_config(config, overrides)


def prepare(src: str | Path, out: str | Path, *, size: str = "10M", overwrite: bool = False) -> dict:
    """Clean a BabyLM corpus (any layout) into ``out``; returns its stats (words and lines per domain)."""
    from .data.corpus import prepare as _prepare

    return _prepare(src, out, overwrite=overwrite, size=size)


def train_tokenizer(corpus: str | Path, out: str | Path, *, vocab_size: int = 16000, min_frequency: int = 2,
                    split: str = "train", overwrite: bool = False):
    """Train the byte-level BPE on a prepared corpus's ``split``; returns the Hugging Face tokenizer."""
    from .data.bpe import train_tokenizer as _train

    return _train(corpus, out, vocab_size=vocab_size, min_frequency=min_frequency, split=split,
                  overwrite=overwrite)


def train(config: Config | dict | str | Path, overrides: list[str] | None = None, *, overwrite: bool = False) -> dict:
    """Pretrain a model (a teacher or a baseline); returns its metrics (also in OUTPUT_DIR/metrics.json)."""
    from .training.pretrain import train as _train

    return _train(_config(config, overrides), overwrite=overwrite)


def distill(config: Config | dict | str | Path, teachers: list[str | Path] | None = None,
            overrides: list[str] | None = None, *, overwrite: bool = False) -> dict:
    """Distil ``teachers`` (model directories or cached hub ids; added to ``distill.teachers``) into the
    config's student; returns its metrics."""
    from .distillation.trainer import distill as _distill

    cfg = _config(config, overrides)
    cfg.distill.teachers = [*cfg.distill.teachers, *map(str, teachers or [])]
    return _distill(cfg, overwrite=overwrite)


def eval_config(suites: list[str] | None = None, eval_root: str | Path | None = None, *, source: str = "evaluate()",
                **settings) -> EvalConfig:
    """The zero-shot settings as an :class:`~babyllama.config.EvalConfig`: ``settings`` are its fields; the eval
    root defaults to ``$BABYLLAMA_DATA/eval`` (:func:`babyllama.eval.suites.default_eval_root`, resolved here
    only); ``source`` names the caller in error lines."""
    from .eval.suites import default_eval_root

    root = eval_root or default_eval_root()
    tree = {"suites": suites or EvalConfig().suites, "eval_root": str(root) if root else None, **settings}
    return validate_tree(EvalConfig, {k: v for k, v in tree.items() if v is not None}, source)


def evaluate(model: Any, suites: list[str] | None = None, *, tokenizer=None, corpus: str | Path | None = None,
             eval_root: str | Path | None = None, **settings) -> dict:
    """Zero-shot scores of a model: a directory, a cached hub id, a loaded model with its ``tokenizer``, or a list of
    model directories scored as their ensemble (the distillation's logits mean at T = 1; see
    :mod:`babyllama.eval.ensemble`).

    ``settings`` are :class:`~babyllama.config.EvalConfig` fields (``max_pairs``, ``bf16``, ``layout``, ...).
    Returns ``{"suites": {name: {"macro": {"acc", "ci", ...}, "groups", "paradigms", "decisions"}},
    "perplexity": ...}``.
    """
    from .eval.evaluate import evaluate as _evaluate
    from .eval.evaluate import load_for_eval

    cfg = eval_config(suites, eval_root, **settings)
    if isinstance(model, list | tuple):
        from .eval.ensemble import EnsembleSpec

        model, tokenizer = load_for_eval(EnsembleSpec(tuple(str(m) for m in model)))
    elif isinstance(model, str | Path):
        model, tokenizer = load_for_eval(model)
    elif tokenizer is None:
        raise TypeError("evaluate(model, ...): a loaded model needs its tokenizer=")
    return _evaluate(model, tokenizer, cfg, corpus)


def evaluate_models(models: list[str | Path], suites: list[str] | None = None, *,
                    ensemble: list[str | Path] | None = None, ensemble_rule: str = "logits_mean",
                    corpus: str | Path | None = None, eval_root: str | Path | None = None,
                    device: str | None = None, source: str = "evaluate_models()", **settings) -> dict:
    """`babyllama eval MODEL ...`: each model (directories or cached hub ids) and, with ``ensemble``, those models'
    ensemble under ``ensemble_rule``, scored on the same items; with two or more, paired comparisons against the
    first. Returns what `babyllama eval --json` writes."""
    from .eval.ensemble import EnsembleSpec
    from .eval.evaluate import evaluate_models as _evaluate_models
    from .models import resolve_model_path

    cfg = eval_config(suites, eval_root, source=source, **settings)
    loaded: list = [resolve_model_path(m) for m in models]
    names = [str(m) for m in models]
    if ensemble:
        spec = EnsembleSpec(tuple(str(resolve_model_path(m)) for m in ensemble), ensemble_rule)
        loaded.append(spec)
        names.append(spec.label)
    return _evaluate_models(loaded, cfg, corpus, names=names, device=device)


def learning_curve(folder: str | Path, suites: list[str] | None = None, *, corpus: str | Path | None = None,
                   eval_root: str | Path | None = None, device: str | None = None,
                   source: str = "learning_curve()", **settings) -> tuple[str, dict]:
    """Score every ``words-N`` checkpoint of a training output folder (the BabyLM 2025 learning curve); writes
    learning_curve.json and its figure there; returns (the markdown table, the JSON)."""
    from .eval.learning_curve import learning_curve as _learning_curve

    return _learning_curve(folder, eval_config(suites, eval_root, source=source, **settings), corpus, device=device)


def finetune(models: str | Path | list[str | Path], tasks: list[str], *, eval_root: str | Path | None = None,
             device: str | None = None, names: list[str] | None = None, source: str = "finetune()",
             **settings) -> dict:
    """Fine-tuning evaluation ((Super)GLUE, MSGS) of one or more models as the BabyLM pipelines run it.

    ``settings`` are :class:`~babyllama.config.FinetuneConfig` fields (``protocol``, ``seeds``, ``max_epochs``,
    ``hparams``, ``lora``, ...); ``eval_root`` (the folder with glue_filtered/, as for :func:`evaluate`)
    defaults to ``$BABYLLAMA_DATA/eval``. Returns the results of `babyllama finetune --json`: per model and task
    the mean score over seeds with its 95% interval, every run, and with two or more models the paired comparisons
    with the first.
    """
    from .config import FinetuneConfig
    from .errors import UserError
    from .finetuning.run import finetune_models

    paths = [models] if isinstance(models, str | Path) else list(models)
    tree = {"tasks": tasks, "eval_root": str(eval_root) if eval_root else None, **settings}
    cfg = validate_tree(FinetuneConfig, {k: v for k, v in tree.items() if v is not None}, source)
    if not tasks:
        raise UserError("no task: pass --task NAME (repeatable), e.g. --task rte --task mrpc")
    return finetune_models([str(p) for p in paths], cfg, names=names, device=device)


def run(recipe: str | Path, *, data_root: str | Path | None = None, run_dir: str | Path | None = None,
        overrides: list[str] | None = None, only: list[str] | None = None, from_stage: str | None = None,
        dry_run: bool = False, makefile: str | Path | None = None, estimate: bool = True) -> Path:
    """Run a recipe (every stage not done yet, ``only`` some, or those ``from_stage`` on; ``dry_run`` prints the
    plan; ``makefile`` writes it as a Makefile and runs nothing; ``estimate``: before the first training stage,
    print the whole job's time from a few steps measured here); returns the run directory."""
    from .report import markdown as _report  # noqa: F401  (registers the report stage kind the run ends with)
    from .runner.execute import run_recipe

    return run_recipe(str(recipe), overrides or [], str(data_root) if data_root else None,
                      str(run_dir) if run_dir else None, dry_run, only=only, from_stage=from_stage,
                      makefile=str(makefile) if makefile else None, estimate=estimate)


def sweep(sweep_file: str | Path, *, data_root: str | Path | None = None, sweep_dir: str | Path | None = None,
          trials: int | None = None, workers: int = 1, storage: str | None = None,
          overrides: list[str] | None = None):
    """Run (or continue) a sweep file's study (see ``recipes/studies/``); returns its Optuna study, whose trials
    carry their parameter values (``user_attrs["values"]``), overrides and run directories."""
    from .sweep.command import run_sweep, study_of
    from .sweep.config import load_sweep

    out = run_sweep(sweep_file, trials=trials, workers=workers, storage=storage, sweep_dir=sweep_dir,
                    data_root=str(data_root) if data_root else None, overrides=overrides)
    return study_of(out, load_sweep(sweep_file, trials, overrides)[0], storage)
