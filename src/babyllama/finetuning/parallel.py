"""Independent fine-tuning runs side by side: forked worker processes, each on its share of the torch threads.

Why: at the sizes a CPU fine-tunes, a step is bound by element-wise memory traffic more than by arithmetic, and a
second thread inside one run gives less than a second run beside it (benchmarks/README.md, "Fine-tuning"). The
workers are forked once the model and the tokenized tasks are in memory, so nothing is copied or sent to them; only
the run's key goes in and its result comes back. Each run is seeded by its own seed, so its result does not depend
on which worker ran it or when; with the same threads per run it equals the sequential run's bit for bit (the
rounding of a product depends on the thread count, which is why the count is part of a run's set-up).

The engine is the standard library's ``ProcessPoolExecutor`` (a worker that dies, say of memory, fails the call
instead of hanging it). Progress lines of the workers come back through a queue and reach the caller's ``log`` in
this process, in order.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..errors import UserError

BYTES_PER_PARAM = 24  # fp32 weights, gradients, two AdamW moments, the kept best state, and slack for activations

_WORKER: dict = {}  # what a forked worker inherits: the run function, the log queue, its thread count


def resolve_jobs(jobs: int | str, device: str, runs: int, params: int, threads: int) -> tuple[int, int]:
    """(runs at once, torch threads per run). ``auto``: on a CPU, one run per torch thread this process has (so 2 on
    2 cores, and 1 inside ``make -j2`` of a recipe, where each stage gets one), fewer when the runs are fewer or
    memory would not hold them; on an accelerator one (runs there share one device)."""
    if jobs == "auto":
        if device != "cpu" or not _fork_available():
            return 1, threads
        jobs = max(1, min(threads, runs, _memory_cap(params)))
    elif not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"finetune.jobs: {jobs!r} is not a positive number of runs at once (or auto)")
    elif jobs > 1 and not _fork_available():
        raise UserError("finetune.jobs > 1 needs processes started by fork (Linux, macOS); set finetune.jobs: 1")
    jobs = min(jobs, max(runs, 1))
    return jobs, max(1, threads // jobs)


def _fork_available() -> bool:
    return "fork" in mp.get_all_start_methods()


def _memory_cap(params: int) -> int:
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1
    return max(1, math.floor(0.5 * available / max(params * BYTES_PER_PARAM, 1)))


def run_side_by_side(fn: Callable[[Hashable, Callable[[str], None]], object], keys: Sequence[Hashable], jobs: int,
                     threads: int, log: Callable[[str], None]) -> Iterator[tuple[Hashable, object]]:
    """``fn(key, log)`` for every key, ``jobs`` at once on ``threads`` torch threads each; (key, result) pairs as
    the runs finish (in ``keys`` order when ``jobs`` is 1). Start the longest runs first: the last one to start
    decides when all end."""
    import torch

    if jobs <= 1 or len(keys) <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for key in keys:
                yield key, fn(key, log)
        finally:
            torch.set_num_threads(previous)
        return
    ctx = mp.get_context("fork")
    queue = ctx.SimpleQueue()
    _WORKER.update(fn=fn, queue=queue, threads=threads)
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork with threads alive; torch's OpenMP pool is the only one, and the child
        # starts its own
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_start)
        pending = {pool.submit(_worker_run, key) for key in keys}  # the first submit forks every worker
    try:
        while pending:
            # the queue is read here, not by a thread: a worker stopped mid-write can leave its lock taken,
            # which only writers share
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _forward(queue, log)  # a run's lines are in the pipe before its result
            for future in finished:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()
        _stop_workers(pool)
        _WORKER.clear()


def _worker_start() -> None:
    import torch

    if sys.platform.startswith("linux"):  # a worker does not outlive a killed parent (a scheduler's SIGKILL)
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    torch.set_num_threads(_WORKER["threads"])


def _worker_run(key):
    queue = _WORKER["queue"]
    return key, _WORKER["fn"](key, queue.put)


def _forward(queue, log: Callable[[str], None]) -> None:
    while not queue.empty():
        log(queue.get())


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down; on an interruption or an error, the runs still going are stopped, not left running."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join()
