"""Bad input: one line naming the problem, exit 2, no traceback."""

import json
import subprocess
import sys

import pytest

from helpers import one_error_line
from helpers import run_cli as run


@pytest.mark.parametrize("args,needle", [
    (["data", "prepare", "/nonexistent/corpus", "/tmp/x"], "corpus directory not found"),
    (["train", "/nonexistent.yaml"], "config file not found"),
    (["models", "--json"], None),
])
def test_cli_errors_are_one_line(args, needle):
    r = run(*args)
    if needle is None:
        rows = json.loads(r.stdout)
        assert r.returncode == 0 and {"name", "architecture", "params"} <= set(rows[0])
        return
    assert needle in one_error_line(r)


def test_unknown_config_key_from_cli(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  preset: llama-tiny\n  hiden_size: 3\n")
    r = run("train", str(p))
    assert r.returncode == 2 and "unknown key 'model.hiden_size'" in r.stderr and "Traceback" not in r.stderr


def test_dry_run_prints_resolved_config(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  preset: llama-tiny\n")
    r = run("train", str(p), "--dry-run", "--set", "training.learning_rate=1e-3")
    assert r.returncode == 0 and "learning_rate: 0.001" in r.stdout and "preset: llama-tiny" in r.stdout


def test_closed_output_pipe_is_quiet():
    """`babyllama models | head -0`: the reader is gone before we write; no traceback, exit like Unix tools."""
    p = subprocess.Popen([sys.executable, "-m", "babyllama.cli", "models"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "Traceback" not in err and "Exception ignored" not in err, err


def test_download_help_does_not_claim_a_verification():
    r = run("data", "download", "--help")
    assert r.returncode == 0 and "sha256-verified" not in r.stdout and "--sha256" in r.stdout
    assert "verified" in r.stdout.replace("\n", " ")


def test_eval_suite_choices_come_from_the_registry():
    from babyllama.eval.suites import suite_names

    r = run("eval", "--help")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and all(f"{name}:" in text for name in suite_names())


def test_unparsable_set_value_is_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  preset: llama-tiny\n")
    assert "not valid YAML" in one_error_line(run("train", str(p), "--set", "training.learning_rate=[1"))
