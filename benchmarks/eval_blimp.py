"""BLiMP scoring speed against the machine's limit and against lm-evaluation-harness, with decision agreement.

For one model (a directory, or a freshly initialised preset with a BPE trained on the shared corpus), scores
BLiMP (all 67 paradigms, or --paradigms) with babyllama's scorer in fp32 and in bf16, and, when lm-eval is
installed, with lm-eval (HFLM, batch size 64) on the same model and paradigms. Prints one JSON line:

    pairs, scored_tokens, seconds, pairs_per_s, matmul_peak_gflops {fp32, bf16}, flop_bound_s
    (= 2 x params x scored_tokens / fp32 peak), over_flop_bound, lm_eval_s, speedup_vs_lm_eval,
    identical_decisions_vs_lm_eval, the CPU (and whether it runs bf16 natively), and, with --bf16 (default: on CPUs
    with native bf16), bf16_seconds, bf16_identical_decisions

The default (prefix-tree) layout runs fewer positions than lm-eval: computed_positions (its rows),
distinct_prefixes (the fewest any exact scorer must run), rescored_pairs (near-ties re-scored in the padded
layout). --padded also times the padded layout (lm-eval's own arithmetic): padded_seconds, tree_speedup.

    python benchmarks/eval_blimp.py --preset babyllama-58m --paradigms 5
    python benchmarks/eval_blimp.py --preset llama-cpu-4m --padded
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import machine_info, peaks_for  # noqa: E402


def model_for(preset: str, work: Path):
    """A seeded, freshly initialised preset saved with a BPE of the preset's vocabulary size."""
    from babyllama.config import ModelConfig
    from babyllama.data.corpus import prepare
    from babyllama.models import PRESETS, build_model
    from babyllama.data.bpe import train_tokenizer
    from babyllama.tokenizer import load_tokenizer

    vocab = PRESETS[preset]["vocab_size"]
    tok_dir = work / f"tokenizer-{vocab}"
    if not (tok_dir / "tokenizer.json").is_file():
        if not (work / "corpus" / "stats.json").is_file():
            prepare(REPO.parent / "shared" / "data" / "corpus", work / "corpus")
        train_tokenizer(work / "corpus", tok_dir, vocab_size=vocab)
    out = work / f"model-{preset}"
    if not (out / "config.json").is_file():
        tok = load_tokenizer(tok_dir)
        model = build_model(ModelConfig(preset=preset), tok, seed=0)
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return out


def positions(model, tokenizer, items, layout: str) -> dict:
    """The work counts of a run: scored_tokens (the positions lm-eval runs, padding aside), distinct_prefixes (the
    fewest any exact scorer must run), computed_positions (what the prefix-tree layout runs, near-tie re-scoring
    aside)."""
    from babyllama.eval.scoring import ROW_TOKENS, encode_many, max_length, model_input, pack_tree

    max_len = max_length(model, tokenizer)
    reqs = encode_many(tokenizer, [(it.context, ch) for it in items for ch in it.choices])
    inputs = list(dict.fromkeys(tuple(model_input(tuple(c), tuple(k), max_len)) for c, k in reqs))
    rows, _ = pack_tree(inputs, ROW_TOKENS) if layout == "prefix_tree" else ([(x,) for x in inputs], None)
    return {"scored_tokens": sum(len(x) for x in inputs),
            "distinct_prefixes": len({x[:j] for x in inputs for j in range(1, len(x) + 1)}),
            "computed_positions": sum(len(r[0]) for r in rows)}


def lm_eval_decisions(model, tok, paradigms: list[str], eval_root: Path, tmp: Path) -> tuple[dict, float]:
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tasks = tmp / "tasks"
    tasks.mkdir(exist_ok=True)
    for p in paradigms:
        (tasks / f"{p}.yaml").write_text(yaml.safe_dump({
            "task": f"bb_{p}", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(eval_root / "blimp" / f"{p}.jsonl")}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "",
            "doc_to_choice": "{{[sentence_good, sentence_bad]}}", "doc_to_target": 0, "target_delimiter": " ",
            "metric_list": [{"metric": "acc"}]}))
    t0 = time.perf_counter()
    res = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tok, batch_size=64),
                          tasks=[f"bb_{p}" for p in paradigms], task_manager=TaskManager(include_path=str(tasks)),
                          log_samples=True)
    secs = time.perf_counter() - t0
    dec = {p: [s["acc"] == 1.0 for s in sorted(res["samples"][f"bb_{p}"], key=lambda s: s["doc_id"])]
           for p in paradigms}
    return dec, secs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: a fresh --preset)")
    ap.add_argument("--preset", default="babyllama-58m")
    ap.add_argument("--paradigms", type=int, default=67, help="first N paradigms (alphabetical)")
    ap.add_argument("--eval-root", default=str(REPO.parent / "shared" / "data" / "eval"))
    ap.add_argument("--work", default="/tmp/babyllama-bench-eval")
    ap.add_argument("--no-lm-eval", action="store_true")
    ap.add_argument("--padded", action="store_true", help="also time the padded layout")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="also score in bf16 (auto: where the CPU runs bf16 natively; emulated bf16 is very slow)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from babyllama.config import EvalConfig
    from babyllama.eval.evaluate import evaluate
    from babyllama.eval.suites import load_items
    from babyllama.models import count_params, load_model
    from babyllama.tokenizer import load_tokenizer

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    path = Path(a.model) if a.model else model_for(a.preset, work)
    model, tok = load_model(path), load_tokenizer(path)
    eval_root = Path(a.eval_root)
    paradigms = sorted(p.stem for p in (eval_root / "blimp").glob("*.jsonl"))[: a.paradigms]
    items = load_items("blimp", eval_root, paradigms)
    info = machine_info()
    bf16 = a.bf16 == "on" or (a.bf16 == "auto" and info["native_bf16"])
    peaks = peaks_for(["fp32", "bf16"] if bf16 else ["fp32"], info["native_bf16"])
    params = count_params(model)

    def run(**settings):
        """The library's entry point, timed whole (loading the suite included, as lm-eval's time includes its own)."""
        cfg = EvalConfig(suites=["blimp"], eval_root=str(eval_root), paradigms=paradigms, **settings)
        t0 = time.perf_counter()
        res = evaluate(model, tok, cfg)
        block = res["suites"]["blimp"]
        return [c == "1" for p in paradigms for c in block["decisions"][p]], time.perf_counter() - t0, res

    ours, secs, res = run()
    work_counts = positions(model, tok, items, res["layout"])
    flop_bound = 2 * params * work_counts["scored_tokens"] / (peaks["fp32"] * 1e9)
    out = {"model": str(path), "params": params, "paradigms": len(paradigms), "pairs": len(items),
           **work_counts, "layout": res["layout"], "rescored_pairs": res["rescored_near_ties"]["blimp"],
           "seconds": round(secs, 2), "pairs_per_s": round(len(items) / secs, 1),
           "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()}, "flop_bound_s": round(flop_bound, 2),
           "over_flop_bound": round(secs / flop_bound, 3), **info}
    if a.padded:
        ours_padded, padded_s, _ = run(layout="padded")
        out.update(padded_seconds=round(padded_s, 2),
                   padded_identical_decisions=round(sum(x == y for x, y in zip(ours, ours_padded)) / len(items), 5))
        out["tree_speedup"] = round(out["padded_seconds"] / secs, 2)
    if bf16:
        ours_bf16, bf16_s, _ = run(bf16=True)
        out.update(bf16_seconds=round(bf16_s, 2),
                   bf16_identical_decisions=round(sum(x == y for x, y in zip(ours, ours_bf16)) / len(items), 5))
    if not a.no_lm_eval:
        try:
            import lm_eval  # noqa: F401 - only whether it is installed
        except ImportError:
            out["lm_eval"] = "not installed"
        else:
            with tempfile.TemporaryDirectory() as tmp:
                dec, lm_secs = lm_eval_decisions(model, tok, paradigms, eval_root, Path(tmp))
            theirs = [c for p in paradigms for c in dec[p]]
            out.update(lm_eval_s=round(lm_secs, 2), speedup_vs_lm_eval=round(lm_secs / secs, 2),
                       identical_decisions_vs_lm_eval=round(sum(x == y for x, y in zip(ours, theirs)) / len(ours), 5))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
