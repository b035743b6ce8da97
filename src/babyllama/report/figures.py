"""The report's PNG figures: loss curves, accuracy per phenomenon with CIs, dev CE per domain against the baseline
(matplotlib, Agg)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..eval.stats import N_BOOT, decisions_of, macro_bootstrap, paired_mean_diff
from ..io import atomic_write
from .collect import label, ppl, suite_block

FIGURES = ("loss_curves.png", "blimp_phenomena.png", "perplexity_domains.png")


def save_figure(fig, path: Path) -> None:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(models: list[dict], path: Path) -> None:
    """Training CE against the labels (a student's CE term, not its CE/KL objective) and the held-out loss measured
    during training, against training tokens; a legend on each panel."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(x for x in models if x["metrics"]):
        met, c = m["metrics"], colors[i % len(colors)]
        tps = met["train_tokens_seen"] / max(met["global_step"], 1)
        tr = [(e["step"] * tps / 1e6, e.get("ce", e.get("loss"))) for e in met["train_history"]
              if e.get("ce", e.get("loss")) is not None]
        ev = [(e["step"] * tps / 1e6, e["eval_loss"]) for e in met["eval_history"]]
        if tr:
            ax1.plot(*zip(*tr), color=c, lw=1.2, label=label(m))
        if ev:
            ax2.plot(*zip(*ev), color=c, marker="o", ms=3, lw=1.2, label=label(m))
    for ax, title in ((ax1, "training CE on the labels (students: the CE term)"),
                      (ax2, "held-out CE during training (the stages' eval slice)")):
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _role_groups(models: list[dict]) -> dict[str, list[dict]]:
    """Models grouped for figures: each teacher separately, baselines and students pooled over seeds."""
    out: dict[str, list[dict]] = {}
    for m in models:
        key = label(m) if m["role"] == "teacher" else m["role"]
        out.setdefault(key, []).append(m)
    return out


def phenomenon_accuracy(ms: list[dict], suite: str, n_boot: int = N_BOOT) -> dict[str, tuple[float, tuple]]:
    """{phenomenon: (accuracy, 95% CI)} of models pooled over seeds: the mean over (seed, paradigm) strata of the
    phenomenon, CI by the bootstrap stratified the same way (as the verdicts pool seeds)."""
    strata: dict[str, dict[str, list[bool]]] = defaultdict(dict)
    for m in ms:
        b = suite_block(m, suite)
        if not b:
            continue
        dec = decisions_of(b)
        for p, info in b["paradigms"].items():
            strata[info.get("group") or p][f"s{m['seed']}:{p}"] = dec[p]
    return {g: macro_bootstrap(st, n_boot) for g, st in sorted(strata.items())}


def phenomena_bars(models: list[dict], suite: str, path: Path, n_boot: int = N_BOOT) -> bool:
    plt = _plt()
    accs = {k: a for k, ms in _role_groups(models).items() if (a := phenomenon_accuracy(ms, suite, n_boot))}
    if not accs:
        return False
    phen = sorted({p for v in accs.values() for p in v})
    fig, ax = plt.subplots(figsize=(max(10, 0.9 * len(phen)), 5))
    w = 0.8 / len(accs)
    for i, (k, v) in enumerate(accs.items()):
        mean = np.array([100 * v[p][0] if p in v else np.nan for p in phen])
        lo = np.array([100 * v[p][1][0] if p in v else np.nan for p in phen])
        hi = np.array([100 * v[p][1][1] if p in v else np.nan for p in phen])
        ax.bar(np.arange(len(phen)) + i * w - 0.4 + w / 2, mean, w, yerr=[mean - lo, hi - mean], capsize=2,
               error_kw={"lw": 0.8}, label=k)
    ax.axhline(50, color="grey", lw=0.9, ls="--", label="chance (50%)")
    ax.set_xticks(np.arange(len(phen)))
    ax.set_xticklabels(phen, rotation=35, ha="right", fontsize=9)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{suite}: accuracy per phenomenon, 95% CIs (seeds pooled)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


def _domain_chunks(m: dict, domain: str) -> list[float] | None:
    p = ppl(m)
    if not p or "dev" not in p:
        return None
    return p["dev"]["domains"].get(domain, {}).get("chunk_ce")


def domain_differences(models: list[dict], path: Path, n_boot: int = N_BOOT) -> bool:
    """Dev CE per domain of every model minus the baseline of its seed (any baseline for a teacher trained once),
    paired per chunk and pooled over seeds, with bootstrap 95% CIs. Without a baseline (or per-chunk CEs): False."""
    plt = _plt()
    baselines = {m["seed"]: m for m in models if m["role"] == "baseline" and ppl(m)}
    if not baselines:
        return False
    doms = sorted({d for m in baselines.values() for d in ppl(m).get("dev", {}).get("domains", {})})
    rows: dict[str, dict[str, dict]] = {}
    for k, ms in _role_groups(models).items():
        if k == "baseline":
            continue
        for d in doms:
            xa, xb = [], []
            for m in ms:
                base = baselines.get(m["seed"]) or next(iter(baselines.values()))
                a, b = _domain_chunks(m, d), _domain_chunks(base, d)
                if a and b and len(a) == len(b):
                    xa += a
                    xb += b
            if xa:
                rows.setdefault(k, {})[d] = paired_mean_diff(xa, xb, n_boot)
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(max(9, 0.9 * len(doms)), 4.5))
    w = 0.8 / len(rows)
    for i, (k, v) in enumerate(rows.items()):
        mean = np.array([v[d]["diff"] if d in v else np.nan for d in doms])
        lo = np.array([v[d]["ci"][0] if d in v else np.nan for d in doms])
        hi = np.array([v[d]["ci"][1] if d in v else np.nan for d in doms])
        ax.bar(np.arange(len(doms)) + i * w - 0.4 + w / 2, mean, w, yerr=[mean - lo, hi - mean], capsize=2,
               error_kw={"lw": 0.8}, label=f"{k} - baseline")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(doms)))
    ax.set_xticklabels(doms, rotation=30, ha="right", fontsize=9)
    ax.set_ylabel("dev CE difference (nats/token)")
    ax.set_title("dev CE per domain minus the baseline's, paired per chunk, 95% CIs (below 0: better)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True
