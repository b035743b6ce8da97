"""The report's BabyLM 2025 section: entity tracking, wug and reading per model with 95% CIs, and the paired
"student - baseline" verdict of each task, pooled over seeds (strata = seeds)."""

from __future__ import annotations

from pathlib import Path

from ..eval.markdown import headline_text
from ..eval.stats import N_BOOT, decisions_of, format_p, paired_comparison
from ..eval.suites import SUITES
from .collect import label, suite_block
from .tables import Table
from .verdicts import comparison_pairs

KINDS_2025 = ("entity_tracking", "wug", "reading")  # the suite kinds of the 2025 pipeline's tasks


def suites_2025(models: list[dict]) -> list[str]:
    """The evaluated suites of the 2025 kinds, in the registry's order."""
    seen = {s for m in models if m["eval"] for s in m["eval"]["suites"]}
    return [s for s, suite in SUITES.items() if suite.kind in KINDS_2025 and s in seen]


def _cell(block: dict | None) -> str:
    if not block:
        return ""
    if "figures" in block:
        f = block["figures"]
        return " / ".join(f"{f[k]['value']:.2f} [{f[k]['ci'][0]:.2f}, {f[k]['ci'][1]:.2f}]"
                          for k in ("eye_tracking", "self_paced_reading"))
    return headline_text(block)


def _pooled(suite: str, pairs: list[tuple[dict, dict]], n_boot: int, eval_root: str | None) -> dict | None:
    """a - b over the seeds' pairs of summaries, or None where the task's data is not at hand (reading)."""
    kind = SUITES[suite].kind
    if kind == "entity_tracking":
        a_dec, b_dec, weights = {}, {}, {}
        for n, (a, b) in enumerate(pairs):
            for p, v in decisions_of(a).items():
                a_dec[f"s{n}:{p}"] = v
                weights[f"s{n}:{p}"] = a["weights"][p] / len(pairs)
            for p, v in decisions_of(b).items():
                b_dec[f"s{n}:{p}"] = v
        return paired_comparison(a_dec, b_dec, n_boot, weights=weights)
    if kind == "wug":
        from ..eval.choice_suites import wug_differences

        return wug_differences(pairs, n_boot)
    from ..errors import UserError
    from ..eval.reading import read_reading, reading_differences

    if not eval_root:
        return None
    try:
        df = read_reading(Path(eval_root) / "reading")
    except UserError:
        return None
    return reading_differences(df, pairs, n_boot)


def _diff(d: dict, digits: int, scale: float = 1) -> str:
    return (f"{scale * d['diff']:+.{digits}f} [{scale * d['ci'][0]:+.{digits}f}, {scale * d['ci'][1]:+.{digits}f}], "
            f"{format_p(d['p_bootstrap'], d.get('resamples'))}")


def section_2025(models: list[dict], n_boot: int = N_BOOT, eval_root: str | None = None) -> tuple[list[str], list]:
    """(markdown lines, verdict rows) of the BabyLM 2025 tasks; nothing when no model was scored on them."""
    suites = suites_2025(models)
    if not suites:
        return [], []
    scored = [m for m in models if any(suite_block(m, s) for s in suites)]
    t = Table(["model", *(f"{s} [95% CI]" for s in suites)], numeric=set(range(1, len(suites) + 1)))
    for m in scored:
        t.add(label(m), *(_cell(suite_block(m, s)) for s in suites))
    md = ["## BabyLM 2025 tasks", "",
          "Scored as the BabyLM 2025 evaluation pipeline scores them: entity tracking, accuracy (%) of the most "
          "probable option, the macro the pipeline's mean over splits of the mean over numbers of operations; "
          "wug, Spearman's rho of P(-ity) with the human ratios; reading, eye-tracking / self-paced reading "
          "scores, the surprisal's gain in explained variance in % of what the baseline leaves (CIs resample "
          "sentences).", "", *t.markdown(), ""]
    rows = []
    for s in suites:
        comps = comparison_pairs(models, lambda m, s=s: suite_block(m, s) is not None)
        # the papers' claim against a same-size model; the teachers' comparisons stay in the main verdicts
        for name, pairs in ((n, p) for n, p in comps.items() if n == "student - baseline"):
            d = _pooled(s, [(suite_block(a, s), suite_block(b, s)) for a, b in pairs], n_boot, eval_root)
            if d is None:
                continue
            seeds = sorted({a["seed"] for a, _ in pairs})
            rows.append({"suite": s, "comparison": name, "seeds": seeds, "result": d})
    if rows:
        md += ["Paired differences, student minus comparator on the same items (several seeds pooled, "
               "stratified by seed):", ""]
        for r in rows:
            d, s = r["result"], r["suite"]
            if SUITES[s].kind == "reading":
                text = "; ".join(f"{k.replace('_', ' ')} {_diff(v, 2)}" for k, v in d.items())
            elif SUITES[s].kind == "wug":
                text = f"rho {_diff(d, 3)}"
            else:
                text = f"{_diff(d, 2, 100)} pp"
            md.append(f"- **{s}, {r['comparison']}** (seeds {','.join(map(str, r['seeds']))}): {text}")
        md.append("")
    return md, rows
