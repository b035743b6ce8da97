"""Scoring, summaries and paired comparisons of the BabyLM 2025 completion-ranking suites (entity tracking, wug).

* **entity tracking**: accuracy per UID (``<split>_<numops>_ops``) and per split, with bootstrap CIs; the macro is
  the pipeline's (``process_results``): the mean over the splits present of each split's mean over its UIDs, so
  each UID weighs ``1 / (splits x UIDs of its split)`` in the macro, its CI and the paired comparison;
* **wug adjective nominalization**: the model's probability of the first (-ity) form, the softmax of the two
  sentences' summed log-probabilities, against the human ratio: Spearman's rho (scipy), the pipeline's metric,
  with a percentile bootstrap CI over items (``scipy.stats.bootstrap``).

With a temperature scan (``EvalConfig.temperature_max``) every temperature is scored and the summary is the best
one's, as the pipeline reports it; ``temperature`` records the grid's scores and the chosen value.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .stats import N_BOOT, bootstrap_ci, bootstrap_p, encode_decisions, macro_bootstrap, paired_comparison
from .tasks2025 import ChoiceItem


def entity_weights(items: list[ChoiceItem]) -> dict[str, float]:
    uids_of: dict[str, set[str]] = defaultdict(set)
    for it in items:
        uids_of[it.group].add(it.paradigm)
    return {u: 1 / (len(uids_of) * len(us)) for us in uids_of.values() for u in us}


def entity_summary(items: list[ChoiceItem], correct, n_boot: int = N_BOOT) -> dict:
    by_p: dict[str, list[bool]] = defaultdict(list)
    group_of = {}
    for it, c in zip(items, correct):
        by_p[it.paradigm].append(bool(c))
        group_of[it.paradigm] = it.group
    weights = entity_weights(items)
    macro, ci = macro_bootstrap(by_p, n_boot, weights=weights)
    groups = {}
    for g in sorted(set(group_of.values())):
        members = {p: by_p[p] for p in by_p if group_of[p] == g}
        acc, gci = macro_bootstrap(members, n_boot)
        groups[g] = {"acc": acc, "ci": gci, "paradigms": len(members)}
    return {"macro": {"acc": macro, "ci": ci, "paradigms": len(by_p), "items": len(items), "resamples": n_boot,
                      "metric": "accuracy", "rule": "mean over splits of the mean over their UIDs"},
            "groups": groups,
            "paradigms": {p: {"acc": float(np.mean(cs)), "ci": bootstrap_ci(cs, n_boot), "n": len(cs),
                              "group": group_of[p]} for p, cs in sorted(by_p.items())},
            "weights": weights, "decisions": encode_decisions(by_p)}


def wug_ratios(lp: np.ndarray) -> np.ndarray:
    """P(first form) = softmax of the two summed log-probabilities, in float32 as the pipeline computes it."""
    import torch

    return torch.softmax(torch.from_numpy(lp[:, :2]).float(), dim=1)[:, 0].double().numpy()


def _rho(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y)[0])


def _bootstrap(statistic, data: tuple, n_boot: int, seed: int = 0):
    """Percentile bootstrap over items (rows resampled jointly) of ``statistic(*data)``: (CI, replicates)."""
    from scipy.stats import bootstrap

    res = bootstrap(data, statistic, paired=True, vectorized=False, n_resamples=n_boot, method="percentile",
                    random_state=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high)), res.bootstrap_distribution


def wug_summary(items: list[ChoiceItem], lp: np.ndarray, n_boot: int = N_BOOT) -> dict:
    model = wug_ratios(lp)
    human = np.array([it.ratio for it in items], dtype=np.float64)
    ci, _ = _bootstrap(_rho, (model, human), n_boot)
    return {"macro": {"acc": _rho(model, human), "ci": ci, "paradigms": 1, "items": len(items),
                      "resamples": n_boot, "metric": "spearman"},
            "model_ratios": model.tolist(), "human_ratios": human.tolist(),
            "predictions": lp[:, :2].argmax(axis=1).tolist()}


KINDS = ("entity_tracking", "wug")


def score_choice_suite(scorer, kind: str, items: list[ChoiceItem], config) -> dict:
    """Score ``items`` at each temperature of the config's grid and summarize the best (the pipeline's choice:
    the first temperature with the highest macro)."""
    from .completion import choice_logprobs, choice_requests, chosen, decisions, temperatures

    grid = temperatures(config.temperature_min, config.temperature_max, config.temperature_interval)
    requests = choice_requests(scorer, items)
    best, best_score, scan = None, -np.inf, {}
    for t in grid:
        lp = choice_logprobs(scorer, requests, t, ranking=kind == "entity_tracking")  # wug's rho needs values
        if kind == "wug":
            summary = wug_summary(items, lp, config.resamples)
        else:
            summary = entity_summary(items, decisions(lp, config.tie_rule), config.resamples)
            summary["predictions"] = chosen(lp).tolist()
            summary["macro"]["tie_rule"] = config.tie_rule
        summary["macro"]["truncated"] = requests.truncated
        score = summary["macro"]["acc"]
        scan[f"{t:.6g}"] = score
        if score > best_score:  # strict, as the pipeline: the first best temperature stays
            best, best_score = summary, score
            best["temperature"] = {"chosen": t}
    if best is None:  # every score was NaN (a constant model ratio): report the first temperature's
        best = summary
        best["temperature"] = {"chosen": grid[0]}
    best["temperature"]["scan"] = scan if len(grid) > 1 else None
    return best


def wug_differences(pairs: list[tuple[dict, dict]], n_boot: int = N_BOOT) -> dict:
    """rho(a) - rho(b) over pairs of wug summaries (one pair per seed): the mean of the pairs' differences, its CI
    from the mean of their bootstrap replicates (items resampled within each pair, a stratified bootstrap)."""
    diffs, reps = [], []
    for a, b in pairs:
        h = np.asarray(a["human_ratios"])
        xa, xb = np.asarray(a["model_ratios"]), np.asarray(b["model_ratios"])
        if xa.size != xb.size:
            raise ValueError("wug: the two models were scored on different items")
        diffs.append(_rho(xa, h) - _rho(xb, h))
        reps.append(_bootstrap(lambda x, y, z: _rho(x, z) - _rho(y, z), (xa, xb, h), n_boot, len(reps))[1])
    r = np.mean(reps, axis=0)
    return {"diff": float(np.mean(diffs)), "ci": (float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))),
            "p_bootstrap": bootstrap_p(r), "resamples": n_boot, "items": len(pairs[0][0]["model_ratios"])}


def compare_choice(kind: str, a: dict, b: dict, n_boot: int = N_BOOT) -> dict:
    """Model a - model b on the same items: the macro difference with a paired bootstrap CI and p-value."""
    if kind == "wug":
        return wug_differences([(a, b)], n_boot)
    from .stats import decisions_of

    return paired_comparison(decisions_of(a), decisions_of(b), n_boot, weights=a.get("weights"))
