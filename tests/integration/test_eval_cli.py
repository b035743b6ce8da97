"""`babyllama eval` on two checkpoints: per-phenomenon table with CIs, paired comparison, perplexity, JSON."""

import json
import subprocess
import sys

import pytest

from helpers import SHARED, need_shared


@pytest.mark.slow
def test_eval_two_models(teachers, prepared, tmp_path):
    need_shared()
    out = tmp_path / "res.json"
    r = subprocess.run([sys.executable, "-m", "babyllama.cli", "eval", str(teachers[0]), str(teachers[1]),
                        "--suite", "blimp", "--suite", "supplement", "--suite", "ewok", "--suite", "perplexity",
                        "--eval-root", str(SHARED / "eval"), "--corpus", str(prepared), "--max-pairs", "20",
                        "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| island_effects |" in r.stdout and "**macro mean**" in r.stdout
    assert "gpt2-tiny - llama-tiny" in r.stdout and "p (McNemar)" in r.stdout
    assert "bits/word" in r.stdout
    res = json.loads(out.read_text())
    blimp = res["suites"]["blimp"]["per_model"][str(teachers[0])]
    assert blimp["macro"]["paradigms"] == 67 and blimp["macro"]["items"] == 67 * 20
    assert len(blimp["groups"]) == 13
    assert set(res["suites"]) == {"blimp", "supplement", "ewok"}
    ppl = res["perplexity"][str(teachers[0])]
    assert set(ppl) == {"dev", "test"} and ppl["dev"]["bpw"] > 0 and len(ppl["dev"]["domains"]) == 6


@pytest.mark.slow
def test_eval_scores_the_ensemble_beside_its_members(teachers, tmp_path, capsys):
    need_shared()
    out = tmp_path / "res.json"
    r = subprocess.run([sys.executable, "-m", "babyllama.cli", "eval", str(teachers[0]), "--ensemble", str(teachers[0]),
                        str(teachers[1]), "--suite", "blimp_fast", "--eval-root", str(SHARED / "eval"),
                        "--max-pairs", "10", "--resamples", "200", "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ensemble(llama-tiny+gpt2-tiny) - llama-tiny" in r.stdout
    res = json.loads(out.read_text())
    block = res["suites"]["blimp_fast"]
    ens = block["per_model"]["ensemble(llama-tiny+gpt2-tiny)"]
    assert ens["macro"]["items"] == block["per_model"][str(teachers[0])]["macro"]["items"] == 67 * 10
    assert ens["macro"]["resamples"] == 200
    assert block["paired"]["ensemble(llama-tiny+gpt2-tiny)"]["resamples"] == 200
    from babyllama.cli import main

    assert main(["eval", "--ensemble", str(teachers[0]), "--suite", "blimp_fast"]) == 2
    err = capsys.readouterr().err
    assert "--ensemble needs at least two" in err and "Traceback" not in err


@pytest.mark.slow
def test_eval_the_babylm2025_fast_tasks_on_the_shared_data(teachers, tmp_path):
    """The 2025 tasks on the data as distributed, two models and an ensemble (GPT-2's learned positions included):
    per-model figures with CIs, the paired differences, the JSON."""
    need_shared()
    out = tmp_path / "res.json"
    r = subprocess.run([sys.executable, "-m", "babyllama.cli", "eval", str(teachers[0]), str(teachers[1]),
                        "--suite", "entity_tracking_fast", "--suite", "wug_adj", "--suite", "reading",
                        "--eval-root", str(SHARED / "eval"), "--max-pairs", "15", "--resamples", "99",
                        "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Spearman rho with the human ratios" in r.stdout and "self paced reading score (%)" in r.stdout
    res = json.loads(out.read_text())
    et = res["suites"]["entity_tracking_fast"]["per_model"][str(teachers[0])]
    assert et["macro"]["items"] == 6 * 15 and et["macro"]["tie_rule"] == "first"  # 6 numbers of operations
    assert set(et["groups"]) == {"regular"} and len(et["predictions"]) == 90
    # rotary LLaMA runs past its context as the pipeline lets it; GPT-2's learned positions cannot (lm-eval's cut)
    gpt2 = res["suites"]["entity_tracking_fast"]["per_model"][str(teachers[1])]
    assert et["macro"]["truncated"] == 0 and gpt2["macro"]["truncated"] > 0
    wug = res["suites"]["wug_adj"]["per_model"][str(teachers[1])]
    assert wug["macro"]["items"] == 200 and -1 <= wug["macro"]["acc"] <= 1
    reading = res["suites"]["reading"]["per_model"][str(teachers[0])]
    assert reading["macro"]["items"] == 1726 and len(reading["surprisal"]) == 1726
    assert set(reading["spillover"]) == set(reading["measures"]) and len(reading["measures"]) == 11
    paired = res["suites"]["reading"]["paired"][str(teachers[1])]
    assert set(paired) == {"eye_tracking", "self_paced_reading"}
    assert "p_mcnemar" in res["suites"]["entity_tracking_fast"]["paired"][str(teachers[1])]


def test_eval_bad_inputs(tmp_path, capsys):
    from babyllama.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence_good": 1}\n')
    model = tmp_path / "m"
    model.mkdir()
    assert main(["eval", str(model), "--suite", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1" in err and "Traceback" not in err
    (tmp_path / "ok.jsonl").write_text('{"sentence_good": "a", "sentence_bad": "b"}\n')
    assert main(["eval", str(model), "--suite", str(tmp_path / "ok.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and "Traceback" not in err
    assert main(["eval", "--suite", str(tmp_path / "ok.jsonl")]) == 2
    assert "no model: pass model directories, --ensemble" in capsys.readouterr().err
