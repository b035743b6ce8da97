"""The executors of the runner's own stage kinds (registered by name in :mod:`babyllama.runner.kinds`): each
reads its stage's inputs from the plan and writes its directory; the heavy modules are imported inside them."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Recipe
from ..io import write_json
from ..runinfo import write_run_info
from .kinds import result_file
from .plan import Plan, Stage
from .state import finish_stamps


@dataclass
class StageContext:
    recipe: Recipe
    plan: Plan
    stage: Stage
    callbacks: list = field(default_factory=list)  # extra TrainerCallbacks of a training stage
    started: float = field(default_factory=time.time)

    def wall_s(self) -> float:
        """Seconds since the stage started: the report's compute table reads it from run_info.json."""
        return round(time.time() - self.started, 2)

    def times(self) -> dict[str, float]:
        """``wall_s``, and ``startup_s``: from the stage's process start (a warm child's: its client's) to the
        stage's (interpreter, imports, the plan)."""
        from .warm import process_started

        began = process_started()
        startup = {} if began is None else {"startup_s": round(max(self.started - began, 0.0), 2)}
        return {"wall_s": self.wall_s(), **startup}

    @property
    def dir(self) -> Path:
        return self.plan.path(self.stage)

    @property
    def corpus(self) -> Path:
        return self.plan.path("prepare") / "corpus"


def run_prepare(ctx: StageContext) -> None:
    from ..data.corpus import prepare

    if ctx.dir.exists():
        shutil.rmtree(ctx.dir)  # not complete (else it would not run): the corpus inside is rebuilt whole
    r = ctx.recipe
    stats = prepare(r.corpus, ctx.corpus, size=r.corpus_size)
    write_run_info(ctx.dir, "prepare", {"source": r.corpus, "size": r.corpus_size}, run_dir=ctx.plan.run_dir,
                   stats=stats, **ctx.times())


def run_tokenizer(ctx: StageContext) -> None:
    from ..data.bpe import train_tokenizer

    spec = ctx.recipe.tokenizer
    train_tokenizer(ctx.corpus, ctx.dir, vocab_size=spec.vocab_size, min_frequency=spec.min_frequency,
                    overwrite=True)
    write_run_info(ctx.dir, "tokenizer", spec.model_dump(), run_dir=ctx.plan.run_dir, corpus=str(ctx.corpus),
                   **ctx.times())


def run_pretrain(ctx: StageContext) -> None:
    from ..training.pretrain import train

    train(ctx.stage.config, callbacks=ctx.callbacks)


def run_distill(ctx: StageContext) -> None:
    from ..distillation.trainer import distill

    distill(ctx.stage.config, callbacks=ctx.callbacks)


def run_eval(ctx: StageContext) -> None:
    from ..eval.ensemble import EnsembleSpec
    from ..eval.evaluate import evaluate, load_for_eval

    s, d = ctx.stage, ctx.recipe.distill
    if s.role == "ensemble":
        model_dir = EnsembleSpec(tuple(str(ctx.plan.path(m)) for m in s.evaluated), d.ensemble,
                                 None if d.teacher_weights is None else tuple(d.teacher_weights),
                                 name=s.name.removeprefix("eval:"))
        what = {"members": s.evaluated, "rule": d.ensemble, "temperature": 1.0}
    else:
        model_dir, what = ctx.plan.path(s.model_stage), {}
    model, tok = load_for_eval(model_dir, ctx.recipe.eval.device)
    res = evaluate(model, tok, ctx.recipe.eval, ctx.corpus, keep_chunks=True)
    for line in eval_lines(res):
        print(f"  {line}", flush=True)
    write_json(ctx.dir / result_file("eval"), {"model": s.model_stage or s.name.removeprefix("eval:"), **what, **res})
    write_run_info(ctx.dir, "eval", ctx.recipe.eval.model_dump(mode="json"), run_dir=ctx.plan.run_dir,
                   model=str(model_dir) if not what else what, model_finished_at=finish_stamps(ctx.plan, s),
                   **ctx.times())


def eval_lines(res: dict) -> list[str]:
    """One line per suite of an eval stage: ``blimp_fast: 53.3% [52.2, 54.4] macro, 6,700 pairs / 67 paradigms,
    7.8 s``."""
    out = []
    from ..eval.markdown import headline_text

    for name, s in res["suites"].items():
        m = s["macro"]
        if m.get("metric", "accuracy") == "accuracy":
            what = "items" if "weights" in s else "pairs"  # entity tracking's items have five options
            out.append(f"{name}: {headline_text(s)} macro, {m['items']:,} {what} / {m['paradigms']} paradigms, "
                       f"{res['timing'][name]:.1f} s")
        else:
            out.append(f"{name}: {headline_text(s)}, {m['items']:,} items, {res['timing'][name]:.1f} s")
    for split, p in (res.get("perplexity") or {}).items():
        took = f", {res['timing']['perplexity']:.1f} s" if split == "dev" else ""
        out.append(f"perplexity {split}: CE {p['ce']:.4f} nats/token ({p['bpw']:.3f} bits/word) over "
                   f"{len(p['domains'])} domains{took}")
    return out


def run_finetune(ctx: StageContext) -> None:
    from ..finetuning.markdown import markdown
    from ..finetuning.run import finetune_models

    model_dir = ctx.plan.path(ctx.stage.model_stage)
    res = finetune_models([model_dir], ctx.recipe.finetune, names=[ctx.stage.model_stage],
                          cache_dir=ctx.plan.run_dir / "cache" / "finetune")
    write_json(ctx.dir / result_file("finetune"), {"model": ctx.stage.model_stage, **res})
    print(markdown(res))
    write_run_info(ctx.dir, "finetune", ctx.recipe.finetune.model_dump(mode="json"), run_dir=ctx.plan.run_dir,
                   model=str(model_dir), model_finished_at=finish_stamps(ctx.plan, ctx.stage), **ctx.times())
