"""The report's fine-tuning section: each model's (Super)GLUE / MSGS scores and the verdict lines on them.

A verdict pairs the student with its comparator on the same fine-tuning seeds and files, per pretraining seed;
the pairs of all seeds are pooled (each (pretraining seed, fine-tuning seed) pair is one replicate) and tested
with a paired t-test (:func:`babyllama.finetuning.stats.paired`).
"""

from __future__ import annotations

from ..finetuning.markdown import METRIC_NAMES, score_cell
from ..finetuning.stats import paired, score_range
from .collect import label
from .verdicts import comparison_pairs


def _block(m: dict) -> dict | None:
    ft = m.get("finetune")
    return ft["models"][0] if ft and ft.get("models") else None


def finetune_verdicts(models: list[dict]) -> list[dict]:
    """student - teacher_i and student - baseline per task and for the macro average (paired t over replicates)."""
    out = []
    comps = comparison_pairs(models, _block)
    for name, pairs in comps.items():
        tasks = [t for t in _block(pairs[0][0])["tasks"] if all(t in _block(b)["tasks"] for _, b in pairs)]
        row = {"comparison": name, "seeds": [a["seed"] for a, _ in pairs], "tasks": {}}
        for t in [*tasks, "macro"]:
            xa, xb = [], []
            for a, b in pairs:
                ba = _block(a)["macro"] if t == "macro" else _block(a)["tasks"][t]
                bb = _block(b)["macro"] if t == "macro" else _block(b)["tasks"][t]
                xa += ba["values"]
                xb += bb["values"]
            row["tasks"][t] = paired(xa, xb, score_range(_block(pairs[0][0]), t))
        out.append(row)
    return out


def _ci(c) -> str:
    return f"[{100 * c[0]:+.1f}, {100 * c[1]:+.1f}]" if c else "[no CI: one pair]"


def finetune_section(models: list[dict]) -> tuple[list[str], list[dict]]:
    """Markdown lines of the section (empty without finetune stages) and the verdicts."""
    done = [m for m in models if _block(m)]
    if not done:
        return [], []
    first = done[0]["finetune"]
    tasks = list(_block(done[0])["tasks"])
    metric = {t: _block(done[0])["tasks"][t]["metric"] for t in tasks}
    seeds = first["seeds"]
    md = ["## Fine-tuning", "",
          f"Protocol `{first['protocol']}` ({first['precision']}); fine-tuning seeds {seeds}; scores x 100, mean "
          "over fine-tuning seeds" + (" [95% t interval]." if len(seeds) > 1 else " (one seed: no interval)."), "",
          "| model | " + " | ".join(f"{t} ({METRIC_NAMES.get(metric[t], metric[t])})" for t in tasks)
          + " | **macro** |", "|---|" + "---:|" * (len(tasks) + 1)]
    for m in done:
        b = _block(m)
        cells = [score_cell(blk) if blk else "" for blk in [b["tasks"].get(t) for t in tasks] + [b["macro"]]]
        md.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    notes = sorted({n for m in done for n in m["finetune"].get("notes", [])})
    md += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    vs = finetune_verdicts(models)
    if vs:
        md += ["Verdicts: student minus comparator, x 100, paired over (pretraining seed, fine-tuning seed), "
               "95% t interval, paired t-test p.", ""]
        for v in vs:
            parts = []
            for t, d in v["tasks"].items():
                p = "" if d["p"] is None else f", p = {d['p']:.3g}"
                parts.append(f"{t} {100 * d['diff']:+.1f} {_ci(d['ci'])}{p}")
            n = next(iter(v["tasks"].values()))["n"]
            md.append(f"- **{v['comparison']}** (seeds {','.join(map(str, v['seeds']))}; {n} pair"
                      f"{'s' if n != 1 else ''}): " + "; ".join(parts))
        md.append("")
    return md, vs
