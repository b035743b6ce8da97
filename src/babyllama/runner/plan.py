"""The plan of a recipe: every stage, its resolved config, its key and its directory; and ``plan.json``.

Stages, in order: prepare data -> tokenizer -> each teacher -> baseline student (the student's architecture and
budget, no distillation) -> distilled student -> evaluation of every model -> with a ``finetune:`` section,
fine-tuning evaluation of every model. With ``seeds: [1, 2, 3]`` the baseline
and student stages (and, with ``teacher_seeds: true``, the teachers) run once per seed.

Each stage lives in ``RUN_DIR/stages/<stage>-<key>``. The key hashes what decides the stage's result and nothing
else: its resolved config without paths, and the keys of the stages it reads (the prepare stage: the corpus files'
content; an eval or finetune stage: the content of the files it reads). So a finished stage is reused when the
recipe runs again, a changed setting re-runs that stage and everything downstream, and a run directory moved or
copied elsewhere keeps every key. ``plan.json`` stores stage directories relative to the run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import PLAN_FILE, Config, ModelSpec, Recipe, explicit_keys, validate_tree
from ..distillation import ALL_PARAMETERS as ALL_DIVERGENCE_PARAMETERS
from ..distillation import PARAMETERS as DIVERGENCE_PARAMETERS
from ..errors import UserError
from ..eval.suites import fingerprint, get_suite
from ..io import read_json, sha256_file, short_hash, write_json
from .kinds import trains_model

STAGE_VERSION = 2  # bump when a stage's outputs change meaning


@dataclass
class Stage:
    name: str  # e.g. teacher:llama-12m, baseline:s1
    kind: str  # prepare | tokenizer | pretrain | distill | eval | finetune
    key: str
    dir: Path  # relative to the run directory
    role: str = ""  # teacher | baseline | student | ensemble (the teachers' ensemble eval stage)
    seed: int | None = None
    config: Config | None = None  # training stages, when planned (not stored in plan.json)
    deps: list[str] = field(default_factory=list)
    model_stage: str | None = None  # eval and finetune stages: the model stage they evaluate

    @property
    def evaluated(self) -> list[str]:
        """The training stages whose models an eval or finetune stage scores (an ensemble: all its members)."""
        if self.model_stage:
            return [self.model_stage]
        return list(self.deps) if self.role == "ensemble" else []


@dataclass
class Plan:
    run_dir: Path  # absolute
    recipe: dict  # the validated recipe, as JSON
    stages: list[Stage]

    def path(self, stage: Stage | str) -> Path:
        s = self.stage(stage) if isinstance(stage, str) else stage
        return s.dir if s.dir.is_absolute() else self.run_dir / s.dir

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def closure(self, names: list[str]) -> list[Stage]:
        """These stages and every stage they read, directly or not, in execution order."""
        need, todo = set(), list(names)
        while todo:
            n = todo.pop()
            if n not in need:
                need.add(n)
                todo += self.stage(n).deps
        return [s for s in self.stages if s.name in need]


def source_fingerprint(src: Path) -> list:
    """Identity of a raw corpus: relative paths, sizes and content hashes of its files.

    Content, not modification times: a re-provisioned or re-copied corpus with the same bytes keeps its stage keys
    (and so its finished stages).
    """
    if not src.is_dir():
        raise UserError(f"corpus not found: {src}; pass --data-root DIR (the folder with corpus/ and eval/) or set "
                        "BABYLLAMA_DATA, or download the data: `babyllama data download babylm-2024-10M DIR`")
    return [(str(p.relative_to(src)), p.stat().st_size, sha256_file(p)) for p in sorted(src.rglob("*"))
            if p.is_file() and not p.name.startswith(".")]


def config_key(cfg: Config, deps: list[Stage]) -> str:
    """A training stage's key: its config without paths, the device and the compile setting (they differ between
    machines, not results) + its inputs."""
    c = cfg.model_dump(mode="json")
    for k in ("data_root", "run_dir"):
        c.pop(k)
    for k in ("corpus", "tokenizer", "cache_dir"):
        c["data"].pop(k)
    for k in ("output_dir", "progress", "device"):
        c["training"].pop(k)
    # compiled layers move only roundings, like the device; keyed as the eager runs were, so those keep their keys
    c["training"]["compile"] = False
    c["distill"].pop("teachers")
    # a divergence's settings count only where it reads them, and the default forward KL not at all: the stages
    # keyed before the divergences existed keep their keys
    used = DIVERGENCE_PARAMETERS.get(c["distill"]["divergence"], ())
    for k in ALL_DIVERGENCE_PARAMETERS:
        if k not in used:
            c["distill"].pop(k)
    if c["distill"]["divergence"] == "forward_kl":
        c["distill"].pop("divergence")
    c["distill"]["cache"].pop("dir")
    return short_hash([STAGE_VERSION, c, [d.key for d in deps]])


def stage_config(recipe: Recipe, spec: ModelSpec, run_dir: Path, corpus: Path, tokenizer: Path, seed: int,
                 distill: bool) -> Config:
    """The stage's full config: defaults < base < the model's own keys < the paths and seed the runner sets."""
    tree = {
        "run_dir": str(run_dir),
        "data": {**explicit_keys(recipe.base.data), **explicit_keys(spec.data), "corpus": str(corpus),
                 "tokenizer": str(tokenizer)},
        "model": spec.model.model_dump(mode="json", exclude_none=True),
        "training": {**explicit_keys(recipe.base.training), **explicit_keys(spec.training), "seed": seed},
    }
    if distill:
        tree["distill"] = recipe.distill.model_dump(mode="json")
    return validate_tree(Config, tree, f"recipe {spec.name}")


def baseline_spec(recipe: Recipe) -> ModelSpec:
    """The student's spec with the recipe's ``baseline:`` keys on top (none: the student's spec itself)."""
    b = recipe.baseline
    if not explicit_keys(b.training) and not explicit_keys(b.model):
        return recipe.student
    tree = recipe.student.model_dump(mode="json", exclude_unset=True)
    tree["training"] = {**explicit_keys(recipe.student.training), **explicit_keys(b.training)}
    tree["model"] = {**recipe.student.model.model_dump(mode="json", exclude_none=True), **explicit_keys(b.model)}
    return validate_tree(ModelSpec, tree, "recipe baseline")


def make_plan(recipe: Recipe, run_dir: str | Path) -> Plan:
    """Every stage with its key and directory, in execution order."""
    rd = Path(run_dir).resolve()
    stages: list[Stage] = []
    pk = short_hash([STAGE_VERSION, "prepare", source_fingerprint(Path(recipe.corpus)), recipe.corpus_size])
    prep = Stage("prepare", "prepare", pk, Path("stages") / f"prepare-{pk}")
    tk = short_hash([STAGE_VERSION, "tokenizer", pk, recipe.tokenizer.model_dump()])
    tok = Stage("tokenizer", "tokenizer", tk, Path("stages") / f"tokenizer-{tk}", deps=["prepare"])
    stages += [prep, tok]
    corpus, tok_dir = rd / prep.dir / "corpus", rd / tok.dir

    def training_stage(name: str, dir_name: str, spec: ModelSpec, kind: str, role: str, seed: int,
                       inputs: list[Stage]) -> Stage:
        # a teacher may pin its own seed (paper 2: two teachers differing by seed); baseline and student follow seeds
        pinned = role == "teacher" and "seed" in spec.training.model_fields_set
        seed_used = spec.training.seed if pinned else seed
        cfg = stage_config(recipe, spec, rd, corpus, tok_dir, seed_used, kind == "distill")
        key = config_key(cfg, [tok, *inputs])
        s = Stage(name, kind, key, Path("stages") / f"{dir_name}-{key}", role, seed, cfg,
                  ["tokenizer", *[i.name for i in inputs]])
        cfg.training.output_dir = str(rd / s.dir)
        cfg.distill.teachers = [str(rd / i.dir) for i in inputs]
        return s

    teacher_stages: dict[int, list[Stage]] = {}
    for seed in (recipe.seeds if recipe.teacher_seeds else recipe.seeds[:1]):
        suffix = f":s{seed}" if recipe.teacher_seeds else ""
        teacher_stages[seed] = [training_stage(f"teacher:{t.name}{suffix}", f"teacher-{t.name}", t, "pretrain",
                                               "teacher", seed, []) for t in recipe.teachers]
        stages += teacher_stages[seed]
    for seed in recipe.seeds:
        stages.append(training_stage(f"baseline:s{seed}", f"baseline-s{seed}", baseline_spec(recipe), "pretrain",
                                     "baseline", seed, []))
    for seed in recipe.seeds:
        ts = teacher_stages[seed if recipe.teacher_seeds else recipe.seeds[0]]
        stages.append(training_stage(f"student:s{seed}", f"student-s{seed}", recipe.student, "distill", "student",
                                     seed, ts))
    # where the data lie, the device and whether the layers are compiled change no decision: not in the key
    ev = recipe.eval.model_dump(mode="json", exclude={"eval_root", "device", "compile"})
    suite_ids = {s: fingerprint(s, recipe.eval.eval_root) if get_suite(s).kind == "pairs" else None
                 for s in recipe.eval.suites}
    for s in [s for s in stages if trains_model(s.kind)]:
        key = short_hash([STAGE_VERSION, "eval", s.key, ev, suite_ids, pk])
        stages.append(Stage(f"eval:{s.name}", "eval", key, Path("stages") / f"eval-{s.name.replace(':', '-')}-{key}",
                            s.role, s.seed, deps=[s.name], model_stage=s.name))
    # the teacher ensemble as a model of its own (paper 1 compares the student with it): the distillation's rule
    # over the teachers at T = 1, scored by every suite; nothing is trained or merged for it
    d = recipe.distill
    for seed, ts in teacher_stages.items():
        if len(ts) < 2:
            continue
        name = "eval:ensemble" + (f":s{seed}" if recipe.teacher_seeds else "")
        key = short_hash([STAGE_VERSION, "eval-ensemble", [t.key for t in ts], d.ensemble, d.teacher_weights, ev,
                          suite_ids, pk])
        stages.append(Stage(name, "eval", key, Path("stages") / f"{name.replace(':', '-')}-{key}", "ensemble", seed,
                            deps=[t.name for t in ts]))
    if recipe.finetune is not None:
        from ..finetuning.run import finetune_identity

        identity = finetune_identity(recipe.finetune)
        for s in [s for s in stages if trains_model(s.kind)]:
            key = short_hash([STAGE_VERSION, "finetune", s.key, identity])
            stages.append(Stage(f"finetune:{s.name}", "finetune", key,
                                Path("stages") / f"finetune-{s.name.replace(':', '-')}-{key}", s.role, s.seed,
                                deps=[s.name], model_stage=s.name))
    return Plan(rd, recipe.model_dump(mode="json"), stages)


def write_plan(plan: Plan) -> None:
    write_json(plan.run_dir / PLAN_FILE, {
        "recipe": plan.recipe,
        "stages": [{"name": s.name, "kind": s.kind, "key": s.key, "dir": str(s.dir), "role": s.role,
                    "seed": s.seed, "deps": s.deps, "model_stage": s.model_stage} for s in plan.stages],
    })


def load_plan(run_dir: str | Path) -> Plan:
    """The plan a run directory was last run with, its stage directories resolved against where it is now."""
    rd = Path(run_dir).resolve()
    pl = read_json(rd / PLAN_FILE)
    if not isinstance(pl, dict) or "stages" not in pl:
        raise UserError(f"{run_dir}: no readable plan.json; is this a run directory made by `babyllama run`?")
    stages = []
    for s in pl["stages"]:
        d = Path(s["dir"])
        if d.is_absolute():  # an absolute stage directory: the same layout under the run directory where it is now
            d = Path("stages") / d.name
        stages.append(Stage(s["name"], s["kind"], s["key"], d, s.get("role", ""), s.get("seed"),
                            deps=s.get("deps", []), model_stage=s.get("model_stage")))
    return Plan(rd, pl["recipe"], stages)
