"""The report's PNG figures: loss curves, accuracy per phenomenon, dev CE per domain (matplotlib, Agg)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..io import atomic_write
from .collect import label, ppl, suite_block

FIGURES = ("loss_curves.png", "blimp_phenomena.png", "perplexity_domains.png")


def save_figure(fig, path: Path) -> None:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def loss_curves(models: list[dict], path: Path) -> None:
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
            ax1.plot(*zip(*tr), color=c, lw=1.2, label=label(m))
        if ev:
            ax2.plot(*zip(*ev), color=c, marker="o", ms=3, lw=1.2, label=label(m))
    for ax, title in ((ax1, "train loss (student: CE/KL mix)"), (ax2, "eval CE on dev")):
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel("loss (nats/token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)
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
        key = label(m) if m["role"] == "teacher" else m["role"]
        out.setdefault(key, []).append(m)
    return out


def phenomena_bars(models: list[dict], suite: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: [b for m in ms if (b := suite_block(m, suite))] for k, ms in _role_groups(models).items()}
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
    save_figure(fig, path)
    plt.close(fig)
    return True


def domain_bars(models: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: [p for m in ms if (p := ppl(m)) and "dev" in p] for k, ms in _role_groups(models).items()}
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
    save_figure(fig, path)
    plt.close(fig)
    return True
