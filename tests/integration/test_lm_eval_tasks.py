"""`babyllama export lm-eval-tasks` writes task files that the real `lm_eval` command line runs offline, with the
same decisions as `babyllama eval`."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
import yaml

from babyllama.config import EvalConfig, ModelConfig
from babyllama.eval.evaluate import evaluate
from babyllama.export.lm_eval_tasks import export_tasks
from babyllama.models import build_model
from conftest import synthetic_text

pytest.importorskip("lm_eval", reason="lm-eval is a dev dependency: pip install -e .[dev]")


@pytest.fixture
def eval_root(tmp_path):
    """blimp_filtered with two paradigms and an EWoK zip, made here (the shared data stays where it is)."""
    root = tmp_path / "eval"
    (root / "blimp_filtered").mkdir(parents=True)
    # only sentences the agreement edit changes: a pair of two equal sentences is a tie that lm-eval scores as two
    # requests in different batches, whose last float digits may then differ and break the tie either way
    sents = [s for s in synthetic_text(400, 5).replace("? ", ". ").replace("! ", ". ").split(". ")
             if " sees " in s or " likes " in s]
    for k, name in enumerate(("agreement_a", "agreement_b")):
        rows = [{"sentence_good": s + ".", "sentence_bad": s.replace(" sees ", " see ").replace(" likes ", " like ")
                 + ".", "linguistics_term": "agreement"} for s in sents[k::2][:25]]
        assert len(rows) == 25
        (root / "blimp_filtered" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "ewok_filtered").mkdir()
    with zipfile.ZipFile(root / "ewok_filtered" / "ewok_filtered.zip", "w") as z:
        rows = [{"Context1": "The cat is hungry.", "Target1": "It wants food.", "Target2": "It wants sleep."},
                {"Context1": "The girl is cold.", "Target1": "She finds a coat.", "Target2": "She finds a fan."}]
        z.writestr("ewok_filtered/physical.jsonl", "".join(json.dumps(r) + "\n" for r in rows * 5))
    (root / "entity_tracking").mkdir()
    things = ["the cat", "the dog", "the mat", "the hat", "nothing"]
    rows = []
    for k in range(16):
        a, b = things[k % 5], things[(k + 2) % 5]
        rows.append({"input_prefix": f"Box 0 contains {a}, Box 1 contains {b}. Box {k % 2} contains ",
                     "options": [f"{(a, b)[k % 2]}.", f"{(b, a)[k % 2]}.", f"{things[(k + 4) % 5]}."],
                     "numops": k % 2})
    (root / "entity_tracking" / "regular.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.slow
def test_lm_eval_cli_runs_our_tasks_with_our_decisions(eval_root, tiny_tokenizer_dir, tmp_path):
    from babyllama.tokenizer import load_tokenizer

    tiny_tokenizer = load_tokenizer(tiny_tokenizer_dir)  # its own copy: other tests set a pad token on the shared one
    model_dir = tmp_path / "model"
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=3).eval()
    model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    tasks = tmp_path / "tasks"
    groups = export_tasks(tasks, eval_root, ["blimp_filtered", "ewok", "entity_tracking_fast"])
    assert groups == {"blimp_filtered": ["blimp_agreement_a_filtered", "blimp_agreement_b_filtered"],
                      "ewok_filtered": ["ewok_physical_filtered"],
                      "entity_tracking_fast_regular": ["entity_tracking_fast_regular_0_ops",
                                                       "entity_tracking_fast_regular_1_ops"],
                      "entity_tracking_fast": ["entity_tracking_fast_regular"]}
    assert yaml.safe_load((tasks / "ewok_filtered" / "_template_yaml").read_text())["doc_to_text"] == "{{Context1}}"
    assert (tasks / "data" / ".gitignore").exists()
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "lm-eval-out"
    r = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                        f"pretrained={model_dir},dtype=float32", "--include_path", str(tasks), "--tasks",
                        "blimp_filtered,ewok_filtered,entity_tracking_fast", "--device", "cpu", "--batch_size", "8", "--log_samples",
                        "--output_path", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    theirs = {}
    for f in out.rglob("samples_*.jsonl"):
        task = f.name.split("samples_")[1].rsplit("_", 1)[0]
        rows = sorted((json.loads(line) for line in f.read_text().splitlines()), key=lambda s: s["doc_id"])
        theirs[task] = "".join("1" if s["acc"] == 1.0 else "0" for s in rows)
    ours = evaluate(model, tiny_tokenizer, EvalConfig(suites=["blimp_filtered", "ewok", "entity_tracking_fast"],
                                                      eval_root=str(eval_root)))
    assert theirs["blimp_agreement_a_filtered"] == ours["suites"]["blimp_filtered"]["decisions"]["agreement_a"]
    assert theirs["blimp_agreement_b_filtered"] == ours["suites"]["blimp_filtered"]["decisions"]["agreement_b"]
    assert theirs["ewok_physical_filtered"] == ours["suites"]["ewok"]["decisions"]["physical"]
    # entity tracking, scored by the 2025 pipeline's rule here and by lm-eval's there: the same decisions
    for uid in ("regular_0_ops", "regular_1_ops"):
        assert theirs[f"entity_tracking_fast_{uid}"] == ours["suites"]["entity_tracking_fast"]["decisions"][uid]
    assert "1" in "".join(ours["suites"]["entity_tracking_fast"]["decisions"].values())
