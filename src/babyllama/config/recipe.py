"""A recipe (`babyllama run`): the whole experiment, whose ``base`` and per-model ``data`` / ``training`` are
*partial* sections: typed and validated like the full ones, but only the keys written in them override
(``model_fields_set``); everything else comes from the level below (per-model over ``base`` over the defaults)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from .evaluation import EvalConfig, FinetuneConfig
from .loader import Section, load_config
from .stage import DataConfig, DistillConfig, ModelConfig, TrainingConfig


class TokenizerSpec(Section):
    vocab_size: int = Field(16000, gt=258, description="BPE vocabulary size (papers: 16000).")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a merge.")


RUNNER_OWNED = {"data": ("corpus", "tokenizer"), "training": ("output_dir",)}


class _Partial(Section):
    """Sections whose written keys override the level below; the runner fills the paths between stages."""

    @model_validator(mode="after")
    def _no_runner_paths(self):
        for section, keys in RUNNER_OWNED.items():
            sub = getattr(self, section, None)
            for k in keys:
                if sub is not None and k in sub.model_fields_set:
                    raise ValueError(f"{section}.{k} is set by the runner between stages; remove it from the recipe")
        return self


class BaseSections(_Partial):
    data: DataConfig = Field(default_factory=DataConfig, description="data.* keys shared by all training stages.")
    training: TrainingConfig = Field(default_factory=TrainingConfig,
                                     description="training.* keys shared by all training stages.")


class ModelSpec(_Partial):
    name: str = Field(description="Short name used in the report and in stage directories.")
    model: ModelConfig = Field(description="Architecture (preset and overrides).")
    training: TrainingConfig = Field(default_factory=TrainingConfig,
                                     description="training.* keys that differ from base.training.")
    data: DataConfig = Field(default_factory=DataConfig, description="data.* keys that differ from base.data.")


BASELINE_MODEL_KEYS = ("dropout", "attention_dropout")


class BaselineSpec(_Partial):
    """Settings of the baseline that differ from the student's: its training (a tuned baseline) and dropout.
    The architecture stays the student's, so "student - baseline" always compares models of one size."""

    training: TrainingConfig = Field(default_factory=TrainingConfig,
                                     description="training.* keys of the baseline that differ from the student's.")
    model: ModelConfig = Field(default_factory=ModelConfig,
                               description=f"Only {', '.join(BASELINE_MODEL_KEYS)}: the architecture is the "
                               "student's.")

    @model_validator(mode="after")
    def _same_architecture(self):
        other = sorted(set(self.model.model_fields_set) - set(BASELINE_MODEL_KEYS))
        if other:
            raise ValueError(f"baseline.model may set only {', '.join(BASELINE_MODEL_KEYS)} (the baseline has the "
                             f"student's architecture); remove {', '.join(other)}")
        return self


class Recipe(Section):
    """`babyllama run RECIPE`: prepare -> tokenizer -> teachers -> baseline -> student -> eval -> report."""

    writes_run_dir: ClassVar[bool] = True  # its run_dir is where it writes, never a ${run_dir} placeholder
    yaml_words: ClassVar[tuple[str, str]] = ("recipe", "a mapping of recipe keys (name:, teachers:, student:, ...)")

    name: str = Field(description="Experiment name.")
    description: str = Field("", description="What this recipe reproduces.")
    run_dir: str = Field(description="Where stages, plan.json and the report are written.")
    data_root: str | None = Field(None, description="Fills ${data_root}; --data-root / $BABYLLAMA_DATA win.")
    corpus: str = Field(description="Raw BabyLM corpus folder (any layout `babyllama data prepare` reads).")
    corpus_size: Literal["10M", "100M"] = Field("10M", description="10M or 100M when both are present.")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    base: BaseSections = Field(default_factory=BaseSections,
                               description="Partial data: and training: shared by all training stages.")
    teachers: list[ModelSpec] = Field(min_length=1, description="Teachers, pretrained from scratch.")
    student: ModelSpec = Field(description="Student architecture and budget (also used for the baseline).")
    baseline: BaselineSpec = Field(
        default_factory=BaselineSpec,
        description="Baseline settings that differ from the student's (training keys, dropout); a sweep's "
        "tuned-baseline study writes here.")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="Distillation settings.")
    seeds: list[int] = Field([1], min_length=1, description="Seeds of the baseline and student stages.")
    teacher_seeds: bool = Field(False, description="Also repeat the teachers per seed.")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    finetune: FinetuneConfig | None = Field(
        None, description="Fine-tuning evaluation of every model (a finetune stage each); none when absent.")

    @model_validator(mode="after")
    def _checks(self):
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must differ (got {names})")
        if self.distill.teachers:
            raise ValueError("distill.teachers is set by the runner from teachers:; remove it from the recipe")
        if self.eval.eval_root is None and self.data_root:
            self.eval.eval_root = f"{self.data_root}/eval"
        if self.finetune is not None and self.finetune.eval_root is None and self.eval.eval_root:
            self.finetune.eval_root = self.eval.eval_root
        return self


def explicit_keys(section: BaseModel) -> dict:
    """The keys a partial section sets explicitly, as plain values."""
    return section.model_dump(mode="json", exclude_unset=True)


def load_recipe(path, overrides: list[str] | None = None, data_root: str | None = None) -> Recipe:
    return load_config(path, overrides, data_root, cls=Recipe)
