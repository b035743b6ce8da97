"""Statistics over fine-tuning seeds: means with t intervals, paired differences with paired t-tests.

Fine-tuning variance across seeds is the large source of noise here (the validation files are fixed), so the unit
of replication is the seed: a task's score is the mean over seeds with a 95% Student-t interval; the macro average
is computed per seed (the mean over tasks) and then summarised the same way. Two models are compared on the same
seeds and files: per-seed differences, their mean, a t interval and ``scipy.stats.ttest_rel``'s two-sided p-value.
With one seed there is no interval and no test, and the results say so (``ci`` and ``p`` are null).
"""

from __future__ import annotations

import math

import numpy as np


def t_interval(values, level: float = 0.95) -> tuple[float, float] | None:
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def metric_range(metrics) -> tuple[float, float]:
    """The values a score of these metrics (or a mean over tasks scored by them) can take: MCC [-1, 1], else [0, 1]."""
    return (-1.0, 1.0) if "mcc" in set(metrics) else (0.0, 1.0)


def score_range(model: dict, task: str) -> tuple[float, float]:
    """What a model's score on ``task`` (or ``"macro"``) can take, from its result block (``{"tasks", "macro"}``)."""
    tasks = model["macro"]["tasks"] if task == "macro" else [task]
    return metric_range(model["tasks"][t]["metric"] for t in tasks)


def difference_range(bounds: tuple[float, float]) -> tuple[float, float]:
    """The values a difference of two scores in ``bounds`` can take."""
    return bounds[0] - bounds[1], bounds[1] - bounds[0]


def _clip(ci, bounds):
    return (max(ci[0], bounds[0]), min(ci[1], bounds[1])) if ci and bounds else ci


def summarize(values, bounds: tuple[float, float] | None = None) -> dict:
    """Mean, t interval (clipped to the metric's range ``bounds`` when given), sd, n and the values."""
    x = [float(v) for v in values]
    ci = _clip(t_interval(x), bounds)
    return {"mean": float(np.mean(x)), "ci": ci, "sd": float(np.std(x, ddof=1)) if len(x) > 1 else None,
            "n": len(x), "values": x}


def paired(a, b, bounds: tuple[float, float] | None = None) -> dict:
    """A minus B over paired seeds; the interval clipped to what a difference can take when the scores' ``bounds``
    are given (two seeds give t intervals wider than that)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("paired comparison needs the same seeds for both models")
    d = x - y
    p = None
    if d.size >= 2:
        p = 1.0 if np.all(d == d[0]) and d[0] == 0 else float(stats.ttest_rel(x, y).pvalue)
        if math.isnan(p):  # every difference equal and nonzero: no spread to test against
            p = None
    ci = _clip(t_interval(d), difference_range(bounds) if bounds else None)
    return {"diff": float(d.mean()), "ci": ci, "p": p, "n": int(d.size)}
