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


def test_eval_bad_inputs(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence_good": 1}\n')
    model = tmp_path / "m"
    model.mkdir()
    r = subprocess.run([sys.executable, "-m", "babyllama.cli", "eval", str(model), "--suite", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "ok.jsonl").write_text('{"sentence_good": "a", "sentence_bad": "b"}\n')
    r = subprocess.run([sys.executable, "-m", "babyllama.cli", "eval", str(model), "--suite",
                        str(tmp_path / "ok.jsonl")], capture_output=True, text=True)
    assert r.returncode == 2 and "no config.json" in r.stderr and "Traceback" not in r.stderr
