"""The BabyLM 2025 zero-shot tasks: babyllama against the organisers' own pipeline, on the same models and machine.

For each model directory, runs the 2025 pipeline (babylm/evaluation-pipeline-2025, its
``evaluation_pipeline.sentence_zero_shot.run`` for entity tracking (fast: regular.jsonl) and wug adjective
nominalization, and ``evaluation_pipeline.reading.run``, causal backend, offline, the model from its folder) and
``babyllama eval --suite entity_tracking_fast --suite wug_adj --suite reading``, each in fresh processes, one
after the other, and compares:

* entity tracking: the chosen option of every item (``predictions.json``), identical or not, and the accuracy per UID;
* wug: the chosen form of every item, the largest difference of P(first form), Spearman's rho (the pipeline's
  from its saved probabilities, scipy);
* reading: every word's surprisal and previous-word surprisal (``prediction.jsonl``), and every regression figure
  (coefficient, t, R^2, change in R^2, AIC, with and without spillover: ``predictive_power*.jsonl``) and the two
  scores, as the largest relative difference;
* wall time of the whole (the three tasks) on each side, and our speedup. Ours includes the bootstrap CIs, which
  the pipeline does not compute.

Prints one JSON line per model and writes them all to --out. The pipeline needs its own environment (it pins
transformers 4.51.3; its read_files imports datasets and aiohttp), e.g.::

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch==2.13.0
    /tmp/refvenv/bin/pip install transformers==4.51.3 tokenizers==0.21.1 datasets==3.6.0 aiohttp pandas==2.2.3 \\
        statsmodels==0.14.4 scipy==1.15.2 numpy==2.2.5 tqdm
    git clone https://github.com/babylm/evaluation-pipeline-2025 /tmp/pipeline   # bf55c11 was used here
    python benchmarks/babylm2025_reference.py --pipeline /tmp/pipeline --python /tmp/refvenv/bin/python \\
        MODEL_DIR [MODEL_DIR ...] --out babylm2025_reference.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine_info  # noqa: E402

MEASURES = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound", "self_paced_reading_time",
            "ELAN", "LAN", "N400", "P600", "EPNP", "PNP")
REF_KEYS = {"coefficient": "Coefficient", "t": "Number of standard deviations", "r2": "R2",
            "delta_r2": "Change in R2 from baseline", "aic": "AIC", "delta_aic": "Change in AIC from baseline"}


def rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def timed(cmd: list[str], cwd: Path | None, env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return took


def reference(pipeline: Path, python: str, model: Path, eval_root: Path, work: Path) -> tuple[dict, Path]:
    """Run the pipeline's three fast text tasks; (wall seconds per task, its output folder)."""
    data = work / "data"
    (data / "entity_tracking_fast").mkdir(parents=True, exist_ok=True)
    (data / "wug_adj_nominalization").mkdir(parents=True, exist_ok=True)
    for src, dst in ((eval_root / "entity_tracking" / "regular.jsonl", data / "entity_tracking_fast"),
                     (eval_root / "wug_adj_nominalization" / "wug_adj_nominalization.jsonl",
                      data / "wug_adj_nominalization")):
        link = dst / src.name
        if not link.exists():
            link.symlink_to(src.resolve())
    out = work / "reference"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(pipeline)}
    zs = [python, "-m", "evaluation_pipeline.sentence_zero_shot.run", "--model_path_or_name", str(model),
          "--backend", "causal", "--save_predictions", "--output_dir", str(out)]
    seconds = {
        "entity_tracking_fast": timed(zs + ["--task", "entity_tracking", "--data_path",
                                            str(data / "entity_tracking_fast")], pipeline, env),
        "wug_adj": timed(zs + ["--task", "wug_adj", "--data_path", str(data / "wug_adj_nominalization")],
                         pipeline, env),
        "reading": timed([python, "-m", "evaluation_pipeline.reading.run", "--model_path_or_name", str(model),
                          "--backend", "causal", "--data_path", str(eval_root / "reading" / "reading_data.csv"),
                          "--output_dir", str(out)], pipeline, env),
    }
    return seconds, out / model.name / "main" / "zero_shot" / "causal"


def ours(model: Path, eval_root: Path, work: Path) -> tuple[float, dict]:
    out = work / "ours.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "babyllama.cli", "eval", str(model), "--suite", "entity_tracking_fast", "--suite",
           "wug_adj", "--suite", "reading", "--eval-root", str(eval_root), "--json", str(out), "--overwrite"]
    took = timed(cmd, None, env)
    res = json.loads(out.read_text())
    per_suite = {s.rsplit(":", 1)[-1]: round(t, 2) for s, t in res["timing"].items()}
    return took, {s: b["per_model"][str(model)] for s, b in res["suites"].items()}, per_suite


def compare(ref_dir: Path, mine: dict, eval_root: Path) -> dict:
    from scipy.stats import spearmanr

    from babyllama.eval.tasks2025 import read_entity_tracking, read_wug

    out: dict = {}
    # entity tracking: the pipeline's predictions per UID, in file order
    items = read_entity_tracking(eval_root / "entity_tracking" / "regular.jsonl")
    ref = json.loads((ref_dir / "entity_tracking" / "entity_tracking_fast" / "predictions.json").read_text())
    ours_pred: dict[str, list[str]] = {}
    for it, k in zip(items, mine["entity_tracking_fast"]["predictions"]):
        ours_pred.setdefault(it.paradigm, []).append(it.completions[k])
    same = total = 0
    acc_diff = 0.0
    for uid, block in ref.items():
        theirs = [p["pred"] for p in block["predictions"]]
        mine_u = ours_pred.get(uid, [])
        total += len(theirs)
        same += sum(a == b for a, b in zip(theirs, mine_u)) if len(mine_u) == len(theirs) else 0
        right = [it.completions[0] for it in items if it.paradigm == uid]
        ref_acc = sum(p == r for p, r in zip(theirs, right)) / len(right)
        acc_diff = max(acc_diff, abs(ref_acc - mine["entity_tracking_fast"]["paradigms"][uid]["acc"]))
    out["entity_tracking_fast"] = {"items": total, "identical_predictions": same, "all_identical": same == total,
                                   "max_uid_accuracy_diff": acc_diff,
                                   "macro": mine["entity_tracking_fast"]["macro"]["acc"]}
    # wug
    witems = read_wug(eval_root / "wug_adj_nominalization")
    ref = json.loads((ref_dir / "wug_adj" / "wug_adj_nominalization" / "predictions.json").read_text())
    preds = ref["wug_adj"]["predictions"]
    ref_prob = [p["prob"] for p in preds]
    ref_choice = [p["pred"] for p in preds]
    w = mine["wug_adj"]
    my_choice = [it.completions[k] for it, k in zip(witems, w["predictions"])]
    ref_rho = float(spearmanr(ref_prob, [it.ratio for it in witems])[0])
    out["wug_adj"] = {"items": len(preds), "identical_predictions": sum(a == b for a, b in zip(ref_choice, my_choice)),
                      "all_identical": ref_choice == my_choice,
                      "max_prob_diff": max(abs(a - b) for a, b in zip(ref_prob, w["model_ratios"])),
                      "rho": w["macro"]["acc"], "rho_reference": ref_rho,
                      "rho_rel_diff": rel(ref_rho, w["macro"]["acc"])}
    # reading
    rd = ref_dir / "reading"
    rows = [json.loads(line) for line in (rd / "prediction.jsonl").read_text().splitlines() if line.strip()]
    r = mine["reading"]
    surp = max(rel(x["Logprob"], y) for x, y in zip(rows, r["surprisal"]))
    prev = max(rel(x["Prev_Logprob"], y) for x, y in zip(rows, r["prev_surprisal"])
               if not (isinstance(x["Prev_Logprob"], float) and math.isnan(x["Prev_Logprob"])))
    worst, where = 0.0, None
    figures = {}
    for key, fname in (("measures", "predictive_power.jsonl"), ("spillover", "predictive_power_spillover.jsonl")):
        ref_rows = {x["Predicted variable"]: x for x in map(json.loads, (rd / fname).read_text().splitlines())}
        for dv in MEASURES:
            for mk, rk in REF_KEYS.items():
                d = rel(ref_rows[dv][rk], r[key][dv][mk])
                if d > worst:
                    worst, where = d, f"{key}.{dv}.{mk}"
        gains = {dv: 100 * x["Change in R2 from baseline"] / (1 - (x["R2"] - x["Change in R2 from baseline"]))
                 for dv, x in ref_rows.items()}
        if key == "measures":
            eye = [g for dv, g in gains.items() if "RT" in dv]
            figures["eye_tracking"] = sum(eye) / len(eye)
        else:
            figures["self_paced_reading"] = gains["self_paced_reading_time"]
    out["reading"] = {"words": len(rows), "max_surprisal_rel_diff": surp, "max_prev_surprisal_rel_diff": prev,
                      "max_regression_rel_diff": worst, "worst_figure": where,
                      "scores": {k: r["figures"][k]["value"] for k in figures}, "scores_reference": figures,
                      "max_score_rel_diff": max(rel(figures[k], r["figures"][k]["value"]) for k in figures)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--pipeline", type=Path, required=True, help="a checkout of babylm/evaluation-pipeline-2025")
    ap.add_argument("--python", required=True, help="the Python of the pipeline's environment")
    ap.add_argument("--eval-root", type=Path, default=REPO.parent / "shared" / "data" / "eval")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = []
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            ref_s, ref_dir = reference(args.pipeline, args.python, model.resolve(), args.eval_root, work)
            our_s, mine, per_suite = ours(model.resolve(), args.eval_root, work)
            row = {"model": str(model), "reference_seconds": ref_s,
                   "reference_total_s": sum(ref_s.values()), "ours_s": our_s, "ours_suite_seconds": per_suite,
                   "speedup": sum(ref_s.values()) / our_s, **compare(ref_dir, mine, args.eval_root),
                   **machine_info()}
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
