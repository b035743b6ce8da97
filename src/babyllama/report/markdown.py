"""The experiment report: ``report.md`` and PNG figures in the run directory.

Regenerate with ``babyllama report RUN_DIR`` (``babyllama run`` writes it at the end). Contents: every model's
parameters and training tokens, dev CE and zero-shot accuracies with 95% CIs; loss curves of all models on one
figure; BLiMP accuracy per phenomenon as grouped bars; supplement and EWoK rows; perplexity per domain; and the
verdict lines of the papers' claim — "student - teacher_i" and "student - baseline" on BLiMP macro accuracy and on
dev CE, each with a paired-bootstrap 95% CI and p-value. Several seeds are pooled (pairs stratified by seed).
With fine-tuning stages, a section of (Super)GLUE / MSGS scores and their verdict lines (:mod:`.finetune`).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import UserError
from ..io import write_json, write_text
from ..runinfo import git_sha
from .collect import collect, label, pair_suite, ppl, suite_block
from .figures import FIGURES, domain_bars, loss_curves, phenomena_bars
from .finetune import finetune_section
from .verdicts import verdict_lines, verdicts


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _table_by_paradigm(models: list[dict], suite: str, title: str) -> list[str]:
    cols = [m for m in models if suite_block(m, suite)]
    if not cols:
        return []
    paras = sorted({p for m in cols for p in suite_block(m, suite)["paradigms"]})
    out = [f"### {title} ({suite}), accuracy %\n", "| task | " + " | ".join(label(m) for m in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    for p in paras:
        out.append(f"| {p} | " + " | ".join(_pct(suite_block(m, suite)["paradigms"][p]["acc"]) for m in cols) + " |")
    out.append("| **macro** | " + " | ".join(f"**{_pct(suite_block(m, suite)['macro']['acc'])}**" for m in cols)
               + " |")
    return out + [""]


def write_report(run_dir: str | Path) -> str:
    """Write report.md and figures; return the short summary (models table + verdict lines)."""
    plan, models = collect(run_dir)
    rd, recipe = plan.run_dir, plan.recipe
    if not any(m["metrics"] or m["eval"] for m in models):
        raise UserError(f"{run_dir}: no finished model stage in this run directory (report.md left as it was); "
                        "run `babyllama run RECIPE --run-dir DIR` first")
    blimp = pair_suite(models, "blimp")
    supp = pair_suite(models, "supplement")
    ewok = pair_suite(models, "ewok")
    head = ["| model | role | seed | params | training tokens | dev CE (best) | "
            f"{blimp or 'BLiMP'} macro % [95% CI] | {supp or 'supplement'} % | {ewok or 'EWoK'} % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        met = m["metrics"] or {}
        b, s, e = suite_block(m, blimp), suite_block(m, supp), suite_block(m, ewok)
        head.append(
            f"| {label(m)} | {m['role']} | {m['seed']} | "
            + (f"{met['params'] / 1e6:.2f}M | {met['train_tokens_seen'] / 1e6:.2f}M | {met['eval_loss_best']:.4f}"
               if met else "not trained | | ")
            + " | " + (f"{_pct(b['macro']['acc'])} [{_pct(b['macro']['ci'][0])}, {_pct(b['macro']['ci'][1])}]"
                       if b else "")
            + " | " + (_pct(s["macro"]["acc"]) if s else "") + " | " + (_pct(e["macro"]["acc"]) if e else "") + " |")
    vs = verdicts(models, blimp)
    vlines = verdict_lines(vs, blimp)
    figs = []
    if any(m["metrics"] for m in models):
        loss_curves(models, rd / FIGURES[0])
        figs.append(FIGURES[0])
    if blimp and phenomena_bars(models, blimp, rd / FIGURES[1]):
        figs.append(FIGURES[1])
    if domain_bars(models, rd / FIGURES[2]):
        figs.append(FIGURES[2])
    md = [f"# {recipe['name']}: ensemble distillation report", "",
          recipe.get("description", "").strip(), "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M')} by babyllama (git {git_sha()}). Distillation: "
          f"alpha={recipe['distill']['alpha']}, T={recipe['distill']['temperature']}, "
          f"KL reduction `{recipe['distill']['kl_reduction']}`, ensemble `{recipe['distill']['ensemble']}`; "
          f"seeds {recipe['seeds']}.", "", "## Models", "", *head, "",
          "## Verdict", "",
          "Differences are student minus comparator on the same items (BLiMP: percentage points of macro accuracy; "
          "dev CE: nats/token, negative = student better), paired bootstrap 95% CI and two-sided p-value.", "",
          *(vlines or ["(no distilled student evaluated yet)"]), ""]
    if FIGURES[0] in figs:
        md += ["## Loss curves", "", f"![loss curves]({FIGURES[0]})", ""]
    if FIGURES[1] in figs:
        md += ["## BLiMP per phenomenon", "", f"![BLiMP per phenomenon]({FIGURES[1]})", ""]
    ft_lines, ft_verdicts = finetune_section(models)
    md += ft_lines
    for suite, title in ((supp, "Supplement"), (ewok, "EWoK")):
        if suite:
            md += _table_by_paradigm(models, suite, title)
    ppl_models = [m for m in models if ppl(m) and "dev" in ppl(m)]
    if ppl_models:
        doms = sorted({d for m in ppl_models for d in ppl(m)["dev"]["domains"]})
        md += ["## Perplexity per domain (dev)", "", "CE in nats/token; bits per word in brackets.", "",
               "| domain | " + " | ".join(label(m) for m in ppl_models) + " |", "|---|" + "---:|" * len(ppl_models)]
        for d in doms + ["all"]:
            cells = []
            for m in ppl_models:
                r = ppl(m)["dev"] if d == "all" else ppl(m)["dev"]["domains"].get(d)
                cells.append(f"{r['ce']:.3f} ({r['bpw']:.2f})" if r else "")
            md.append(f"| {'**all**' if d == 'all' else d} | " + " | ".join(cells) + " |")
        md.append("")
        if FIGURES[2] in figs:
            md += [f"![perplexity per domain]({FIGURES[2]})", ""]
    write_text(rd / "report.md", "\n".join(md) + "\n")
    write_json(rd / "verdicts.json", vs)
    if ft_verdicts:
        write_json(rd / "finetune_verdicts.json", ft_verdicts)
    ft_summary = [x for x in ft_lines if x.startswith("- **student")]
    return "\n".join(["", "## Models", *head, "", "## Verdict", *(vlines or ["(no distilled student yet)"]),
                      *(["", "## Fine-tuning verdict", *ft_summary] if ft_summary else [])])
