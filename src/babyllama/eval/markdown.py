"""The markdown tables `babyllama eval` prints: per-phenomenon accuracy with CIs, paired comparisons, perplexity."""

from __future__ import annotations

from pathlib import Path

from .stats import format_p


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
