"""What each stage cost and what each model was: the report's compute table and hyperparameter table.

Read from what the stages wrote: ``run_info.json`` (wall time, machine, resolved config), a training stage's
``metrics.json`` (its own wall time, tokens/s, precision) and the model's ``config.json`` (its architecture).
"""

from __future__ import annotations

import datetime

from ..distillation import describe_divergence
from ..io import read_json
from ..progress import clock
from ..runinfo import hardware_line, read_run_info
from ..runner.kinds import METRICS_FILE, result_file, trains_model
from ..runner.plan import Plan
from ..runner.state import stage_state, stage_wall_s
from .tables import Table


def elapsed_s(stages: list[tuple[str | None, float | None]]) -> float | None:
    """Seconds from the first stage's start to the last one's end, from each finished stage's (``finished_at``,
    wall seconds); stages without both are left out, None when none has them. Unlike the sum of the stages' wall
    times, stages that ran side by side count once, and the gaps between stages (a make run starts a process for
    each) and between two runs of the recipe count in full."""
    spans = []
    for finished_at, wall in stages:
        if finished_at is None or wall is None:
            continue
        end = datetime.datetime.fromisoformat(finished_at).timestamp()
        spans.append((end - wall, end))
    return max(e for _, e in spans) - min(s for s, _ in spans) if spans else None


def compute_table(plan: Plan) -> tuple[Table, float, float | None]:
    """One row per finished stage: wall time, training tokens/s, precision, hardware; the sum of the stages' wall
    seconds, and the seconds from the first stage's start to the last one's end (:func:`elapsed_s`)."""
    t = Table(["stage", "kind", "wall time", "tokens/s", "precision", "hardware"], numeric={2, 3})
    total = 0.0
    finished: list[tuple[str | None, float | None]] = []
    for s in plan.stages:
        if stage_state(plan, s) != "done":
            continue
        d = plan.path(s)
        info = read_run_info(d) or {}
        met = read_json(d / METRICS_FILE) if trains_model(s.kind) else None
        wall = stage_wall_s(plan, s, met)
        ev = (read_json(d / result_file("eval")) or {}) if s.kind == "eval" else {}
        if wall is None and s.kind == "eval":  # a run_info.json without wall_s: the eval's own timings
            timing = ev.get("timing", {})
            wall = sum(timing.values()) if timing else None
        total += wall or 0.0
        finished.append((info.get("finished_at"), wall))
        tps = (met or {}).get("train_tokens_per_s")
        if met:
            precision = met.get("precision", "-")
        elif s.kind == "eval":  # as the stage resolved it (exact_bf16 where native), else its setting
            cfg = info.get("config", {})
            precision = ev.get("precision") or cfg.get("precision") or ("bf16" if cfg.get("bf16") else "fp32")
        elif s.kind == "finetune":
            precision = info.get("config", {}).get("precision", "-")
        else:
            precision = "-"
        t.add(s.name, s.kind, clock(wall), f"{tps:,.0f}" if tps else "-", precision,
              hardware_line(info.get("machine")))
    return t, total, elapsed_s(finished)


def _architecture(cfg: dict | None) -> str:
    if not cfg:
        return "-"
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    hidden = cfg.get("hidden_size", cfg.get("n_embd"))
    heads = cfg.get("num_attention_heads", cfg.get("n_head"))
    return f"{cfg.get('model_type', '?')} {layers}x{hidden}, {heads} heads"


def _cell(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def hyperparameter_table(models: list[dict]) -> Table:
    """Every trained model: architecture, size and the training settings it was trained with (resolved)."""
    t = Table(["model", "architecture", "params", "lr", "batch", "epochs", "warmup", "schedule", "weight decay",
               "betas", "grad clip", "seq len", "dropout (attn)", "alpha", "T", "divergence"],
              numeric={2, 3, 4, 5, 6, 8, 11})
    for m in models:
        if not m["metrics"]:
            continue
        info = read_run_info(m["dir"]) or {}
        c = info.get("config", {})
        tr, data, mod = c.get("training", {}), c.get("data", {}), c.get("model", {})
        hf = read_json(m["dir"] / "config.json") or {}
        drop = hf.get("attention_dropout", hf.get("attn_pdrop"))
        distilled = m["role"] == "student"
        t.add(m["name"], _architecture(hf), f"{m['metrics']['params'] / 1e6:.2f}M", _cell(tr.get("learning_rate")),
              _cell(tr.get("batch_size")), _cell(tr.get("num_epochs")), _cell(tr.get("warmup_steps")),
              _cell(tr.get("lr_scheduler")), _cell(tr.get("weight_decay")),
              f"{_cell(tr.get('adam_beta1'))}, {_cell(tr.get('adam_beta2'))}", _cell(tr.get("max_grad_norm")),
              _cell(data.get("seq_len")), _cell(mod.get("attention_dropout") if mod.get("attention_dropout") is not None
                                          else drop),
              _cell(c.get("distill", {}).get("alpha")) if distilled else "-",
              _cell(c.get("distill", {}).get("temperature")) if distilled else "-",
              describe_divergence(c.get("distill", {})) if distilled else "-")
    return t
