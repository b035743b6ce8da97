"""Stages without start-up cost: a warm process that has imported torch, transformers and the stage executors once,
and forks a child for each stage the Makefile runs.

``python -m babyllama.runner.warm ARGS...`` behaves as ``python -m babyllama ARGS...``: the same output on the
same terminal or pipe, the same exit status, the same reaction to Ctrl-C, the same one-line errors. It hands its
standard streams, working directory, environment and arguments to a server over a Unix socket; the server forks, and
the child runs the command with the client's streams, directory and environment. Every stage is still a process of
its own (nothing is kept from one stage to the next, so the runner's reuse, resumption, hashes and locks are what
they were); what it no longer pays is the interpreter, the imports and their byte code (benchmarks/README.md,
"Stages without start-up cost").

The first client starts the server (under a lock, so that two make job slots start one); it serves every make job
slot of the run at once and exits once no stage has run for ``IDLE_S`` seconds. A server serves only clients with
the same interpreter, the same babyllama sources and the same environment (all three are in its socket's name):
what a library read from the environment at import time is then what a fresh process would have read. Where the
server cannot start, or ``BABYLLAMA_WARM=0``, the command runs in a fresh process as before.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

IDLE_S = 30.0  # the server's life with no stage running: make starts the next stage within a second of the last
START_TIMEOUT_S = 120.0  # what a client waits for a server to import everything (about 4 s here)
# what the server imports before it forks: the runner, every stage kind's executor and the libraries under them
PRELOAD = ("torch", "transformers", "transformers.trainer", "babyllama.cli", "babyllama.runner.execute",
           "babyllama.runner.stages", "babyllama.training.pretrain", "babyllama.distillation.trainer",
           "babyllama.eval.evaluate", "babyllama.finetuning.parallel", "babyllama.finetuning.model",
           "babyllama.data.corpus", "babyllama.data.bpe", "babyllama.report")
# variables that differ between commands or runs and that nothing reads at import time (a child reads them from
# its client's environment): the shell's, make's (its job server), the run's clock, pytest's current test
VOLATILE_ENV = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKE_TERMOUT",
                          "MAKE_TERMERR", "BABYLLAMA_RUN_STARTED", "BABYLLAMA_PARALLEL_STAGES", "BABYLLAMA_WARM", "BABYLLAMA_WARM_IDLE_S",
                          "PYTEST_CURRENT_TEST"})
DISABLE_ENV = "BABYLLAMA_WARM"
IDLE_ENV = "BABYLLAMA_WARM_IDLE_S"  # the idle life of a server a client starts (tests: a few seconds)
_FDS = 3  # stdin, stdout, stderr

# set in a forked child: when its client started, so that a stage's start-up counts from there
client_started: float | None = None


def enabled(env: dict[str, str] | None = None) -> bool:
    """Whether stages run in warm children (anything but ``BABYLLAMA_WARM=0``)."""
    return (os.environ if env is None else env).get(DISABLE_ENV, "1") != "0"


def process_started() -> float | None:
    """When this stage's process started (a warm child: when its client did), as a Unix time; None off Linux."""
    if client_started is not None:
        return client_started
    # the process's age from its start in clock ticks since boot against the clock since boot, not against
    # /proc/stat's btime: btime is whole seconds, and its cut-off fraction (up to 1 s) would be added to every age
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.time() - age


# ---- where a server lives -------------------------------------------------------------------------------------------

def server_key(env: dict[str, str] | None = None, entry: str = "babyllama.cli:main") -> str:
    """What a server must share with its clients: the interpreter, the babyllama sources, the environment, the
    function its children run."""
    env = dict(os.environ if env is None else env)
    package = Path(__file__).resolve().parents[1]
    sources = sorted((str(p.relative_to(package)), p.stat().st_mtime_ns, p.stat().st_size)
                     for p in package.rglob("*.py"))
    described = {"entry": entry, "python": [sys.executable, sys.version], "sources": [str(package), sources],
                 "env": sorted((k, v) for k, v in env.items() if k not in VOLATILE_ENV)}
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:24]


def server_dir() -> Path:
    """A folder only this user can enter (a socket's path must stay under 108 bytes: the system's temp folder)."""
    path = Path(tempfile.gettempdir()) / f"babyllama-warm-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.getuid() or path.stat().st_mode & 0o077:
        raise OSError(f"{path} is not this user's private folder")
    return path


# ---- messages: a 4-byte length, then JSON ---------------------------------------------------------------------------

def _send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    data = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = b""
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


def _recv(sock: socket.socket, with_fds: bool = False) -> tuple[dict | None, list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, 4, _FDS)
        if len(head) < 4:
            head += _recv_exact(sock, 4 - len(head)) or b""
    else:
        head = _recv_exact(sock, 4) or b""
    if len(head) < 4:
        return None, fds
    body = _recv_exact(sock, struct.unpack("!I", head)[0])
    return (json.loads(body) if body is not None else None), fds


# ---- the server -----------------------------------------------------------------------------------------------------

def serve(path: str, entry: str = "babyllama.cli:main", idle_s: float = IDLE_S) -> int:
    """Import everything, listen on ``path``, fork a child per request until no stage has run for ``idle_s``; a
    child runs its request's command and exits with its status (it never returns here)."""
    import importlib

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as the command sets them, before anything reads them
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:  # an optional part missing: a child that needs it reports it as a fresh process would
            pass
    module_name, func_name = entry.split(":")
    run = getattr(importlib.import_module(module_name), func_name)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ready = f"{path}.{os.getpid()}"
    listener.bind(ready)
    listener.listen(16)
    os.replace(ready, path)  # clients connect only to a server that has imported everything
    bound = os.stat(path).st_ino
    server_pid = os.getpid()
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    # a child's end wakes the loop at once (its client waits for the status): SIGCHLD writes to this pipe
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a kill still removes the socket (the finally below)
    signal.set_wakeup_fd(wake_w)
    selector.register(wake_r, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}  # a running child's pid: its client's connection
    last_active = time.monotonic()
    try:
        while children or time.monotonic() - last_active < idle_s:
            for key, _ in selector.select(timeout=1.0):
                if key.fileobj == wake_r:
                    os.read(wake_r, 512)
                elif key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid, status = _fork_child(conn, listener, selector, children, run, (wake_r, wake_w))
                    if pid == 0:
                        _exit_child(status)
                    if pid > 0:
                        children[pid] = conn
                        selector.register(conn, selectors.EVENT_READ, pid)
                elif not key.fileobj.recv(1):  # the client sends nothing after its request: it is gone
                    selector.unregister(key.fileobj)
                    _signal(key.data, signal.SIGTERM)  # as a stage whose terminal closed
            for pid, code in _reap():
                conn = children.pop(pid, None)
                if conn is None:
                    continue
                try:
                    _send(conn, {"exit": code})
                except OSError:
                    pass
                if conn in (k.fileobj for k in selector.get_map().values()):
                    selector.unregister(conn)
                conn.close()
                last_active = time.monotonic()
    finally:
        if os.getpid() == server_pid:
            try:
                if os.stat(path).st_ino == bound:  # not a successor's socket
                    os.unlink(path)
            except OSError:
                pass
            listener.close()
            log = Path(path).with_suffix(".log")
            if log.exists() and log.stat().st_size == 0:
                log.unlink()
    return 0


def _exit_child(status: int) -> None:
    """End a child as the interpreter ends, less tearing down every module: non-daemon threads joined, atexit
    handlers run (weakref finalizers, multiprocessing's, the stage's), streams flushed. Tearing down torch and
    transformers module by module takes most of a second, which a fresh process pays too."""
    import atexit
    import threading

    try:
        threading._shutdown()  # what interpreter shutdown calls first
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def _reap() -> list[tuple[int, int]]:
    """Children that ended, with their exit status as a shell reports it (128 + N for signal N)."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        code = os.waitstatus_to_exitcode(status)
        ended.append((pid, code if code >= 0 else 128 - code))


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _fork_child(conn: socket.socket, listener: socket.socket, selector: selectors.BaseSelector,
                children: dict[int, socket.socket], run, wake: tuple[int, int]) -> tuple[int, int]:
    """Fork a child for the request on ``conn``: (its pid, 0) in the server, (-1, 0) for a request it could not
    read, (0, exit status) in the child once the command returned."""
    conn.settimeout(10.0)  # a client sends its request as it connects; one that does not may not stall the rest
    try:
        request, fds = _recv(conn, with_fds=True)
    except (OSError, ValueError):
        request, fds = None, []
    conn.settimeout(None)
    if request is None or len(fds) != _FDS:
        for fd in fds:
            os.close(fd)
        conn.close()
        return -1, 0
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        _send(conn, {"pid": pid})
        return pid, 0
    # the child: the client's streams, folder and environment, then the command, as a fresh process would run it
    global client_started
    signal.set_wakeup_fd(-1)
    selector.close()
    listener.close()
    for fd in wake:
        os.close(fd)
    for other in children.values():
        other.close()
    conn.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["babyllama", *request["argv"]]
    client_started = request["started"]
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _fresh_streams()
    _fresh_random_state()
    try:
        status = run(request["argv"])
    except SystemExit as e:
        status = e.code
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to a fresh interpreter
        traceback.print_exc()
        status = 1
    if status is None or isinstance(status, int):
        return 0, status or 0
    print(status, file=sys.stderr)  # sys.exit("message"): printed, status 1
    return 0, 1


def _fresh_streams() -> None:
    """Text streams as a fresh interpreter opens them on these descriptors: line-buffered on a terminal, stderr
    always line-buffered, nothing buffered at all under ``PYTHONUNBUFFERED``."""
    import io

    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        try:
            if name == "stdin":
                new = io.TextIOWrapper(io.open(fd, "rb", closefd=False), encoding=old.encoding, errors=old.errors)
            else:
                raw = io.open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)
                new = io.TextIOWrapper(raw, encoding=old.encoding, errors=old.errors, write_through=unbuffered,
                                       line_buffering=name == "stderr" or os.isatty(fd))
        except (OSError, ValueError):
            continue
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)


def _fresh_random_state() -> None:
    """Seeds drawn afresh, as in a new process (``random`` re-seeds itself after a fork; numpy and torch do not)."""
    try:
        import numpy as np

        np.random.seed()
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


# ---- the client -----------------------------------------------------------------------------------------------------

def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def connect_or_start(entry: str = "babyllama.cli:main") -> socket.socket | None:
    """A connection to this environment's server, started first if none runs; None where none can start."""
    try:
        idle_s = float(os.environ.get(IDLE_ENV, IDLE_S))
    except ValueError:
        idle_s = IDLE_S
    try:
        folder = server_dir()
    except OSError:
        return None
    key = server_key(entry=entry)
    path = folder / f"{key}.sock"
    sock = _connect(path)
    if sock is not None:
        return sock
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other make job slot may be starting it right now
        sock = _connect(path)
        if sock is not None:
            return sock
        try:
            path.unlink()  # a server that died without removing its socket
        except FileNotFoundError:
            pass
        with open(folder / f"{key}.log", "ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "babyllama.runner.warm", "--serve", str(path), "--entry", entry,
                 "--idle", str(idle_s)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.poll() is None:
            if path.exists():
                return _connect(path)
            time.sleep(0.05)
        return None


def run_in_warm_process(argv: list[str], entry: str = "babyllama.cli:main") -> int | None:
    """Run ``babyllama ARGV`` in a child of the warm server; its exit status, or None where no server serves."""
    started = process_started() or time.time()
    sock = connect_or_start(entry)
    if sock is None:
        return None
    pending: list[int] = []
    child: list[int] = []

    def forward(sig: int, _frame) -> None:
        _signal(child[0], sig) if child else pending.append(sig)

    # the terminal's Ctrl-C reaches this process's group, not the server's child: pass it on, and the rest
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    with sock:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask(),
                   "started": started}
        try:
            _send(sock, request, fds=list(range(_FDS)))
            reply, _ = _recv(sock)
        except OSError:
            return None
        if reply is None or "pid" not in reply:
            return 128 + pending[0] if pending else None
        child.append(reply["pid"])
        for sig in pending:
            _signal(child[0], sig)
        reply, _ = _recv(sock)
    if reply is None or "exit" not in reply:
        print("babyllama: error: the warm stage process ended without an exit status; run the same command "
              f"again, or with {DISABLE_ENV}=0", file=sys.stderr)
        return 1
    return reply["exit"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve"]:
        import argparse

        p = argparse.ArgumentParser(prog="python -m babyllama.runner.warm --serve")
        p.add_argument("socket")
        p.add_argument("--entry", default="babyllama.cli:main")
        p.add_argument("--idle", type=float, default=IDLE_S)
        args = p.parse_args(argv[1:])
        return serve(args.socket, args.entry, args.idle)
    if enabled():
        status = run_in_warm_process(argv)
        if status is not None:
            return status
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "babyllama", *argv])  # a fresh process, as without the server


if __name__ == "__main__":
    sys.exit(main())
