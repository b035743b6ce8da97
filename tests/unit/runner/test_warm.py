"""The warm stage process: a command run through it behaves as in a fresh interpreter (output, exit status,
Ctrl-C, environment, folder, exit handlers), is forked from one server that imported everything once, and falls
back to a fresh process where no server serves."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from babyllama.runner import warm

# what the tests' children run instead of the babyllama command: each argv[0] one behaviour
HELPER = '''
import atexit, json, os, sys, threading, time

def main(argv):
    what = argv[0]
    if what == "info":
        import numpy as np
        print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "argv": sys.argv,
                          "env": os.environ.get("WARM_TEST_VALUE"), "umask": os.umask(0o22),
                          "stdout_tty": sys.stdout.isatty(), "random": float(np.random.rand())}))
        print("to stderr", file=sys.stderr)
        return 0
    if what == "exit":
        return int(argv[1])
    if what == "raise":
        raise ValueError("a bug")
    if what == "message":
        sys.exit("a message")
    if what == "sleep":
        try:  # the pid printed inside: a Ctrl-C right after it is this block's
            print(json.dumps({"pid": os.getpid()}), flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            return 130
        return 0
    if what == "at_exit":
        out = argv[1]
        atexit.register(lambda: open(out + ".atexit", "w").write("ran"))
        def late():
            time.sleep(0.3)
            open(out + ".thread", "w").write("ran")
        threading.Thread(target=late).start()
        sys.stdout.write("buffered, no newline")
        return 0
'''

@pytest.fixture(scope="module")
def env():
    """An environment with its own server folder (a short path: a socket's must stay under 108 bytes)."""
    tmp = tempfile.mkdtemp(prefix="bw", dir="/tmp")
    Path(tmp, "warm_helper.py").write_text(HELPER)
    e = {**os.environ, "TMPDIR": tmp, "PYTHONPATH": os.pathsep.join([tmp, *sys.path]),
         warm.IDLE_ENV: "20", "HF_HUB_OFFLINE": "1"}
    e.pop(warm.DISABLE_ENV, None)
    yield e
    for sock in Path(tmp).glob("babyllama-warm-*/*.sock"):  # the servers end on their own; not past this test
        subprocess.run(["pkill", "-f", str(sock)], check=False)


def client(env, *args, **kw) -> subprocess.Popen:
    code = ("import sys; from babyllama.runner import warm; "
            "status = warm.run_in_warm_process(sys.argv[1:], entry='warm_helper:main'); "
            "sys.exit(255 if status is None else status)")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def run(env, *args, **kw) -> subprocess.CompletedProcess:
    p = client(env, *args, **kw)
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_a_child_gets_the_clients_streams_folder_environment_and_arguments(env, tmp_path):
    first = run({**env, "WARM_TEST_VALUE": "one"}, "info", "x y", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["cwd"] == str(tmp_path) and info["argv"] == ["babyllama", "info", "x y"]
    assert info["env"] == "one" and first.stderr == "to stderr\n" and not info["stdout_tty"]
    assert info["ppid"] != os.getpid()  # forked by the server, not by the client
    second = json.loads(run({**env, "WARM_TEST_VALUE": "one"}, "info").stdout)
    assert second["ppid"] == info["ppid"] and second["pid"] != info["pid"]  # the same warm server, a new child
    assert second["random"] != info["random"]  # numpy seeded afresh, as in a new process


def test_an_environment_a_library_may_read_at_import_gets_a_server_of_its_own(env):
    a = json.loads(run({**env, "WARM_TEST_VALUE": "a"}, "info").stdout)
    b = json.loads(run({**env, "WARM_TEST_VALUE": "b"}, "info").stdout)
    assert (a["env"], b["env"]) == ("a", "b") and a["ppid"] != b["ppid"]
    base = {"PATH": "/bin", "OMP_NUM_THREADS": "1"}
    assert warm.server_key(base) != warm.server_key({**base, "OMP_NUM_THREADS": "2"})
    assert warm.server_key(base) == warm.server_key({**base, "BABYLLAMA_RUN_STARTED": "1", "MAKEFLAGS": "-j2"})
    assert warm.server_key(base) != warm.server_key(base, entry="other:main")


@pytest.mark.parametrize("args, status, stderr", [(["exit", "0"], 0, ""), (["exit", "2"], 2, ""),
                                                  (["raise"], 1, "ValueError: a bug"),
                                                  (["message"], 1, "a message")])
def test_the_exit_status_is_the_commands(env, args, status, stderr):
    r = run(env, *args)
    assert r.returncode == status and stderr in r.stderr
    if args[0] == "raise":
        assert "Traceback" in r.stderr  # as an uncaught exception in a fresh interpreter


def test_exit_handlers_and_threads_run_and_buffered_output_is_flushed(env, tmp_path):
    out = str(tmp_path / "mark")
    r = run(env, "at_exit", out)
    assert r.returncode == 0 and r.stdout == "buffered, no newline"
    assert Path(out + ".atexit").read_text() == "ran" and Path(out + ".thread").read_text() == "ran"


def test_ctrl_c_reaches_the_child_and_its_status_the_client(env):
    p = client(env, "sleep")
    pid = json.loads(p.stdout.readline())["pid"]
    p.send_signal(signal.SIGINT)  # what the terminal sends the client's process group
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 130 and "interrupted" in out
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_a_client_that_is_killed_takes_its_child_with_it(env):
    p = client(env, "sleep")
    pid = json.loads(p.stdout.readline())["pid"]
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()


def test_an_idle_server_ends_and_removes_its_socket(env):
    e = {**env, warm.IDLE_ENV: "0.5", "WARM_TEST_VALUE": "idle"}
    info = json.loads(run(e, "info").stdout)
    folder = Path(env["TMPDIR"]) / f"babyllama-warm-{os.getuid()}"
    key = subprocess.run([sys.executable, "-c", "from babyllama.runner import warm; "
                          "print(warm.server_key(entry='warm_helper:main'))"], env=e, capture_output=True,
                         text=True, check=True).stdout.strip()
    deadline = time.monotonic() + 15
    while (Path(f"/proc/{info['ppid']}").exists() or (folder / f"{key}.sock").exists()) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{info['ppid']}").exists() and not (folder / f"{key}.sock").exists()


def test_the_babyllama_command_runs_warm_or_fresh_with_the_same_output(env, tmp_path):
    bad = ["eval", str(tmp_path / "missing"), "--suite", "blimp"]
    outs = {}
    for mode in ("1", "0"):
        e = {**env, warm.DISABLE_ENV: mode}
        listing = subprocess.run([sys.executable, "-m", "babyllama.runner.warm", "models"], env=e,
                                 capture_output=True, text=True)
        error = subprocess.run([sys.executable, "-m", "babyllama.runner.warm", *bad], env=e, capture_output=True,
                               text=True)
        outs[mode] = (listing.returncode, listing.stdout, error.returncode, error.stderr)
    assert outs["1"] == outs["0"]
    assert outs["1"][0] == 0 and "llama-360m" in outs["1"][1]
    assert outs["1"][2] == 2 and outs["1"][3].count("\n") == 1 and outs["1"][3].startswith("babyllama: error:")


def test_without_a_server_the_command_runs_in_a_fresh_process(env, tmp_path):
    private = tmp_path / "not-private"
    private.mkdir(mode=0o755)
    (private / f"babyllama-warm-{os.getuid()}").mkdir(mode=0o755)  # open to others: no server is started there
    e = {**env, "TMPDIR": str(private)}
    r = subprocess.run([sys.executable, "-m", "babyllama.runner.warm", "models"], env=e, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "llama-360m" in r.stdout
    assert not list((private / f"babyllama-warm-{os.getuid()}").iterdir())


def test_a_stage_records_its_start_up(env):
    # a process that sleeps 1.5 s after it starts is 1.5 s old then, to the clock's tick (not to btime's second)
    probe = "import time; time.sleep(1.5); from babyllama.runner import warm; print(time.time() - warm.process_started())"
    age = float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                               check=True).stdout)
    assert 1.5 <= age < 1.5 + 0.5  # the interpreter's own start-up on top, well under half a second
    started = time.time() - 5
    probe = textwrap.dedent(f"""
        from babyllama.runner import warm
        warm.client_started = {started}
        print(warm.process_started())""")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    assert float(out) == started
