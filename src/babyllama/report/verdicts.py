"""The papers' claim as verdict lines: student - teacher_i and student - baseline, on BLiMP macro accuracy (paired
bootstrap CI, p-value, McNemar) and on dev CE per chunk, pooled over seeds (pairs stratified by seed)."""

from __future__ import annotations

from collections import defaultdict

from ..eval.stats import N_BOOT, decisions_of, format_p, paired_comparison, paired_mean_diff
from .collect import dev_chunks, label, suite_block
from .tables import Table


def comparison_pairs(models: list[dict], has) -> dict[str, list[tuple[dict, dict]]]:
    """{"student - <teacher>" / "student - ensemble" / "student - baseline": [(student, comparator), ...]} over the
    models for which ``has(model)`` is true: a student is paired with the baseline of its seed and with each teacher
    and the teachers' ensemble of its seed (or of the one teacher set, when the teachers are not repeated per
    seed)."""
    students = [m for m in models if m["role"] == "student" and has(m)]
    teachers = [m for m in models if m["role"] in ("teacher", "ensemble") and has(m)]
    baselines = {m["seed"]: m for m in models if m["role"] == "baseline" and has(m)}
    comps: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for st in students:
        for t in teachers:
            if t["seed"] == st["seed"] or not any(x["seed"] == st["seed"] for x in teachers):
                comps[f"student - {label(t).split(':')[0]}"].append((st, t))
        if st["seed"] in baselines:
            comps["student - baseline"].append((st, baselines[st["seed"]]))
    return comps


def verdicts(models: list[dict], blimp: str | None, n_boot: int = N_BOOT) -> list[dict]:
    """student - teacher_i and student - baseline, on BLiMP macro accuracy and on dev CE, pooled over seeds, and
    each seed's own difference; ``n_boot`` bootstrap resamples for each CI and p-value."""
    comps = comparison_pairs(models, lambda m: m["eval"])
    return [paired_verdict(name, pairs, blimp, n_boot) for name, pairs in comps.items()]


def paired_verdict(name: str, pairs: list[tuple[dict, dict]], blimp: str | None, n_boot: int = N_BOOT) -> dict:
    """One verdict row: model a - model b over ``pairs`` of evaluated models (one pair per seed), on BLiMP macro
    accuracy (paired over items, strata = seed x paradigm) and dev CE (paired over chunks), pooled, with each
    pair's own difference."""
    row = {"comparison": name, "seeds": [a["seed"] for a, _ in pairs], "per_seed": []}
    a_dec, b_dec, ca, cb = {}, {}, [], []
    for a, b in pairs:
        one = {"seed": a["seed"]}
        sa, sb = suite_block(a, blimp), suite_block(b, blimp)
        if sa and sb:
            for p, v in decisions_of(sa).items():
                a_dec[f"s{a['seed']}:{p}"] = v
            for p, v in decisions_of(sb).items():
                b_dec[f"s{a['seed']}:{p}"] = v
            one["blimp"] = sa["macro"]["acc"] - sb["macro"]["acc"]
        xa, xb = dev_chunks(a), dev_chunks(b)
        if xa and xb and len(xa) == len(xb):
            ca += xa
            cb += xb
            one["dev_ce"] = sum(xa) / len(xa) - sum(xb) / len(xb)
        row["per_seed"].append(one)
    if a_dec:
        # pooled over seeds: the macro mean over (seed, paradigm) strata = the mean over seeds of macro means
        row["blimp"] = paired_comparison(a_dec, b_dec, n_boot)
    if ca:
        row["dev_ce"] = paired_mean_diff(ca, cb, n_boot)
    return row


def difference_text(d: dict, key: str, unit: str = "") -> str:
    """A paired difference as the verdicts print it: BLiMP (``key`` blimp) in percentage points to 2 decimals, dev CE
    in nats to 4, then the CI and the bootstrap p-value (``+1.26 pp [+0.79, +1.74], p <= 0.002 (B = 1000)``)."""
    scale, fmt = (100, "+.2f") if key == "blimp" else (1, "+.4f")
    return (f"{scale * d['diff']:{fmt}}{unit} [{scale * d['ci'][0]:{fmt}}, {scale * d['ci'][1]:{fmt}}], "
            f"{format_p(d['p_bootstrap'], d.get('resamples'))}")


def verdict_lines(vs: list[dict], blimp: str | None) -> list[str]:
    lines = []
    for v in vs:
        parts = []
        if "blimp" in v:
            b = v["blimp"]
            parts.append(f"{blimp} macro {difference_text(b, 'blimp', ' pp')} (McNemar exact p = "
                         f"{b['p_mcnemar']:.3g}, {b['only_a_right']} vs {b['only_b_right']} discordant items)")
        if "dev_ce" in v:
            parts.append(f"dev CE {difference_text(v['dev_ce'], 'dev_ce')}")
        seeds = sorted(set(v["seeds"]))
        who = (f"one seed ({seeds[0]}): the CIs cover item sampling only, not a second training run"
               if len(seeds) == 1 else f"{len(seeds)} seeds ({','.join(map(str, seeds))}) pooled")
        per_seed = v.get("per_seed", [])
        if len(seeds) > 1 and per_seed:
            # the pooled CIs resample items within these training runs; the per-seed differences show how much
            # another run moves the result
            spread = []
            if all("blimp" in x for x in per_seed):
                spread.append(f"{blimp} " + " / ".join(f"{100 * x['blimp']:+.2f}" for x in per_seed) + " pp")
            if all("dev_ce" in x for x in per_seed):
                spread.append("dev CE " + " / ".join(f"{x['dev_ce']:+.4f}" for x in per_seed))
            if spread:
                parts.append("per seed (" + ", ".join(f"s{x['seed']}" for x in per_seed) + "): "
                             + ", ".join(spread))
        lines.append(f"- **{v['comparison']}** ({who}): " + "; ".join(parts))
    return lines


def verdict_table(vs: list[dict], blimp: str | None) -> Table:
    """The verdicts as one table (for the CSV and LaTeX exports)."""
    t = Table(["comparison", "seeds", f"{blimp or 'BLiMP'} diff (pp)", "95% CI", "p (bootstrap)", "p (McNemar)",
               "dev CE diff", "95% CI", "p (bootstrap)"], numeric={2, 4, 5, 6, 8})
    for v in vs:
        b, c = v.get("blimp"), v.get("dev_ce")
        t.add(v["comparison"], ",".join(map(str, sorted(set(v["seeds"])))),
              f"{100 * b['diff']:+.2f}" if b else "",
              f"[{100 * b['ci'][0]:+.2f}, {100 * b['ci'][1]:+.2f}]" if b else "",
              format_p(b["p_bootstrap"], b.get("resamples")).removeprefix("p = ") if b else "",
              f"{b['p_mcnemar']:.3g}" if b else "",
              f"{c['diff']:+.4f}" if c else "", f"[{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]" if c else "",
              format_p(c["p_bootstrap"], c.get("resamples")).removeprefix("p = ") if c else "")
    return t
