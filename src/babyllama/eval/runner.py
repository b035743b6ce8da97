"""`babyllama eval`: models x suites -> accuracies with CIs, paired comparisons, perplexity; JSON + markdown.

Each model is loaded once and scored on every suite. Minimal-pair suites report accuracy per paradigm (file),
per phenomenon (BLiMP's ``linguistics_term``; EWoK's domain) and the macro mean over paradigms, each with a
bootstrap 95% CI. With two or more models, every model after the first is compared with the first on the same
items (difference of macro means, paired bootstrap CI and p-value, McNemar).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..runinfo import write_json_atomic
from .scoring import Scorer
from .stats import bootstrap_ci, macro_bootstrap, paired_comparison
from .tasks import Item, load_suite

PAIR_SUITES = ("blimp", "blimp_filtered", "blimp_fast", "supplement", "supplement_fast", "ewok", "ewok_fast")


def subsample(items: list[Item], max_pairs: int | None, seed: int = 0) -> list[Item]:
    """At most ``max_pairs`` items per paradigm, the same seeded choice for every model."""
    if not max_pairs:
        return items
    by: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by[it.paradigm].append(it)
    out = []
    for p in sorted(by):
        its = by[p]
        if len(its) > max_pairs:
            keep = np.sort(np.random.default_rng([seed, len(p)]).choice(len(its), max_pairs, replace=False))
            its = [its[i] for i in keep]
        out += its
    return out


def summarize(items: list[Item], correct: list[bool]) -> dict:
    by_p: dict[str, list[bool]] = defaultdict(list)
    by_g: dict[str, list[bool]] = defaultdict(list)
    group_of = {}
    for it, c in zip(items, correct):
        by_p[it.paradigm].append(c)
        group_of[it.paradigm] = it.group
    for p, cs in by_p.items():
        by_g[group_of[p] or p].append(float(np.mean(cs)))
    macro, macro_ci = macro_bootstrap(by_p)
    paradigms = {p: {"acc": float(np.mean(cs)), "ci": bootstrap_ci(cs), "n": len(cs), "group": group_of[p]}
                 for p, cs in sorted(by_p.items())}
    # phenomenon = unweighted mean of its paradigms, CI by the stratified bootstrap within the group
    groups = {}
    for g in sorted(by_g):
        members = {p: by_p[p] for p in by_p if (group_of[p] or p) == g}
        acc, ci = macro_bootstrap(members)
        groups[g] = {"acc": acc, "ci": ci, "paradigms": len(members)}
    return {"macro": {"acc": macro, "ci": macro_ci, "paradigms": len(by_p), "items": len(items)},
            "groups": groups, "paradigms": paradigms,
            "decisions": {p: "".join("1" if c else "0" for c in cs) for p, cs in by_p.items()}}


def decisions_of(summary: dict) -> dict[str, list[bool]]:
    return {p: [c == "1" for c in s] for p, s in summary["decisions"].items()}


def load_for_eval(path: str):
    from ..tokenizer import load_tokenizer
    from ..train.distill import load_model_dir

    model = load_model_dir(path)
    tok = load_tokenizer(path)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tok


def run_eval(models: list[str], suites: list[str], eval_root=None, corpus=None, paradigms=None, max_pairs=None,
             batch_size: int = 64, bf16: bool = False, ppl_max_tokens: int | None = None, seq_len: int = 128,
             names: list[str] | None = None, tree: bool = True) -> dict:
    if not suites:
        raise UserError("no suite: pass --suite blimp (repeatable): blimp, blimp_filtered, supplement, ewok, "
                        "perplexity, or a path to JSONL minimal pairs")
    names = names or [str(m) for m in models]
    loaded_suites = {s: subsample(load_suite(s, eval_root, paradigms), max_pairs) for s in suites
                     if s != "perplexity"}
    if "perplexity" in suites and not corpus:
        raise UserError("the perplexity suite needs --corpus PREPARED_CORPUS (output of `babyllama data prepare`)")
    res: dict = {"models": names, "suites": {}, "perplexity": {}, "timing": {}}
    for path, name in zip(models, names):
        model, tok = load_for_eval(path)
        scorer = Scorer(model, tok, batch_size=batch_size, bf16=bf16, tree=tree)
        for s, items in loaded_suites.items():
            t0 = time.perf_counter()
            correct, _ = scorer.score_items(items)
            res["suites"].setdefault(s, {"per_model": {}})["per_model"][name] = summarize(items, correct)
            res["timing"][f"{name}:{s}"] = time.perf_counter() - t0
        res.setdefault("layout", {})[name] = "prefix_tree" if scorer.tree_ok() else "padded"
        if "perplexity" in suites:
            from .perplexity import perplexity

            res["perplexity"][name] = perplexity(model, tok, corpus, seq_len=seq_len, max_tokens=ppl_max_tokens,
                                                 batch_size=max(1, batch_size // 2), bf16=bf16)
        del model
    if len(names) > 1:
        for s, block in res["suites"].items():
            base = decisions_of(block["per_model"][names[0]])
            block["paired"] = {n: paired_comparison(decisions_of(block["per_model"][n]), base) for n in names[1:]}
    return res


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def markdown(res: dict) -> str:
    names = res["models"]
    short = [Path(n).name or n for n in names]
    out = []
    for s, block in res["suites"].items():
        pm = block["per_model"]
        out.append(f"### {s}: accuracy (%) with 95% bootstrap CI\n")
        out.append("| phenomenon | " + " | ".join(short) + " |")
        out.append("|---|" + "---:|" * len(names))
        groups = sorted({g for n in names for g in pm[n]["groups"]})
        for g in groups:
            cells = [f"{_pct(pm[n]['groups'][g]['acc'])} {_ci(pm[n]['groups'][g]['ci'])}" if g in pm[n]["groups"]
                     else "" for n in names]
            out.append(f"| {g} | " + " | ".join(cells) + " |")
        out.append("| **macro mean** | " + " | ".join(
            f"**{_pct(pm[n]['macro']['acc'])}** {_ci(pm[n]['macro']['ci'])}" for n in names) + " |")
        out.append("")
        if block.get("paired"):
            out.append(f"Paired on the same {s} items (macro mean, percentage points):\n")
            out.append("| comparison | difference | 95% CI | p (bootstrap) | p (McNemar) |")
            out.append("|---|---:|---:|---:|---:|")
            for n, c in block["paired"].items():
                out.append(f"| {Path(n).name} - {short[0]} | {100 * c['diff']:+.2f} | "
                           f"[{100 * c['ci'][0]:+.2f}, {100 * c['ci'][1]:+.2f}] | {c['p_bootstrap']:.3g} | "
                           f"{c['p_mcnemar']:.3g} |")
            out.append("")
    if res.get("perplexity"):
        out.append("### perplexity (fixed chunks)\n")
        out.append("| model | split | CE (nats/token) | perplexity | bits/word |")
        out.append("|---|---|---:|---:|---:|")
        for n, sp in res["perplexity"].items():
            for split, r in sp.items():
                out.append(f"| {Path(n).name} | {split} | {r['ce']:.3f} | {r['ppl']:.1f} | {r['bpw']:.3f} |")
        out.append("")
    return "\n".join(out)


def run_eval_cli(a) -> int:
    import os

    eval_root = a.eval_root or (Path(os.environ["BABYLLAMA_DATA"]) / "eval" if os.environ.get("BABYLLAMA_DATA")
                                else None)
    res = run_eval(a.models, a.suite, eval_root, a.corpus, a.paradigms, a.max_pairs, a.batch_size, a.bf16,
                   tree=not a.padded)
    print(markdown(res))
    if a.json_out:
        write_json_atomic(a.json_out, res)
        print(f"wrote {a.json_out}")
    return 0


def load_results(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
