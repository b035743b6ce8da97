"""Stages side by side: one training job on all cores against N jobs at once on cores / N threads each.

`make run` runs two stages at a time (`babyllama run --makefile`) because a small model's step does not use a
second thread as well as a second job uses a second core. This measures it through `train_step.py` (the
`babyllama train` path): for each shape, one process with every core's thread, then ``--jobs`` processes started
together, each pinned to its share of the cores, in the same run. One JSON line per shape: tokens/s of the single
job, of each concurrent job and their sum, and ``speedup`` = sum / single (what the side-by-side schedule gains on
a run made of such stages).

    python benchmarks/parallel_stages.py                         # llama-4m, gpt2-10m, llama-12.5m at batch 8
    python benchmarks/parallel_stages.py --shapes babyllama-58m --batch 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from babyllama.hardware import cpu_has_native_bf16

STEP = Path(__file__).with_name("train_step.py")


def run_jobs(shape: str, precision: str, args, cpu_sets: list[list[int]]) -> list[dict]:
    """``train_step.py`` for one shape in ``len(cpu_sets)`` concurrent processes, each pinned to its cores."""
    procs = []
    for cpus in cpu_sets:
        env = {**os.environ, "OMP_NUM_THREADS": str(len(cpus))}
        cmd = [sys.executable, str(STEP), "--shapes", shape, "--precisions", precision, "--batch", str(args.batch),
               "--seq", str(args.seq), "--steps", str(args.steps)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      preexec_fn=lambda c=cpus: os.sched_setaffinity(0, c)))
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"train_step.py failed for {shape} (exit {p.returncode})")
        lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{\"")]
        out.append({"machine": lines[0], "step": next(x for x in lines if x.get("shape") == shape)})
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["llama-4m", "gpt2-10m", "llama-12.5m"])
    ap.add_argument("--precision", choices=["fp32", "bf16"],
                    help="default: bf16 where the CPU runs it natively (AVX512-BF16/AMX), else fp32")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="the CPU recipe's batch")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    if a.jobs < 2 or len(cores) < a.jobs:
        raise SystemExit(f"--jobs {a.jobs}: give 2 or more, at most the {len(cores)} cores this process may use")
    share = len(cores) // a.jobs
    precision = a.precision or ("bf16" if cpu_has_native_bf16() else "fp32")
    for shape in a.shapes:
        single = run_jobs(shape, precision, a, [cores])[0]
        side = run_jobs(shape, precision, a, [cores[i * share:(i + 1) * share] for i in range(a.jobs)])
        per_job = [round(j["step"]["tokens_per_s"], 1) for j in side]
        m = single["machine"]
        print(json.dumps({
            "cpu": m.get("cpu"), "native_bf16": m.get("native_bf16"), "cores": len(cores), "shape": shape,
            "params": single["step"]["params"], "precision": precision, "batch": a.batch, "seq_len": a.seq,
            "single_job": {"threads": len(cores), "tokens_per_s": round(single["step"]["tokens_per_s"], 1)},
            "side_by_side": {"jobs": a.jobs, "threads_each": share, "tokens_per_s_each": per_job,
                             "tokens_per_s": round(sum(per_job), 1)},
            "speedup": round(sum(per_job) / single["step"]["tokens_per_s"], 2),
        }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
