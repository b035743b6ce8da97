"""`babyllama finetune` end to end on tiny models: RTE from the shared data, MSGS-format files, checkpoints without
a pad token, the CLI's table with CIs and paired comparisons, and its one-line errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import (SHARED_EVAL, need_shared, one_error_line, run_here, save_random_teachers,
                     msgs_sentence, write_msgs)

from babyllama.config import FinetuneConfig
from babyllama.finetuning.run import finetune_models

@pytest.fixture(scope="module")
def tiny_models(tiny_tokenizer, tmp_path_factory):
    return save_random_teachers(tiny_tokenizer, tmp_path_factory.mktemp("ft-models"))


def _mcc(y, p):
    tp = int(((y == 1) & (p == 1)).sum()); tn = int(((y == 0) & (p == 0)).sum())
    fp = int(((y == 0) & (p == 1)).sum()); fn = int(((y == 1) & (p == 0)).sum())
    den = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return (tp * tn - fp * fn) / den if den else 0.0


def _f1(y, p):
    tp = int(((y == 1) & (p == 1)).sum()); fp = int(((y == 0) & (p == 1)).sum())
    fn = int(((y == 1) & (p == 0)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_msgs_format_is_learned_and_scored_on_its_test_rows(tiny_models, tmp_path):
    data = write_msgs(tmp_path)
    cfg = FinetuneConfig(tasks=["main_verb_control"], seeds=[1], eval_root=str(data), max_epochs=8,
                         precision="fp32", hparams={"default": {"learning_rate": 3e-3, "batch_size": 16}})
    res = finetune_models(tiny_models[:1], cfg, log=lambda s: None)
    block = res["models"][0]["tasks"]["main_verb_control"]
    run = block["runs"][0]
    preds = np.array([int(c) for c in run["predictions"]])
    rows = [json.loads(x) for x in (data / "msgs_filtered" / "main_verb_control.valid.jsonl").read_text().splitlines()]
    y = np.array([r["label"] for r in rows])
    test = np.array([r["condition"] == "test" for r in rows])
    assert len(preds) == len(rows) == 80
    # the reported MCC is the hand-computed MCC of the kept model's predictions on the condition == "test" rows
    assert run["metrics"]["mcc"] == pytest.approx(_mcc(y[test], preds[test]))
    assert run["metrics"]["f1"] == pytest.approx(_f1(y[test], preds[test]))
    assert run["selection"]["accuracy"] == pytest.approx((preds == y).mean())  # selected on the whole file
    assert block["metric"] == "mcc" and block["mean"] == run["metrics"]["mcc"]
    assert run["metrics"]["accuracy"] > 0.85, run["history"]  # the tiny model learns the surface rule
    assert block["hparams"]["learning_rate"] == 3e-3 and run["epochs_run"] <= 8


def test_rte_few_hundred_examples_two_seeds(teachers):
    need_shared()
    cfg = FinetuneConfig(tasks=["rte"], seeds=[1, 2], eval_root=str(SHARED_EVAL), max_epochs=2,
                         max_train_examples=200, precision="fp32")
    res = finetune_models([teachers[0]], cfg, log=lambda s: None)
    block = res["models"][0]["tasks"]["rte"]
    rows = [json.loads(x) for x in (SHARED_EVAL / "glue_filtered" / "rte.valid.jsonl").read_text().splitlines()]
    y = np.array([r["label"] for r in rows])
    for run in block["runs"]:
        p = np.array([int(c) for c in run["predictions"]])
        assert run["metrics"]["accuracy"] == pytest.approx((p == y).mean())  # RTE reports accuracy
        assert run["examples"] == 200 * run["epochs_run"] and run["train_tokens"] <= run["padded_tokens"]
    assert block["metric"] == "accuracy" and block["n"] == 2 and block["ci"] is not None
    assert res["files"]["rte"]["train_examples"] == 2490 and res["files"]["rte"]["valid_examples"] == 139
    assert res["models"][0]["macro"]["n"] == 2


def test_runs_side_by_side_equal_the_runs_one_after_the_other(tiny_models, tmp_path):
    """jobs: 2 forks two workers; on the same threads per run, every run's history and predictions are the
    sequential run's, in the same places of the result."""
    import torch

    data = write_msgs(tmp_path, n_train=64, n_valid=24)
    write_msgs(tmp_path, task="syntactic_category_control", n_train=48, n_valid=24, seed=1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for jobs in (1, 2):
            lines = []
            cfg = FinetuneConfig(tasks=["main_verb_control", "syntactic_category_control"], seeds=[1, 2],
                                 eval_root=str(data), max_epochs=2, precision="fp32", jobs=jobs,
                                 hparams={"default": {"learning_rate": 3e-3, "batch_size": 16}})
            out[jobs] = (finetune_models(tiny_models[:1], cfg, log=lines.append), lines)
    finally:
        torch.set_num_threads(before)
    (seq, seq_lines), (par, par_lines) = out[1], out[2]
    assert any("4 runs, 2 at once on 1 thread each" in line for line in par_lines), par_lines
    assert not any("at once" in line for line in seq_lines)
    for task in ("main_verb_control", "syntactic_category_control"):
        a, b = seq["models"][0]["tasks"][task], par["models"][0]["tasks"][task]
        assert [r["seed"] for r in b["runs"]] == [1, 2]
        for ra, rb in zip(a["runs"], b["runs"]):
            assert ra["predictions"] == rb["predictions"] and ra["history"] == rb["history"]
            assert ra["metrics"] == rb["metrics"]
        assert a["mean"] == b["mean"]
    done = [line for line in par_lines if "(kept epoch" in line]
    assert len(done) == 4 and done[-1].rstrip().endswith("eta 0 s)")
    # each run's epoch lines reach the log before its result line
    for line in done:
        run = line.split(":")[0]
        assert max(i for i, x in enumerate(par_lines) if x.strip().startswith(run) and " step " in x) \
            < par_lines.index(line)


def test_compiled_layers_train_as_the_eager_ones(tiny_models, tmp_path):
    """finetune.compile: the training steps run compiled code (dynamo counts the compiled frames) and learn what the
    eager run learns; the kept model's scores are the same up to the fused kernels' rounding."""
    import torch._dynamo

    data = write_msgs(tmp_path, n_train=96, n_valid=40)
    out = {}
    for flag in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        lines = []
        cfg = FinetuneConfig(tasks=["main_verb_control"], seeds=[1], eval_root=str(data), max_epochs=4,
                             precision="fp32", compile=flag, hparams={"default": {"learning_rate": 3e-3,
                                                                                  "batch_size": 16}})
        out[flag] = finetune_models(tiny_models[:1], cfg, log=lines.append)
        frames = sum(torch._dynamo.utils.counters["frames"].values())
        assert (frames > 0) == flag, dict(torch._dynamo.utils.counters["frames"])
        assert out[flag]["models"][0]["compiled"] is flag
        assert any("compiled for training" in line for line in lines) == flag
    torch._dynamo.reset()
    eager, comp = (out[f]["models"][0]["tasks"]["main_verb_control"]["runs"][0] for f in (False, True))
    assert eager["metrics"]["accuracy"] > 0.85 and comp["metrics"]["accuracy"] > 0.85, (eager["history"],
                                                                                         comp["history"])
    assert abs(eager["metrics"]["accuracy"] - comp["metrics"]["accuracy"]) <= 0.05
    assert len(eager["history"]) == len(comp["history"])


def test_checkpoints_without_a_pad_token_fine_tune_in_batches(tiny_tokenizer, tmp_path):
    """LLaMA and GPT-2 whose tokenizer and config have no pad token (the pipelines' batch-size-1 failure)."""
    import copy

    dirs = save_random_teachers(tiny_tokenizer, tmp_path)
    for d in dirs:
        cfg = json.loads((tmp_path / d / "config.json").read_text())
        cfg["pad_token_id"] = None
        (tmp_path / d / "config.json").write_text(json.dumps(cfg))
        tok = copy.deepcopy(tiny_tokenizer)
        tok.pad_token = None
        tok.save_pretrained(d)
        assert json.loads((tmp_path / d / "tokenizer_config.json").read_text()).get("pad_token") is None
    data = write_msgs(tmp_path / "data", n_train=48, n_valid=16)
    cfg = FinetuneConfig(tasks=["main_verb_control"], seeds=[1], eval_root=str(data), max_epochs=1,
                         precision="fp32", hparams={"default": {"batch_size": 8}})
    res = finetune_models(dirs, cfg, log=lambda s: None)
    for m in res["models"]:
        run = m["tasks"]["main_verb_control"]["runs"][0]
        assert run["steps"] == 6 and run["examples"] == 48  # batches of 8
        assert any("no pad token" in n and "EOS" in n for n in m["notes"]), m["notes"]


def test_mnli_mm_is_scored_by_the_mnli_run_under_2024_and_trained_apart_under_2023(tiny_models, tmp_path):
    rng = random.Random(0)
    folder = tmp_path / "glue_filtered"
    folder.mkdir()
    for name, n in (("mnli.train.jsonl", 60), ("mnli.valid.jsonl", 20), ("mnli-mm.valid.jsonl", 21)):
        rows = [{"premise": msgs_sentence(rng, False), "hypothesis": msgs_sentence(rng, i % 3 == 0), "label": i % 3}
                for i in range(n)]
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for protocol, runs in (("babylm2024", 1), ("babylm2023", 2)):
        cfg = FinetuneConfig(tasks=["mnli", "mnli-mm"], protocol=protocol, seeds=[3], eval_root=str(tmp_path),
                             max_epochs=1, precision="fp32")
        lines = []
        res = finetune_models(tiny_models[:1], cfg, log=lines.append)
        tasks = res["models"][0]["tasks"]
        assert len(tasks["mnli-mm"]["runs"][0]["predictions"]) == 21 and tasks["mnli"]["metric"] == "accuracy"
        assert sum(" seed 3: " in x for x in lines) == runs, lines
        shared = "scored_by" in tasks["mnli-mm"]["runs"][0]
        assert shared == (protocol == "babylm2024")


def test_babylm2025_head_warns_about_first_token_pooling(tiny_models, tmp_path):
    data = write_msgs(tmp_path, n_train=40, n_valid=10)
    for pooling, warned in (("auto", True), ("last", False)):
        lines = []
        cfg = FinetuneConfig(tasks=["main_verb_control"], protocol="babylm2025", seeds=[1], eval_root=str(data),
                             max_epochs=1, precision="fp32", pooling=pooling)
        res = finetune_models(tiny_models[1:], cfg, log=lines.append)
        run = res["models"][0]["tasks"]["main_verb_control"]["runs"][0]
        assert run["examples"] == 32  # batch 32, the short last batch dropped
        assert any("first token" in x for x in lines) == warned
        ctx = json.loads((Path(tiny_models[1]) / "config.json").read_text())["n_positions"]
        assert ctx < 512 and res["models"][0]["tasks"]["main_verb_control"]["hparams"]["max_length"] == ctx


def test_cli_two_checkpoints_table_with_cis_and_paired_comparison(tiny_models, tmp_path, capsys):
    data = write_msgs(tmp_path, n_train=64, n_valid=20)
    out = tmp_path / "ft.json"
    r = run_here(capsys, "finetune", *tiny_models, "--task", "main_verb_control", "--seeds", "1", "2", "--eval-root",
                 data, "--max-epochs", "1", "--precision", "fp32", "--json", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| main_verb_control | MCC |" in r.stdout and "[95% t interval]" in r.stdout
    assert "(paired, same seeds and files)" in r.stdout and "| **macro** |" in r.stdout
    res = json.loads(out.read_text())
    comp = res["comparisons"][0]
    assert comp["a"] == str(tiny_models[1]) and comp["b"] == str(tiny_models[0])
    a = res["models"][1]["tasks"]["main_verb_control"]["values"]
    b = res["models"][0]["tasks"]["main_verb_control"]["values"]
    assert comp["tasks"]["main_verb_control"]["diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert res["protocol"] == "babylm2024" and res["versions"]["transformers"]
    r = run_here(capsys, "finetune", tiny_models[0], "--task", "main_verb_control", "--eval-root", data, "--json", out)
    assert "exists" in one_error_line(r)


def test_cli_errors_are_one_line(tiny_models, tmp_path, capsys):
    need_shared()
    line = one_error_line(run_here(capsys, "finetune", tiny_models[0], "--task", "boolq", "--eval-root", SHARED_EVAL))
    assert "boolq.train.jsonl not found" in line and "osf.io" in line
    line = one_error_line(run_here(capsys, "finetune", tiny_models[0], "--task", "nope", "--eval-root", SHARED_EVAL))
    assert "nope" in line
    line = one_error_line(run_here(capsys, "finetune", tiny_models[0], "--eval-root", SHARED_EVAL))
    assert "no task" in line
    bad = tmp_path / "hp.yaml"
    bad.write_text("rte: {learning_rat: 1e-4}\n")
    line = one_error_line(run_here(capsys, "finetune", tiny_models[0], "--task", "rte", "--eval-root", SHARED_EVAL,
                                   "--hparams", bad))
    assert "learning_rat" in line and str(bad) in line
    line = one_error_line(run_here(capsys, "finetune", tmp_path / "missing", "--task", "rte", "--eval-root",
                                   SHARED_EVAL))
    assert "missing" in line
    line = one_error_line(run_here(capsys, "finetune", tiny_models[0], "--task", "rte", "--data-dir",  # former name
                                   tmp_path / "none"))
    assert "--eval-root" in line and "none: not a folder" in line


@pytest.mark.parametrize("protocol", ["babylm2024", "babylm2025"])
def test_lora_trains_adapters_and_the_head_only(tiny_models, tmp_path, protocol):
    import torch

    from babyllama.finetuning import model as ft_model
    from babyllama.finetuning.model import load_base
    from babyllama.finetuning.protocols import protocol_hparams

    pytest.importorskip("peft")
    base = load_base(tiny_models[0])
    h = protocol_hparams(protocol, "main_verb_control", 2)
    m = ft_model.build_classifier(base, h.head, 2, h.pooling, h.dropout, seed=1, lora=(8, 16, 0.1))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "score" in n or "classifier" in n for n in trainable), trainable
    assert any("lora_" in n for n in trainable) and any("score" in n or "classifier" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad}
    data = write_msgs(tmp_path, n_train=64, n_valid=16)
    cfg = FinetuneConfig(tasks=["main_verb_control"], protocol=protocol, seeds=[1], eval_root=str(data),
                         max_epochs=1, precision="fp32", lora={})
    res = finetune_models(tiny_models[:1], cfg, log=lambda s: None)
    run = res["models"][0]["tasks"]["main_verb_control"]["runs"][0]
    assert run["steps"] >= 1 and res["config"]["lora"] == {"r": 8, "alpha": 16, "dropout": 0.1}
    # one optimiser step changes the adapters and the head, never the frozen body
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    torch.nn.functional.cross_entropy(m(ids, mask), torch.tensor([0, 1])).backward()
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in m.named_parameters() if not p.requires_grad)


def test_python_api(tiny_models, tmp_path):
    import babyllama

    data = write_msgs(tmp_path, n_train=32, n_valid=8)
    res = babyllama.finetune(tiny_models[0], tasks=["main_verb_control"], eval_root=data, seeds=[1], max_epochs=1,
                             precision="fp32")
    assert res["models"][0]["tasks"]["main_verb_control"]["n"] == 1 and callable(babyllama.finetune)
