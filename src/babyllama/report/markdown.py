"""The experiment report: ``report.md`` and PNG figures in the run directory.

Regenerate with ``babyllama report RUN_DIR`` (``babyllama run`` writes it at the end). Contents: every model's
parameters, training tokens, dev CE and zero-shot accuracies with 95% CIs, and what each was measured on (items
per suite, the dev CE's definition); the verdict lines of the papers' claim - "student - teacher_i" and "student -
baseline" on BLiMP macro accuracy and on dev CE, each with a paired-bootstrap 95% CI and p-value, pooled over seeds
(pairs stratified by seed); loss curves; BLiMP per phenomenon; (Super)GLUE / MSGS scores and verdicts with
fine-tuning stages (:mod:`.finetune`); dev CE per domain and its difference from the baseline; per-stage compute
and every model's hyperparameters (:mod:`.compute`); per-paradigm tables in an appendix; and the main tables as
CSV and LaTeX in ``tables/`` (:mod:`.tables`).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..distillation import describe_divergence
from ..errors import UserError
from ..io import require_file_path, require_folders, write_json, write_text
from ..progress import clock
from ..runinfo import git_sha
from ..runner.kinds import StageKind, register_stage_kind
from .collect import collect, label, pair_suite, ppl, suite_block
from .compute import compute_table, hyperparameter_table
from .figures import FIGURES, domain_differences, loss_curves, phenomena_bars
from .finetune import finetune_section
from .tables import Table
from .tasks2025 import section_2025
from .verdicts import verdict_lines, verdict_table, verdicts


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _acc_ci(block: dict | None) -> str:
    """``53.1 [51.9, 54.3]``: macro accuracy with its stratified-bootstrap 95% CI, in %."""
    if not block:
        return ""
    m = block["macro"]
    return f"{_pct(m['acc'])} [{_pct(m['ci'][0])}, {_pct(m['ci'][1])}]"


def paradigm_table(models: list[dict], suite: str) -> Table | None:
    """Accuracy per paradigm (rows) and model (columns), with the macro mean last."""
    cols = [m for m in models if suite_block(m, suite)]
    if not cols:
        return None
    paras = sorted({p for m in cols for p in suite_block(m, suite)["paradigms"]})
    t = Table(["paradigm", "items", *(label(m) for m in cols)], numeric=set(range(1, len(cols) + 2)))
    for p in paras:
        blocks = [suite_block(m, suite)["paradigms"].get(p) for m in cols]
        n = next(b["n"] for b in blocks if b)
        t.add(p, n, *(_pct(b["acc"]) if b else "" for b in blocks))
    t.add("**macro**", sum(suite_block(cols[0], suite)["paradigms"][p]["n"] for p in paras),
          *(f"**{_pct(suite_block(m, suite)['macro']['acc'])}**" for m in cols))
    return t


def models_table(models: list[dict], suites: list[str | None]) -> Table:
    t = Table(["model", "role", "seed", "params", "training tokens", "dev CE",
               *(f"{s} % [95% CI]" for s in suites if s)], numeric=set(range(2, 6 + len(suites))))
    for m in models:
        met, p = m["metrics"] or {}, ppl(m)
        untrained = "-" if m["role"] == "ensemble" else "not trained"  # the ensemble has no training of its own
        t.add(label(m), m["role"], m["seed"],
              f"{met['params'] / 1e6:.2f}M" if met else untrained,
              f"{met['train_tokens_seen'] / 1e6:.2f}M" if met else untrained,
              f"{p['dev']['ce']:.4f}" if p and "dev" in p else "",
              *(_acc_ci(suite_block(m, s)) for s in suites if s))
    return t


def items_lines(models: list[dict], suites: list[str | None], recipe: dict) -> list[str]:
    """What each figure of the models table was measured on: items per suite, the cap, the dev CE's chunks."""
    ev = recipe.get("eval", {})
    cap = ev.get("max_pairs")
    lines = []
    for s in suites:
        block = next((b for m in models if (b := suite_block(m, s))), None)
        if block:
            lines.append(f"- **{s}**: {block['macro']['items']:,} minimal pairs over {block['macro']['paradigms']} "
                         "paradigms" + (f" (a seeded subset of at most {cap} per paradigm)" if cap else " (all)")
                         + "; macro mean over paradigms, CI by a bootstrap stratified by paradigm ("
                         f"{block['macro'].get('resamples', ev.get('resamples', 1000))} resamples).")
    if any(m["role"] == "ensemble" and m["eval"] for m in models):
        rule = recipe["distill"]["ensemble"]
        lines.append(f"- **ensemble**: the teachers combined by the distillation's rule (`{rule}`) at T = 1 and "
                     "scored as one model; it has no training of its own.")
    pm = next((p for m in models if (p := ppl(m)) and "dev" in p), None)
    if pm:
        chunks = sum(len(d.get("chunk_ce", [])) for d in pm["dev"]["domains"].values())
        cap_t = ev.get("ppl_max_tokens")
        lines.append(f"- **dev CE** (the one used in this report, the verdicts included): mean cross-entropy in "
                     f"nats/token of the perplexity suite on the dev split, all {len(pm['dev']['domains'])} domains, "
                     f"{chunks} fixed chunks of {ev.get('ppl_seq_len', 128)} tokens"
                     + (f" (at most {cap_t:,} tokens per domain)" if cap_t else "") + ". The loss curves' held-out "
                     "loss during training is another measure (the training stages' eval slice) and is not used "
                     "here.")
    return lines


def write_report(run_dir: str | Path) -> str:
    """Write report.md, figures and tables/ exports; return the short summary (models table + verdict lines)."""
    plan, models = collect(run_dir)
    rd, recipe = plan.run_dir, plan.recipe
    for name in ("report.md", "verdicts.json", *FIGURES):  # before any of them is rewritten
        require_file_path(rd / name, "report file")
    require_folders([rd / "tables"], "report tables folder")
    if not any(m["metrics"] or m["eval"] for m in models):
        raise UserError(f"{run_dir}: no finished model stage in this run directory (report.md left as it was); "
                        "run `babyllama run RECIPE --run-dir DIR` first")
    blimp = pair_suite(models, "blimp")
    supp = pair_suite(models, "supplement")
    ewok = pair_suite(models, "ewok")
    suites = [s for s in (blimp, supp, ewok) if s]
    n_boot = recipe.get("eval", {}).get("resamples", 1000)
    main = models_table(models, suites)
    vs = verdicts(models, blimp, n_boot)
    vlines = verdict_lines(vs, blimp)
    figs = []
    if any(m["metrics"] for m in models):
        loss_curves(models, rd / FIGURES[0])
        figs.append(FIGURES[0])
    if blimp and phenomena_bars(models, blimp, rd / FIGURES[1], n_boot):
        figs.append(FIGURES[1])
    if domain_differences(models, rd / FIGURES[2], n_boot):
        figs.append(FIGURES[2])
    compute, total, elapsed = compute_table(plan)
    hparams = hyperparameter_table(models)
    exports = main.export(rd, "models") + compute.export(rd, "compute") + hparams.export(rd, "hyperparameters")
    if vs:
        exports += verdict_table(vs, blimp).export(rd, "verdicts")
    md = [f"# {recipe['name']}: ensemble distillation report", "",
          recipe.get("description", "").strip(), "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M')} by babyllama (git {git_sha()}). Distillation: "
          f"alpha={recipe['distill']['alpha']}, T={recipe['distill']['temperature']}, "
          f"divergence `{describe_divergence(recipe['distill'])}`, "
          f"reduction `{recipe['distill']['kl_reduction']}`, ensemble `{recipe['distill']['ensemble']}`; "
          f"seeds {recipe['seeds']}.", "", "## Models", "", *main.markdown(), "", *items_lines(models, suites, recipe),
          "", "## Verdict", "",
          "Differences are student minus comparator on the same items (BLiMP: percentage points of macro accuracy; "
          "dev CE: nats/token, negative = student better), paired bootstrap 95% CI and two-sided p-value; "
          "several seeds are pooled, the pairs stratified by seed.", "",
          *(vlines or ["(no distilled student evaluated yet)"]), ""]
    if FIGURES[0] in figs:
        md += ["## Loss curves", "", f"![loss curves]({FIGURES[0]})", ""]
    if FIGURES[1] in figs:
        md += ["## BLiMP per phenomenon", "", f"![BLiMP per phenomenon]({FIGURES[1]})", ""]
    t25_lines, t25_verdicts = section_2025(models, n_boot, recipe.get("eval", {}).get("eval_root"))
    md += t25_lines
    ft_lines, ft_verdicts = finetune_section(models)
    md += ft_lines
    md += perplexity_lines(models, FIGURES[2] in figs)
    span = "" if elapsed is None else (
        f"; from the first stage's start to the last one's end: {clock(elapsed)} (stages that ran side by side "
        "overlap there; the gaps between stages, and between runs of the recipe, count in full)")
    md += ["## Compute", "", *compute.markdown(), "", f"Stage wall times add up to {clock(total)}{span}.", "",
           "## Hyperparameters", "", "As resolved for each training stage (its run_info.json).", "",
           *hparams.markdown(), ""]
    appendix = [(s, t) for s in suites if (t := paradigm_table(models, s))]
    if appendix:
        md += ["## Appendix: accuracy per paradigm", ""]
        for s, t in appendix:
            exports += t.export(rd, f"paradigms_{s}")
            md += [f"### {s} (accuracy %)", "", *t.markdown(), ""]
    md += ["## Exports", "", "The tables above as CSV and LaTeX (booktabs): "
           + ", ".join(f"[{e}]({e})" for e in exports) + ".", ""]
    write_text(rd / "report.md", "\n".join(md) + "\n")
    write_json(rd / "verdicts.json", vs)
    if ft_verdicts:
        write_json(rd / "finetune_verdicts.json", ft_verdicts)
    if t25_verdicts:
        write_json(rd / "babylm2025_verdicts.json", t25_verdicts)
    ft_summary = [x for x in ft_lines if x.startswith("- **student")]
    return "\n".join(["", "## Models", *main.markdown(), "", "## Verdict", *(vlines or ["(no distilled student yet)"]),
                      *(["", "## Fine-tuning verdict", *ft_summary] if ft_summary else [])])


def perplexity_lines(models: list[dict], with_figure: bool) -> list[str]:
    ppl_models = [m for m in models if ppl(m) and "dev" in ppl(m)]
    if not ppl_models:
        return []
    doms = sorted({d for m in ppl_models for d in ppl(m)["dev"]["domains"]})
    t = Table(["domain", *(label(m) for m in ppl_models)], numeric=set(range(1, len(ppl_models) + 1)))
    for d in doms + ["all"]:
        cells = []
        for m in ppl_models:
            r = ppl(m)["dev"] if d == "all" else ppl(m)["dev"]["domains"].get(d)
            cells.append(f"{r['ce']:.3f} ({r['bpw']:.2f})" if r else "")
        t.add("**all**" if d == "all" else d, *cells)
    md = ["## Perplexity per domain (dev)", "", "Dev CE in nats/token; bits per word in brackets.", "", *t.markdown(),
          ""]
    if with_figure:
        md += [f"![dev CE per domain, difference from the baseline]({FIGURES[2]})", ""]
    return md


# the report as the runner's last stage kind: run once every stage of a run directory is done
register_stage_kind(StageKind("report", write_report, "report.md"))
