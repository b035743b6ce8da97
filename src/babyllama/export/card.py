"""The model card of an exported model: ``README.md`` with the Hub's YAML metadata and a ``model-index`` block of
the evaluation results babyllama has for the model, then how it was trained."""

from __future__ import annotations

import yaml

from ..distillation import describe_divergence
from ..eval.markdown import headline

SUITE_NAMES = {"blimp": "BLiMP", "blimp_filtered": "BLiMP (filtered, BabyLM)", "blimp_fast": "BLiMP (BabyLM fast)",
               "supplement": "BLiMP supplement (BabyLM)", "supplement_fast": "BLiMP supplement (BabyLM fast)",
               "ewok": "EWoK (filtered, BabyLM)", "ewok_fast": "EWoK (BabyLM fast)",
               "entity_tracking": "Entity tracking (BabyLM 2025)",
               "entity_tracking_fast": "Entity tracking (BabyLM 2025 fast)",
               "wug_adj": "Wug adjective nominalization (BabyLM 2025)", "reading": "Reading (BabyLM 2025)"}


def parameter_count(n: int) -> str:
    """A parameter count the way the Hub prints it: three significant digits and a suffix (41.2k, 4.15M, 1.2B)."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(int(n))


def model_index(name: str, evaluation: dict | None) -> list[dict]:
    results = []
    for suite, s in ((evaluation or {}).get("suites") or {}).items():
        metric = s["macro"].get("metric", "accuracy")
        kind = {"accuracy": ("accuracy", "macro accuracy"), "spearman": ("spearmanr", "Spearman's rho with human "
                "ratios")}.get(metric, ("r_squared_gain", f"{metric} (gain in explained variance, %)"))
        task = "Zero-shot minimal pairs" if suite.split("_")[0] in ("blimp", "supplement", "ewok") else \
            "Zero-shot evaluation (BabyLM 2025)"
        results.append({"task": {"type": "zero-shot-classification", "name": task},
                        "dataset": {"name": SUITE_NAMES.get(suite, suite), "type": suite},
                        "metrics": [{"type": kind[0], "name": kind[1], "value": round(s["macro"]["acc"], 4),
                                     "verified": False}]})
    ppl = (evaluation or {}).get("perplexity") or {}
    if "dev" in ppl:
        results.append({"task": {"type": "text-generation", "name": "Language modelling"},
                        "dataset": {"name": "BabyLM dev split", "type": "babylm-dev"},
                        "metrics": [{"type": "perplexity", "value": round(ppl["dev"]["ppl"], 3), "verified": False},
                                    {"type": "bits-per-word", "value": round(ppl["dev"]["bpw"], 4),
                                     "verified": False}]})
    return [{"name": name, "results": results}] if results else []


def model_card(name: str, *, license: str, datasets: list[str], info: dict, metrics: dict | None,
               evaluation: dict | None, config_yaml: str | None, teachers: list[str]) -> str:
    """README.md text: YAML front matter (license, language, datasets, tags, model-index), then the prose."""
    kind = info.get("kind", "pretrain")
    meta = {"license": license, "language": ["en"], "datasets": datasets, "library_name": "transformers",
            "pipeline_tag": "text-generation",
            "tags": ["babylm", "babyllama", "causal-lm", *(["knowledge-distillation"] if kind == "distill" else [])]}
    index = model_index(name, evaluation)
    if index:
        meta["model-index"] = index
    m = metrics or {}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name}", "",
             f"A {parameter_count(m.get('params', 0))}-parameter causal language model trained with babyllama "
             + ("by distilling an ensemble of teachers" if kind == "distill" else "from scratch")
             + " on BabyLM-style data.", "", "## Training", ""]
    if m:
        best = m.get("eval_loss_best")
        lines += [f"- optimizer steps: {m.get('global_step')}, training tokens: {m.get('train_tokens_seen'):,}",
                  f"- precision: {m.get('precision')}, best dev CE: "
                  + (f"{best:.4f} nats/token" if isinstance(best, int | float) else "not evaluated")]
    if teachers:
        lines += ["- distilled from: " + ", ".join(f"`{t}`" for t in teachers)]
    d = (info.get("config") or {}).get("distill")
    if kind == "distill" and d:
        lines += [f"- distillation: alpha {d.get('alpha')}, T {d.get('temperature')}, divergence "
                  f"`{describe_divergence(d)}`, reduction `{d.get('kl_reduction')}`, ensemble `{d.get('ensemble')}`"
                  + (", from a teacher cache" if (d.get("cache") or {}).get("enabled") else "")]
    prov = {k: info.get(k) for k in ("git_sha", "train_data_hash", "tokenizer_hash", "finished_at") if info.get(k)}
    lines += [f"- {k}: `{v}`" for k, v in prov.items()]
    if evaluation and evaluation.get("suites"):
        lines += ["", "## Zero-shot evaluation (babyllama: minimal pairs as lm-evaluation-harness scores them, the "
                  "BabyLM 2025 tasks as its pipeline does)", "",
                  "| suite | value | 95% CI | items | figure |", "|---|---:|---:|---:|---|"]
        for suite, s in evaluation["suites"].items():
            v, (lo, hi), unit = headline(s)
            figure = {"%": "macro accuracy (%)", " rho": "Spearman's rho"}.get(unit, unit.strip(" ()"))
            d = 1 if unit == "%" else 3
            lines.append(f"| {suite} | {v:.{d}f} | [{lo:.{d}f}, {hi:.{d}f}] | {s['macro']['items']} | {figure} |")
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'model = AutoModelForCausalLM.from_pretrained("{name}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```"]
    if config_yaml:
        lines += ["", "## Resolved training config", "", "```yaml", config_yaml.rstrip(), "```"]
    return "\n".join(lines) + "\n"
