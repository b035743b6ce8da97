"""Fine-tuning runs side by side in forked workers: how many at once, results and log lines back, errors out."""

from __future__ import annotations

import os
import time

import pytest

from babyllama.errors import UserError
from babyllama.finetuning import parallel
from babyllama.finetuning.parallel import resolve_jobs, run_side_by_side


def test_auto_is_one_run_per_thread_on_a_cpu_within_runs_and_memory(monkeypatch):
    monkeypatch.setattr(parallel, "_memory_cap", lambda params: 64)
    assert resolve_jobs("auto", "cpu", runs=6, params=1000, threads=2) == (2, 1)
    assert resolve_jobs("auto", "cpu", runs=6, params=1000, threads=1) == (1, 1)  # a stage under make -j2
    assert resolve_jobs("auto", "cpu", runs=1, params=1000, threads=2) == (1, 2)  # one run keeps both threads
    assert resolve_jobs("auto", "cpu", runs=3, params=1000, threads=8) == (3, 2)
    assert resolve_jobs("auto", "cuda", runs=6, params=1000, threads=2) == (1, 2)
    monkeypatch.setattr(parallel, "_memory_cap", lambda params: 1)
    assert resolve_jobs("auto", "cpu", runs=6, params=10**9, threads=2) == (1, 2)
    assert resolve_jobs(3, "cpu", runs=6, params=1000, threads=2) == (3, 1)  # asked for: oversubscribed
    assert resolve_jobs(4, "cpu", runs=2, params=1000, threads=8) == (2, 4)
    with pytest.raises(UserError, match="finetune.jobs"):
        resolve_jobs(0, "cpu", runs=2, params=1000, threads=2)


def test_memory_cap_counts_what_a_run_holds():
    huge = parallel._memory_cap(10**15)
    assert huge == 1
    assert parallel._memory_cap(1) > 1


def _runner(key, log):
    import torch

    log(f"start {key}")
    time.sleep(0.05 * (3 - key % 3))
    log(f"end {key}")
    return {"key": key, "pid": os.getpid(), "threads": torch.get_num_threads()}


def test_runs_come_back_from_forked_workers_with_their_lines_in_order():
    lines = []
    out = dict(run_side_by_side(_runner, list(range(6)), jobs=2, threads=1, log=lines.append))
    assert sorted(out) == list(range(6))
    assert all(out[k]["key"] == k for k in out)
    pids = {r["pid"] for r in out.values()}
    assert os.getpid() not in pids and len(pids) == 2  # two workers, neither this process
    assert {r["threads"] for r in out.values()} == {1}
    assert sorted(lines) == sorted([f"start {k}" for k in range(6)] + [f"end {k}" for k in range(6)])
    for k in range(6):
        assert lines.index(f"start {k}") < lines.index(f"end {k}")


def test_one_job_runs_here_in_order_on_the_given_threads():
    import torch

    before = torch.get_num_threads()
    lines = []
    out = list(run_side_by_side(_runner, [2, 0, 1], jobs=1, threads=1, log=lines.append))
    assert [k for k, _ in out] == [2, 0, 1]
    assert {r["pid"] for _, r in out} == {os.getpid()} and {r["threads"] for _, r in out} == {1}
    assert lines == ["start 2", "end 2", "start 0", "end 0", "start 1", "end 1"]
    assert torch.get_num_threads() == before


def _fails_on_three(key, log):
    if key == 3:
        raise UserError("task rte: bad file")
    time.sleep(0.5)
    return os.getpid()


def test_an_error_in_a_worker_reaches_the_caller_and_no_worker_is_left():
    import multiprocessing as mp

    with pytest.raises(UserError, match="task rte: bad file"):
        for _ in run_side_by_side(_fails_on_three, [3, 1, 2, 4, 5], jobs=2, threads=1, log=lambda s: None):
            pass
    deadline = time.time() + 5
    while mp.active_children() and time.time() < deadline:
        time.sleep(0.05)
    assert not mp.active_children()
