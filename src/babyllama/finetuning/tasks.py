"""The fine-tuning tasks: (Super)GLUE and MSGS as the BabyLM pipelines read them, and where their files lie.

Each task names the JSON-lines fields that make its input and the template that joins them, exactly as the
pipelines' classification scripts do (2023/2024 ``finetune_classification.py``; 2025
``evaluation_pipeline/finetune/dataset.py``): one text, or a pair passed to the tokenizer as ``(text_a, text_b)``;
MultiRC's first text is ``"Question: {question} Answer: {answer}"`` and its second the paragraph; WSC's first is
``'Does "{span2_text}" refer to "{span1_text}" in this passage?'`` and its second the text. Labels are mapped to
class ids by sorting the training file's distinct labels (the 2023/2024 script's ``label_list.sort()``).

Files: ``glue_filtered/{task}.train.jsonl`` and ``{task}.valid.jsonl`` (BabyLM 2024/2025 layout), or the 2023 layout
``glue_filtered/{task}.train.json`` / ``{task}.validation.json`` (MNLI: ``validation_matched`` /
``validation_mismatched``); MSGS under ``msgs_filtered/`` or ``msgs/`` in either naming. MNLI and QQP training
files may also come from ``glue_filtered_2025_subsampled/`` (BabyLM 2025's 10k-example subsets). MSGS scores use
the validation rows with ``condition == "test"`` (the models are selected on the whole validation file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..io import read_jsonl, sha256_file

GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "mnli", "mnli-mm", "qnli", "rte", "boolq", "multirc", "wsc")
MSGS_CONTROLS = ("main_verb_control", "control_raising_control", "syntactic_category_control",
                 "lexical_content_the_control", "relative_position_control")
MSGS_AMBIGUOUS = ("main_verb_lexical_content_the", "main_verb_relative_token_position",
                  "syntactic_category_lexical_content_the", "syntactic_category_relative_position",
                  "control_raising_lexical_content_the", "control_raising_relative_token_position")
MSGS_TASKS = MSGS_CONTROLS + MSGS_AMBIGUOUS

OSF = {"babylm2023": "https://osf.io/ad7qg/ (BabyLM 2023 filter_data.zip, also in babylm/evaluation-pipeline-2023)",
       "babylm2024": "https://osf.io/ad7qg/ (BabyLM 2024 evaluation_data)",
       "babylm2025": "https://osf.io/ryjfm/ (BabyLM 2025 evaluation_data/full_eval)"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str  # glue | superglue | msgs
    first: tuple[str, ...]  # fields of the first text
    second: tuple[str, ...] = ()  # fields of the second text (pairs)
    template: str | None = None  # joins the first text's fields; else they are joined by spaces
    metric: str = "accuracy"  # the reported metric (BabyLM tables): accuracy, f1 or mcc
    train_as: str | None = None  # mnli-mm: trained (2024/2025: the very same run) as mnli
    test_condition: bool = False  # MSGS: report on validation rows with condition == "test"


_SPECS = [
    TaskSpec("cola", "glue", ("sentence",), metric="mcc"),
    TaskSpec("sst2", "glue", ("sentence",)),
    TaskSpec("mrpc", "glue", ("sentence1",), ("sentence2",), metric="f1"),
    TaskSpec("qqp", "glue", ("question1",), ("question2",), metric="f1"),
    TaskSpec("mnli", "glue", ("premise",), ("hypothesis",)),
    TaskSpec("mnli-mm", "glue", ("premise",), ("hypothesis",), train_as="mnli"),
    TaskSpec("qnli", "glue", ("question",), ("sentence",)),
    TaskSpec("rte", "glue", ("sentence1",), ("sentence2",)),
    TaskSpec("boolq", "superglue", ("question",), ("passage",)),
    TaskSpec("multirc", "superglue", ("question", "answer"), ("paragraph",), "Question: {} Answer: {}"),
    TaskSpec("wsc", "superglue", ("span2_text", "span1_text"), ("text",), 'Does "{}" refer to "{}" in this passage?'),
    *[TaskSpec(t, "msgs", ("sentence",), metric="mcc", test_condition=True) for t in MSGS_TASKS],
]
TASKS: dict[str, TaskSpec] = {s.name: s for s in _SPECS}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise UserError(f"unknown fine-tuning task '{name}': use one of {', '.join(TASKS)}")
    return TASKS[name]


@dataclass
class Split:
    """One file of a task, as texts and class ids."""

    path: Path
    sha256: str
    texts: list[tuple[str, ...]]  # (text,) or (text_a, text_b)
    labels: list[int]
    conditions: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TaskData:
    spec: TaskSpec
    train: Split
    valid: Split
    label_list: list  # the training file's sorted distinct labels; class id = position
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.label_list)


def _candidates(spec: TaskSpec, split: str) -> list[str]:
    stem = spec.train_as if (split == "train" and spec.train_as) else spec.name
    if split == "train":
        return [f"{stem}.train.jsonl", f"{stem}.train.json"]
    if spec.name == "mnli":
        return ["mnli.valid.jsonl", "mnli.validation_matched.json", "mnli.validation.json"]
    if spec.name == "mnli-mm":
        return ["mnli-mm.valid.jsonl", "mnli.validation_mismatched.json", "mnli-mm.validation.json"]
    return [f"{stem}.valid.jsonl", f"{stem}.validation.json"]


def _folders(spec: TaskSpec, data_dir: Path, split: str) -> list[Path]:
    if spec.family == "msgs":
        return [data_dir / "msgs_filtered", data_dir / "msgs", data_dir]
    folders = [data_dir / "glue_filtered", data_dir]
    if split == "train" and (spec.train_as or spec.name) in ("mnli", "qqp"):
        folders.append(data_dir / "glue_filtered_2025_subsampled")
    return folders


def find_file(spec: TaskSpec, data_dir: str | Path, split: str, protocol: str) -> Path:
    """The task's ``train`` or ``valid`` file under the data folder, or one line naming it and where to get it."""
    data_dir = Path(data_dir)
    for folder in _folders(spec, data_dir, split):
        for name in _candidates(spec, split):
            if (folder / name).is_file():
                return folder / name
    want = _folders(spec, data_dir, split)[0] / _candidates(spec, split)[0]
    what = "MSGS (BabyLM 2023 filter_data.zip, msgs_filtered/)" if spec.family == "msgs" else "the BabyLM data"
    raise UserError(f"task {spec.name}: {want} not found (the {split} file); download {what} from "
                    f"{OSF[protocol]} and unpack it so that this file exists, or pass --eval-root DIR")


def _text(row: dict, keys: tuple[str, ...], template: str | None, path: Path, line: int) -> str:
    try:
        parts = [row[k] for k in keys]
    except KeyError as e:
        raise UserError(f"{path}:{line}: no field {e.args[0]!r}; this is not a {path.stem.split('.')[0]} file "
                        "in the BabyLM format") from None
    return template.format(*parts) if template else " ".join(str(p) for p in parts)


def read_rows(path: Path) -> list[dict]:
    rows = []
    for i, row in read_jsonl(path, "the file must hold one JSON object per line"):
        if "label" not in row:
            raise UserError(f"{path}:{i}: each line must be a JSON object with a 'label'")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no examples")
    return rows


def read_split(spec: TaskSpec, path: Path, label_ids: dict | None) -> tuple[Split, list]:
    rows = read_rows(path)
    labels_seen = sorted({r["label"] for r in rows}, key=lambda v: (str(type(v)), v))
    ids = label_ids or {v: i for i, v in enumerate(labels_seen)}
    texts, labels = [], []
    for i, r in enumerate(rows, 1):
        first = _text(r, spec.first, spec.template, path, i)
        texts.append((first, _text(r, spec.second, None, path, i)) if spec.second else (first,))
        if r["label"] not in ids:
            raise UserError(f"{path}:{i}: label {r['label']!r} does not occur in the training file "
                            f"(labels: {', '.join(map(str, ids))})")
        labels.append(ids[r["label"]])
    conditions = [r.get("condition") for r in rows]
    return Split(path, sha256_file(path), texts, labels, conditions), labels_seen


def load_task(name: str, data_dir: str | Path, protocol: str) -> TaskData:
    """Read a task's training and validation files (validated: fields, labels, at least two classes)."""
    spec = get_task(name)
    train_path = find_file(spec, data_dir, "train", protocol)
    valid_path = find_file(spec, data_dir, "valid", protocol)
    train, label_list = read_split(spec, train_path, None)
    if len(label_list) < 2:
        raise UserError(f"{train_path}: one label only ({label_list[0]!r}); a classifier needs two or more")
    valid, _ = read_split(spec, valid_path, {v: i for i, v in enumerate(label_list)})
    notes = []
    if train_path.parent.name == "glue_filtered_2025_subsampled" and protocol != "babylm2025":
        notes.append(f"{spec.train_as or name}: trained on BabyLM 2025's 10k-example subset {train_path} (the "
                     f"{protocol} pipeline used the full filtered training file)")
    if spec.test_condition and not any(c == "test" for c in valid.conditions):
        notes.append(f"{name}: {valid_path} has no rows with condition == 'test'; scored on all its rows")
    return TaskData(spec, train, valid, label_list, notes)
