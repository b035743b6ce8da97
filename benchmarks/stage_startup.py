"""What each stage of the main job pays before it does its work, with and without the warm stage process.

Each stage of `make run` used to be a fresh `python -m babyllama run RECIPE --only STAGE`: an interpreter, torch,
transformers and the stage's own modules imported again, the plan resolved again. Since the Makefile runs stages
through `babyllama.runner.warm`, each stage is forked from a process that imported everything once. This runs one
recipe's Makefile (`make -jJOBS`, as `make run` does) from empty run directories, alternately with
`BABYLLAMA_WARM=0` (fresh processes) and with the warm process, and reads each stage's `run_info.json`:
`startup_s` (process or client start to stage start: interpreter, imports of the runner, the plan) and `wall_s`
(the stage itself, its own lazy imports included). Per stage kind, fresh minus warm (start-up and stage together)
is what the warm process saves; it also times, in fresh interpreters, the imports of each kind's top modules.

With ``--main-run RUN_DIR`` (a finished main job), the per-stage saving measured here is set against that run's
stage time: the share of the main job that start-up costs, before and after.

    python benchmarks/stage_startup.py --data-root ../shared/data --rounds 2 --main-run runs/cpu
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what a fresh stage process imports for its kind, beyond the runner (the executors' lazy imports)
KIND_MODULES = {"prepare": ["babyllama.data.corpus"], "tokenizer": ["babyllama.data.bpe"],
                "pretrain": ["babyllama.training.pretrain"], "distill": ["babyllama.distillation.trainer"],
                "eval": ["babyllama.eval.evaluate"], "finetune": ["babyllama.finetuning.model",
                                                                  "babyllama.finetuning.parallel"]}


def import_seconds(modules: list[str], reps: int) -> float:
    """Median seconds a fresh interpreter takes to import ``modules`` after the runner (torch already in)."""
    code = ("import time, babyllama.runner.execute, babyllama.runner.plan, torch; t = time.perf_counter(); "
            + "; ".join(f"import {m}" for m in modules) + "; print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout) for _ in range(reps)]
    return statistics.median(times)


def interpreter_seconds(reps: int) -> float:
    """Median seconds of a fresh `babyllama --help` (the interpreter and the command's parser)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "babyllama", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def stage_info(stage_dir: Path) -> dict:
    """A stage's run_info, ``wall_s`` from metrics.json for a training stage (its trainer's own clock)."""
    info = json.loads((stage_dir / "run_info.json").read_text())
    if info.get("wall_s") is None and (stage_dir / "metrics.json").exists():
        info["wall_s"] = json.loads((stage_dir / "metrics.json").read_text()).get("wall_s")
    return info


def timed_stage(log: str, command: list[str]) -> int:
    """Run a stage's command as make would, and append how long its process took (seen from outside) to ``log``."""
    t = time.perf_counter()
    code = subprocess.run(command).returncode
    stage = command[command.index("--only") + 1] if "--only" in command else "report"
    with open(log, "a") as f:
        f.write(json.dumps({"stage": stage, "process_s": round(time.perf_counter() - t, 3)}) + "\n")
    return code


def run_make(recipe: str, data_root: str, run_dir: Path, jobs: int, warm: bool) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BABYLLAMA_WARM": "1" if warm else "0"}
    env.pop("OMP_NUM_THREADS", None)
    makefile = run_dir / "stages.mk"
    subprocess.run([sys.executable, "-m", "babyllama", "run", recipe, "--run-dir", str(run_dir), "--data-root",
                    data_root, "--makefile", str(makefile), "--no-estimate"], check=True, env=env,
                   capture_output=True)
    # each stage's command behind a timer: make's RUN variable, overridden on its command line
    run_line = next(x for x in makefile.read_text().splitlines() if x.startswith("RUN := "))
    log = run_dir / "process_times.jsonl"
    timer = f"RUN={sys.executable} {Path(__file__).resolve()} --time-stage {log} -- {run_line[len('RUN := '):]}"
    t = time.perf_counter()
    done = subprocess.run(["make", f"-j{jobs}", "-f", str(makefile), timer], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"make failed ({'warm' if warm else 'fresh'}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    process = {x["stage"]: x["process_s"] for x in map(json.loads, log.read_text().splitlines())}
    plan = json.loads((run_dir / "plan.json").read_text())
    stages = []
    for entry in plan["stages"]:
        info = stage_info(run_dir / entry["dir"])
        stages.append({"stage": entry["name"], "kind": info["kind"], "process_s": process[entry["name"]],
                       "wall_s": info.get("wall_s"), "startup_s": info.get("startup_s")})
    return {"warm": warm, "make_wall_s": round(wall, 2), "stages": stages,
            "process_s": round(sum(s["process_s"] for s in stages), 2),
            "startup_s": round(sum(s["startup_s"] or 0 for s in stages), 2)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "smoke.yaml"))
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="fresh/warm pairs, alternated")
    ap.add_argument("--reps", type=int, default=3, help="fresh interpreters per import timing")
    ap.add_argument("--main-run", type=Path, help="a finished main job's run directory, to size the saving against")
    ap.add_argument("--out", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--time-stage"]:  # called by make, around one stage's command
        raise SystemExit(timed_stage(argv[1], argv[3:]))
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from train_step import machine_info  # imports torch: not in the timer above, which runs around every stage

    imports = {kind: round(import_seconds(mods, a.reps), 3) for kind, mods in KIND_MODULES.items()}
    interpreter = round(interpreter_seconds(a.reps), 3)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="babyllama-startup-") as tmp:
        for r in range(a.rounds):
            for warm in (False, True):
                run_dir = Path(tmp) / f"run-{r}-{'warm' if warm else 'fresh'}"
                rounds.append(run_make(a.recipe, a.data_root, run_dir, a.jobs, warm))
                shutil.rmtree(run_dir)
                print(json.dumps({k: v for k, v in rounds[-1].items() if k != "stages"}), flush=True)

    def per_stage(warm: bool, field: str) -> float:
        """Mean over the stages that record it (training stages' run_info is their trainer's: no startup_s; what
        comes before a stage is the same runner code for every kind)."""
        return statistics.mean(s[field] for x in rounds if x["warm"] == warm for s in x["stages"]
                               if s[field] is not None)

    fresh_startup, warm_startup = per_stage(False, "startup_s"), per_stage(True, "startup_s")

    def kind_mean(warm: bool, kind: str, field: str) -> float:
        return statistics.mean(s[field] for x in rounds if x["warm"] == warm for s in x["stages"]
                               if s["kind"] == kind)

    kinds = sorted({s["kind"] for x in rounds for s in x["stages"]})
    # per kind, a stage's process seen from outside less the time its stage records (``wall_s``): what it pays
    # around its work (interpreter, imports, the plan, the exit; a training stage's clock starts after its imports)
    overhead = {w: {k: kind_mean(w, k, "process_s") - kind_mean(w, k, "wall_s") for k in kinds}
                for w in (False, True)}
    res = {**machine_info(), "recipe": Path(a.recipe).name, "jobs": a.jobs, "rounds": rounds,
           "interpreter_and_parser_s": interpreter, "kind_imports_s": imports,
           "startup_per_stage_s": {"fresh": round(fresh_startup, 3), "warm": round(warm_startup, 3)},
           "process_per_kind_s": {k: {"fresh": round(kind_mean(False, k, "process_s"), 3),
                                      "warm": round(kind_mean(True, k, "process_s"), 3)} for k in kinds},
           "overhead_per_kind_s": {k: {"fresh": round(overhead[False][k], 3), "warm": round(overhead[True][k], 3)}
                                   for k in kinds},
           "make_wall_s": {"fresh": [x["make_wall_s"] for x in rounds if not x["warm"]],
                           "warm": [x["make_wall_s"] for x in rounds if x["warm"]]},
           "process_s": {"fresh": [x["process_s"] for x in rounds if not x["warm"]],
                         "warm": [x["process_s"] for x in rounds if x["warm"]]}}
    if a.main_run:
        # that run's stages were fresh processes; each pays its kind's overhead measured here around its wall_s
        plan = json.loads((a.main_run / "plan.json").read_text())
        infos = [stage_info(a.main_run / e["dir"]) for e in plan["stages"]]
        work = sum(i["wall_s"] for i in infos)
        fresh = sum(overhead[False].get(i["kind"], 0.0) for i in infos)
        warm_ = sum(overhead[True].get(i["kind"], 0.0) for i in infos)
        res["main_job"] = {"run_dir": str(a.main_run), "stages": len(infos), "stage_work_s": round(work, 1),
                           "overhead_fresh_s": round(fresh, 1), "share_fresh": round(fresh / (work + fresh), 4),
                           "overhead_warm_s": round(warm_, 1), "share_warm": round(warm_ / (work + warm_), 4)}
    print(json.dumps({k: v for k, v in res.items() if k != "rounds"}), flush=True)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
