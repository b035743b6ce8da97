"""`babyllama sweep report DIR`: the table of trials, the best configuration and figures, as SWEEP_DIR/report.md,
trials.csv and figures/*.png; with a final run, the best tuned model against the distilled student.

Figures: Optuna's optimisation history, parameter importances (fANOVA) and the objective over the two most important
parameters; a grid of two parameters also gets a heatmap of the objective, a grid of one a line with the CI of
each point (the CI the objective's result carries: the bootstrap CI of a BLiMP macro accuracy, ...). Parameters
drawn from the (q-)(log-)normal priors appear in Optuna's figures as their prior quantile (see
:mod:`babyllama.sweep.space`) and everywhere else as their values.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

from ..io import read_json, write_json, write_text
from .config import SweepConfig
from .space import QUANTILE_PRIORS


def _state(t) -> str:
    return t.state.name.lower()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _duration(t) -> float | None:
    return t.duration.total_seconds() if t.duration else None


def trial_rows(cfg: SweepConfig, trials) -> list[dict]:
    rows = []
    retried_by = {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}
    for t in sorted(trials, key=lambda t: t.number):
        error = t.user_attrs.get("error", "")
        if t.number in retried_by:
            error = f"{error or 'failed'}; retried as trial {retried_by[t.number]}"
        values = t.user_attrs.get("values", {})
        rows.append({"trial": t.number, "state": _state(t), "value": t.value,
                     **{k: values.get(k, t.params.get(k)) for k in cfg.space},
                     "duration_s": round(_duration(t), 1) if _duration(t) is not None else None,
                     "last_step": max(t.intermediate_values) if t.intermediate_values else None,
                     "error": error})
    return rows


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def optuna_figures(study, cfg: SweepConfig, out: Path) -> list[tuple[str, str]]:
    """(title, file name) of each of Optuna's figures that the study has enough trials for."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as ovm

    made = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib figures experimental
        if complete:
            ax = ovm.plot_optimization_history(study, target_name=cfg.objective.metric)
            _save(ax.figure, out / "history.png")
            made.append(("Optimisation history", "history.png"))
        varied = [k for k in cfg.space if len({repr(t.params.get(k)) for t in complete}) > 1]
        top = varied
        if len(complete) >= 2 and len(varied) >= 2:
            try:
                imp = optuna.importance.get_param_importances(study, params=varied)
                top = list(imp)
                ax = ovm.plot_param_importances(study, params=varied, target_name=cfg.objective.metric)
                _save(ax.figure, out / "importances.png")
                made.append(("Parameter importances (fANOVA)", "importances.png"))
            except (RuntimeError, ValueError):
                pass  # too few distinct trials for fANOVA
        if len(complete) >= 2 and len(top) >= 2:
            axes = ovm.plot_contour(study, params=top[:2], target_name=cfg.objective.metric)
            fig = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            _save(fig, out / "contour.png")
            q = [k for k in top[:2] if cfg.space[k].distribution in QUANTILE_PRIORS]
            note = f" ({', '.join(q)} as prior quantiles)" if q else ""
            made.append((f"Objective over {top[0]} and {top[1]}{note}", "contour.png"))
    return made


def grid_figure(study, cfg: SweepConfig, out: Path) -> tuple[str, str] | None:
    """Heatmap (two grid parameters) or the objective with CIs against one (a line when its values are ordered),
    of the completed trials."""
    if cfg.sampler.type != "grid" or len(cfg.space) > 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    names = list(cfg.space)
    axes_values = [cfg.space[n].grid_values for n in names]
    if len(names) == 2:
        grid = np.full((len(axes_values[0]), len(axes_values[1])), np.nan)
        for t in complete:
            i, j = (axes_values[k].index(t.params[n]) for k, n in enumerate(names))
            grid[i, j] = t.value
        fig, ax = plt.subplots(figsize=(1.4 * len(axes_values[1]) + 2.5, 1.1 * len(axes_values[0]) + 1.5))
        cmap = "viridis" if cfg.objective.direction == "maximize" else "viridis_r"
        im = ax.imshow(grid, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(axes_values[1])), [str(v) for v in axes_values[1]])
        ax.set_yticks(range(len(axes_values[0])), [str(v) for v in axes_values[0]])
        ax.set_xlabel(names[1])
        ax.set_ylabel(names[0])
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if not np.isnan(grid[i, j]):
                    light = im.norm(grid[i, j]) > 0.6 if cfg.objective.direction == "maximize" else \
                        im.norm(grid[i, j]) < 0.4  # viridis is light at its top end
                    ax.text(j, i, f"{grid[i, j]:.4g}", ha="center", va="center", fontsize=9,
                            color="black" if light else "white")
        fig.colorbar(im, ax=ax, label=cfg.objective.metric)
        ax.set_title(f"{cfg.name}: {cfg.objective.metric} of {cfg.objective.stage}")
        _save(fig, out / "grid.png")
        return (f"{names[0]} x {names[1]}", "grid.png")
    xs = axes_values[0]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(xs) + 2), 3.6))
    pts = {t.params[names[0]]: t for t in complete}
    pos = [i for i, v in enumerate(xs) if v in pts]
    ys = [pts[xs[i]].value for i in pos]
    cis = [pts[xs[i]].user_attrs.get("ci") for i in pos]
    lo = [y - c[0] if c else 0 for y, c in zip(ys, cis)]
    hi = [c[1] - y if c else 0 for y, c in zip(ys, cis)]
    # a line only joins ordered values (data fractions, temperatures); named variants (teacher sets) are points
    ordered = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    ax.errorbar(pos, ys, yerr=[lo, hi], marker="o", capsize=4, ls="-" if ordered else "none")
    if cfg.objective.stage == "verdicts":  # a paired difference: 0 is "no difference"
        ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_xlabel(names[0])
    ax.set_ylabel(cfg.objective.metric)
    ax.set_title(f"{cfg.name}" + (" (95% CI)" if any(cis) else ""))
    ax.grid(alpha=0.3)
    _save(fig, out / "grid.png")
    return (f"{cfg.objective.metric} against {names[0]}" + (" with 95% CIs" if any(cis) else ""), "grid.png")


def final_section(sweep_dir: Path, cfg: SweepConfig, best_value: float | None) -> list[str]:
    """The final run (``final: true``): the tuned model beside the distilled student, and the paired verdicts."""
    best_dir = sweep_dir / "best"
    verdicts = read_json(best_dir / "verdicts.json")
    info = read_json(best_dir / "best_trial.json") or {}
    if verdicts is None:
        return []
    from ..report.collect import collect, pair_suite, suite_block
    from ..report.verdicts import verdict_lines

    lines = ["", "## The best trial's overrides in the whole experiment", "",
             f"`best/` ran the recipe with trial {info.get('number')}'s overrides (objective {best_value:.6g}); its "
             "report is [best/report.md](best/report.md). Pooled paired verdicts of that run:", ""]
    _, models = collect(best_dir)
    models = [m for m in models if m["role"] in ("baseline", "student")]
    suite = pair_suite(models, "blimp") or "BLiMP"
    rows = []
    for m in models:
        blimp = (suite_block(m, suite) or {}).get("macro", {})
        rows.append(f"| {m['name']} | {m['role']} | {_fmt((m['metrics'] or {}).get('eval_loss'))} | "
                    f"{_fmt(100 * blimp['acc']) if 'acc' in blimp else '-'} |")
    if rows:
        lines += [f"| stage | role | dev eval loss | {suite} macro acc (%) |", "|---|---|---|---|", *rows, ""]
    lines += verdict_lines(verdicts, suite)
    return lines


def reference_comparisons(sweep_dir: Path, cfg: SweepConfig, trials, n_boot: int | None = None,
                          models_in=None) -> list[dict]:
    """For every complete trial: its students against the reference trial's (``compare_to``), seed by seed and
    pooled, and its own student - baseline; [] without ``compare_to`` or a complete reference trial.
    ``models_in(run_dir)``: a trial's models (default: :func:`babyllama.report.collect.collect`'s)."""
    import optuna

    from ..eval.stats import N_BOOT
    from ..report.collect import collect, pair_suite
    from ..report.verdicts import comparison_pairs, paired_verdict

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("run_dir")]
    ref = next((t for t in done if all(t.user_attrs.get("values", {}).get(k) == v
                                       for k, v in (cfg.compare_to or {}).items())), None)
    if not cfg.compare_to or ref is None:
        return []
    models_in = models_in or (lambda run_dir: collect(run_dir)[1])
    models_of = {t.number: models_in(sweep_dir / t.user_attrs["run_dir"]) for t in done}
    suite = pair_suite(models_of[ref.number], "blimp")
    n_boot = n_boot or N_BOOT
    ref_label = ", ".join(f"{k}={v}" for k, v in cfg.compare_to.items())
    out = []
    for t in done:
        label = ", ".join(f"{k}={_fmt(v)}" for k, v in t.user_attrs.get("values", {}).items())
        students = {m["seed"]: m for m in models_of[t.number] if m["role"] == "student" and m["eval"]}
        refs = {m["seed"]: m for m in models_of[ref.number] if m["role"] == "student" and m["eval"]}
        pairs = [(students[s], refs[s]) for s in sorted(students) if s in refs]
        row = {"trial": t.number, "label": label, "reference": ref_label, "suite": suite}
        if t.number != ref.number and pairs:
            row["vs_reference"] = paired_verdict(f"{label} - {ref_label}", pairs, suite, n_boot)
            row["vs_reference_per_seed"] = [paired_verdict(f"seed {a['seed']}", [(a, b)], suite, n_boot)
                                            for a, b in pairs]
        base = comparison_pairs(models_of[t.number], lambda m: m["eval"]).get("student - baseline")
        if base:
            row["vs_baseline"] = paired_verdict("student - baseline", base, suite, n_boot)
        out.append(row)
    return out


def _diff_cell(v: dict | None, key: str) -> str:
    from ..report.verdicts import difference_text

    return difference_text(v[key], key) if v and key in v else "-"


def _every_seed(rows: list[dict] | None, key: str) -> str:
    """better / worse when each seed's own CI excludes zero on the same side (dev CE: lower is better), else
    mixed."""
    if not rows or not all(key in r for r in rows):
        return "-"
    sign = -1 if key == "dev_ce" else 1
    if all(sign * r[key]["ci"][0] > 0 for r in rows):
        return f"better in all {len(rows)}"
    if all(sign * r[key]["ci"][1] < 0 for r in rows):
        return f"worse in all {len(rows)}"
    return "not in every seed"


def reference_section(comparisons: list[dict]) -> list[str]:
    if not comparisons:
        return []
    ref, suite = comparisons[0]["reference"], comparisons[0]["suite"] or "BLiMP"
    lines = ["", f"## Every trial against {ref} and against the baseline", "",
             f"Student minus comparator on the same items, the seeds' students paired seed by seed and pooled "
             f"(paired bootstrap 95% CI, two-sided p): {suite} macro accuracy in percentage points (higher = "
             "better), dev CE in nats/token (lower = better). \"Each seed\" says whether every seed's own CI "
             "excludes zero on the same side.", "",
             f"| trial | {suite} vs {ref} | each seed | dev CE vs {ref} | each seed | {suite} vs baseline | "
             "dev CE vs baseline |", "|---|---|---|---|---|---|---|"]
    for r in comparisons:
        v, per, b = r.get("vs_reference"), r.get("vs_reference_per_seed"), r.get("vs_baseline")
        lines.append(f"| {r['label']} | {_diff_cell(v, 'blimp') if v else '(reference)'} | "
                     f"{_every_seed(per, 'blimp')} | {_diff_cell(v, 'dev_ce') if v else '(reference)'} | "
                     f"{_every_seed(per, 'dev_ce')} | {_diff_cell(b, 'blimp')} | {_diff_cell(b, 'dev_ce')} |")
    winners = [r["label"] for r in comparisons
               if any(_every_seed(r.get("vs_reference_per_seed"), k).startswith("better") for k in ("blimp", "dev_ce"))]
    lines += ["", ("Better than " + ref + " in every seed's own CI: " + ", ".join(winners)) if winners else
              f"No trial is better than {ref} with every seed's own CI excluding zero."]
    return lines


def write_sweep_report(sweep_dir: Path, cfg: SweepConfig, study) -> str:
    """Write report.md, trials.csv and figures/ in the sweep directory; return the report's summary lines."""
    import optuna

    sweep_dir = Path(sweep_dir)
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(cfg, trials)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_text(sweep_dir / "trials.csv", buf.getvalue())
    counts = {s: sum(1 for r in rows if r["state"] == s) for s in ("complete", "pruned", "fail", "running")}
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    try:
        best = study.best_trial
    except ValueError:
        best = None
    summary = [f"# Sweep {cfg.name}", "", cfg.description.strip(), "",
               f"Objective: {cfg.objective.direction} `{cfg.objective.metric}` of `{cfg.objective.stage}`"
               + (f" ({cfg.objective.comparison})" if cfg.objective.comparison else "")
               + f"; sampler {cfg.sampler.type}; pruner {cfg.pruner.type}"
               + (f" ({cfg.pruner.resource}s, min {cfg.pruner.min_resource}, eta {cfg.pruner.reduction_factor})"
                  if cfg.pruner.type == "hyperband" else "") + ".",
               f"Trials: {len(rows)} ({counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} "
               f"failed, {counts['running']} running); wall time {wall / 60:.1f} min from the first start to the "
               f"last end; {sum(r['duration_s'] or 0 for r in rows) / 60:.1f} trial-minutes in all."]
    if best is not None:
        vals = best.user_attrs.get("values", best.params)
        summary += ["", f"**Best: trial {best.number}, {cfg.objective.metric} = {best.value:.6g}** with "
                    + ", ".join(f"`{k}` = {_fmt(v)}" for k, v in vals.items())
                    + f" (`babyllama sweep best {sweep_dir} --out best.yaml`, then `babyllama run RECIPE "
                    "--set-file best.yaml`)."]
    cis = [t.user_attrs["ci"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("ci")]
    if cis:
        import numpy as np

        half = float(np.median([(hi - lo) / 2 for lo, hi in cis]))
        summary += ["", f"Each trial's objective carries a 95% CI of median half-width {half:.3g}: differences "
                    "between trials of about that size are within this evaluation's noise (more items or seeds "
                    "narrow it)."]
    lines = list(summary)
    lines += final_section(sweep_dir, cfg, best.value if best else None)
    comparisons = reference_comparisons(sweep_dir, cfg, trials)
    if comparisons:
        write_json(sweep_dir / "comparisons.json", comparisons)
        lines += reference_section(comparisons)
    figs = sweep_dir / "figures"
    made = []
    grid = grid_figure(study, cfg, figs)
    if grid:
        made.append(grid)
    made += optuna_figures(study, cfg, figs) if any(t.state == optuna.trial.TrialState.COMPLETE
                                                      for t in trials) else []
    for title, name in made:
        lines += ["", f"### {title}", "", f"![{title}](figures/{name})"]
    if rows:
        keys = list(rows[0])
        lines += ["", "## Trials", "", "(`last_step`: the last epoch or step reported to the pruner; also in "
                  "trials.csv)", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in rows:
            lines.append("| " + " | ".join(_fmt(r[k]) if r[k] is not None else "-" for k in keys) + " |")
    write_text(sweep_dir / "report.md", "\n".join(lines) + "\n")
    return "\n".join(summary[3:])
