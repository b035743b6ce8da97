"""`babyllama run RECIPE --makefile FILE`: the plan as a GNU Makefile, so that `make -j N -f FILE` runs stages
whose inputs are done side by side, each as `babyllama run RECIPE --only STAGE`.

Make is the scheduler (its dependency graph is the plan's, its job slots the parallelism); every stage still runs
through the runner, which reuses finished stages, resumes interrupted ones and locks each stage's directory, so
re-running make after an interruption continues where it stopped. Small models use a second core better as a second
job than as a second thread (benchmarks/README.md, "Stages side by side"), so each job gets ``cores / jobs`` torch
threads unless ``OMP_NUM_THREADS`` is set. Each stage's full output goes to ``RUN_DIR/logs/STAGE.log``; the console
gets the runner's start and end lines and the evaluations' one-line summaries. The last target writes the report.
Each stage runs as a child of a warm process (:mod:`babyllama.runner.warm`), so it does not pay the imports again.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..errors import UserError
from ..io import write_text
from .plan import Plan

HEADER = "# written by `babyllama run --makefile`"
# what of a stage's log the console shows: as they are, the lines that name their stage (the runner's start and end
# lines, fine-tuning's one line per task and seed, an error); with the stage's name in front, the evaluations'
# one-line summaries and every 100th training step (steps, loss, tokens/s, the stage's ETA)
AS_THEY_ARE = r"^(== |\[[0-9]+/[0-9]+\] |babyllama: error)"
WITH_STAGE = r"^(  [a-z_]+: |  perplexity |train  step [0-9]*00/)"


def target(stage_name: str) -> str:
    """A make target for a stage: make reads ``:`` as the rule separator, so ``eval:teacher:x`` is
    ``eval-teacher-x`` (the stage's directory name without its key)."""
    return stage_name.replace(":", "-")


def _make_word(text: str) -> str:
    """A shell word for a make recipe: quoted for the shell, ``$`` doubled for make."""
    return shlex.quote(text).replace("$", "$$")


def makefile_text(plan: Plan, recipe_path: str, overrides: list[str], data_root: str | None) -> str:
    # each stage forked from a process that imported everything once (babyllama.runner.warm; BABYLLAMA_WARM=0: not)
    run = [sys.executable, "-m", "babyllama.runner.warm", "run", str(Path(recipe_path).resolve()), "--run-dir",
           str(plan.run_dir)]
    if data_root:
        run += ["--data-root", str(Path(data_root).resolve())]
    for o in overrides:
        run += ["--set", o]
    names = [target(s.name) for s in plan.stages]
    if len(set(names)) != len(names):
        raise UserError("two stages of this recipe map to the same make target; rename a teacher so that names "
                        "differ in more than ':' and '-'")
    logs = plan.run_dir / "logs"
    lines = [
        f"{HEADER} for recipe {plan.recipe['name']} ({len(plan.stages)} stages in {plan.run_dir}).",
        "# `make -j2 -f THIS_FILE` runs two stages at a time (each with cores / 2 torch threads unless",
        "# OMP_NUM_THREADS is set); `make -f THIS_FILE TARGET` one stage and what it needs. Interrupted? Run it again.",
        "# Each stage is a process forked from one that imported torch and the stages once; BABYLLAMA_WARM=0: a fresh one.",
        "SHELL := /bin/bash",
        ".SHELLFLAGS := -o pipefail -c",
        "RUN := " + " ".join(_make_word(w) for w in run),
        "REPORT := " + " ".join(_make_word(w) for w in [sys.executable, "-m", "babyllama.runner.warm", "report",
                                                          str(plan.run_dir)]),
        f"LOGS := {_make_word(str(logs))}",
        "JOBS = $(or $(patsubst -j%,%,$(filter -j%,$(MAKEFLAGS))),1)",
        # the run's clock: each stage prints the run's elapsed time and ETA, not its own process's
        "export BABYLLAMA_RUN_STARTED := $(shell date +%s)",
        "export BABYLLAMA_PARALLEL_STAGES = $(JOBS)",
        "",
        "# $(1): stage name, $(2): target",
        "define stage",
        "@mkdir -p $(LOGS); threads=$${OMP_NUM_THREADS:-$$(( $$(nproc) / $(JOBS) ))}; \\",
        "OMP_NUM_THREADS=$$(( threads > 0 ? threads : 1 )) $(RUN) --only '$(1)' 2>&1 | tee -a $(LOGS)/$(2).log \\",
        f"  | sed -u -n -E -e '\\#{AS_THEY_ARE}#p' -e '\\#{WITH_STAGE}#{{s#^ *#[$(2)] #;p;}}' \\",
        "  || { code=$$?; if [ $$code -ge 128 ]; then echo \"stage $(1) interrupted; the same make command \\",
        "  continues it\"; else echo \"stage $(1) failed; its log: $(LOGS)/$(2).log\"; \\",
        "  tail -n 5 $(LOGS)/$(2).log; fi; exit 1; }",
        "endef",
        "",
        ".PHONY: all report " + " ".join(names),
        "all: report",
        "report: " + " ".join(names),
        "\t@$(REPORT)",
    ]
    for s, name in zip(plan.stages, names):
        lines += ["", f"{name}: " + " ".join(target(d) for d in s.deps), f"\t$(call stage,{s.name},{name})"]
    return "\n".join(lines) + "\n"


def write_makefile(plan: Plan, path: str | Path, recipe_path: str, overrides: list[str],
                   data_root: str | None) -> Path:
    """Write the Makefile; a file there that this command did not write is left alone (one error line)."""
    path = Path(path)
    if path.exists():
        try:
            first = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
        except OSError as e:
            raise UserError(f"--makefile {path}: cannot read it ({e.strerror})") from None
        if not first.startswith(HEADER):
            raise UserError(f"--makefile {path} exists and was not written by babyllama; remove it or give "
                            "another file")
    return write_text(path, makefile_text(plan, recipe_path, overrides, data_root))
