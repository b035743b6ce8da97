"""Reading the task files: the pipelines' templates, label ids, file layouts and one-line errors."""

import json

import pytest

from babyllama.errors import UserError
from babyllama.finetuning.tasks import MSGS_AMBIGUOUS, MSGS_CONTROLS, TASKS, load_task


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_every_task_of_the_issue_is_registered():
    glue = {"cola", "sst2", "mrpc", "qqp", "mnli", "mnli-mm", "qnli", "rte", "boolq", "multirc", "wsc"}
    assert glue | set(MSGS_CONTROLS) | set(MSGS_AMBIGUOUS) == set(TASKS)
    assert len(MSGS_CONTROLS) == 5 and len(MSGS_AMBIGUOUS) == 6


def test_multirc_and_wsc_templates(tmp_path):
    row = {"paragraph": "P.", "question": "Q?", "answer": "A", "idx": 0, "label": 1}
    _write(tmp_path / "glue_filtered" / "multirc.train.jsonl", [row, {**row, "label": 0}])
    _write(tmp_path / "glue_filtered" / "multirc.valid.jsonl", [row])
    d = load_task("multirc", tmp_path, "babylm2024")
    assert d.train.texts[0] == ("Question: Q? Answer: A", "P.")
    w = {"text": "Mark told Pete. He lied.", "span1_index": 0, "span2_index": 3, "span1_text": "Mark",
         "span2_text": "He", "idx": 0, "label": 0}
    _write(tmp_path / "glue_filtered" / "wsc.train.jsonl", [w, {**w, "label": 1}])
    _write(tmp_path / "glue_filtered" / "wsc.valid.jsonl", [w])
    d = load_task("wsc", tmp_path, "babylm2024")
    assert d.train.texts[0] == ('Does "He" refer to "Mark" in this passage?', "Mark told Pete. He lied.")


def test_labels_are_the_sorted_training_labels(tmp_path):
    rows = [{"premise": "a", "hypothesis": "b", "label": lab} for lab in (2, 0, 1, 2)]
    _write(tmp_path / "glue_filtered" / "mnli.train.jsonl", rows)
    _write(tmp_path / "glue_filtered" / "mnli.valid.jsonl", rows[:2])
    d = load_task("mnli", tmp_path, "babylm2024")
    assert d.label_list == [0, 1, 2] and d.train.labels == [2, 0, 1, 2] and d.num_labels == 3


def test_2023_layout_and_mnli_mm_trains_on_mnli(tmp_path):
    rows = [{"premise": "a", "hypothesis": "b", "label": lab} for lab in (0, 1, 2)]
    _write(tmp_path / "glue_filtered" / "mnli.train.json", rows)
    _write(tmp_path / "glue_filtered" / "mnli.validation_mismatched.json", rows[:1])
    d = load_task("mnli-mm", tmp_path, "babylm2023")
    assert d.train.path.name == "mnli.train.json" and d.valid.path.name == "mnli.validation_mismatched.json"


def test_msgs_rows_keep_their_condition(tmp_path):
    rows = [{"sentence": f"s {i}", "label": i % 2, "condition": c} for i, c in enumerate(["training"] * 4)]
    valid = [{"sentence": "t", "label": 1, "condition": "test"}, {"sentence": "c", "label": 0, "condition": "control"}]
    _write(tmp_path / "msgs_filtered" / "main_verb_control.train.jsonl", rows)
    _write(tmp_path / "msgs_filtered" / "main_verb_control.valid.jsonl", valid)
    d = load_task("main_verb_control", tmp_path, "babylm2023")
    assert d.valid.conditions == ["test", "control"] and d.spec.metric == "mcc" and d.spec.test_condition


def test_missing_training_file_names_it_and_the_download(tmp_path):
    (tmp_path / "glue_filtered").mkdir()
    with pytest.raises(UserError, match=r"boolq\.train\.jsonl not found .*osf\.io/ad7qg"):
        load_task("boolq", tmp_path, "babylm2024")


def test_bad_rows_are_one_line(tmp_path):
    _write(tmp_path / "glue_filtered" / "rte.train.jsonl", [{"sentence1": "a", "label": 0}])
    _write(tmp_path / "glue_filtered" / "rte.valid.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 0}])
    with pytest.raises(UserError, match=r"rte\.train\.jsonl:1: no field 'sentence2'"):
        load_task("rte", tmp_path, "babylm2024")
    (tmp_path / "glue_filtered" / "rte.train.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "label": 0}\n'
                                                                 '{"sentence1": "a", "sentence2": "b", "label": 1}\n'
                                                                 "not json\n")
    with pytest.raises(UserError, match=r"rte\.train\.jsonl:3: not JSON"):
        load_task("rte", tmp_path, "babylm2024")
    _write(tmp_path / "glue_filtered" / "rte.train.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 0}] * 2)
    with pytest.raises(UserError, match="one label only"):
        load_task("rte", tmp_path, "babylm2024")
    _write(tmp_path / "glue_filtered" / "rte.train.jsonl", [{"sentence1": "a", "sentence2": "b", "label": v}
                                                            for v in (0, 1)])
    _write(tmp_path / "glue_filtered" / "rte.valid.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 7}])
    with pytest.raises(UserError, match=r"rte\.valid\.jsonl:1: label 7 does not occur in the training file"):
        load_task("rte", tmp_path, "babylm2024")
