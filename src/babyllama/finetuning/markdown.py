"""Markdown tables of `babyllama finetune` results: scores with 95% CIs per task, then paired comparisons."""

from __future__ import annotations

METRIC_NAMES = {"accuracy": "acc", "f1": "F1", "mcc": "MCC"}


def _num(x: float) -> str:
    return f"{100 * x:.1f}"


def score_cell(block: dict) -> str:
    """A mean x 100 with its interval, or the mean alone without one."""
    ci = block.get("ci")
    return f"{_num(block['mean'])} [{_num(ci[0])}, {_num(ci[1])}]" if ci else _num(block["mean"])


def _p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def markdown(res: dict) -> str:
    seeds = res["seeds"]
    one = len(seeds) == 1
    lines = [f"## Fine-tuning ({res['protocol']}, seed{'s' if not one else ''} {' '.join(map(str, seeds))}, "
             f"{res['precision']})", ""]
    if one:
        lines += ["One seed: no confidence intervals and no tests (pass --seeds 1 2 3 for them).", ""]
    else:
        lines += [f"Scores x 100, mean over {len(seeds)} seeds [95% t interval].", ""]
    names = [m["name"] for m in res["models"]]
    lines += ["| task | metric | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for t in res["tasks"]:
        blocks = [m["tasks"].get(t) for m in res["models"]]
        metric = next((b["metric"] for b in blocks if b), "")
        lines.append(f"| {t} | {METRIC_NAMES.get(metric, metric)} | "
                     + " | ".join(score_cell(b) if b else "-" for b in blocks) + " |")
    if all(m.get("macro") for m in res["models"]):
        lines.append("| **macro** | | " + " | ".join(f"**{score_cell(m['macro'])}**" for m in res["models"]) + " |")
    for c in res.get("comparisons", []):
        lines += ["", f"### {c['a']} - {c['b']} (paired, same seeds and files)", "",
                  "| task | diff x 100 | 95% CI | p (paired t) |", "|---|---:|---|---:|"]
        rows = list(c["tasks"].items()) + ([("**macro**", c["macro"])] if c.get("macro") else [])
        for t, d in rows:
            ci = f"[{_num(d['ci'][0])}, {_num(d['ci'][1])}]" if d["ci"] else "n/a"
            lines.append(f"| {t} | {100 * d['diff']:+.1f} | {ci} | {_p(d['p'])} |")
    if res.get("notes"):
        lines += [""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines)
