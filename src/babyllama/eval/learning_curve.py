"""`babyllama eval OUTPUT_DIR --all-checkpoints`: every words-* checkpoint of a training run scored, as a
learning curve (``learning_curve.json``, ``learning_curve.md`` and ``learning_curve.png`` in OUTPUT_DIR)."""

from __future__ import annotations

from pathlib import Path

from ..config import EvalConfig
from ..errors import UserError
from ..io import atomic_write, write_json, write_text
from ..training.words import word_checkpoints, words_label
from .evaluate import evaluate_models
from .markdown import headline
from .suites import get_suite

# the figure's accuracies and their chance levels: minimal pairs 1 in 2, entity tracking 1 in 5 (every item of the
# pipeline's files has five options); wug's rho and reading's score have no chance line and stay in the table
CHANCE = {"pairs": 50.0, "entity_tracking": 20.0}


def learning_curve(run: str | Path, config: EvalConfig, corpus: str | Path | None = None,
                   device: str | None = None) -> tuple[str, dict]:
    """Score each words-* checkpoint; write the table, JSON and figure; return the markdown table and the JSON."""
    run = Path(run)
    points = word_checkpoints(run)
    if not points:
        raise UserError(f"{run}: no words-* checkpoints; train with training.save_at_words: [...] first")
    res = evaluate_models([d for _, d in points], config, corpus, names=[d.name for _, d in points], device=device)
    rows = []
    for target, d in points:
        row = {"words": target, "checkpoint": d.name}
        for suite, block in res["suites"].items():
            row[suite] = headline(block["per_model"][d.name])[0]  # accuracy in %, rho, the reading score in %
        if d.name in res["perplexity"] and "dev" in res["perplexity"][d.name]:
            row["dev_ppl"] = res["perplexity"][d.name]["dev"]["ppl"]
        rows.append(row)
    cols = [c for c in rows[0] if c not in ("words", "checkpoint")]
    units = {s: headline(b["per_model"][points[0][1].name])[2] for s, b in res["suites"].items()}
    table = ["| words | " + " | ".join(f"{c} ({units[c].strip(' ()')})" if c in units and units[c] != "%" else c
                                      for c in cols) + " |", "|---:|" + "---:|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.1f}" if units.get(c) == "%" else f"{r[c]:.3f}" if c in units else f"{r[c]:.2f}"
                 for c in cols]
        table.append(f"| {words_label(r['words'])} | " + " | ".join(cells) + " |")
    md = "\n".join(table)
    curve = {"points": rows, "results": res}
    write_json(run / "learning_curve.json", curve)
    write_text(run / "learning_curve.md", f"# Learning curve of {run.name}\n\nMacro accuracy (%) per suite; wug: "
               f"Spearman's rho; reading: eye-tracking score (%).\n\n{md}\n")
    accuracy = [c for c in cols if units.get(c) == "%" and get_suite(c).kind in CHANCE]
    figure(rows, accuracy, run / "learning_curve.png")
    return md, curve


def chance_levels(suites: list[str]) -> list[float]:
    """The chance accuracies (%) of the figure's suites, one dashed line each."""
    return sorted({CHANCE[get_suite(s).kind] for s in suites})


def figure(rows: list[dict], suites: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    words = [r["words"] for r in rows]
    for s in suites:
        ax.plot(words, [r[s] for r in rows], marker="o", label=s)
    for chance in chance_levels(suites):
        ax.axhline(chance, color="grey", lw=0.8, ls="--", label=f"chance ({chance:.0f}%)")
    ax.set_xscale("log")
    ax.set_xlabel("training words seen")
    ax.set_ylabel("macro accuracy (%)")
    ax.set_title("learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
