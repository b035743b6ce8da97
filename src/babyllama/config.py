"""One typed configuration tree: every stage's config (data, model, training, distillation), the eval settings,
and the recipe that runs a whole experiment.

A YAML file maps onto :class:`Config` (one training stage: ``babyllama train`` / ``babyllama distill``) or
:class:`Recipe` (``babyllama run``); ``key=value`` overrides (``--set training.learning_rate=1e-3``) are applied on
top, then everything is validated. An unknown key or a value of the wrong type fails with the key's full dotted
path and, for unknown keys, the keys allowed at that level (nanoGPT's configurator, OLMo-core).

A recipe's ``base`` and each model's ``data`` / ``training`` are *partial* sections: typed and validated like the
full ones, but only the keys written in them override (``model_fields_set``); everything else comes from the level
below (per-model over ``base`` over the defaults).

Strings may use ``${data_root}``: it is replaced by ``--data-root``, else ``$BABYLLAMA_DATA``, else the top-level
``data_root`` key. Configs the runner saves inside a run directory write the paths of that directory as
``${run_dir}/...`` so that the directory can be moved; ``run_dir`` (or the run directory found above the config
file) fills it when such a file is loaded again. Other relative paths are relative to the working directory.

Every field has a description: ``babyllama train CONFIG --dry-run`` prints the resolved tree.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError

class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class DataConfig(Section):
    corpus: str | None = Field(
        None,
        description="Prepared corpus directory (output of `babyllama data prepare`) with train/ dev/ test/ "
        "sub-directories of cleaned text.",
    )
    tokenizer: str | None = Field(None, description="Tokenizer directory (output of `babyllama tokenizer train`).")
    seq_len: int = Field(128, gt=1, description="Tokens per training and evaluation chunk (both papers: 128).")
    train_split: str = Field("train", description="Split used for training.")
    eval_split: str = Field("dev", description="Split used for evaluation during training.")
    domains: list[str] | None = Field(None, description="Only these domains (file stems); all when unset.")
    max_train_tokens: int | None = Field(
        None, gt=0, description="Train on N tokens in all, each domain in proportion to its size (CPU recipes); "
        "`subset` says which.")
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="Train on this fraction of each training domain's tokens (after "
        "max_train_tokens): the data-size ablation, nested subsets. The tokenizer still sees the whole corpus.")
    max_eval_tokens: int | None = Field(None, gt=0, description="Evaluate on N tokens of the eval split, each "
                                        "domain in proportion; `subset` says which.")
    subset: Literal["spread", "first"] = Field(
        "spread", description="Which tokens max_train_tokens, train_fraction and max_eval_tokens keep of each "
        "domain. spread: 2,048-token blocks drawn from the whole domain (seeded; a smaller subset lies inside a "
        "larger one), in corpus order. first: its first tokens, which are only the first few documents of a file.")
    eval_samples: int | None = Field(
        None, gt=0, description="Seeded random subset of this many eval chunks (the papers use 8192)."
    )
    cache_dir: str | None = Field(
        None, description="Where token caches live; default `<corpus>/.token_cache`. Keyed by content hashes."
    )


class ModelConfig(Section):
    preset: str | None = Field(None, description="Named preset (see `babyllama models`); other keys override it.")
    architecture: Literal["llama", "gpt2", "gptj"] | None = Field(None, description="Model family.")
    hidden_size: int | None = Field(None, gt=0, description="Width of the residual stream.")
    num_layers: int | None = Field(None, gt=0, description="Number of transformer blocks.")
    num_heads: int | None = Field(None, gt=0, description="Attention heads.")
    num_kv_heads: int | None = Field(None, gt=0, description="Key/value heads (grouped-query attention; LLaMA).")
    intermediate_size: int | None = Field(None, gt=0, description="MLP width (LLaMA, GPT-J); GPT-2 uses 4x hidden.")
    vocab_size: int | None = Field(None, gt=0, description="Vocabulary size; default: the tokenizer's.")
    max_position_embeddings: int | None = Field(None, gt=0, description="Context length (papers: 2 x 128).")
    tie_word_embeddings: bool | None = Field(None, description="Share input and output embeddings.")
    rotary_dim: int | None = Field(None, gt=0, description="GPT-J rotary dimension per head.")
    dropout: float | None = Field(None, ge=0, lt=1, description="Dropout on residual/attention/embeddings.")
    attention_dropout: float | None = Field(
        None, ge=0, lt=1, description="Dropout on the attention probabilities; default: dropout. (LLaMA has no "
        "other dropout, so there both are the same.)")
    init_from: str | None = Field(
        None, description="Start from these weights (a model directory, or a hub id already in the local Hugging "
        "Face cache) instead of a random initialisation; its vocabulary must be the tokenizer's.")
    activation: str | None = Field(
        None,
        description="MLP activation, a transformers ACT2FN name. Default: silu (LLaMA); gelu_pytorch_tanh (GPT-2, "
        "GPT-J): the tanh GELU of their original gelu_new, as one fused kernel instead of seven elementwise ops.",
    )


class TrainingConfig(Section):
    output_dir: str | None = Field(None, description="Where the model, checkpoints and metrics are written.")
    seed: int = Field(42, description="Seeds initialisation, data offsets and the eval subset.")
    learning_rate: float = Field(3e-4, gt=0, description="Peak learning rate of AdamW.")
    batch_size: int = Field(32, gt=0, description="Sequences per device per step.")
    eval_batch_size: int | None = Field(None, gt=0, description="Eval batch size; default: batch_size.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    num_epochs: float = Field(4.0, gt=0, description="Passes over the training tokens.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run num_epochs).")
    warmup_steps: int = Field(300, ge=0, description="Linear warm-up steps.")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field("cosine", description="LR schedule.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="AdamW beta2.")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 disables).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: the GPU when torch sees one, else the CPU. cuda: this process's GPU (LOCAL_RANK "
        "under torchrun / accelerate launch); an error where there is none.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 autocast where the device supports it natively (CUDA Ampere+, CPUs with "
        "AVX512-BF16/AMX), else fp32 on CPU and fp16 autocast with loss scaling on older GPUs. fp16 is CUDA only.",
    )
    compile: bool = Field(False, description="torch.compile the model.")
    attention: Literal["auto", "sdpa", "eager"] = Field(
        "auto",
        description="Attention kernel of the trained model. auto: on CPU with bf16 autocast (and no compile), eager "
        "attention while gradients are on and SDPA for evaluation, because there the SDPA backward is the slow "
        "part (measured in benchmarks/README.md); SDPA everywhere else.",
    )
    eval_strategy: Literal["epoch", "steps", "no"] = Field("epoch", description="When to evaluate and checkpoint.")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate every N steps (eval_strategy: steps).")
    eval_on_start: bool = Field(True, description="Evaluate once before training (step 0), for the loss curve.")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept (the best one is always kept).")
    save_at_words: list[int] | None = Field(
        None, description="Also save the model after these numbers of training words seen, as OUTPUT_DIR/words-N "
        "(Hugging Face folders, kept): the BabyLM 2025 checkpoints are 1M, 2M, ... 10M, then every 10M to 100M. "
        "Words are counted from the corpus (its words per token), not tokens. `babyllama eval OUTPUT_DIR "
        "--all-checkpoints` scores them all.")
    logging_steps: int = Field(10, gt=0, description="Log train loss every N steps.")
    report_to: list[str] = Field(["tensorboard"], description="Trackers: tensorboard, wandb (optional), none.")
    num_threads: int | None = Field(None, gt=0, description="torch intra-op threads; default: physical cores.")
    dataloader_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    progress: bool = Field(True, description="Show a progress bar with tokens/s and ETA.")


class CacheConfig(Section):
    """Cached teacher outputs: the ensemble runs once, the student trains from a memory-mapped top-K cache."""

    enabled: bool = Field(False, description="Precompute K teacher entries per position once; train from the cache.")
    top_k: int = Field(64, gt=0, description="K: entries stored per position.")
    sampled: int = Field(
        48, ge=0,
        description="Of the K entries, how many are token ids sampled from the teacher distribution beyond the "
        "exact top K - sampled ones (an unbiased estimate of the KL and its gradient); 0 = pure top-K with one "
        "tail bucket (biased when the tempered teacher is flat).",
    )
    window: Literal["aligned", "sliding"] = Field(
        "aligned",
        description="aligned: one teacher pass, windows every seq_len tokens, fixed student chunks (contexts "
        "identical to live distillation); sliding: two passes, windows every seq_len/2 tokens, each cached position "
        "saw >= seq_len/2 tokens of context, student chunks keep random offsets. See benchmarks/README.md.",
    )
    random_offset: bool | None = Field(
        None,
        description="Whether the student's training chunks start at new random offsets every epoch. Default: no "
        "with aligned windows, yes with sliding ones. aligned + true: one teacher pass and the papers' offsets; a "
        "position's teacher context then differs from the student's.",
    )
    dir: str | None = Field(None, description="Where teacher caches live; default <corpus>/.teacher_cache.")
    seed: int | None = Field(
        None, ge=0,
        description="Seed that draws the sampled entries; default the student's training.seed. Set it to share one "
        "cache among the seeds of a multi-seed run: they then share the teachers' sampled targets (as they share "
        "the teachers) and the cache is built once instead of once per seed.",
    )

    @model_validator(mode="after")
    def _sampled_below_k(self):
        if self.sampled >= self.top_k:
            raise ValueError(f"sampled ({self.sampled}) must be smaller than top_k ({self.top_k}): at least one "
                             "exact top token is kept")
        return self

    @property
    def student_random_offset(self) -> bool:
        """``random_offset`` with its default resolved (new offsets every epoch only with sliding windows)."""
        return self.random_offset if self.random_offset is not None else self.window == "sliding"


class DistillConfig(Section):
    teachers: list[str] = Field([], description="Teacher model directories (Hugging Face format).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the CE term; (1 - alpha) weighs T^2 * KL.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature T of teachers and student in the KL.")
    kl_reduction: Literal["paper", "per_token"] = Field(
        "per_token",
        description="paper: KLDivLoss(batchmean) on (B,T,V) as the authors' code (sum over positions and "
        "vocabulary / batch size, no padding mask); per_token: mean over non-padding positions (CE's scale).",
    )
    ensemble: Literal["logits_mean", "probs_mean"] = Field(
        "logits_mean", description="logits_mean (the papers): average teacher logits then soften; probs_mean."
    )
    teacher_weights: list[float] | None = Field(None, description="Per-teacher weights (normalised); default equal.")
    # the names of babyllama.distillation.divergences.DIVERGENCES (a test keeps the two equal)
    divergence: Literal["forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "tvd",
                        "alpha_beta"] = Field(
        "forward_kl",
        description="D in alpha * CE + (1 - alpha) * T^2 * D (T^1 for tvd): forward_kl (the papers), reverse_kl, "
        "jsd (TRL's generalized JSD), skew_kl, skew_reverse_kl (DistiLLM), tvd, alpha_beta (ABKD). From a teacher "
        "cache, all but forward_kl compare the exact entries plus one bucket for the rest (a lower bound; "
        "babyllama.distillation.divergences).")
    jsd_beta: float = Field(
        0.5, ge=0, le=1, description="jsd: the mixture weight beta of the teacher, m = beta p + (1 - beta) q; 0 is "
        "forward KL, 1 reverse KL (as TRL's GKD).")
    skew: float = Field(0.1, ge=0, lt=1, description="skew_kl, skew_reverse_kl: DistiLLM's skew of the mixture.")
    ab_alpha: float = Field(0.5, description="alpha_beta: ABKD's alpha ((1, 0) is forward KL, (0, 1) reverse KL).")
    ab_beta: float = Field(0.5, description="alpha_beta: ABKD's beta.")
    cache: CacheConfig = Field(
        default_factory=CacheConfig,
        description="Cached teacher outputs; `cache: true` is short for `cache: {enabled: true}`.")

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_shorthand(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v


# the device of an eval or finetune stage (training.device takes no index: under torchrun LOCAL_RANK picks it)
DEVICE_FIELD = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                     description="auto (the GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.")


class EvalConfig(Section):
    """Zero-shot evaluation settings, read by `babyllama eval` (its flags) and by a recipe's eval stages."""

    suites: list[str] = Field(
        ["blimp_filtered", "supplement", "ewok", "perplexity"],
        description="Suites to run: names from the suite registry (`babyllama eval --help`) or paths to JSONL "
        "minimal pairs.")
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
    bf16: bool = Field(False, description="Score under bf16 autocast (faster; decisions may differ from lm-eval's).")
    device: str = DEVICE_FIELD
    layout: Literal["prefix_tree", "padded"] = Field(
        "prefix_tree",
        description="prefix_tree: shared prefixes scored once, near-ties re-scored padded (decisions equal "
        "lm-eval's); padded: lm-eval's own layout and arithmetic throughout (slower).")


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
        "(${data_root}/eval or $BABYLLAMA_DATA/eval). The former name data_dir is still read.")
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
        "CPU one per torch thread, within memory and the number of runs; on an accelerator 1. On 2 cores this "
        "was slower on RTE and faster on MRPC (benchmarks/README.md), so 1 is the default.")
    lora: LoraSettings | None = Field(
        None, description="Train low-rank adapters (and the head) instead of the whole model; needs peft.")

    @model_validator(mode="before")
    @classmethod
    def _former_data_dir(cls, tree):
        # data_dir was this key's name before it took eval's: configs saved then still load
        if isinstance(tree, dict) and "data_dir" in tree:
            if tree.get("eval_root") is not None:
                raise ValueError("data_dir is the former name of eval_root; keep one of the two")
            former = tree["data_dir"]  # babyllama.finetune(data_dir=Path(...)) passed it as given
            tree = {k: v for k, v in tree.items() if k != "data_dir"} | {
                "eval_root": os.fspath(former) if isinstance(former, os.PathLike) else former}
        return tree

    @field_validator("jobs")
    @classmethod
    def _jobs_positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("is a number of runs at once: 1 or more, or auto")
        return v


class Config(Section):
    """One training stage: `babyllama train` (data, model, training) and `babyllama distill` (+ distill)."""

    data_root: str | None = Field(None, description="Root of the data (corpus/, eval/); fills ${data_root}.")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    run_dir: str | None = Field(
        None, description="Run directory of the recipe this stage belongs to; fills ${run_dir}. Set by the runner.")

    @field_validator("data_root", "run_dir")
    @classmethod
    def _no_trailing_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v


# --------------------------------------------------------------------------------------------------------------
# Recipes: a whole experiment


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


def written(section: BaseModel) -> dict:
    """The keys a partial section sets explicitly, as plain values."""
    return section.model_dump(mode="json", exclude_unset=True)


# --------------------------------------------------------------------------------------------------------------
# Loading, overriding, validating


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML, so numbers, lists and booleans work)."""
    if "=" not in item:
        raise UserError(f"override '{item}' is not key=value; write e.g. --set training.learning_rate=3e-4")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        raise UserError(f"override '{item}': the value is not valid YAML; quote strings, e.g. "
                        f"--set '{key}=\"{raw}\"'") from None
    return key.strip().split("."), value


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Set each ``a.b.c=value`` in the raw tree; a number steps into a list (``teachers.0.training.seed=3``)."""
    for item in overrides:
        keys, value = parse_override(item)
        node: Any = tree
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    raise UserError(f"override '{item}': '{k}' is not an index of the {len(node)} entries there")
                if last:
                    node[int(k)] = value
                else:
                    node = node[int(k)]
                continue
            if not isinstance(node, dict):
                raise UserError(f"override '{item}': '{keys[i - 1]}' is not a section")
            if last:
                node[k] = value
            else:
                node = node.setdefault(k, {})
    return tree


def read_yaml(path: str | Path, what: str = "config file",
              top_level: str = "a mapping of sections (data:, model:, training:, ...)") -> dict:
    """A YAML mapping from ``path``; one line naming the file for a missing file, bad syntax or another top level
    (``what`` and ``top_level`` word those lines)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}; pass a YAML file (see configs/ and recipes/)")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{p}: not valid UTF-8 YAML ({first}); fix the syntax") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise UserError(f"{p}: the top level must be {top_level}")
    return tree


def _model_at(cls: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by following ``path`` (field names; list indices skipped) from ``cls``."""
    for key in path:
        if isinstance(key, int):
            continue
        field = cls.model_fields.get(str(key))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        candidates += [a for c in typing.get_args(ann) for a in typing.get_args(c)]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        cls = nxt
    return cls


def dotted(loc: tuple) -> str:
    """('teachers', 0, 'training', 'lr') -> 'teachers[0].training.lr'."""
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out


def format_validation_error(err: ValidationError, cls: type[BaseModel], source: str) -> str:
    """One line: the first problem, its full dotted key path, and what is allowed."""
    e = err.errors()[0]
    loc = tuple(x for x in e["loc"])
    if e["type"] == "extra_forbidden":
        parent = _model_at(cls, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        where = dotted(loc[:-1]) or "the top level"
        return f"{source}: unknown key '{dotted(loc)}'; allowed keys under {where}: {allowed}"
    got = e.get("input")
    got_s = f" (got {got!r})" if not isinstance(got, dict) and e["type"] != "value_error" else ""
    msg = e["msg"].removeprefix("Value error, ")
    where = f"key '{dotted(loc)}'" if loc else "the config"
    return f"{source}: {where}: {msg}{got_s}"


def resolve_data_root(cli_value: str | None, tree_value: str | None) -> str | None:
    return cli_value or os.environ.get("BABYLLAMA_DATA") or tree_value


def find_run_dir(config_path: str | Path | None) -> str | None:
    """The run directory (a folder holding plan.json) at or above a saved stage config, if any."""
    if not config_path:
        return None
    for d in Path(config_path).resolve().parents:
        if (d / "plan.json").is_file():
            return str(d)
    return None


def _interpolate(obj: Any, values: dict[str, str | None], source: str) -> Any:
    if isinstance(obj, dict):
        return {k: _interpolate(v, values, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interpolate(v, values, source) for v in obj]
    if isinstance(obj, str):
        for name, value in values.items():
            token = "${" + name + "}"
            if token in obj:
                if not value:
                    hint = ("pass --data-root DIR or set BABYLLAMA_DATA (e.g. ../shared/data), or download the data "
                            "with `babyllama data download`") if name == "data_root" else \
                        "pass --set run_dir=DIR (the run directory this stage belongs to)"
                    raise UserError(f"{source}: '{obj}' needs the {name.replace('_', ' ')}; {hint}")
                obj = obj.replace(token, value)
    return obj


def validate_tree(cls: type[BaseModel], tree: dict, source: str, data_root: str | None = None,
                  run_dir: str | None = None):
    data_root = resolve_data_root(data_root, tree.get("data_root") if isinstance(tree, dict) else None)
    if data_root and "data_root" in cls.model_fields:
        tree = {**tree, "data_root": data_root}
    if cls is Recipe:  # a recipe's run_dir is where it writes, never a placeholder
        run_dir = None
    else:
        run_dir = tree.get("run_dir") or run_dir
        if run_dir and "run_dir" in cls.model_fields:
            tree = {**tree, "run_dir": run_dir}
    tree = _interpolate(tree, {"data_root": data_root, "run_dir": run_dir}, source)
    try:
        return cls.model_validate(tree)
    except ValidationError as err:
        raise UserError(format_validation_error(err, cls, source)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None, data_root: str | None = None,
                cls=Config):
    """Read a YAML config (or start from defaults), apply ``key=value`` overrides, validate."""
    words = ("recipe", "a mapping of recipe keys (name:, teachers:, student:, ...)") if cls is Recipe else ()
    tree = read_yaml(path, *words) if path else {}
    apply_overrides(tree, overrides or [])
    return validate_tree(cls, tree, str(path) if path else "--set", data_root, run_dir=find_run_dir(path))


def yaml_value(value: Any) -> str:
    """``value`` as the one-line YAML text of an override (floats such as 1e-06 as 1.0e-06, which YAML 1.1 reads
    back as a number, not a string)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def overrides_from_tree(tree: dict) -> list[str]:
    """A mapping of keys to values (dotted keys or nested sections) as ``key=value`` overrides."""

    def flat(node: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in node.items():
            if isinstance(v, dict) and v:
                out += flat(v, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}={yaml_value(v)}")
        return out
    return flat(tree)


def overrides_from_file(path: str | Path) -> list[str]:
    """A YAML mapping of keys to values (dotted keys or nested sections) as ``key=value`` overrides."""
    return overrides_from_tree(read_yaml(path))


def load_recipe(path: str | Path, overrides: list[str] | None = None, data_root: str | None = None) -> Recipe:
    return load_config(path, overrides, data_root, cls=Recipe)


def location_free(obj: Any, run_dir: str | Path | None) -> Any:
    """``obj`` with every path inside ``run_dir`` written as ``${run_dir}/...`` (for files saved in a run)."""
    if not run_dir:
        return obj
    root = str(Path(run_dir).resolve())
    if isinstance(obj, dict):
        return {k: location_free(v, root) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [location_free(v, root) for v in obj]
    if isinstance(obj, str) and (obj == root or obj.startswith(root + "/")):
        return "${run_dir}" + obj[len(root):]
    return obj


def dump_yaml(cfg: BaseModel, run_dir: str | Path | None = None, exclude_unset: bool = False) -> str:
    """YAML of a config; with ``run_dir``, paths inside it as ``${run_dir}/...`` and no ``run_dir`` key."""
    tree = cfg.model_dump(mode="json", exclude_unset=exclude_unset)
    if run_dir:
        tree = location_free(tree, run_dir)
        tree["run_dir"] = None
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None)


def describe(cls: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf field: the config reference."""
    rows = []
    for name, f in cls.model_fields.items():
        sub = _model_at(cls, (name,))
        if sub is not None and f.default_factory is not None:
            rows += describe(sub, f"{prefix}{name}.")
        else:
            rows.append((prefix + name, repr(f.default), f.description or ""))
    return rows
