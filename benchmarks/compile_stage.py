"""Compiled decoder layers over whole training stages: ``training.compile`` false against true, in fresh processes.

Each run is one real stage through the API `babyllama train` / `babyllama distill` call (the Trainer, evaluation at
the start and the end, the best checkpoint saved), on a slice of the prepared corpus with its BPE and the two CPU
teachers of ``benchmarks/distill.py`` (trained first, or reused from ``--work``). Per stage and setting it reports
the Trainer's ``train_runtime`` (the compile included: it happens in the first step), the process's wall time, the
steady training rate (the median of the ``train_tokens_per_s`` logs after the first), the final eval CE, and, for
the compiled run, the compile's cost (its runtime minus its positions at its steady rate) and the break-even: the
positions at which that cost is paid back by the faster steps. ``--inductor-cache cold`` gives every compiled run a
fresh inductor cache (the first compile on a machine); ``warm`` (default) runs each compiled stage once untimed
first, so the timed one finds inductor's on-disk cache filled (every later stage on the machine).

Stages (``--stages``): ``pretrain-12m`` (the CPU recipe's LLaMA-12.5M teacher), ``pretrain-4m`` (its 4.1M
baseline), ``distill-live`` (the 4.1M student with both teachers live), at ``--batch`` x 128 for ``--steps``.

    python benchmarks/compile_stage.py --work /tmp/babyllama-bench-distill --steps 300 --batch 8
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = {"pretrain-12m": ("llama-cpu-12m", 1e-3, False), "pretrain-4m": ("llama-cpu-4m", 3e-3, False),
          "distill-live": ("llama-cpu-4m", 3e-3, True)}


def run_stage(work: Path, stage: str, compiled: bool, steps: int, batch: int, train_tokens: int,
              teachers: list[Path], inductor_dir: str | None, precision: str = "auto") -> dict:
    """One stage in its own process; its metrics."""
    from distill import base_config

    preset, lr, live = STAGES[stage]
    out = work / f"stage-{stage}-{'compiled' if compiled else 'eager'}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = base_config(work, preset, out, steps, lr, train_tokens, seed=1)
    cfg.training.batch_size = batch
    cfg.training.eval_steps = steps  # at the start (step 0) and the end, as a one-epoch stage
    cfg.training.eval_on_start = True
    cfg.training.logging_steps = max(1, steps // 10)
    cfg.training.compile = compiled
    cfg.training.precision = precision
    if live:
        cfg.distill.teachers = [str(t) for t in teachers]
    spec = work / f"stage-{stage}.json"
    spec.write_text(json.dumps(cfg.model_dump(mode="json")))
    entry = "distillation.trainer import distill as run" if live else "training.pretrain import train as run"
    code = (f"import json,sys; from babyllama.config import Config; from babyllama.{entry};"
            "m = run(Config.model_validate(json.load(open(sys.argv[1])))); print('RESULT ' + json.dumps(m))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if inductor_dir:
        env["TORCHINDUCTOR_CACHE_DIR"] = inductor_dir
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if p.returncode or not line:
        sys.exit(f"{stage} (compile {compiled}) failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = json.loads(line[7:])
    rates = [e["train_tokens_per_s"] for e in m["train_history"] if "train_tokens_per_s" in e][1:]
    return {"stage": stage, "compiled": m["compiled"], "steps": m["global_step"],
            "positions": m["train_tokens_seen"], "train_runtime_s": round(m["train_runtime_s"], 2),
            "process_wall_s": round(wall, 2), "steady_tokens_per_s": round(statistics.median(rates), 1),
            "train_tokens_per_s": round(m["train_tokens_per_s"], 1), "eval_loss": round(m["eval_loss"], 4),
            "precision": m["precision"]}


def compare(eager: dict, compiled: dict) -> dict:
    """The compiled run against the eager one: speed-ups, the compile's cost and its break-even in positions."""
    saved_per_position = 1 / eager["steady_tokens_per_s"] - 1 / compiled["steady_tokens_per_s"]
    cost = compiled["train_runtime_s"] - compiled["positions"] / compiled["steady_tokens_per_s"]
    cost -= eager["train_runtime_s"] - eager["positions"] / eager["steady_tokens_per_s"]  # both runs' first steps
    return {"stage": eager["stage"], "steady_speedup": round(compiled["steady_tokens_per_s"]
                                                             / eager["steady_tokens_per_s"], 3),
            "runtime_speedup": round(eager["train_runtime_s"] / compiled["train_runtime_s"], 3),
            "wall_speedup": round(eager["process_wall_s"] / compiled["process_wall_s"], 3),
            "compile_cost_s": round(cost, 1),
            "break_even_positions": round(cost / saved_per_position) if saved_per_position > 0 else None,
            "eval_loss_diff": round(compiled["eval_loss"] - eager["eval_loss"], 4)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/babyllama-bench-distill"), help="reused between runs")
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "corpus"))
    ap.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8, help="the CPU recipe's")
    ap.add_argument("--train-tokens", type=int, default=600_000)
    ap.add_argument("--teacher-steps", type=int, default=300)
    ap.add_argument("--inductor-cache", choices=["warm", "cold"], default="warm")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="training.precision")
    ap.add_argument("--out", type=Path, help="also write the JSON lines here")
    a = ap.parse_args(argv)
    from distill import setup
    from train_step import machine_info, peaks_for

    a.work.mkdir(parents=True, exist_ok=True)
    teachers = setup(a.work, Path(a.corpus), a.train_tokens, a.teacher_steps)
    info = machine_info()
    lines = [{**info, "matmul_peak_gflops": {k: round(v, 1) for k, v in
                                            peaks_for(("fp32", "bf16"), info["native_bf16"]).items()},
              "inductor_cache": a.inductor_cache, "precision": a.precision, "batch": f"{a.batch}x128",
              "steps": a.steps}]
    print(json.dumps(lines[0]), flush=True)
    for stage in a.stages:
        with tempfile.TemporaryDirectory() as cold:
            if a.inductor_cache == "warm":  # fill the on-disk cache as an earlier stage of the machine would
                run_stage(a.work, stage, True, 3, a.batch, a.train_tokens, teachers, None, a.precision)
            runs = [run_stage(a.work, stage, c, a.steps, a.batch, a.train_tokens, teachers,
                              cold if c and a.inductor_cache == "cold" else None, a.precision) for c in (False, True)]
        for r in (*runs, compare(*runs)):
            lines.append(r)
            print(json.dumps(r), flush=True)
    if a.out:
        a.out.write_text("".join(json.dumps(x) + "\n" for x in lines))


if __name__ == "__main__":
    main()
