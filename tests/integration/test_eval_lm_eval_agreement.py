"""Our BLiMP / EWoK scoring makes the same decision as lm-evaluation-harness on every item (offline, local files).

lm-eval is a dev dependency (`pip install -e .[dev]`); it runs a local `dataset_path: json` task per paradigm with
the BabyLM template: doc_to_text "", choices [sentence_good, sentence_bad], target 0, metric acc.
"""

import json
import zipfile

import pytest
import yaml

from babyllama.eval.scoring import Scorer
from babyllama.eval.suites import load_items
from babyllama.eval.tasks import EWOK_PASSWORD, Item
from helpers import SHARED_EVAL, need_shared

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is a dev dependency: pip install -e .[dev]")
PARADIGMS = ["adjunct_island", "anaphor_gender_agreement", "determiner_noun_agreement_2", "wh_vs_that_with_gap"]


def _task(d, name, data_file, text, choices):
    (d / f"{name}.yaml").write_text(yaml.safe_dump({
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": text, "doc_to_choice": choices,
        "doc_to_target": 0, "target_delimiter": " ", "metric_list": [{"metric": "acc"}]}))


@pytest.mark.slow
def test_decisions_identical_to_lm_eval(teachers, tmp_path, monkeypatch):
    need_shared()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    names = []
    for p in PARADIGMS:
        src = SHARED_EVAL / "blimp" / f"{p}.jsonl"
        sub = tmp_path / f"{p}.jsonl"
        sub.write_text("".join(src.read_text().splitlines(keepends=True)[:200]))
        _task(tasks, f"bl_{p}", sub, "", "{{[sentence_good, sentence_bad]}}")
        names.append(f"bl_{p}")
    # EWoK stays zipped in the data folder; a temporary, uncommitted copy of 100 items is made for lm-eval
    with zipfile.ZipFile(SHARED_EVAL / "ewok_filtered" / "ewok_filtered.zip") as z:
        rows = z.read("ewok_filtered/agent-properties.jsonl", pwd=EWOK_PASSWORD).decode().splitlines()[:100]
    ewok = tmp_path / "ewok" / "agent-properties.jsonl"
    ewok.parent.mkdir()
    ewok.write_text("\n".join(rows) + "\n")
    _task(tasks, "ew_agent", ewok, "{{Context1}}", "{{[Target1, Target2]}}")
    names.append("ew_agent")

    for model_dir in teachers:  # a LLaMA and a GPT-2
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
        res = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tok, batch_size=64), tasks=names,
                              task_manager=TaskManager(include_path=str(tasks)), log_samples=True)
        scorer = Scorer(model, tok, batch_size=48)
        for p in PARADIGMS:
            items = load_items(str(tmp_path / f"{p}.jsonl"))
            ours, lps = scorer.score_items(items)
            theirs = sorted(res["samples"][f"bl_{p}"], key=lambda s: s["doc_id"])
            assert len(theirs) == len(ours) == 200
            assert [s["acc"] == 1.0 for s in theirs] == ours, p
            for s, lp in zip(theirs, lps):
                assert [r[0] for r in s["filtered_resps"]] == pytest.approx(list(lp), abs=1e-3)
        ew_items = [Item("agent-properties", i, r["Context1"], (" " + r["Target1"], " " + r["Target2"]))
                    for i, r in enumerate(json.loads(x) for x in rows)]
        ours, _ = scorer.score_items(ew_items)
        theirs = sorted(res["samples"]["ew_agent"], key=lambda s: s["doc_id"])
        assert [s["acc"] == 1.0 for s in theirs] == ours
        ours_acc = sum(ours) / len(ours)
        assert res["results"]["ew_agent"]["acc,none"] == pytest.approx(ours_acc)
