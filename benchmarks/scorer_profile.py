"""Where the prefix-tree scorer's time goes, against its distinct-prefix FLOP bound.

For one model and the first ``--paradigms`` BLiMP paradigms, scores every pair with the library's Scorer (as
`babyllama eval` does: prefix tree, near-ties re-scored padded) in each ``--precisions`` mode, timed whole, then
once more under torch.profiler. The bound is the work no exact scorer can skip: one forward per distinct prefix,
``2 x params x distinct_prefixes`` FLOPs, at the matmul peak measured in the same run (fp32; bf16 for exact bf16,
whose irreducible pass is bf16). The profile's self CPU time is grouped by kernel family; the Python around the
model (tokenizing, packing the tries, building masks and indices) is timed by wrapping those functions.

    python benchmarks/scorer_profile.py --model DIR --paradigms 10 --precisions fp32 exact_bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_blimp import model_for, positions  # noqa: E402
from train_step import machine_info, peaks_for  # noqa: E402

# kernel families, by the profiler's op names (first match wins)
FAMILIES = (("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
            ("attention", ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::softmax")),
            ("log_softmax", ("log_softmax",)),
            ("fused by inductor (compiled)", ("cpp_fused", "CompiledFxGraph", "CompiledFunction", "Compiled Region")),
            ("dtype casts", ("aten::copy_", "aten::to", "aten::_to_copy")),
            ("gather / index", ("aten::index", "aten::gather", "aten::unique", "aten::argsort", "aten::sort",
                                "aten::searchsorted", "aten::index_add", "aten::masked_fill", "aten::embedding")),
            ("elementwise / norms / rotary", ("aten::mul", "aten::add", "aten::rsqrt", "aten::pow", "aten::mean",
                                              "aten::silu", "aten::neg", "aten::cat", "aten::sub", "aten::div",
                                              "aten::cos", "aten::sin", "aten::exp", "aten::gelu", "aten::tanh")),)


def family(name: str) -> str:
    for fam, keys in FAMILIES:
        if any(k in name for k in keys):
            return fam
    return "other ops"


class PythonTimers:
    """Cumulative seconds in the scorer's Python-side helpers, by wrapping them in the scoring module."""

    NAMES = ("encode_many", "pack_tree")

    def __init__(self):
        import babyllama.eval.scoring as scoring

        self.mod, self.seconds, self.orig = scoring, defaultdict(float), {}
        for name in self.NAMES:
            fn = getattr(scoring, name)
            self.orig[name] = fn

            def timed(*a, _fn=fn, _name=name, **k):
                t = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    self.seconds[_name] += time.perf_counter() - t
            setattr(scoring, name, timed)

    def restore(self):
        for name, fn in self.orig.items():
            setattr(self.mod, name, fn)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: a fresh --preset)")
    ap.add_argument("--preset", default="babyllama-58m")
    ap.add_argument("--paradigms", type=int, default=10, help="first N paradigms (alphabetical)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "exact_bf16"], choices=["fp32", "exact_bf16"])
    ap.add_argument("--eval-root", default=str(REPO.parent / "shared" / "data" / "eval"))
    ap.add_argument("--work", default="/tmp/babyllama-bench-eval")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--compile", action="store_true", help="the decoder layers compiled (eval.compile), compiled "
                    "once on the first 200 pairs before the timings")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from torch.profiler import ProfilerActivity, profile

    from babyllama.eval.compiled import compiled_layers
    from babyllama.eval.scoring import Scorer
    from babyllama.eval.suites import load_items
    from babyllama.models import count_params, load_model
    from babyllama.tokenizer import load_tokenizer

    path = Path(a.model) if a.model else model_for(a.preset, Path(a.work))
    model, tok = load_model(path), load_tokenizer(path)
    eval_root = Path(a.eval_root)
    paradigms = sorted(p.stem for p in (eval_root / "blimp").glob("*.jsonl"))[: a.paradigms]
    items = load_items("blimp", eval_root, paradigms)
    info = machine_info()
    peaks = peaks_for(["fp32", "bf16"], info["native_bf16"])
    params = count_params(model)
    work = positions(model, tok, items, "prefix_tree")
    res = {**info, "model": str(path), "params": params, "paradigms": len(paradigms), "pairs": len(items), **work,
           "threads": torch.get_num_threads(), "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
           "runs": {}}
    decisions = {}
    with compiled_layers(model, a.compile):
        if a.compile:  # the compile, outside the timings
            t = time.perf_counter()
            for precision in a.precisions:
                Scorer(model, tok, exact_bf16=precision == "exact_bf16").score_items(items[:200])
            res["compile_s"] = round(time.perf_counter() - t, 1)
        res["compiled"] = a.compile
        for precision in a.precisions:
            exact = precision == "exact_bf16"
            peak = peaks["bf16" if exact else "fp32"]
            bound = 2 * params * work["distinct_prefixes"] / (peak * 1e9)
            scorer = Scorer(model, tok, exact_bf16=exact)
            scorer.tree_ok()  # the one-time layout check, outside the timing
            timers = PythonTimers()
            t = time.perf_counter()
            dec, _ = scorer.score_items(items)
            secs = time.perf_counter() - t
            timers.restore()
            decisions[precision] = dec
            run = {"seconds": round(secs, 2), "bound_s": round(bound, 2), "over_bound": round(secs / bound, 3),
                   "ranked_again": scorer.rescored_bf16, "near_ties_rescored": scorer.rescored,
                   "python_s": {k: round(v, 2) for k, v in timers.seconds.items()}}
            if not a.no_profile:
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    t = time.perf_counter()
                    scorer.score_items(items)
                    prof_wall = time.perf_counter() - t
                by_family: dict[str, float] = defaultdict(float)
                top = []
                for ev in prof.key_averages():
                    if ev.self_cpu_time_total <= 0:
                        continue
                    by_family[family(ev.key)] += ev.self_cpu_time_total / 1e6
                    top.append((ev.self_cpu_time_total / 1e6, ev.key))
                total_ops = sum(by_family.values())
                run["profile"] = {"wall_s": round(prof_wall, 2), "ops_s": round(total_ops, 2),
                                  "by_family_s": {k: round(v, 2) for k, v in sorted(by_family.items(),
                                                                                      key=lambda kv: -kv[1])},
                                  "top_ops": [[k, round(v, 2)] for v, k in sorted(top, reverse=True)[:12]]}
            res["runs"][precision] = run
            print(json.dumps({precision: run}), flush=True)
    if len(decisions) == 2:
        res["identical_decisions"] = sum(x == y for x, y in zip(*decisions.values())) / len(items)
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}), flush=True)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
