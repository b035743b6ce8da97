"""Zero-shot evaluation, in memory: one model x suites -> accuracies with CIs, perplexity; several models -> paired
comparisons. The one entry point used by `babyllama eval`, the runner's eval stages and the benchmarks.

:func:`evaluate` scores a loaded model on every suite of an :class:`~babyllama.config.EvalConfig`. Minimal-pair
suites report accuracy per paradigm (file), per phenomenon (BLiMP's ``linguistics_term``; EWoK's domain) and the
macro mean over paradigms, each with a bootstrap 95% CI. :func:`evaluate_models` loads each model directory once,
scores it, and compares every model after the first with the first on the same items (difference of macro means,
paired bootstrap CI and p-value, McNemar).
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..config import EvalConfig
from ..errors import UserError
from ..models import count_params, load_model
from ..hardware import resolve_device
from .compiled import compiled_layers, resolve_scoring_compile
from .ensemble import EnsembleSpec, load_ensemble
from .scoring import Scorer
from .stats import N_BOOT, bootstrap_ci, decisions_of, encode_decisions, macro_bootstrap, paired_comparison
from .suites import ITEM_KINDS, get_suite, load_items
from .tasks import Item


def subsample(items: list[Item], max_pairs: int | None, seed: int = 0) -> list[Item]:
    """At most ``max_pairs`` items per paradigm, the same seeded choice for every model; each paradigm draws from
    its own stream, seeded by its name."""
    if not max_pairs:
        return items
    by: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by[it.paradigm].append(it)
    out = []
    for p in sorted(by):
        its = by[p]
        if len(its) > max_pairs:
            rng = np.random.default_rng([seed, zlib.crc32(p.encode("utf-8"))])
            keep = np.sort(rng.choice(len(its), max_pairs, replace=False))
            its = [its[i] for i in keep]
        out += its
    return out


def summarize(items: list[Item], correct: list[bool], n_boot: int = N_BOOT) -> dict:
    by_p: dict[str, list[bool]] = defaultdict(list)
    by_g: dict[str, list[bool]] = defaultdict(list)
    group_of = {}
    for it, c in zip(items, correct):
        by_p[it.paradigm].append(c)
        group_of[it.paradigm] = it.group
    for p, cs in by_p.items():
        by_g[group_of[p] or p].append(float(np.mean(cs)))
    macro, macro_ci = macro_bootstrap(by_p, n_boot)
    paradigms = {p: {"acc": float(np.mean(cs)), "ci": bootstrap_ci(cs, n_boot), "n": len(cs), "group": group_of[p]}
                 for p, cs in sorted(by_p.items())}
    # phenomenon = unweighted mean of its paradigms, CI by the stratified bootstrap within the group
    groups = {}
    for g in sorted(by_g):
        members = {p: by_p[p] for p in by_p if (group_of[p] or p) == g}
        acc, ci = macro_bootstrap(members, n_boot)
        groups[g] = {"acc": acc, "ci": ci, "paradigms": len(members)}
    return {"macro": {"acc": macro, "ci": macro_ci, "paradigms": len(by_p), "items": len(items),
                      "resamples": n_boot},
            "groups": groups, "paradigms": paradigms,
            "decisions": encode_decisions(by_p)}


def load_for_eval(path, device: str | None = None):
    """(model, tokenizer) on the device: a model directory or hub id, or an :class:`EnsembleSpec`."""
    from ..models import resolve_model_path
    from ..tokenizer import load_tokenizer

    device = resolve_device(device)
    if isinstance(path, EnsembleSpec):
        return load_ensemble(path, device)

    path = resolve_model_path(path)
    model = load_model(path)
    tok = load_tokenizer(path)
    return model.to(device), tok


def pair_suites(config: EvalConfig) -> list[str]:
    return [s for s in config.suites if get_suite(s).kind == "pairs"]


def item_suites(config: EvalConfig) -> list[str]:
    """The suites of ``config`` with data files (all but perplexity)."""
    return [s for s in config.suites if get_suite(s).kind in ITEM_KINDS]


def load_suites(config: EvalConfig) -> dict[str, list]:
    """The items of every suite of ``config`` with data files (validated before any model runs); minimal pairs and
    entity tracking subsampled per paradigm as ``max_pairs`` says (wug and reading are scored whole: a rank
    correlation and regressions over every item)."""
    out = {}
    for s in item_suites(config):
        items = load_items(s, config.eval_root, config.paradigms)
        out[s] = subsample(items, config.max_pairs) if get_suite(s).kind in ("pairs", "entity_tracking") else items
    return out


def options_of(items) -> int:
    """Sentences an item suite scores: every choice of every item (a reading item: its one text)."""
    return sum(len(getattr(it, "choices", None) or getattr(it, "sentences", None) or (0,)) for it in items)


def score_suite(scorer: Scorer, name: str, items, config: EvalConfig) -> dict:
    """One suite's summary (the kinds: :mod:`.suites`)."""
    kind = get_suite(name).kind
    if kind == "pairs":
        correct, _ = scorer.score_items(items)
        return summarize(items, correct, config.resamples)
    if kind == "reading":
        from .reading import reading_summary, surprisals

        pred, prev = surprisals(scorer, items)
        return reading_summary(items, pred, prev, config.resamples)
    from .choice_suites import score_choice_suite

    return score_choice_suite(scorer, kind, items, config)


def compare_suite(name: str, items, a: dict, b: dict, n_boot: int) -> dict:
    """Model a - model b on one suite's items (paired)."""
    kind = get_suite(name).kind
    if kind == "pairs":
        return paired_comparison(decisions_of(a), decisions_of(b), n_boot)
    if kind == "reading":
        from .reading import compare_reading

        return compare_reading(items, a, b, n_boot)
    from .choice_suites import compare_choice

    return compare_choice(kind, a, b, n_boot)


def needs_corpus(config: EvalConfig, corpus: str | Path | None) -> bool:
    """Whether the suites include perplexity; one clear line when they do and no corpus is given."""
    wants = any(get_suite(s).kind == "perplexity" for s in config.suites)
    if wants and not corpus:
        raise UserError("the perplexity suite needs --corpus PREPARED_CORPUS (output of `babyllama data prepare`)")
    return wants


def evaluate(model, tokenizer, config: EvalConfig, corpus: str | Path | None = None,
             suites: dict[str, list[Item]] | None = None, keep_chunks: bool = False) -> dict:
    """Score one loaded model: ``{"suites": {name: summary}, "perplexity": {split: ...} | None, "timing",
    "layout"}``. ``suites`` passes items loaded already (several models, one load)."""
    wants_ppl = needs_corpus(config, corpus)
    suites = load_suites(config) if suites is None else suites
    from ..hardware import resolve_eval_precision

    precision = resolve_eval_precision(config.precision, str(next(model.parameters()).device))
    scorer = Scorer(model, tokenizer, batch_size=config.batch_size, bf16=precision == "bf16",
                    exact_bf16=precision == "exact_bf16", tree=config.layout == "prefix_tree")
    out: dict = {"suites": {}, "perplexity": None, "timing": {}, "rescored_near_ties": {}, "precision": precision}
    if precision == "exact_bf16":
        out["ranked_again_in_fp32"] = {}
    compile_ = resolve_scoring_compile(config.compile, scorer.device.type, count_params(model),
                                       sum(options_of(items) for items in suites.values()))
    with compiled_layers(model, compile_) as compiled:
        for s, items in suites.items():
            t0 = time.perf_counter()
            scorer.rescored = scorer.rescored_bf16 = 0
            out["suites"][s] = score_suite(scorer, s, items, config)
            out["timing"][s] = time.perf_counter() - t0
            out["rescored_near_ties"][s] = scorer.rescored
            if precision == "exact_bf16":
                out["ranked_again_in_fp32"][s] = scorer.rescored_bf16
    out["compiled"] = compiled
    out["layout"] = "prefix_tree" if scorer.tree_ok() else "padded"
    out["device"] = str(scorer.device)
    if wants_ppl:
        from .perplexity import perplexity

        t0 = time.perf_counter()
        out["perplexity"] = perplexity(model, tokenizer, corpus, seq_len=config.ppl_seq_len,
                                       max_tokens=config.ppl_max_tokens, batch_size=max(1, config.batch_size // 2),
                                       bf16=precision == "bf16", keep_chunks=keep_chunks)
        out["timing"]["perplexity"] = time.perf_counter() - t0
    return out


def evaluate_models(models: list, config: EvalConfig, corpus: str | Path | None = None,
                    names: list[str] | None = None, device: str | None = None) -> dict:
    """Load and score each model (a directory, or an :class:`~.ensemble.EnsembleSpec`); with two or more, paired
    comparisons against the first."""
    if not config.suites:
        raise UserError("no suite: pass --suite NAME (repeatable); see `babyllama eval --help` for the names")
    names = names or [m.label if isinstance(m, EnsembleSpec) else str(m) for m in models]
    needs_corpus(config, corpus)  # before any model is loaded
    suites = load_suites(config)
    res: dict = {"models": names, "config": config.model_dump(mode="json"), "suites": {}, "perplexity": {},
                 "timing": {}, "layout": {}}
    for path, name in zip(models, names):
        model, tok = load_for_eval(path, device or config.device)
        one = evaluate(model, tok, config, corpus, suites)
        for s, summary in one["suites"].items():
            res["suites"].setdefault(s, {"per_model": {}})["per_model"][name] = summary
            res["timing"][f"{name}:{s}"] = one["timing"][s]
        if one["perplexity"] is not None:
            res["perplexity"][name] = one["perplexity"]
        res["layout"][name] = one["layout"]
        del model
    if len(names) > 1:
        for s, block in res["suites"].items():
            base = block["per_model"][names[0]]
            block["paired"] = {n: compare_suite(s, suites[s], block["per_model"][n], base, config.resamples)
                               for n in names[1:]}
    return res
