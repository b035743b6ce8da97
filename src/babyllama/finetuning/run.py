"""`babyllama finetune`: every model x task x seed in one process, then per-task statistics and comparisons.

Everything that can be wrong with the input (task names, files, fields, labels, the hyperparameter table, the
model directories) is checked before the first run starts. Each model is loaded once; each task is tokenized once
per tokenizer. MNLI-mm: under 2024/2025 the MNLI run's kept model also scores the mismatched file (the pipeline's
``DO_TRAIN=False`` step); under 2023 it is its own run, selected on the mismatched file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..config import FinetuneConfig
from ..errors import UserError
from .data import encode_split
from .protocols import TaskOverrides, apply_overrides, overrides_for, protocol_hparams, protocol_seed
from .stats import metric_range, paired, score_range, summarize
from .tasks import TaskData, get_task, load_task


def hparams_table(spec: str | dict | None) -> dict[str, TaskOverrides]:
    """The per-task override table from a YAML file or a mapping, validated (one line per bad key)."""
    if spec is None:
        return {}
    from ..config import read_yaml, validate_tree

    source = "finetune.hparams"
    if isinstance(spec, str):
        spec, source = read_yaml(spec, "hyperparameter table", "a mapping of task names (or 'default') to "
                                 "settings"), spec
    if not isinstance(spec, dict):
        raise UserError(f"{source}: must map task names (or 'default') to settings")

    table = {}
    for task, row in spec.items():
        if task != "default":
            get_task(task)
        if row is not None and not isinstance(row, dict):
            raise UserError(f"{source}: {task}: must map settings to values (e.g. learning_rate: 4.0e-5)")
        table[task] = validate_tree(TaskOverrides, row or {}, f"{source}: {task}")
    return table


def resolve_eval_root(config: FinetuneConfig) -> Path:
    from ..eval.suites import default_eval_root

    d = config.eval_root or default_eval_root()
    if d is None:
        raise UserError("fine-tuning needs the task files: pass --eval-root DIR (the folder with glue_filtered/) or "
                        "set BABYLLAMA_DATA (e.g. ../shared/data)")
    if not Path(d).is_dir():
        raise UserError(f"--eval-root {d}: not a folder")
    return Path(d)


def _plan_tasks(config: FinetuneConfig) -> list[tuple[str, list[str]]]:
    """(run name, tasks whose scores it gives) for the requested tasks (a run's training file is its task's, or
    the ``train_as`` task's: :func:`.tasks.find_file`)."""
    tasks = list(dict.fromkeys(config.tasks))
    if not tasks:
        raise UserError("no task: pass --task NAME (repeatable)")
    for t in tasks:
        get_task(t)
    runs = []
    shared_mm = config.protocol != "babylm2023"
    for t in tasks:
        if t == "mnli-mm" and shared_mm:
            continue
        gives = [t] + (["mnli-mm"] if t == "mnli" and shared_mm and "mnli-mm" in tasks else [])
        runs.append((t, gives))
    if "mnli-mm" in tasks and shared_mm and "mnli" not in tasks:
        runs.append(("mnli", ["mnli-mm"]))
    return runs


def finetune_identity(config: FinetuneConfig) -> list:
    """What decides a finetune stage's results, without paths: the settings, the override table's content and the
    content hashes of every task file it reads (which are found, and so checked, here)."""
    from ..io import sha256_file
    from .tasks import find_file

    eval_root = resolve_eval_root(config)
    files = []
    for run_name, gives in _plan_tasks(config):
        for t in dict.fromkeys([run_name, *gives]):
            spec = get_task(t)
            files.append((t, *(sha256_file(find_file(spec, eval_root, split, config.protocol))
                               for split in ("train", "valid"))))
    table = {k: v.model_dump(exclude_none=True) for k, v in hparams_table(config.hparams).items()}
    # how the runs are executed (batching of scoring, device, runs at once, compiled kernels) moves only roundings
    settings = config.model_dump(mode="json", exclude={"eval_root", "hparams", "eval_batch_size", "device", "jobs",
                                                       "compile"})
    return [settings, table, files]


def _subsample(data: TaskData, n: int | None, seed: int = 0) -> np.ndarray:
    """A seeded subset of the training examples (all when n is None or not smaller)."""
    size = len(data.train)
    if n is None or n >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, n, replace=False))


def finetune_models(models: list[str | Path], config: FinetuneConfig, names: list[str] | None = None,
                    device: str | None = None, cache_dir: str | Path | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """Fine-tune and score each model on each task and seed; with two or more models, paired comparisons of each
    with the first on the same seeds."""
    from ..models import resolve_model_path
    from ..runinfo import package_versions
    import torch

    from ..hardware import device_type, resolve_attention, resolve_device, resolve_precision
    from .model import load_base
    from .compiled import resolve_compile
    from .parallel import resolve_jobs, run_side_by_side
    from .train import finetune_run

    device = resolve_device(device or config.device)
    precision = resolve_precision(config.precision, device)
    seeds = config.seeds or [protocol_seed(config.protocol)]
    lora = (config.lora.r, config.lora.alpha, config.lora.dropout) if config.lora else None
    if lora:
        try:
            import peft  # noqa: F401 - checked before any run
        except ImportError:
            raise UserError("LoRA fine-tuning needs peft: pip install 'babyllama[lora]' (or pip install peft)") \
                from None
    table = hparams_table(config.hparams)
    runs = _plan_tasks(config)
    eval_root = resolve_eval_root(config)
    data: dict[str, TaskData] = {}
    for run_name, gives in runs:
        data[run_name] = load_task(run_name, eval_root, config.protocol)
        for g in gives:
            if g != run_name:
                data[g] = load_task(g, eval_root, config.protocol)
    paths = [resolve_model_path(m) for m in models]
    for p in paths:
        if not (Path(p) / "config.json").is_file():
            raise UserError(f"model {p}: no config.json; point to a Hugging Face model directory")
    names = names or [str(m) for m in models]
    if len(set(names)) != len(names):
        raise UserError(f"two models have the same name ({', '.join(names)}); pass distinct directories")
    notes = sorted({n for d in data.values() for n in d.notes})
    for n in notes:
        log(f"note: {n}")

    results = {"protocol": config.protocol, "config": config.model_dump(mode="json"), "seeds": seeds,
               "tasks": [t for t in dict.fromkeys(config.tasks)], "precision": precision, "device": device,
               "notes": notes, "versions": package_versions(), "files": {}, "models": []}
    for name, d in data.items():
        results["files"][name] = {"train": str(d.train.path), "train_sha256": d.train.sha256,
                                  "valid": str(d.valid.path), "valid_sha256": d.valid.sha256,
                                  "train_examples": len(d.train), "valid_examples": len(d.valid),
                                  "labels": d.label_list}
    t_all = time.perf_counter()
    total_runs = len(paths) * len(runs) * len(seeds)
    done = 0
    for model_index, (name, path) in enumerate(zip(names, paths)):
        base = load_base(path)
        for n in base.notes:
            log(f"note: {n}")
        model_block = {"name": name, "path": str(path), "notes": base.notes, "tasks": {}}
        prepared = []
        for run_name, gives in runs:
            d = data[run_name]
            h = protocol_hparams(config.protocol, run_name, d.num_labels, config.pooling)
            h = apply_overrides(h, overrides_for(table, run_name), config.max_epochs)
            context = base.context
            if context and h.max_length > context:
                h = replace(h, max_length=context)
            if h.head == "babylm2025" and h.pooling == "first" and base.is_causal:
                log(f"warning: {name}: protocol babylm2025 pools the first token, which in a causal decoder sees "
                    "only the first word; --pooling last scores the last token instead")
            train = encode_split(base.tokenizer, base.tokenizer_id, run_name, d.train, h.max_length, cache_dir)
            train = train.subset(_subsample(d, config.max_train_examples))
            valid = encode_split(base.tokenizer, base.tokenizer_id, run_name, d.valid, h.max_length, cache_dir)
            extra = {g: encode_split(base.tokenizer, base.tokenizer_id, g, data[g].valid, h.max_length, cache_dir)
                     for g in gives if g != run_name}
            mask = np.asarray([c == "test" for c in d.valid.conditions]) if d.spec.test_condition else None
            prepared.append((run_name, gives, d, h, train, valid, extra, mask))

        first = model_index * len(runs) * len(seeds)
        plan = [(t, seed) for t in range(len(prepared)) for seed in seeds]
        labels = {key: f"[{first + k + 1}/{total_runs}] {name} {prepared[key[0]][0]} seed {key[1]}"
                  for k, key in enumerate(plan)}

        positions = int(sum(_run_cost(p[3], p[4]) for p in prepared)) * len(seeds)
        compile_now, why_not = resolve_compile(config.compile, device_type(device), positions)
        if why_not:
            log(f"note: {name}: {why_not}")
        if compile_now:
            log(f"{name}: decoder layers compiled for training ({positions / 1e6:.1f}M positions to train)")
        attention = resolve_attention("auto", precision, compile_now, device)

        def one_run(key, run_log, prepared=prepared, base=base, labels=labels, compile_now=compile_now,
                    attention=attention):
            run_name, gives, d, h, train, valid, extra, mask = prepared[key[0]]
            return finetune_run(base, train, valid, d.num_labels, h, key[1], precision=precision, device=device,
                                eval_batch_size=config.eval_batch_size, length_grouping=config.length_grouping,
                                report_mask=mask, extra_valid=extra, attention=attention, lora=lora,
                                compile_layers_=compile_now, log=run_log, label=labels[key])

        params = sum(v.numel() for v in base.body_state.values())
        jobs, threads = resolve_jobs(config.jobs, device_type(device), len(plan), params, torch.get_num_threads())
        # the thread count decides a product's rounding, so it belongs with the results
        model_block.update(jobs=jobs, threads_per_run=threads, compiled=compile_now, attention=attention)
        if jobs > 1:
            log(f"{name}: {len(plan)} runs, {jobs} at once on {threads} thread{'s' * (threads > 1)} each")
        # side by side, the longest first: the last run to start decides when all end
        order = plan if jobs == 1 else sorted(plan, key=lambda key: -_run_cost(prepared[key[0]][3],
                                                                              prepared[key[0]][4]))
        finished = {}
        for key, r in run_side_by_side(one_run, order, jobs, threads, log):
            finished[key] = r
            done += 1
            d = prepared[key[0]][2]
            elapsed = time.perf_counter() - t_all
            log(f"{labels[key]}: {d.spec.metric} {r.metrics[d.spec.metric]:.4f} (kept epoch {r.best_epoch}, "
                f"{r.epochs_run} epochs, {r.examples / r.seconds:.0f} ex/s, {r.seconds:.0f} s; "
                f"eta {elapsed / done * (total_runs - done):.0f} s)")
        for t, (run_name, gives, d, h, *_rest) in enumerate(prepared):
            per_seed = [finished[(t, seed)] for seed in seeds]
            model_block["tasks"][run_name] = _task_block(d.spec.metric, h, per_seed, lambda r: r.metrics)
            for g in gives:
                if g != run_name:
                    spec = get_task(g)
                    model_block["tasks"][g] = _task_block(spec.metric, h, per_seed, lambda r, g=g: r.extra[g]
                                                          ["metrics"], extra_of=(run_name, g))
        for t in list(model_block["tasks"]):
            if t not in results["tasks"]:  # mnli trained only to score mnli-mm
                del model_block["tasks"][t]
        model_block["macro"] = _macro(model_block["tasks"], seeds)
        results["models"].append(model_block)
        del base
    results["seconds"] = time.perf_counter() - t_all
    results["comparisons"] = compare(results)
    return results


def _run_cost(h, train) -> float:
    """Positions a run trains on at most, to start the longest first."""
    return float(train.lengths.sum()) * h.max_epochs


def _compact(predictions: list[int]):
    """Class ids as one string of digits when they fit (every task has fewer than ten classes), else the list."""
    return "".join(map(str, predictions)) if max(predictions, default=0) < 10 else predictions


def _task_block(metric: str, h, runs, metrics_of, extra_of: tuple[str, str] | None = None) -> dict:
    scores = [metrics_of(r)[metric] for r in runs]
    block = {"metric": metric, **summarize(scores, metric_range([metric])), "hparams": asdict(h), "runs": []}
    for r in runs:
        row = {"seed": r.seed, "score": metrics_of(r)[metric], "metrics": metrics_of(r)}
        if extra_of is None:
            row.update(selection=r.selection, best_epoch=r.best_epoch, epochs_run=r.epochs_run, steps=r.steps,
                       stopped_early=r.stopped_early, examples=r.examples, train_tokens=r.train_tokens,
                       padded_tokens=r.padded_tokens, seconds=round(r.seconds, 3), history=r.history,
                       predictions=_compact(r.predictions))
        else:
            row["scored_by"] = f"the {extra_of[0]} run's kept model"
            row["predictions"] = _compact(r.extra[extra_of[1]]["predictions"])
        block["runs"].append(row)
    return block


def _macro(tasks: dict[str, dict], seeds: list[int]) -> dict | None:
    if not tasks:
        return None
    per_seed = [float(np.mean([tasks[t]["values"][i] for t in tasks])) for i in range(len(seeds))]
    return {"tasks": list(tasks), **summarize(per_seed, metric_range(b["metric"] for b in tasks.values()))}


def compare(results: dict) -> list[dict]:
    """Each model after the first minus the first, per task and for the macro average, over the same seeds."""
    models = results["models"]
    if len(models) < 2:
        return []
    ref = models[0]
    out = []
    for m in models[1:]:
        row = {"a": m["name"], "b": ref["name"], "tasks": {}}
        for t, block in m["tasks"].items():
            if t in ref["tasks"]:
                row["tasks"][t] = {"metric": block["metric"], **paired(block["values"], ref["tasks"][t]["values"],
                                                                       score_range(ref, t))}
        if m["macro"] and ref["macro"]:
            row["macro"] = paired(m["macro"]["values"], ref["macro"]["values"], score_range(ref, "macro"))
        out.append(row)
    return out
