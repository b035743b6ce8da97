"""`babyllama export lm-eval-tasks OUT`: lm-evaluation-harness task files for the local evaluation data.

The templates follow the BabyLM 2024 evaluation pipeline (``lm_eval/tasks/blimp_filtered/_template_yaml`` and its
siblings there): ``dataset_path: json`` on one local file per paradigm, choices ``[sentence_good, sentence_bad]``
(EWoK: ``{{Context1}}`` then ``[Target1, Target2]``), target 0, metric acc, zero-shot. Each suite is a group of
its paradigm tasks, unweighted mean, so ``lm_eval --include_path OUT --tasks blimp_filtered`` runs offline. EWoK
is distributed in a password-protected zip whose terms ask that it stay out of public repositories: it is
unpacked into ``OUT/data/`` (with a ``.gitignore``), never into this repository.

The BabyLM 2025 entity tracking (``entity_tracking``, ``entity_tracking_fast``) is a ``multiple_choice`` task too:
context ``{{input_prefix}}``, choices ``{{options}}`` with no target delimiter, one task per UID (file x number
of operations, its rows written to ``OUT/data/``), a group per split (mean over its UIDs) and the suite's group
over the splits: the pipeline's macro. lm-eval then scores the same tokens as the pipeline (the prefix's trailing
space moves to the option, so the boundary token is scored either way) and its ``acc`` takes the first best option
on a tie, as the pipeline does; it truncates an input longer than the model's context from the left, which the
pipeline does not. The wug task (a rank correlation with human ratios) and reading (regressions on surprisal)
have no lm-eval metric that expresses them: they are not exported.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import yaml

from ..errors import UserError
from ..eval.suites import suite_path
from ..eval.tasks import EWOK_PASSWORD
from ..io import atomic_write, read_jsonl, require_folders

# suite -> (group name, task name of a paradigm, uses the EWoK template); the stock `blimp` group of lm-eval reads
# the hub, so the full local BLiMP gets its own name
GROUPS = {
    "blimp": ("blimp_local", "blimp_local_{p}", False),
    "blimp_filtered": ("blimp_filtered", "blimp_{p}_filtered", False),
    "supplement": ("blimp_supplement", "blimp_supplement_{p}", False),
    "ewok": ("ewok_filtered", "ewok_{p}_filtered", True),
}
PAIRS = {"doc_to_text": "", "doc_to_choice": "{{[sentence_good, sentence_bad]}}",
         "doc_to_decontamination_query": "{{sentence_good}} {{sentence_bad}}"}
EWOK = {"doc_to_text": "{{Context1}}", "doc_to_choice": "{{[Target1, Target2]}}",
        "doc_to_decontamination_query": "{{Context1}} {{Target1}}"}
ENTITY = {"doc_to_text": "{{input_prefix}}", "doc_to_choice": "{{options}}", "target_delimiter": "",
          "doc_to_decontamination_query": "{{input_prefix}}"}
ENTITY_SUITES = ("entity_tracking", "entity_tracking_fast")
NOT_EXPRESSIBLE = {"wug_adj": "a rank correlation with human ratios", "reading": "regressions on surprisal"}


def _template(fields: dict) -> dict:
    return {"dataset_path": "json", "output_type": "multiple_choice", "validation_split": "train",
            **fields, "doc_to_target": 0, "num_fewshot": 0, "should_decontaminate": True,
            "metric_list": [{"metric": "acc"}], "metadata": {"version": 1.0}}


def _write_group(folder: Path, group: str, tasks: list[str]) -> None:
    """A group of tasks whose score is the unweighted mean of its members' accuracies."""
    (folder / f"_{group}.yaml").write_text(yaml.safe_dump({
        "group": group, "task": tasks,
        "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
        "metadata": {"version": 1.0}}, sort_keys=False))


def export_tasks(out: str | Path, eval_root: str | Path | None, suites: list[str] | None = None,
                 overwrite: bool = False) -> dict[str, list[str]]:
    """Write the task YAMLs (and EWoK's unpacked files) into ``out``; returns {group: [task, ...]}."""
    out = Path(out)
    suites = suites or list(GROUPS)
    for s in suites:
        if s in NOT_EXPRESSIBLE:
            raise UserError(f"{s} has no lm-eval task: lm-eval has no metric for {NOT_EXPRESSIBLE[s]}; score it "
                            "with `babyllama eval --suite " + s + "`")
    unknown = [s for s in suites if s not in GROUPS and s not in ENTITY_SUITES]
    if unknown:
        raise UserError(f"no lm-eval tasks for suite(s) {', '.join(unknown)}; choose from "
                        f"{', '.join([*GROUPS, *ENTITY_SUITES])}")
    require_folders([out], "task folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; choose another folder or pass --overwrite")
    sources = {s: suite_path(s, eval_root) for s in suites}  # every suite found before anything is written
    written: dict[str, list[str]] = {}
    with atomic_write(out, directory=True) as tmp:
        for suite, src in sources.items():
            if suite in ENTITY_SUITES:
                written.update(_entity_tasks(suite, src, tmp, out))
                continue
            group, task_name, ewok = GROUPS[suite]
            folder = tmp / group
            folder.mkdir()
            if ewok:
                files = _unpack_ewok(src, tmp / "data" / group, out / "data" / group)
            else:
                files = {f.stem: f.resolve() for f in sorted(src.glob("*.jsonl"))}
            tasks = []
            for paradigm, path in files.items():
                name = task_name.format(p=paradigm)
                (folder / f"{paradigm}.yaml").write_text(yaml.safe_dump(
                    {"task": name, "dataset_kwargs": {"data_files": str(path)}, "include": "_template_yaml"},
                    sort_keys=False))
                tasks.append(name)
            template = _template(EWOK if ewok else PAIRS)
            (folder / "_template_yaml").write_text(yaml.safe_dump(template, sort_keys=False))
            _write_group(folder, group, tasks)
            written[group] = tasks
        if (tmp / "data").exists():
            (tmp / "data" / ".gitignore").write_text("# EWoK's terms of use: keep these files out of public repos\n*\n")
    return written


def _entity_tasks(suite: str, src: Path, tmp: Path, out: Path) -> dict[str, list[str]]:
    """One task per UID, a group per split, the suite's group over the splits (the pipeline's macro)."""
    from ..eval.tasks2025 import ENTITY_LINE, read_entity_tracking

    read_entity_tracking(src)  # every line checked before anything is written
    folder, data = tmp / suite, tmp / "data" / suite
    folder.mkdir()
    data.mkdir(parents=True)
    (folder / "_template_yaml").write_text(yaml.safe_dump(_template(ENTITY), sort_keys=False))
    splits, written = [], {}
    for f in sorted(src.glob("*.jsonl")) if src.is_dir() else [src]:
        by_ops: dict[int, list[str]] = {}
        for _, row in read_jsonl(f, ENTITY_LINE):
            by_ops.setdefault(row["numops"], []).append(json.dumps(row))
        tasks = []
        for ops in sorted(by_ops):
            uid = f"{f.stem}_{ops}_ops"
            (data / f"{uid}.jsonl").write_text("\n".join(by_ops[ops]) + "\n")
            name = f"{suite}_{uid}"
            (folder / f"{uid}.yaml").write_text(yaml.safe_dump(
                {"task": name, "dataset_kwargs": {"data_files": str((out / "data" / suite).resolve() / f"{uid}.jsonl")},
                 "include": "_template_yaml"}, sort_keys=False))
            tasks.append(name)
        group = f"{suite}_{f.stem}"
        _write_group(folder, group, tasks)
        splits.append(group)
        written[group] = tasks
    _write_group(folder, suite, splits)
    written[suite] = splits
    return written


def _unpack_ewok(zip_path: Path, dest: Path, final: Path) -> dict[str, Path]:
    """Unpack the EWoK zip's JSONL files into ``dest``; returns their paths as they will be under ``final``."""
    dest.mkdir(parents=True)
    files = {}
    try:
        with zipfile.ZipFile(zip_path) as z:
            for member in sorted(n for n in z.namelist() if n.endswith(".jsonl")):
                stem = Path(member).stem
                (dest / f"{stem}.jsonl").write_bytes(z.read(member, pwd=EWOK_PASSWORD))
                files[stem] = final.resolve() / f"{stem}.jsonl"
    except (zipfile.BadZipFile, RuntimeError, OSError) as e:
        raise UserError(f"{zip_path}: cannot read the EWoK zip ({e}); use the BabyLM zip as distributed") from None
    return files
