"""Exact bf16 scoring against fp32: identical decisions, the share ranked again, the speed, the bound's headroom.

For each model (a directory, or a freshly initialised preset with a BPE of its vocabulary trained on the shared
corpus) and each suite (default: the whole BLiMP, the supplement and EWoK), scores every item three ways with the
library's Scorer (prefix-tree layout) on the same loaded model:

* ``fp32``: the reference (near-ties re-scored padded: lm-eval's decisions);
* ``exact_bf16``: bf16 ranking, every item within ``bf16_bound`` ranked again in fp32;
* ``bf16`` (diagnostic, ``--no-error-stats`` skips it): bf16 throughout, for the error the bound must cover.

One JSON line per model and suite, then one per model over all its suites:

    identical (exact_bf16 vs fp32 decisions), ranked_again (items, share), fp32_s, exact_bf16_s, speedup,
    bf16_s, bf16_identical, error_factor_needed (max over items of |bf16 margin - fp32 margin| / (u x
    (|a| + |b|)), u = 2^-8: the BF16_ERROR_FACTOR the bound needs), its 99.9th percentile, error_factor_used

    python benchmarks/exact_bf16.py --preset llama-cpu-4m llama-cpu-12m babyllama-58m \
        --model trained-4m=runs/cpu/stages/baseline-s1-KEY ...
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


def score(model, tok, items, **kw) -> tuple[np.ndarray, np.ndarray, float, int]:
    """(decisions, (a, b) scores, seconds, items ranked again in fp32) of one scorer setting."""
    from babyllama.eval.scoring import Scorer

    scorer = Scorer(model, tok, **kw)
    scorer.tree_ok()  # the one-off layout check, outside the timing
    t0 = time.perf_counter()
    correct, pairs = scorer.score_items(items)
    return np.array(correct), np.array(pairs), time.perf_counter() - t0, scorer.rescored_bf16


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", nargs="*", default=[], help="freshly initialised presets (random models)")
    ap.add_argument("--model", nargs="*", default=[], metavar="NAME=DIR", help="trained model directories")
    ap.add_argument("--suites", nargs="+", default=["blimp", "supplement", "ewok"])
    ap.add_argument("--eval-root", default=str(REPO.parent / "shared" / "data" / "eval"))
    ap.add_argument("--work", default="/tmp/babyllama-bench-eval")
    ap.add_argument("--no-error-stats", action="store_true", help="skip the plain bf16 pass")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
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
    for name, path in models:
        model, tok = load_model(path), load_tokenizer(path)
        total = {"items": 0, "same": 0, "again": 0, "fp32_s": 0.0, "exact_s": 0.0, "bf16_s": 0.0, "need": 0.0}
        for s, items in suites.items():
            ref, ref_lp, fp32_s, _ = score(model, tok, items)
            got, _, exact_s, again = score(model, tok, items, exact_bf16=True)
            row = {"model": name, "params": count_params(model), "suite": s, "items": len(items),
                   "identical": int((ref == got).sum()), "ranked_again": again,
                   "ranked_again_share": round(again / len(items), 4), "fp32_s": round(fp32_s, 2),
                   "exact_bf16_s": round(exact_s, 2), "speedup": round(fp32_s / exact_s, 3),
                   "error_factor_used": BF16_ERROR_FACTOR}
            if not a.no_error_stats:
                plain, lp, bf16_s, _ = score(model, tok, items, bf16=True)
                err = np.abs((lp[:, 0] - lp[:, 1]) - (ref_lp[:, 0] - ref_lp[:, 1]))
                need = err / (BF16_UNIT_ROUNDOFF * np.abs(ref_lp).sum(axis=1))
                row.update(bf16_s=round(bf16_s, 2), bf16_identical=int((plain == ref).sum()),
                           max_margin_error=round(float(err.max()), 4),
                           error_factor_needed=round(float(need.max()), 4),
                           error_factor_p999=round(float(np.quantile(need, 0.999)), 4))
                total["bf16_s"] += bf16_s
                total["need"] = max(total["need"], float(need.max()))
            print(json.dumps(row), flush=True)
            total["items"] += len(items)
            total["same"] += row["identical"]
            total["again"] += again
            total["fp32_s"] += fp32_s
            total["exact_s"] += exact_s
        print(json.dumps({"model": name, "suite": "all", "items": total["items"], "identical": total["same"],
                          "identical_share": round(total["same"] / total["items"], 6),
                          "ranked_again_share": round(total["again"] / total["items"], 4),
                          "fp32_s": round(total["fp32_s"], 1), "exact_bf16_s": round(total["exact_s"], 1),
                          "speedup": round(total["fp32_s"] / total["exact_s"], 3),
                          **({"bf16_s": round(total["bf16_s"], 1), "error_factor_needed": round(total["need"], 4)}
                             if not a.no_error_stats else {})}), flush=True)
        del model


if __name__ == "__main__":
    main()
