"""One typed configuration tree for every stage: data, model, training, distillation, evaluation.

A YAML file maps onto :class:`Config`; ``key=value`` overrides (``--set training.learning_rate=1e-3``) are
applied on top, then everything is validated. An unknown key or a value of the wrong type fails with the key's
full dotted path and, for unknown keys, the keys allowed at that level (nanoGPT's configurator, OLMo-core).

Strings may use ``${data_root}``: it is replaced by ``--data-root``, else ``$BABYLLAMA_DATA``, else the top-level
``data_root`` key. Relative paths are kept relative to the working directory.

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
        None, gt=0, description="Use only the first N tokens of each training domain, in proportion (CPU recipes)."
    )
    max_eval_tokens: int | None = Field(None, gt=0, description="Use only the first N tokens of the eval split.")
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
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 autocast where the device supports it natively (CUDA Ampere+, CPUs with "
        "AVX512-BF16/AMX), else fp32. fp16 is CUDA only.",
    )
    compile: bool = Field(False, description="torch.compile the model.")
    attention: Literal["auto", "sdpa", "eager"] = Field(
        "auto",
        description="Attention kernel of the trained model. auto: on CPU with bf16 autocast (and no compile), eager "
        "attention while gradients are on and SDPA for evaluation (the CPU SDPA backward is the slow part: eager "
        "trains 1.09-1.46x faster there, SDPA infers up to 1.3x faster); SDPA everywhere else.",
    )
    eval_strategy: Literal["epoch", "steps", "no"] = Field("epoch", description="When to evaluate and checkpoint.")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate every N steps (eval_strategy: steps).")
    eval_on_start: bool = Field(True, description="Evaluate once before training (step 0), for the loss curve.")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept (the best one is always kept).")
    logging_steps: int = Field(10, gt=0, description="Log train loss every N steps.")
    report_to: list[str] = Field(["tensorboard"], description="Trackers: tensorboard, wandb (optional), none.")
    num_threads: int | None = Field(None, gt=0, description="torch intra-op threads; default: physical cores.")
    dataloader_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    progress: bool = Field(True, description="Show a progress bar with tokens/s and ETA.")


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
    cache: bool = Field(False, description="Precompute top-K teacher outputs once and train from the cache.")
    cache_top_k: int = Field(64, gt=0, description="K: entries stored per position in the teacher cache.")
    cache_sampled: int = Field(
        48, ge=0,
        description="Of the K entries, how many are token ids sampled from the teacher distribution beyond the "
        "exact top K - sampled ones (an unbiased estimate of the KL and its gradient); 0 = pure top-K with one "
        "tail bucket (biased when the tempered teacher is flat).",
    )
    cache_window: Literal["aligned", "sliding"] = Field(
        "aligned",
        description="aligned: one teacher pass, windows every seq_len tokens, fixed student chunks (contexts "
        "identical to live distillation); sliding: two passes, windows every seq_len/2 tokens, each cached position "
        "saw >= seq_len/2 tokens of context, student chunks keep random offsets. See benchmarks/README.md.",
    )
    cache_random_offset: bool | None = Field(
        None,
        description="Whether the student's training chunks start at new random offsets every epoch when training "
        "from the cache. Default: no with aligned windows, yes with sliding ones. aligned + true: one teacher pass "
        "and the papers' offsets; a position's teacher context then differs from the student's.",
    )
    cache_dir: str | None = Field(None, description="Where teacher caches live; default <corpus>/.teacher_cache.")


    @model_validator(mode="after")
    def _sampled_below_k(self):
        if self.cache_sampled >= self.cache_top_k:
            raise ValueError(f"cache_sampled ({self.cache_sampled}) must be smaller than cache_top_k "
                             f"({self.cache_top_k}): at least one exact top token is kept")
        return self


class EvalConfig(Section):
    suites: list[str] = Field(["blimp_filtered", "perplexity"], description="Zero-shot suites to run.")
    eval_root: str | None = Field(None, description="Directory with blimp/, blimp_filtered/, ... (default: data_root/eval).")
    batch_size: int = Field(64, gt=0, description="Sentences per forward pass.")
    paradigms: list[str] | None = Field(None, description="Limit minimal-pair suites to these paradigms.")
    max_pairs: int | None = Field(None, gt=0, description="Score at most N pairs per paradigm (seeded, for CPU).")
    bf16: bool = Field(False, description="Score under bf16 autocast (faster; see docs for decision agreement).")


class Config(Section):
    data_root: str | None = Field(None, description="Root of the data (corpus/, eval/); fills ${data_root}.")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("data_root")
    @classmethod
    def _no_trailing_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v


# --------------------------------------------------------------------------------------------------------------
# Loading, overriding, validating


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML, so numbers, lists and booleans work)."""
    if "=" not in item:
        raise UserError(f"override '{item}' is not key=value; write e.g. --set training.learning_rate=3e-4")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    return key.strip().split("."), value


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    for item in overrides:
        keys, value = parse_override(item)
        node = tree
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}': '{k}' is not a section")
        node[keys[-1]] = value
    return tree


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}; pass a YAML file (see configs/ and recipes/)")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{p}: not valid UTF-8 YAML ({first}); fix the syntax") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise UserError(f"{p}: the top level must be a mapping of sections (data:, model:, training:, ...)")
    return tree


def _model_at(cls: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by following ``path`` (field names) from ``cls``."""
    for key in path:
        field = cls.model_fields.get(str(key))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        cls = nxt
    return cls


def format_validation_error(err: ValidationError, cls: type[BaseModel], source: str) -> str:
    """One line: the first problem, its full dotted key path, and what is allowed."""
    e = err.errors()[0]
    loc = tuple(x for x in e["loc"])
    dotted = ".".join(str(x) for x in loc)
    if e["type"] == "extra_forbidden":
        parent = _model_at(cls, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        where = ".".join(str(x) for x in loc[:-1]) or "the top level"
        return f"{source}: unknown key '{dotted}'; allowed keys under {where}: {allowed}"
    got = e.get("input")
    got_s = f" (got {got!r})" if not isinstance(got, dict) else ""
    return f"{source}: key '{dotted}': {e['msg']}{got_s}"


def resolve_data_root(cli_value: str | None, tree_value: str | None) -> str | None:
    return cli_value or os.environ.get("BABYLLAMA_DATA") or tree_value


def _interpolate(obj: Any, data_root: str | None, source: str) -> Any:
    if isinstance(obj, dict):
        return {k: _interpolate(v, data_root, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interpolate(v, data_root, source) for v in obj]
    if isinstance(obj, str) and "${data_root}" in obj:
        if not data_root:
            raise UserError(
                f"{source}: '{obj}' needs the data root; pass --data-root DIR or set BABYLLAMA_DATA "
                "(e.g. ../shared/data), or download the data with `babyllama data download`"
            )
        return obj.replace("${data_root}", data_root)
    return obj


def validate_tree(cls: type[BaseModel], tree: dict, source: str, data_root: str | None = None):
    data_root = resolve_data_root(data_root, tree.get("data_root") if isinstance(tree, dict) else None)
    if data_root:
        tree = {**tree, "data_root": data_root} if "data_root" in cls.model_fields else tree
    tree = _interpolate(tree, data_root, source)
    try:
        return cls.model_validate(tree)
    except ValidationError as err:
        raise UserError(format_validation_error(err, cls, source)) from None


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, data_root: str | None = None, cls=Config
):
    """Read a YAML config (or start from defaults), apply ``key=value`` overrides, validate."""
    tree = read_yaml(path) if path else {}
    apply_overrides(tree, overrides or [])
    return validate_tree(cls, tree, str(path) if path else "--set", data_root)


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, default_flow_style=None)


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

