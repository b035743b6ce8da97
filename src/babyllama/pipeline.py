"""`babyllama run RECIPE.yaml`: the whole experiment, stage by stage, resumable.

Stages, in order: prepare data -> tokenizer -> each teacher -> baseline student (the student's architecture and
budget, no distillation) -> distilled student -> evaluation of every model -> report. With ``seeds: [1, 2, 3]``
the baseline and student stages (and, with ``teacher_seeds: true``, the teachers) run once per seed.

Each stage writes into ``RUN_DIR/stages/<stage>-<hash>``, where the hash covers the stage's resolved config and
the hashes of its inputs. So a finished stage is reused when the recipe is run again, a changed config re-runs
that stage and everything downstream of it (their hashes change), and an interrupted training stage resumes from
its last checkpoint (same directory). ``RUN_DIR/plan.json`` lists the current stages; ``babyllama status RUN_DIR``
shows their state and ``babyllama report RUN_DIR`` regenerates the report.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from .config import Config, DistillConfig, ModelConfig, Section, apply_overrides, read_yaml, validate_tree
from .errors import UserError
from .runinfo import is_complete, read_run_info, sha256_file, write_json_atomic, write_run_info

STAGE_VERSION = 1  # bump when a stage's outputs change meaning


class ModelSpec(Section):
    name: str = Field(description="Short name used in the report and in stage directories.")
    model: ModelConfig = Field(description="Architecture (preset and overrides).")
    training: dict[str, Any] = Field({}, description="training.* keys that differ from base.training.")
    data: dict[str, Any] = Field({}, description="data.* keys that differ from base.data.")


class TokenizerSpec(Section):
    vocab_size: int = Field(16000, gt=258, description="BPE vocabulary size (papers: 16000).")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a merge.")


class RecipeEval(Section):
    suites: list[str] = Field(["blimp_filtered", "supplement", "ewok", "perplexity"], description="Eval suites.")
    eval_root: str | None = Field(None, description="Eval data folder; default ${data_root}/eval.")
    max_pairs: int | None = Field(None, gt=0, description="At most N items per paradigm (seeded), for CPU runs.")
    batch_size: int = Field(64, gt=0, description="Sentences per forward pass.")
    ppl_max_tokens: int | None = Field(None, gt=0, description="Perplexity: at most N tokens per domain.")
    bf16: bool = Field(False, description="Score under bf16 autocast.")


class Recipe(Section):
    name: str = Field(description="Experiment name.")
    description: str = Field("", description="What this recipe reproduces.")
    run_dir: str = Field(description="Where stages, plan.json and the report are written.")
    data_root: str | None = Field(None, description="Fills ${data_root}; --data-root / $BABYLLAMA_DATA win.")
    corpus: str = Field(description="Raw BabyLM corpus folder (any layout `babyllama data prepare` reads).")
    corpus_size: str = Field("10M", description="10M or 100M when both are present.")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    base: dict[str, Any] = Field({}, description="Config tree (data:, training:) shared by all training stages.")
    teachers: list[ModelSpec] = Field(description="Teachers, pretrained from scratch.")
    student: ModelSpec = Field(description="Student architecture and budget (also used for the baseline).")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="Distillation settings.")
    seeds: list[int] = Field([1], min_length=1, description="Seeds of the baseline and student stages.")
    teacher_seeds: bool = Field(False, description="Also repeat the teachers per seed.")
    eval: RecipeEval = Field(default_factory=RecipeEval)


def short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


@dataclass
class Stage:
    name: str  # e.g. teacher:llama-12m, baseline:s1
    kind: str  # prepare | tokenizer | pretrain | distill | eval
    key: str
    dir: Path
    role: str = ""  # teacher | baseline | student
    seed: int | None = None
    config: Config | None = None
    deps: list[str] = field(default_factory=list)
    model_stage: str | None = None  # eval stages: the model they evaluate
    model_dir: Path | None = None

    def complete(self) -> bool:
        if not is_complete(self.dir):
            return False
        if self.model_dir is None:
            return True
        # an eval is stale when its model was (re)finished after it: compare the model's finish stamp
        model = read_run_info(self.model_dir) or {}
        return (read_run_info(self.dir) or {}).get("model_finished_at") == model.get("finished_at")

    def state(self) -> str:
        if self.complete():
            return "done"
        if self.dir.exists() and any(self.dir.glob("checkpoint-*")):
            return "partial"
        return "todo"


def load_recipe(path: str | Path, overrides: list[str], data_root: str | None) -> Recipe:
    tree = read_yaml(path)
    apply_overrides(tree, overrides)
    return validate_tree(Recipe, tree, str(path), data_root)


def _source_fingerprint(src: Path) -> list:
    """Identity of a raw corpus: relative paths, sizes and content hashes of its files.

    Content, not modification times: a re-provisioned or re-copied corpus with the same bytes keeps its stage keys
    (and so its finished stages); hashing 10M words takes a fraction of a second.
    """
    if not src.is_dir():
        raise UserError(f"corpus not found: {src}; pass --data-root DIR (the folder with corpus/ and eval/) or set "
                        "BABYLLAMA_DATA, or download the data: `babyllama data download babylm-2024-10M DIR`")
    return [(str(p.relative_to(src)), p.stat().st_size, sha256_file(p)) for p in sorted(src.rglob("*"))
            if p.is_file() and not p.name.startswith(".")]


def plan(recipe: Recipe, run_dir: Path) -> list[Stage]:
    """Every stage with its key and directory, in execution order."""
    st = run_dir / "stages"
    stages: list[Stage] = []
    src = Path(recipe.corpus)
    pk = short_hash([STAGE_VERSION, "prepare", _source_fingerprint(src), recipe.corpus_size])
    prep = Stage("prepare", "prepare", pk, st / f"prepare-{pk}")
    tk = short_hash([STAGE_VERSION, "tokenizer", pk, recipe.tokenizer.model_dump()])
    tok = Stage("tokenizer", "tokenizer", tk, st / f"tokenizer-{tk}", deps=["prepare"])
    stages += [prep, tok]
    corpus_dir, tok_dir = prep.dir / "corpus", tok.dir

    def train_cfg(spec: ModelSpec, seed: int, out: Path, distill: bool) -> Config:
        tree = deep_merge(recipe.base, {"model": spec.model.model_dump(exclude_none=True), "training":
                                        spec.training, "data": spec.data})
        tree = deep_merge(tree, {"data": {"corpus": str(corpus_dir), "tokenizer": str(tok_dir)},
                                 "training": {"seed": seed, "output_dir": str(out)}})
        if distill:
            tree["distill"] = recipe.distill.model_dump()
        return validate_tree(Config, tree, f"recipe {spec.name}")

    def key_of(cfg: Config, deps: list[Stage]) -> str:
        c = cfg.model_dump(mode="json")
        c.pop("data_root", None)  # paths are resolved already; where the data root lies does not change a stage
        c["training"].pop("output_dir")
        c["training"].pop("progress", None)
        c["distill"].pop("teachers", None)
        return short_hash([STAGE_VERSION, c, [d.key for d in deps]])

    teacher_stages: dict[int, list[Stage]] = {}
    t_seeds = recipe.seeds if recipe.teacher_seeds else [recipe.seeds[0]]
    for seed in t_seeds:
        teacher_stages[seed] = []
        for spec in recipe.teachers:
            cfg = train_cfg(spec, spec.training.get("seed", seed), Path("/"), False)
            key = key_of(cfg, [tok])
            d = st / f"teacher-{spec.name}-{key}"
            cfg.training.output_dir = str(d)
            suffix = f":s{seed}" if recipe.teacher_seeds else ""
            s = Stage(f"teacher:{spec.name}{suffix}", "pretrain", key, d, "teacher", seed, cfg, ["tokenizer"])
            teacher_stages[seed].append(s)
            stages.append(s)
    for seed in recipe.seeds:
        cfg = train_cfg(recipe.student, seed, Path("/"), False)
        key = key_of(cfg, [tok])
        d = st / f"baseline-s{seed}-{key}"
        cfg.training.output_dir = str(d)
        stages.append(Stage(f"baseline:s{seed}", "pretrain", key, d, "baseline", seed, cfg, ["tokenizer"]))
    for seed in recipe.seeds:
        ts = teacher_stages[seed if recipe.teacher_seeds else recipe.seeds[0]]
        cfg = train_cfg(recipe.student, seed, Path("/"), True)
        key = key_of(cfg, [tok, *ts])
        d = st / f"student-s{seed}-{key}"
        cfg.training.output_dir = str(d)
        cfg.distill.teachers = [str(t.dir) for t in ts]
        stages.append(Stage(f"student:s{seed}", "distill", key, d, "student", seed, cfg,
                            ["tokenizer", *[t.name for t in ts]]))
    ek = recipe.eval.model_dump()
    for s in [s for s in stages if s.kind in ("pretrain", "distill")]:
        key = short_hash([STAGE_VERSION, "eval", s.key, ek, pk])
        stages.append(Stage(f"eval:{s.name}", "eval", key, st / f"eval-{s.name.replace(':', '-')}-{key}",
                            s.role, s.seed, deps=[s.name], model_stage=s.name, model_dir=s.dir))
    return stages


def _run_tokenizer(stage: Stage, corpus_dir: Path, spec: TokenizerSpec) -> None:
    from .tokenizer import train_tokenizer

    tmp = stage.dir.with_name(stage.dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    train_tokenizer(corpus_dir, tmp, vocab_size=spec.vocab_size, min_frequency=spec.min_frequency)
    write_run_info(tmp, "tokenizer", spec.model_dump(), corpus=str(corpus_dir))
    if stage.dir.exists():
        shutil.rmtree(stage.dir)
    os.replace(tmp, stage.dir)


def _run_prepare(stage: Stage, recipe: Recipe) -> None:
    from .data.corpus import prepare

    if stage.dir.exists() and not stage.complete():
        shutil.rmtree(stage.dir)  # an interrupted prepare left no corpus (it writes atomically): start afresh
    stats = prepare(recipe.corpus, stage.dir / "corpus", size=recipe.corpus_size)
    write_run_info(stage.dir, "prepare", {"source": recipe.corpus, "size": recipe.corpus_size}, stats=stats)


def _run_eval(stage: Stage, model_dir: Path, corpus_dir: Path, recipe: Recipe) -> None:
    from .eval.runner import run_eval

    ev = recipe.eval
    eval_root = ev.eval_root or (f"{recipe.data_root}/eval" if recipe.data_root else None)
    pair_suites = [s for s in ev.suites if s != "perplexity"]
    res = run_eval([str(model_dir)], pair_suites, eval_root, None, None, ev.max_pairs, ev.batch_size, ev.bf16,
                   names=[stage.model_stage])
    if "perplexity" in ev.suites:
        from .eval.perplexity import perplexity
        from .eval.runner import load_for_eval

        model, tok = load_for_eval(str(model_dir))
        res["perplexity"][stage.model_stage] = perplexity(model, tok, corpus_dir, max_tokens=ev.ppl_max_tokens,
                                                          batch_size=32, bf16=ev.bf16, keep_chunks=True)
    stage.dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stage.dir / "eval.json", res)
    write_run_info(stage.dir, "eval", ev.model_dump(), model=str(model_dir),
                   model_finished_at=(read_run_info(model_dir) or {}).get("finished_at"))


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def write_plan(run_dir: Path, recipe: Recipe, stages: list[Stage]) -> None:
    write_json_atomic(run_dir / "plan.json", {
        "recipe": recipe.model_dump(mode="json"),
        "stages": [{"name": s.name, "kind": s.kind, "key": s.key, "dir": str(s.dir), "role": s.role,
                    "seed": s.seed, "deps": s.deps, "model_stage": s.model_stage} for s in stages],
    })


def run_recipe(path: str, overrides: list[str], data_root: str | None, run_dir: str | None,
               dry_run: bool = False) -> int:
    recipe = load_recipe(path, overrides, data_root)
    rd = Path(run_dir or recipe.run_dir)
    stages = plan(recipe, rd)
    by_name = {s.name: s for s in stages}
    print(f"recipe {recipe.name}: {len(stages)} stages in {rd}")
    for s in stages:
        state = s.state()
        action = {"done": "reuse", "partial": "resume", "todo": "run"}[state]
        print(f"  {action:<7} {s.name:<28} {s.dir.relative_to(rd)}")
    if dry_run:
        return 0
    rd.mkdir(parents=True, exist_ok=True)
    write_plan(rd, recipe, stages)
    t0 = time.time()
    corpus_dir = by_name["prepare"].dir / "corpus"
    for i, s in enumerate(stages, 1):
        if s.complete():
            continue
        print(f"\n== stage {i}/{len(stages)}: {s.name} (elapsed {_fmt(time.time() - t0)}) ==", flush=True)
        ts = time.time()
        if s.kind == "prepare":
            _run_prepare(s, recipe)
        elif s.kind == "tokenizer":
            _run_tokenizer(s, corpus_dir, recipe.tokenizer)
        elif s.kind == "pretrain":
            from .train.pretrain import train

            train(s.config)
        elif s.kind == "distill":
            from .train.distill import distill

            distill(s.config)
        elif s.kind == "eval":
            _run_eval(s, by_name[s.model_stage].dir, corpus_dir, recipe)
        print(f"== {s.name} done in {_fmt(time.time() - ts)} (elapsed {_fmt(time.time() - t0)}) ==", flush=True)
    from .report import write_report

    summary = write_report(rd)
    print(summary)
    print(f"\nall stages done in {_fmt(time.time() - t0)}; report: {rd / 'report.md'}")
    return 0


def load_plan(run_dir: str | Path) -> dict:
    p = Path(run_dir) / "plan.json"
    if not p.is_file():
        raise UserError(f"{run_dir}: no plan.json; is this a run directory made by `babyllama run`?")
    return json.loads(p.read_text())


def status(run_dir: str) -> int:
    pl = load_plan(run_dir)
    print(f"{'stage':<28} {'state':<8} directory")
    for s in pl["stages"]:
        d = Path(s["dir"])
        state = "done" if is_complete(d) else ("partial" if d.exists() and any(d.glob("checkpoint-*")) else "todo")
        print(f"{s['name']:<28} {state:<8} {d}")
    return 0
