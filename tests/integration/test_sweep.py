"""`babyllama sweep` end to end on tiny models: two workers share one study (SQLite, and a PostgreSQL server the
test starts) and never lose or repeat a trial; stages shared by trials train once; pruning, crashed trials,
non-finite losses, a killed worker and a bad storage URL; the report, the best overrides and `run --set-file`."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from babyllama.cli import main
from babyllama.config import load_recipe, overrides_from_file
from babyllama.runner.plan import make_plan
from helpers import REPO

pytestmark = pytest.mark.slow
SMOKE_STUDY = REPO / "recipes" / "studies" / "smoke.yaml"
SMOKE = REPO / "recipes" / "smoke.yaml"
TINY = ["--set", "tokenizer.vocab_size=300"]  # what the in-process corpus of the `data_root` fixture can give
STATES = optuna.trial.TrialState


def study(url: str, name: str):
    return optuna.load_study(study_name=name, storage=url)


def all_logs(sweep_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted((sweep_dir / "logs").glob("worker-*.log")))


def cli(capsys, *args) -> tuple[int, str, str]:
    """`babyllama ARGS` in this process (no interpreter start-up): exit code, stdout, stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("babyllama: error:"), (code, err[-2000:])
    return lines[0]


def check_two_workers(capsys, data_root: Path, sweep_dir: Path, storage: str | None) -> None:
    args = ["sweep", SMOKE_STUDY, "--data-root", data_root, "--sweep-dir", sweep_dir, "--workers", "2", *TINY]
    code, out, err = cli(capsys, *args, *(["--storage", storage] if storage else []))
    assert code == 0, err[-3000:] + out[-3000:]
    url = storage or f"sqlite:///{sweep_dir / 'study.db'}"
    trials = study(url, "smoke").get_trials()
    # no trial lost or run twice: four trials, numbered 0-3, each complete, each grid point once, each started by
    # exactly one worker and printed once by the parent
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == STATES.COMPLETE for t in trials)
    assert len({(t.params["distill.temperature"], t.params["distill.alpha"]) for t in trials}) == 4
    logs = all_logs(sweep_dir)
    for n in range(4):
        assert len(re.findall(rf"^=== trial {n} of 4 ", logs, re.M)) == 1
        assert len(re.findall(rf"^trial {n}: complete", out, re.M)) == 1
        assert (sweep_dir / "trials" / f"trial-{n:04d}" / "plan.json").is_file()
    assert len({t.user_attrs["host"] for t in trials}) == 2  # both workers took trials
    # the teachers train once for the four trials (the shared stage store); the students once each
    for teacher in ("teacher:llama-tiny", "teacher:gpt2-tiny"):
        assert len(re.findall(rf"^== stage \d+/\d+: {teacher} ", logs, re.M)) == 1
    assert len(re.findall(r"^== stage \d+/\d+: student:s1 ", logs, re.M)) == 4
    assert len(list((sweep_dir / "stages").glob("teacher-llama-tiny-*"))) == 1
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "figures" / "grid.png").is_file()


def test_two_workers_share_a_sqlite_study_and_the_best_trial_reruns_from_its_file(data_root, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    check_two_workers(capsys, data_root, sweep_dir, None)
    report = (sweep_dir / "report.md").read_text()
    assert "4 complete, 0 pruned, 0 failed" in report and "![distill.temperature x distill.alpha]" in report
    best = study(f"sqlite:///{sweep_dir / 'study.db'}", "smoke").best_trial
    assert f"**Best: trial {best.number}," in report
    code, _, err = cli(capsys, "sweep", "best", sweep_dir, "--out", tmp_path / "best.yaml")
    assert code == 0, err
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    # `babyllama run RECIPE --set-file best.yaml` is the best trial: its student stage is the one the trial made
    assert exported == {"tokenizer.vocab_size": 300, "distill.temperature": best.params["distill.temperature"],
                        "distill.alpha": best.params["distill.alpha"]}
    plan = make_plan(load_recipe(SMOKE, overrides_from_file(tmp_path / "best.yaml"), str(data_root)), tmp_path / "r")
    best_plan = make_plan(load_recipe(SMOKE, best.user_attrs["overrides"], str(data_root)), tmp_path / "r")
    assert plan.stage("student:s1").dir == best_plan.stage("student:s1").dir
    assert (sweep_dir / "stages" / plan.stage("student:s1").dir.name).is_dir()
    code, out, _ = cli(capsys, "run", SMOKE, "--data-root", data_root, "--set-file", tmp_path / "best.yaml",
                       "--run-dir", sweep_dir / "trials" / f"trial-{best.number:04d}", "--dry-run")
    assert code == 0 and re.search(r"reuse\s+student:s1", out), out
    assert "exists" in one_line(*cli(capsys, "sweep", "best", sweep_dir, "--out", tmp_path / "best.yaml")[::2])


def _find_pg_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return Path(found).resolve().parent if found else None  # /usr/local/bin may link initdb alone


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of its own on a free local port (the Debian `postgresql` package's binaries; `.ci/run`
    installs them when missing), with a database `sweeps`."""
    bindir = _find_pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs the Debian postgresql package")
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
    pytest.importorskip("psycopg") if not os.environ.get("CI") else __import__("psycopg")  # SQLAlchemy 2.1 default
    root = Path(tempfile.mkdtemp(prefix="babyllama-pg-"))  # not under pytest's root-only tmp: the server user reads it
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    try:
        subprocess.run([*as_user, bindir / "initdb", "-D", data, "-A", "trust", "-U", "babyllama"], check=True,
                       capture_output=True)
        subprocess.run([*as_user, bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True,
                       capture_output=True)
        subprocess.run([*as_user, bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "babyllama",
                        "sweeps"], check=True, capture_output=True)
        yield f"postgresql://babyllama@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_user, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(data_root, tmp_path, postgres_url, capsys):
    check_two_workers(capsys, data_root, tmp_path / "sweep", postgres_url)
    code, out, err = cli(capsys, "sweep", "report", tmp_path / "sweep")  # the URL is in sweep.json (no password)
    assert code == 0 and "4 complete" in out, err


PRUNE_FAIL = """name: prune-fail
recipe: {smoke}
sweep_dir: {dir}
set:
  tokenizer.vocab_size: 300
  base.training.eval_steps: 4
  finetune: null
space:
  baseline.training.learning_rate:
    distribution: categorical
    choices: [3.0e-3, 1.0e-2, 5.0e-3, 1.0e-7, 2.0e-7, 1.0e+30, oops]
objective: {{stage: baseline:s1, metric: eval_loss, direction: minimize}}
sampler: {{type: grid, seed: 0}}
pruner: {{type: median, resource: step, n_startup_trials: 2, n_warmup_steps: 0}}
final: true
"""


def test_pruned_crashed_and_non_finite_trials_are_recorded_and_the_final_run_compares(data_root, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    f = tmp_path / "sweep.yaml"
    f.write_text(PRUNE_FAIL.format(smoke=SMOKE, dir=sweep_dir))
    code, out, err = cli(capsys, "sweep", f, "--data-root", data_root)
    assert code == 0, err[-3000:] + out[-3000:]
    trials = {t.params["baseline.training.learning_rate"]: t
              for t in study(f"sqlite:///{sweep_dir / 'study.db'}", "prune-fail").get_trials()}
    assert len(trials) == 7
    oops, inf = trials["oops"], trials[1e30]
    assert oops.state == STATES.FAIL and "baseline.training.learning_rate" in oops.user_attrs["error"]
    assert inf.state == STATES.FAIL and "training loss is nan" in inf.user_attrs["error"]
    pruned = [t for t in trials.values() if t.state == STATES.PRUNED]
    # the median pruner stops every trial worse than the median at its report, the two tiny learning rates among them
    assert {1e-7, 2e-7} <= {t.params["baseline.training.learning_rate"] for t in pruned}
    assert all(max(t.intermediate_values) < 24 for t in pruned)  # stopped before the end of training
    for t in pruned:  # a pruned stage holds only that trial's parameters: its checkpoints are gone
        plan = make_plan(load_recipe(SMOKE, t.user_attrs["overrides"], str(data_root)), tmp_path / "r")
        assert not (sweep_dir / "stages" / plan.stage("baseline:s1").dir.name).exists()
    complete = [t for t in trials.values() if t.state == STATES.COMPLETE]
    assert len(complete) >= 2 and all(len(t.intermediate_values) == 6 for t in complete)
    # the final run: the best trial's baseline (reused) beside the distilled student, with the paired verdict
    assert "finished by another worker, reused" not in out  # one worker: nothing to wait for
    assert re.search(r"reuse\s+baseline:s1", out)
    report = (sweep_dir / "report.md").read_text()
    assert "**student - baseline**" in report and "best/report.md" in report
    # the final run's models side by side: dev eval loss and BLiMP accuracy of the tuned baseline and the student
    assert re.search(r"\| baseline:s1 \| baseline \| \d+(\.\d+)? \| \d+(\.\d+)? \|", report), report
    assert re.search(r"\| student:s1 \| student \| \d+(\.\d+)? \| \d+(\.\d+)? \|", report), report
    assert f"{len(pruned)} pruned, 2 failed" in report
    assert "training loss is nan" in report and "| oops |" in report


SLOW_TRIAL = """name: killed
recipe: {smoke}
sweep_dir: {dir}
set:
  tokenizer.vocab_size: 300
  base.training.max_steps: {steps}
  finetune: null
space:
  baseline.training.learning_rate: {{distribution: categorical, choices: [3.0e-3]}}
objective: {{stage: baseline:s1, metric: eval_loss, direction: minimize}}
sampler: {{type: random, seed: 0}}
trials: 2
heartbeat: {{interval: 1, grace: 2}}
"""


def test_a_killed_worker_leaves_a_failed_trial_and_the_sweep_goes_on(data_root, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    f = tmp_path / "sweep.yaml"
    f.write_text(SLOW_TRIAL.format(smoke=SMOKE, dir=sweep_dir, steps=100000))
    worker = subprocess.Popen([sys.executable, "-m", "babyllama", "sweep", f, "--data-root", data_root],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in worker.stdout:  # kill it while the baseline trains
        if "== stage" in line and "baseline:s1" in line:
            time.sleep(3)
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    url = f"sqlite:///{sweep_dir / 'study.db'}"
    assert [t.state for t in study(url, "killed").get_trials()] == [STATES.RUNNING]  # the storage still opens
    time.sleep(3)  # past the grace period
    f.write_text(SLOW_TRIAL.format(smoke=SMOKE, dir=sweep_dir, steps=8))
    code, _, err = cli(capsys, "sweep", f, "--data-root", data_root)
    assert code == 0, err[-3000:]
    trials = study(url, "killed").get_trials()
    # the killed trial is failed by the heartbeat and retried once with its parameters; the sweep then completes
    # its two trials
    assert [t.state for t in trials] == [STATES.FAIL, STATES.COMPLETE, STATES.COMPLETE]
    assert trials[1].system_attrs["retry_history"] == [0] and trials[1].params == trials[0].params
    assert "retried as trial 1" in (sweep_dir / "report.md").read_text()


def test_a_storage_that_cannot_be_opened_is_one_line(data_root, tmp_path, capsys):
    for url, words in (("postgresql://nobody@127.0.0.1:1/none", "cannot open the study storage"),
                       ("nosuchdb://x", "cannot open the study storage")):
        code, _, err = cli(capsys, "sweep", SMOKE_STUDY, "--data-root", data_root, "--sweep-dir", tmp_path / "s",
                           "--storage", url, *TINY)
        line = one_line(code, err)
        assert words in line and url.split("//")[0] in line
    assert not (tmp_path / "s" / "trials").exists()
