"""The papers' claim as verdict lines: student - teacher_i and student - baseline, on BLiMP macro accuracy (paired
bootstrap CI, p-value, McNemar) and on dev CE per chunk, pooled over seeds (pairs stratified by seed)."""

from __future__ import annotations

from collections import defaultdict

from ..eval.evaluate import decisions_of
from ..eval.stats import paired_comparison, paired_mean_diff
from .collect import dev_chunks, label, suite_block


def comparison_pairs(models: list[dict], has) -> dict[str, list[tuple[dict, dict]]]:
    """{"student - <teacher>" / "student - baseline": [(student, comparator), ...]} over the models for which
    ``has(model)`` is true: a student is paired with the baseline of its seed and with each teacher of its seed (or
    of the one teacher set, when the teachers are not repeated per seed)."""
    students = [m for m in models if m["role"] == "student" and has(m)]
    teachers = [m for m in models if m["role"] == "teacher" and has(m)]
    baselines = {m["seed"]: m for m in models if m["role"] == "baseline" and has(m)}
    comps: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for st in students:
        for t in teachers:
            if t["seed"] == st["seed"] or not any(x["seed"] == st["seed"] for x in teachers):
                comps[f"student - {label(t).split(':')[0]}"].append((st, t))
        if st["seed"] in baselines:
            comps["student - baseline"].append((st, baselines[st["seed"]]))
    return comps


def verdicts(models: list[dict], blimp: str | None) -> list[dict]:
    """student - teacher_i and student - baseline, on BLiMP macro accuracy and on dev CE, pooled over seeds."""
    comps = comparison_pairs(models, lambda m: m["eval"])
    out = []
    for name, pairs in comps.items():
        row = {"comparison": name, "seeds": [a["seed"] for a, _ in pairs]}
        a_dec, b_dec = {}, {}
        for a, b in pairs:
            sa, sb = suite_block(a, blimp), suite_block(b, blimp)
            if sa and sb:
                for p, v in decisions_of(sa).items():
                    a_dec[f"s{a['seed']}:{p}"] = v
                for p, v in decisions_of(sb).items():
                    b_dec[f"s{a['seed']}:{p}"] = v
        if a_dec:
            # pooled over seeds: the macro mean over (seed, paradigm) strata = the mean over seeds of macro means
            row["blimp"] = paired_comparison(a_dec, b_dec)
        ca, cb = [], []
        for a, b in pairs:
            xa, xb = dev_chunks(a), dev_chunks(b)
            if xa and xb and len(xa) == len(xb):
                ca += xa
                cb += xb
        if ca:
            row["dev_ce"] = paired_mean_diff(ca, cb)
        out.append(row)
    return out


def verdict_lines(vs: list[dict], blimp: str | None) -> list[str]:
    lines = []
    for v in vs:
        parts = []
        if "blimp" in v:
            b = v["blimp"]
            parts.append(f"{blimp} macro {100 * b['diff']:+.2f} pp [{100 * b['ci'][0]:+.2f}, {100 * b['ci'][1]:+.2f}]"
                         f", p = {b['p_bootstrap']:.3g} (McNemar {b['p_mcnemar']:.3g})")
        if "dev_ce" in v:
            c = v["dev_ce"]
            parts.append(f"dev CE {c['diff']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}], p = {c['p_bootstrap']:.3g}")
        seeds = ",".join(str(s) for s in v["seeds"])
        lines.append(f"- **{v['comparison']}** (seeds {seeds}): " + "; ".join(parts))
    return lines
