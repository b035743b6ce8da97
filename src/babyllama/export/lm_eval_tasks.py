"""`babyllama export lm-eval-tasks OUT`: lm-evaluation-harness task files for the local evaluation data.

The templates follow the BabyLM 2024 evaluation pipeline (``lm_eval/tasks/blimp_filtered/_template_yaml`` and its
siblings there): ``dataset_path: json`` on one local file per paradigm, choices ``[sentence_good, sentence_bad]``
(EWoK: ``{{Context1}}`` then ``[Target1, Target2]``), target 0, metric acc, zero-shot. Each suite is a group of
its paradigm tasks, unweighted mean, so ``lm_eval --include_path OUT --tasks blimp_filtered`` runs offline. EWoK
is distributed in a password-protected zip whose terms ask that it stay out of public repositories: it is
unpacked into ``OUT/data/`` (with a ``.gitignore``), never into this repository.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import yaml

from ..errors import UserError
from ..eval.suites import suite_path
from ..eval.tasks import EWOK_PASSWORD
from ..io import atomic_write

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


def _template(ewok: bool) -> dict:
    return {"dataset_path": "json", "output_type": "multiple_choice", "validation_split": "train",
            **(EWOK if ewok else PAIRS), "doc_to_target": 0, "num_fewshot": 0, "should_decontaminate": True,
            "metric_list": [{"metric": "acc"}], "metadata": {"version": 1.0}}


def export_tasks(out: str | Path, eval_root: str | Path | None, suites: list[str] | None = None,
                 overwrite: bool = False) -> dict[str, list[str]]:
    """Write the task YAMLs (and EWoK's unpacked files) into ``out``; returns {group: [task, ...]}."""
    out = Path(out)
    suites = suites or list(GROUPS)
    unknown = [s for s in suites if s not in GROUPS]
    if unknown:
        raise UserError(f"no lm-eval tasks for suite(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; choose another folder or pass --overwrite")
    sources = {s: suite_path(s, eval_root) for s in suites}  # every suite found before anything is written
    written: dict[str, list[str]] = {}
    with atomic_write(out, directory=True) as tmp:
        for suite, src in sources.items():
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
            (folder / "_template_yaml").write_text(yaml.safe_dump(_template(ewok), sort_keys=False))
            (folder / f"_{group}.yaml").write_text(yaml.safe_dump({
                "group": group, "task": tasks,
                "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
                "metadata": {"version": 1.0}}, sort_keys=False))
            written[group] = tasks
        if (tmp / "data").exists():
            (tmp / "data" / ".gitignore").write_text("# EWoK's terms of use: keep these files out of public repos\n*\n")
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
