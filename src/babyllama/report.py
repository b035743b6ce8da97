"""The experiment report: ``report.md`` and PNG figures in the run directory.

Regenerate with ``babyllama report RUN_DIR`` (``babyllama run`` writes it at the end). Contents: every model's
parameters and training tokens, dev CE and zero-shot accuracies with 95% CIs; loss curves of all models on one
figure; BLiMP accuracy per phenomenon as grouped bars; supplement and EWoK rows; perplexity per domain; and the
verdict lines of the papers' claim — "student - teacher_i" and "student - baseline" on BLiMP macro accuracy and on
dev CE, each with a paired-bootstrap 95% CI and p-value. Several seeds are pooled (pairs stratified by seed).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import UserError
from .eval.runner import decisions_of
from .eval.stats import paired_comparison, paired_mean_diff
from .runinfo import git_sha, is_complete

FIGURES = ("loss_curves.png", "blimp_phenomena.png", "perplexity_domains.png")


def _read(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def collect(run_dir: Path) -> tuple[dict, list[dict]]:
    from .pipeline import load_plan

    pl = load_plan(run_dir)
    stages = {s["name"]: s for s in pl["stages"]}
    models = []
    for s in pl["stages"]:
        if s["kind"] not in ("pretrain", "distill"):
            continue
        d = Path(s["dir"])
        ev_stage = stages.get(f"eval:{s['name']}")
        ev = _read(Path(ev_stage["dir"]) / "eval.json") if ev_stage and is_complete(ev_stage["dir"]) else None
        models.append({"name": s["name"], "role": s["role"], "seed": s["seed"], "dir": d,
                       "metrics": _read(d / "metrics.json") if is_complete(d) else None, "eval": ev})
    return pl, models


def _label(m: dict) -> str:
    return m["name"].replace("teacher:", "").replace("baseline:", "baseline ").replace("student:", "student ")


def _pair_suite(models: list[dict], prefix: str) -> str | None:
    for m in models:
        if m["eval"]:
            for s in m["eval"]["suites"]:
                if s.startswith(prefix):
                    return s
    return None


def _suite_block(m: dict, suite: str | None) -> dict | None:
    if not suite or not m["eval"] or suite not in m["eval"]["suites"]:
        return None
    return next(iter(m["eval"]["suites"][suite]["per_model"].values()))


def _ppl(m: dict) -> dict | None:
    if not m["eval"] or not m["eval"].get("perplexity"):
        return None
    return next(iter(m["eval"]["perplexity"].values()))


def _chunks(m: dict, split: str = "dev") -> list[float] | None:
    p = _ppl(m)
    if not p or split not in p:
        return None
    return [c for d in sorted(p[split]["domains"]) for c in p[split]["domains"][d].get("chunk_ce", [])]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def verdicts(models: list[dict], blimp: str | None) -> list[dict]:
    """student - teacher_i and student - baseline, on BLiMP macro accuracy and on dev CE, pooled over seeds."""
    students = [m for m in models if m["role"] == "student" and m["eval"]]
    if not students:
        return []
    teachers = [m for m in models if m["role"] == "teacher" and m["eval"]]
    baselines = {m["seed"]: m for m in models if m["role"] == "baseline" and m["eval"]}
    comps: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for st in students:
        for t in teachers:
            if t["seed"] == st["seed"] or not any(x["seed"] == st["seed"] for x in teachers):
                comps[f"student - {_label(t).split(':')[0]}"].append((st, t))
        if st["seed"] in baselines:
            comps["student - baseline"].append((st, baselines[st["seed"]]))
    out = []
    for name, pairs in comps.items():
        row = {"comparison": name, "seeds": [a["seed"] for a, _ in pairs]}
        a_dec, b_dec = {}, {}
        for a, b in pairs:
            sa, sb = _suite_block(a, blimp), _suite_block(b, blimp)
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
            xa, xb = _chunks(a), _chunks(b)
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


def _fig_loss(models: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(x for x in models if x["metrics"]):
        met, c = m["metrics"], colors[i % len(colors)]
        tps = met["train_tokens_seen"] / max(met["global_step"], 1)
        tr = [(e["step"] * tps / 1e6, e["loss"]) for e in met["train_history"] if "loss" in e]
        ev = [(e["step"] * tps / 1e6, e["eval_loss"]) for e in met["eval_history"]]
        if tr:
            ax1.plot(*zip(*tr), color=c, lw=1.2, label=_label(m))
        if ev:
            ax2.plot(*zip(*ev), color=c, marker="o", ms=3, lw=1.2, label=_label(m))
    for ax, title in ((ax1, "train loss (student: CE/KL mix)"), (ax2, "eval CE on dev")):
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel("loss (nats/token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _mean_groups(blocks: list[dict]) -> dict[str, float]:
    acc = defaultdict(list)
    for b in blocks:
        for g, r in b["groups"].items():
            acc[g].append(r["acc"])
    return {g: float(np.mean(v)) for g, v in acc.items()}


def _role_groups(models: list[dict]) -> dict[str, list[dict]]:
    """Models grouped for figures: each teacher separately, baselines and students pooled over seeds."""
    out: dict[str, list[dict]] = {}
    for m in models:
        key = _label(m) if m["role"] == "teacher" else m["role"]
        out.setdefault(key, []).append(m)
    return out


def _fig_blimp(models: list[dict], suite: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: [b for m in ms if (b := _suite_block(m, suite))] for k, ms in _role_groups(models).items()}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return False
    means = {k: _mean_groups(v) for k, v in groups.items()}
    phen = sorted({p for v in means.values() for p in v})
    fig, ax = plt.subplots(figsize=(max(10, 0.9 * len(phen)), 5))
    w = 0.8 / len(means)
    for i, (k, v) in enumerate(means.items()):
        ax.bar(np.arange(len(phen)) + i * w - 0.4 + w / 2, [100 * v.get(p, np.nan) for p in phen], w, label=k)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(phen)))
    ax.set_xticklabels(phen, rotation=35, ha="right", fontsize=9)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{suite}: accuracy per phenomenon (seeds averaged)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _fig_ppl(models: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: [p for m in ms if (p := _ppl(m)) and "dev" in p] for k, ms in _role_groups(models).items()}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return False
    doms = sorted({d for v in groups.values() for p in v for d in p["dev"]["domains"]})
    fig, ax = plt.subplots(figsize=(max(9, 0.9 * len(doms)), 4.5))
    w = 0.8 / len(groups)
    for i, (k, ps) in enumerate(groups.items()):
        vals = [np.mean([p["dev"]["domains"][d]["ce"] for p in ps if d in p["dev"]["domains"]]) for d in doms]
        ax.bar(np.arange(len(doms)) + i * w - 0.4 + w / 2, vals, w, label=k)
    ax.set_xticks(np.arange(len(doms)))
    ax.set_xticklabels(doms, rotation=30, ha="right", fontsize=9)
    ax.set_ylabel("dev CE (nats/token)")
    ax.set_title("dev cross-entropy per domain (lower is better)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _table_by_paradigm(models: list[dict], suite: str, title: str) -> list[str]:
    cols = [m for m in models if _suite_block(m, suite)]
    if not cols:
        return []
    paras = sorted({p for m in cols for p in _suite_block(m, suite)["paradigms"]})
    out = [f"### {title} ({suite}), accuracy %\n", "| task | " + " | ".join(_label(m) for m in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    for p in paras:
        out.append(f"| {p} | " + " | ".join(_pct(_suite_block(m, suite)["paradigms"][p]["acc"]) for m in cols) + " |")
    out.append("| **macro** | " + " | ".join(f"**{_pct(_suite_block(m, suite)['macro']['acc'])}**" for m in cols)
               + " |")
    return out + [""]


def write_report(run_dir: str | Path) -> str:
    """Write report.md and figures; return the short summary (models table + verdict lines)."""
    rd = Path(run_dir)
    pl, models = collect(rd)
    recipe = pl["recipe"]
    blimp = _pair_suite(models, "blimp")
    supp = _pair_suite(models, "supplement")
    ewok = _pair_suite(models, "ewok")
    head = ["| model | role | seed | params | training tokens | dev CE (best) | "
            f"{blimp or 'BLiMP'} macro % [95% CI] | {supp or 'supplement'} % | {ewok or 'EWoK'} % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        met = m["metrics"] or {}
        b, s, e = _suite_block(m, blimp), _suite_block(m, supp), _suite_block(m, ewok)
        head.append(
            f"| {_label(m)} | {m['role']} | {m['seed']} | "
            + (f"{met['params'] / 1e6:.2f}M | {met['train_tokens_seen'] / 1e6:.2f}M | {met['eval_loss_best']:.4f}"
               if met else "not trained | | ")
            + " | " + (f"{_pct(b['macro']['acc'])} [{_pct(b['macro']['ci'][0])}, {_pct(b['macro']['ci'][1])}]"
                       if b else "")
            + " | " + (_pct(s["macro"]["acc"]) if s else "") + " | " + (_pct(e["macro"]["acc"]) if e else "") + " |")
    vs = verdicts(models, blimp)
    vlines = verdict_lines(vs, blimp)
    figs = []
    if any(m["metrics"] for m in models):
        _fig_loss(models, rd / FIGURES[0])
        figs.append(FIGURES[0])
    if blimp and _fig_blimp(models, blimp, rd / FIGURES[1]):
        figs.append(FIGURES[1])
    if _fig_ppl(models, rd / FIGURES[2]):
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
    for suite, title in ((supp, "Supplement"), (ewok, "EWoK")):
        if suite:
            md += _table_by_paradigm(models, suite, title)
    ppl_models = [m for m in models if _ppl(m) and "dev" in _ppl(m)]
    if ppl_models:
        doms = sorted({d for m in ppl_models for d in _ppl(m)["dev"]["domains"]})
        md += ["## Perplexity per domain (dev)", "", "CE in nats/token; bits per word in brackets.", "",
               "| domain | " + " | ".join(_label(m) for m in ppl_models) + " |", "|---|" + "---:|" * len(ppl_models)]
        for d in doms + ["all"]:
            cells = []
            for m in ppl_models:
                r = _ppl(m)["dev"] if d == "all" else _ppl(m)["dev"]["domains"].get(d)
                cells.append(f"{r['ce']:.3f} ({r['bpw']:.2f})" if r else "")
            md.append(f"| {'**all**' if d == 'all' else d} | " + " | ".join(cells) + " |")
        md.append("")
        if FIGURES[2] in figs:
            md += [f"![perplexity per domain]({FIGURES[2]})", ""]
    (rd / "report.md").write_text("\n".join(md) + "\n")
    (rd / "verdicts.json").write_text(json.dumps(vs, indent=2) + "\n")
    if not models:
        raise UserError(f"{rd}: no model stages in plan.json")
    return "\n".join(["", "## Models", *head, "", "## Verdict", *(vlines or ["(no distilled student yet)"])])
