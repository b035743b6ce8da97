"""Confidence intervals and paired tests for accuracies over items.

* :func:`bootstrap_ci`: percentile bootstrap of a mean of 0/1 outcomes;
* :func:`macro_bootstrap`: the macro mean over paradigms (unweighted) with items resampled within each paradigm
  (stratified bootstrap), so the CI reflects item sampling, not paradigm choice;
* :func:`paired_comparison`: two models on the same items: the difference of macro means with a stratified paired
  bootstrap CI and p-value, plus McNemar's exact test on the pooled discordant pairs.

All resampling is seeded. The bootstrap p-value is two-sided with the add-one Monte Carlo correction (Davison &
Hinkley 1997, ch. 4): p = 2 (1 + k) / (B + 1), k the resamples on the far side of 0 from the observed difference.
It agrees with the percentile CI (p < 0.05 about when the 95% CI excludes 0) and is never 0: with no resample on
the far side it sits at its floor 2 / (B + 1), which :func:`format_p` prints as a bound.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 1000


def bootstrap_ci(correct, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    c = np.asarray(correct, dtype=np.float64)
    if c.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = c[rng.integers(0, c.size, size=(n_boot, c.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def _weights(keys, weights: dict[str, float] | None) -> dict[str, float]:
    """Each stratum's weight in the macro mean: the given ones (summing to 1), else equal."""
    if weights is None:
        return {k: 1 / len(keys) for k in keys}
    return {k: weights[k] for k in keys}


def _macro_replicates(groups: dict[str, np.ndarray], n_boot: int, seed: int,
                      weights: dict[str, float] | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = _weights(list(groups), weights)
    reps = np.zeros(n_boot)
    for name in sorted(groups):
        c = groups[name]
        reps += w[name] * c[rng.integers(0, c.size, size=(n_boot, c.size))].mean(axis=1)
    return reps


def macro_bootstrap(groups: dict[str, list[bool]], n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
                    weights: dict[str, float] | None = None):
    """(macro mean, (lo, hi)) over paradigms; ``weights`` per paradigm (default equal) for a macro mean over
    groups of paradigms, as the 2025 pipeline averages entity tracking."""
    g = {k: np.asarray(v, dtype=np.float64) for k, v in groups.items() if len(v)}
    w = _weights(list(g), weights)
    mean = float(sum(w[k] * v.mean() for k, v in g.items()))
    reps = _macro_replicates(g, n_boot, seed, weights)
    a = (1 - level) / 2
    return mean, (float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a)))


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (binomial test of b in b + c at 1/2), for
    every n: the chi-square approximation is not needed at these sizes and errs most where it matters."""
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5).pvalue)


def bootstrap_p(reps: np.ndarray) -> float:
    """Two-sided add-one bootstrap p-value of "the statistic is 0" from its resampled replicates."""
    far = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
    return min(1.0, 2 * (far + 1) / (reps.size + 1))


def p_floor(n_boot: int) -> float:
    return 2 / (n_boot + 1)


def format_p(p: float, n_boot: int | None = None) -> str:
    """``p = 0.0312``, or at the bootstrap's floor ``p <= 0.002 (B = 1000)``: no resample crossed 0, so the p-value
    is below the resolution of B resamples, not 0 and not exactly the floor."""
    if n_boot and p <= p_floor(n_boot) * (1 + 1e-9):
        return f"p <= {p_floor(n_boot):.2g} (B = {n_boot})"
    return f"p = {p:.3g}"


def paired_comparison(a: dict[str, list[bool]], b: dict[str, list[bool]], n_boot: int = N_BOOT, seed: int = 0,
                      level: float = 0.95, weights: dict[str, float] | None = None) -> dict:
    """Model A minus model B on the same items, per paradigm dicts of correctness lists (``weights``: as in
    :func:`macro_bootstrap`)."""
    keys = sorted(set(a) & set(b))
    w = _weights(keys, weights)
    ga = {k: np.asarray(a[k], dtype=np.float64) for k in keys}
    gb = {k: np.asarray(b[k], dtype=np.float64) for k in keys}
    for k in keys:
        if ga[k].size != gb[k].size:
            raise ValueError(f"paradigm {k}: the two models were scored on different items")
    diff = float(sum(w[k] * (ga[k].mean() - gb[k].mean()) for k in keys))
    rng = np.random.default_rng(seed)
    reps = np.zeros(n_boot)
    for k in keys:
        idx = rng.integers(0, ga[k].size, size=(n_boot, ga[k].size))
        reps += w[k] * (ga[k][idx].mean(axis=1) - gb[k][idx].mean(axis=1))
    al = (1 - level) / 2
    only_a = int(sum(((ga[k] == 1) & (gb[k] == 0)).sum() for k in keys))
    only_b = int(sum(((ga[k] == 0) & (gb[k] == 1)).sum() for k in keys))
    return {"diff": diff, "ci": (float(np.quantile(reps, al)), float(np.quantile(reps, 1 - al))),
            "p_bootstrap": bootstrap_p(reps), "resamples": n_boot, "only_a_right": only_a, "only_b_right": only_b,
            "p_mcnemar": mcnemar_p(only_a, only_b), "items": int(sum(ga[k].size for k in keys))}


def paired_mean_diff(x, y, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of x - y over paired observations (e.g. per-chunk CE of two models), bootstrap CI and p-value."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no paired observations")
    rng = np.random.default_rng(seed)
    reps = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    al = (1 - level) / 2
    return {"diff": float(d.mean()), "ci": (float(np.quantile(reps, al)), float(np.quantile(reps, 1 - al))),
            "p_bootstrap": bootstrap_p(reps), "resamples": n_boot, "n": int(d.size)}


def encode_decisions(by_paradigm: dict[str, list[bool]]) -> dict[str, str]:
    """Per-item decisions as stored in eval.json: a string of 1 (right) and 0 per paradigm, in item order."""
    return {p: "".join("1" if c else "0" for c in cs) for p, cs in by_paradigm.items()}


def decisions_of(summary: dict) -> dict[str, list[bool]]:
    """A suite summary's stored decisions back as booleans per paradigm (:func:`encode_decisions`)."""
    return {p: [c == "1" for c in s] for p, s in summary["decisions"].items()}
