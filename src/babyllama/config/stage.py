"""The sections of one training stage (`babyllama train` / `babyllama distill`): data, model, training and
distillation, and :class:`Config` that holds them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .loader import Section


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
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile each decoder layer for the training steps (regional; evaluation stays "
        "eager; distillation's live teachers compiled too). auto: on a CPU with a C++ compiler when the run trains "
        "on at least 1.5M positions, on a CUDA GPU from 10M, where the first compile pays for itself; off on other "
        "accelerators. Changes roundings only: not part of a stage's key.")
    attention: Literal["auto", "sdpa", "eager"] = Field(
        "auto",
        description="Attention kernel of the trained model. auto: on CPU with bf16 autocast or compiled layers, eager "
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
