"""Writing results so that a reader never sees half of one: the single atomic-write helper, the one lock, hashing.

Everything babyllama writes that another step reads (corpora, tokenizers, token and teacher caches, metrics, run
information, plans, reports) goes through :func:`atomic_write`: the content is written under a temporary sibling
name, flushed to disk, and renamed onto the final name in one step. A crash leaves either the old artefact or the
new one, plus at most a temporary ``.NAME.tmp-HOST-PID-*`` sibling that the next write of the same artefact removes
once that process is gone (two processes may write the same artefact at once: the last rename wins, whole).

:func:`exclusive` is the one lock: an advisory ``flock`` on a file, which the kernel releases when the holder
exits in any way (a SIGKILL included), so a stale lock never blocks the next run.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError, file_on_path

TMP_MARK = ".tmp-"


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}{TMP_MARK}"


def _own_tmp_prefix(path: Path) -> str:
    """The prefix of this process's temporaries: the writer's host and PID in the name tell a crashed writer's
    leftovers from another live process's write in progress (two stages tokenizing the same corpus at once)."""
    return f"{_tmp_prefix(path)}{socket.gethostname()}-{os.getpid()}-"


def _writer_alive(tmp_name: str, prefix: str) -> bool:
    """Whether the process that made the temporary ``tmp_name`` may still be writing it. A name without host and
    PID is an older format's: stale. Another host's: its PID means nothing here, so it is left alone."""
    parts = tmp_name[len(prefix):].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return False  # our own: a write of ours removes its temporary when it ends, so this one is left over
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file of a directory and the directories themselves, to disk."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.is_symlink():
                _fsync_file(p)
        _fsync_dir(path)
    elif path.is_file():
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temps(path: str | Path) -> None:
    """Remove temporary siblings that an interrupted :func:`atomic_write` of ``path`` left behind (not those of a
    writer still running)."""
    path = Path(path)
    prefix = _tmp_prefix(path)
    if path.parent.is_dir():
        for p in path.parent.glob(prefix + "*"):
            if not _writer_alive(p.name, prefix):
                remove(p)


@contextmanager
def atomic_write(path: str | Path, directory: bool = False, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, move it onto ``path``.

    ``directory=True`` creates the temporary path as an empty directory (for artefacts made of several files);
    otherwise the block creates the file. On success the content is fsynced and renamed onto ``path`` (an existing
    file or directory there is replaced when ``replace``, else :class:`FileExistsError`); on error the temporary
    path is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=_own_tmp_prefix(path), dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=_own_tmp_prefix(path), dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists() or path.is_symlink():
            if not replace:
                raise FileExistsError(path)
            if path.is_dir() and not path.is_symlink():
                # a directory cannot be renamed onto a non-empty one: move the old one aside first
                old = Path(tempfile.mkdtemp(prefix=_own_tmp_prefix(path), dir=path.parent))
                os.replace(path, old / "old")
                os.replace(tmp, path)
                remove(old)
            else:
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        remove(tmp)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | Path, expect: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a UTF-8 JSON-lines file the user gave; one line naming the
    file (and line) otherwise, ending with ``expect`` (what each line must be) where a line is wrong."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8; re-export the file as UTF-8 JSON lines") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not JSON ({e.msg}); {expect}") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: not a JSON object; {expect}")
        rows.append((n, row))
    return rows


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def short_hash(obj: Any, length: int = 10) -> str:
    """A short, stable hash of any JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


LOCK_FILE = ".babyllama.lock"


@contextmanager
def exclusive(directory: str | Path, what: str, wait: bool = False, name: str = LOCK_FILE) -> Iterator[None]:
    """Hold the lock of ``directory`` (``DIR/.babyllama.lock``, or ``DIR/name``) for the block; ``what`` names it
    in the error.

    Without ``wait``, a directory locked by another process is one clear :class:`UserError`. The lock file is
    removed when the block ends, so nothing is left behind; a holder checks after locking that the file it locked
    is still the one at the path (else a releasing holder removed it, and it locks again).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(f"{what} {directory} is in use by {holder}; wait for it to finish, or stop it and run "
                            "the same command again") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"babyllama pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def require_folders(paths, what: str = "output folder") -> None:
    """One line, before anything is written, when a folder the command will write into (or any folder above it)
    exists as a regular file."""
    for path in paths:
        blocker = file_on_path(path)
        if blocker is not None:
            raise UserError(f"{blocker} is a file where a folder belongs (the {what} {path}); move it away or "
                            "choose another path")


def require_file_path(path, what: str = "output file") -> None:
    """One line when the file a command will write is a folder, or lies under a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder where a file belongs (the {what}); choose a file name")
    require_folders([path.parent], f"folder of the {what}")
