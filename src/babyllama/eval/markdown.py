"""The markdown tables `babyllama eval` prints: per-phenomenon accuracy with CIs, paired comparisons, perplexity."""

from __future__ import annotations

from pathlib import Path

from .stats import format_p


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def score_lines(s: str, block: dict, names: list[str], short: list[str]) -> list[str]:
    """The non-accuracy suites: wug's Spearman rho, reading's two figures (gain in explained variance, %), each
    with its 95% bootstrap CI, and the paired differences against the first model."""
    pm = block["per_model"]
    first = pm[names[0]]
    if "figures" in first:  # reading
        rows = [(k.replace("_", " ") + " score (%)", lambda m, k=k: m["figures"][k]) for k in first["figures"]]
    else:
        rows = [("Spearman rho with the human ratios", lambda m: {"value": m["macro"]["acc"], "ci": m["macro"]["ci"]})]
    out = [f"### {s}\n", "| figure | " + " | ".join(short) + " |", "|---|" + "---:|" * len(names)]
    for title, get in rows:
        out.append(f"| {title} | " + " | ".join(
            f"{get(pm[n])['value']:.3f} [{get(pm[n])['ci'][0]:.3f}, {get(pm[n])['ci'][1]:.3f}]" for n in names)
            + " |")
    out.append("")
    if block.get("paired"):
        out += [f"Paired on the same {s} items:\n", "| comparison | figure | difference | 95% CI | p (bootstrap) |",
                "|---|---|---:|---:|---:|"]
        for n, c in block["paired"].items():
            parts = c.items() if "diff" not in c else [("rho", c)]
            for fig, d in parts:
                out.append(f"| {Path(n).name} - {short[0]} | {fig} | {d['diff']:+.3f} | "
                           f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] | "
                           f"{format_p(d['p_bootstrap'], d.get('resamples')).removeprefix('p = ')} |")
        out.append("")
    return out


def markdown(res: dict) -> str:
    names = res["models"]
    short = [Path(n).name or n for n in names]
    out = []
    for s, block in res["suites"].items():
        pm = block["per_model"]
        if pm[names[0]]["macro"].get("metric", "accuracy") != "accuracy":
            out += score_lines(s, block, names, short)
            continue
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
                           f"[{100 * c['ci'][0]:+.2f}, {100 * c['ci'][1]:+.2f}] | "
                           f"{format_p(c['p_bootstrap'], c.get('resamples')).removeprefix('p = ')} | "
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


def headline(summary: dict) -> tuple[float, tuple[float, float], str]:
    """(value, CI, unit) of a suite's headline figure as printed: accuracy in %, Spearman's rho as it is, the
    reading task's eye-tracking score in % of the explainable variance."""
    m = summary["macro"]
    metric = m.get("metric", "accuracy")
    scale = 100 if metric == "accuracy" else 1
    unit = {"accuracy": "%", "spearman": " rho"}.get(metric, f" ({metric}, %)")
    return scale * m["acc"], (scale * m["ci"][0], scale * m["ci"][1]), unit


def headline_text(summary: dict) -> str:
    """``53.3% [52.2, 54.4]``, ``0.412 rho [0.290, 0.520]``."""
    v, (lo, hi), unit = headline(summary)
    digits = 1 if unit == "%" else 3
    return f"{v:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"
