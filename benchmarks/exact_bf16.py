"""Exact bf16 scoring against fp32: identical decisions, the share ranked again, the speed, the bound's headroom.

For each model (a directory, or a freshly initialised preset with a BPE of its vocabulary trained on the shared
corpus) and each suite (default: the whole BLiMP, the supplement and EWoK), scores every item three ways with the
library's Scorer (prefix-tree layout) on the same loaded model:

* ``fp32``: the reference (near-ties re-scored padded: lm-eval's decisions);
* ``exact_bf16``: bf16 ranking, every item within ``bf16_bound`` ranked again in fp32;
The bf16 scores exact bf16 ranks by (every item's, before any is ranked again) are plain bf16's, so they also give
the error the bound must cover, and plain bf16's own decisions.

One JSON line per model and suite, then one per model over all its suites:

    identical (exact_bf16 vs fp32 decisions), ranked_again (items, share), fp32_s, exact_bf16_s, speedup,
    bf16_identical (plain bf16's decisions vs fp32's), error_factor_needed (max over items of |bf16 margin - fp32
    margin| / (u x (|a| + |b|)), u = 2^-8: the BF16_ERROR_FACTOR the bound needs), its 99.9th percentile,
    error_factor_used

    python benchmarks/exact_bf16.py --preset llama-cpu-4m llama-cpu-12m babyllama-58m \
        --model trained-4m=runs/cpu/stages/baseline-s1-KEY ... [--compile on]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_blimp import model_for  # noqa: E402
from train_step import machine_info, peaks_for  # noqa: E402


def score(model, tok, items, **kw):
    """(decisions, (a, b) scores, seconds, the scorer) of one scorer setting."""
    from babyllama.eval.scoring import Scorer

    scorer = Scorer(model, tok, **kw)
    scorer.tree_ok()  # the one-off layout check, outside the timing
    t0 = time.perf_counter()
    correct, pairs = scorer.score_items(items)
    return np.array(correct), np.array(pairs), time.perf_counter() - t0, scorer


def factor_needed(err: np.ndarray, magnitude: np.ndarray, u: float) -> np.ndarray:
    """|margin error| / (u x magnitude) per item; 0 where both are 0 (two identical sentences)."""
    return np.divide(err, u * magnitude, out=np.zeros_like(err), where=magnitude > 0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", nargs="*", default=[], help="freshly initialised presets (random models)")
    ap.add_argument("--model", nargs="*", default=[], metavar="NAME=DIR", help="trained model directories")
    ap.add_argument("--suites", nargs="+", default=["blimp", "supplement", "ewok"])
    ap.add_argument("--eval-root", default=str(REPO.parent / "shared" / "data" / "eval"))
    ap.add_argument("--work", default="/tmp/babyllama-bench-eval")
    ap.add_argument("--compile", choices=["off", "on", "both"], default="off",
                    help="exact bf16 with eager layers (off), with compiled ones (on: eval.compile), or both "
                         "(which also times fp32 compiled). The reference is always fp32 eager")
    ap.add_argument("--inductor-cache", choices=["keep", "cold"], default="keep",
                    help="cold: an empty inductor cache, so compile_s is a machine's first compile")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.inductor_cache == "cold":
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
    from babyllama.eval.compiled import compiled_layers
    from babyllama.eval.scoring import BF16_ERROR_FACTOR, BF16_UNIT_ROUNDOFF
    from babyllama.eval.suites import load_items
    from babyllama.models import count_params, load_model
    from babyllama.tokenizer import load_tokenizer

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    models = [(f"random-{p}", model_for(p, work)) for p in a.preset]
    models += [(spec.split("=", 1)[0], Path(spec.split("=", 1)[1])) for spec in a.model]
    info = machine_info()
    peaks = peaks_for(["fp32", "bf16"], info["native_bf16"])
    print(json.dumps({**info, "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()}}), flush=True)
    suites = {s: load_items(s, a.eval_root) for s in a.suites}
    # (label, compiled layers, Scorer settings); the first is the reference
    runs = [("fp32", False, {})]
    runs += [("exact_bf16", False, {"exact_bf16": True})] if a.compile in ("off", "both") else []
    runs += [("fp32_compiled", True, {})] if a.compile == "both" else []
    runs += [("exact_bf16_compiled", True, {"exact_bf16": True})] if a.compile in ("on", "both") else []
    for name, path in models:
        model, tok = load_model(path), load_tokenizer(path)
        head = {"model": name, "params": count_params(model)}
        if a.compile != "off":  # the compile, outside the timings: both precisions' graphs on a few items
            t0 = time.perf_counter()
            with compiled_layers(model):
                first = next(iter(suites.values()))[:200]
                score(model, tok, first)
                score(model, tok, first, exact_bf16=True)
            print(json.dumps({**head, "compile_s": round(time.perf_counter() - t0, 1),
                              "inductor_cache": a.inductor_cache}), flush=True)
        total: dict = {"items": 0, "seconds": {}, "same": {}, "again": {}, "need": {}}
        for s, items in suites.items():
            row = {**head, "suite": s, "items": len(items), "error_factor_used": BF16_ERROR_FACTOR}
            ref = None
            for label, compiled, kw in runs:
                with compiled_layers(model, compiled):
                    got, lp, sec, scorer = score(model, tok, items, **kw)
                if ref is None:
                    ref, ref_lp = got, lp
                row[f"{label}_s"] = round(sec, 2)
                total["seconds"][label] = total["seconds"].get(label, 0.0) + sec
                if label != "fp32":
                    row[f"{label}_identical"] = int((ref == got).sum())
                    total["same"][label] = total["same"].get(label, 0) + row[f"{label}_identical"]
                if kw.get("exact_bf16"):
                    again = scorer.rescored_bf16
                    b = np.array(scorer.bf16_scores).reshape(-1, 2)
                    err = np.abs((b[:, 0] - b[:, 1]) - (ref_lp[:, 0] - ref_lp[:, 1]))
                    need = factor_needed(err, np.abs(b).sum(axis=1), BF16_UNIT_ROUNDOFF)
                    row.update({f"{label}_ranked_again_share": round(again / len(items), 4),
                                f"{label}_bf16_identical": int(((b[:, 0] >= b[:, 1]) == ref).sum()),
                                f"{label}_max_margin_error": round(float(err.max()), 4),
                                f"{label}_error_factor_needed": round(float(need.max()), 4),
                                f"{label}_error_factor_p999": round(float(np.quantile(need, 0.999)), 4)})
                    total["again"][label] = total["again"].get(label, 0) + again
                    total["need"][label] = max(total["need"].get(label, 0.0), float(need.max()))
            for label, _, _ in runs[1:]:
                row[f"{label}_speedup"] = round(row["fp32_s"] / row[f"{label}_s"], 3)
            if "fp32_compiled" in row and "exact_bf16_compiled_s" in row:
                row["exact_bf16_compiled_over_fp32_compiled"] = round(row["fp32_compiled_s"] /
                                                                      row["exact_bf16_compiled_s"], 3)
            print(json.dumps(row), flush=True)
            total["items"] += len(items)
        sec = total["seconds"]
        print(json.dumps({**head, "suite": "all", "items": total["items"],
                          "seconds": {k: round(v, 1) for k, v in sec.items()},
                          "speedup_over_fp32": {k: round(sec["fp32"] / v, 3) for k, v in sec.items() if k != "fp32"},
                          "identical_share": {k: round(v / total["items"], 6) for k, v in total["same"].items()},
                          "ranked_again_share": {k: round(v / total["items"], 4) for k, v in total["again"].items()},
                          "error_factor_needed": {k: round(v, 4) for k, v in total["need"].items()}}), flush=True)
        del model


if __name__ == "__main__":
    main()
