"""The sections of the evaluation stages: zero-shot (`babyllama eval`, a recipe's ``eval:``) and fine-tuning
(`babyllama finetune`, a recipe's ``finetune:``)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .loader import Section


# the device of an eval or finetune stage (training.device takes no index: under torchrun LOCAL_RANK picks it)
DEVICE_FIELD = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                     description="auto (the GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.")


# the BabyLM 2025 pipeline's text zero-shot suites for which data is at hand (its eval_zero_shot.sh and the _fast
# twin; wug past tense and COMPS are not distributed with the data here); the suite registry lists them in --help
SUITE_GROUPS: dict[str, tuple[str, ...]] = {
    "babylm2025": ("blimp_filtered", "supplement", "ewok", "entity_tracking", "wug_adj", "reading"),
    "babylm2025_fast": ("blimp_fast", "supplement_fast", "ewok_fast", "entity_tracking_fast", "wug_adj", "reading"),
}


def expand_suites(names: list[str]) -> list[str]:
    """Suite groups replaced by their suites, first occurrence kept."""
    return list(dict.fromkeys(s for n in names for s in SUITE_GROUPS.get(n, (n,))))


class EvalConfig(Section):
    """Zero-shot evaluation settings, read by `babyllama eval` (its flags) and by a recipe's eval stages."""

    suites: list[str] = Field(
        ["blimp_filtered", "supplement", "ewok", "perplexity"],
        description="Suites to run: names from the suite registry (`babyllama eval --help`), the groups babylm2025 "
        "and babylm2025_fast (the BabyLM 2025 pipeline's text zero-shot suites), or paths to JSONL minimal pairs.")
    eval_root: str | None = Field(
        None,
        description="Folder with blimp/, blimp_filtered/, ...; default ${data_root}/eval or $BABYLLAMA_DATA/eval.")
    batch_size: int = Field(64, gt=0, description="Sentences per forward pass (perplexity: half as many chunks).")
    paradigms: list[str] | None = Field(None, description="Only these paradigms (files) of minimal-pair suites.")
    max_pairs: int | None = Field(None, gt=0, description="At most N items per paradigm (a seeded subset, for CPU).")
    ppl_max_tokens: int | None = Field(None, gt=0, description="Perplexity: at most N tokens per domain and split.")
    ppl_seq_len: int = Field(128, gt=1, description="Perplexity: tokens per fixed chunk.")
    resamples: int = Field(
        1000, ge=99, description="Bootstrap resamples B behind every CI and paired bootstrap p-value (the report's "
        "verdicts too); the smallest p a bootstrap can give is 2 / (B + 1).")
    precision: Literal["auto", "fp32", "exact_bf16", "bf16"] = Field(
        "auto", description="exact_bf16: rank options under bf16 autocast and in fp32 again every item the bf16 "
        "rounding could decide (decisions identical to fp32's; wug, reading and perplexity in fp32); bf16: all "
        "under bf16 autocast (faster still; decisions may differ from lm-eval's); auto: exact_bf16 where the device "
        "runs bf16 natively, else fp32.")
    device: str = DEVICE_FIELD
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the decoder layers while scoring the suites (not perplexity). auto: on a "
        "CPU with a C++ compiler, for evaluations of at least 4e12 parameters x sentences (the whole BLiMP, "
        "supplement and EWoK with a 58M model), where the first compile pays for itself; off on accelerators "
        "(not measured there).")
    layout: Literal["prefix_tree", "padded"] = Field(
        "prefix_tree",
        description="prefix_tree: shared prefixes scored once, near-ties re-scored padded (decisions equal "
        "lm-eval's); padded: lm-eval's own layout and arithmetic throughout (slower).")
    temperature_min: float = Field(
        1.0, gt=0, description="BabyLM 2025 entity tracking and wug: the logits' temperature (the pipeline's "
        "--min_temperature); with temperature_max, the start of its scan.")
    temperature_max: float | None = Field(
        None, gt=0, description="End of the 2025 pipeline's temperature scan (--max_temperature): every temperature "
        "from temperature_min in steps of temperature_interval is scored and the best reported, as the pipeline "
        "does; default none (one temperature, the pipeline's default).")
    temperature_interval: float = Field(0.05, gt=0, description="Step of the temperature scan (--temperature_interval).")
    tie_rule: Literal["first", "strict"] = Field(
        "first", description="Entity tracking: first: an exact tie for the best option goes to the first (the right "
        "one), the 2025 pipeline's torch.max rule; strict: a tie counts as wrong.")

    @model_validator(mode="before")
    @classmethod
    def _bf16_flag(cls, data: Any) -> Any:
        """The former ``bf16: true`` is ``precision: bf16`` (``bf16: false`` says nothing)."""
        if isinstance(data, dict) and "bf16" in data:
            data = dict(data)
            if data.pop("bf16") is True:
                if data.get("precision", "bf16") != "bf16":
                    raise ValueError("bf16: true and precision disagree; keep precision alone")
                data["precision"] = "bf16"
        return data

    @field_validator("suites")
    @classmethod
    def _expand_groups(cls, v: list[str]) -> list[str]:
        return expand_suites(v)

    @model_validator(mode="after")
    def _scan(self):
        if self.temperature_max is not None and self.temperature_max < self.temperature_min:
            raise ValueError("temperature_max must be at least temperature_min")
        return self


class LoraSettings(Section):
    """Low-rank adapters instead of full fine-tuning (peft); defaults: the 2024 pipeline's train_lora.py."""

    r: int = Field(8, gt=0, description="Adapter rank.")
    alpha: int = Field(16, gt=0, description="Adapter scaling (lora_alpha).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the adapters' input.")


class FinetuneConfig(Section):
    """Fine-tuning evaluation ((Super)GLUE, MSGS), read by `babyllama finetune` (its flags) and a recipe's
    finetune stages. Protocol details: :mod:`babyllama.finetuning.protocols`."""

    tasks: list[str] = Field(
        ["rte", "mrpc", "wsc", "cola"],
        description="Tasks: cola sst2 mrpc qqp mnli mnli-mm qnli rte boolq multirc wsc and the 11 MSGS subtasks.")
    protocol: Literal["babylm2023", "babylm2024", "babylm2025"] = Field(
        "babylm2024", description="Whose fine-tuning script to follow (head, hyperparameters, selection).")
    seeds: list[int] | None = Field(
        None, min_length=1, description="Fine-tuning seeds, each a full run per task; default the protocol's "
        "(12; 2025: 42).")
    eval_root: str | None = Field(
        None, description="Folder with glue_filtered/ (and msgs_filtered/); default the recipe's eval.eval_root "
        "(${data_root}/eval or $BABYLLAMA_DATA/eval); data_dir is read as this key.")
    hparams: str | dict[str, dict[str, Any]] | None = Field(
        None, description="Per-task overrides: a YAML file or a mapping {task or default: {learning_rate, "
        "batch_size, max_epochs, max_length, patience, weight_decay, warmup_ratio, eval_every}}.")
    max_epochs: int | None = Field(None, gt=0, description="Cap on every task's epochs (CPU-sized recipes).")
    max_train_examples: int | None = Field(
        None, gt=0, description="Train on a seeded subset of at most N examples per task (CPU-sized recipes).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: the training rule (bf16 autocast where native; else fp32 on CPU, fp16 with loss "
        "scaling on older GPUs).")
    device: str = DEVICE_FIELD
    pooling: Literal["auto", "last", "first"] = Field(
        "auto", description="auto: the protocol's (2023/2024 last non-pad token; 2025 first token).")
    length_grouping: bool = Field(True, description="Length-grouped training batches (false: random batches).")
    eval_batch_size: int = Field(128, gt=0, description="Examples per forward pass when scoring.")
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the decoder layers for the training steps (scoring stays eager). auto: "
        "on a CPU with a C++ compiler when a model's runs train on at least 1.5M positions, on a CUDA GPU from 10M, "
        "where the first compile pays for itself; off on other accelerators.")
    jobs: int | Literal["auto"] = Field(
        1, description="Runs (task x seed) at once, in forked processes that share the torch threads. auto: on a "
        "CPU one per torch thread, within memory and the number of runs; on an accelerator 1. 1 is the default: "
        "benchmarks/README.md measures both.")
    lora: LoraSettings | None = Field(
        None, description="Train low-rank adapters (and the head) instead of the whole model; needs peft.")

    @model_validator(mode="before")
    @classmethod
    def _former_data_dir(cls, tree):
        # configs and recipes that name the folder data_dir, and babyllama.finetune(data_dir=...), load as eval_root
        if isinstance(tree, dict) and "data_dir" in tree:
            if tree.get("eval_root") is not None:
                raise ValueError("data_dir is the former name of eval_root; keep one of the two")
            former = tree["data_dir"]  # a Path when babyllama.finetune(data_dir=Path(...)) passes one
            tree = {k: v for k, v in tree.items() if k != "data_dir"} | {
                "eval_root": os.fspath(former) if isinstance(former, os.PathLike) else former}
        return tree

    @field_validator("jobs")
    @classmethod
    def _jobs_positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("is a number of runs at once: 1 or more, or auto")
        return v
