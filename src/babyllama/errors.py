"""User-facing errors, and faults the user can fix that arrive as other exceptions (a full disk).

Anything the user can fix (a missing file, a bad config key, a mismatching tokenizer) is raised as
:class:`UserError`. The CLI prints its message as one line and exits with status 2, without a traceback.
Programming errors stay ordinary exceptions and keep their tracebacks.

A full disk surfaces as ``OSError(ENOSPC)``, as torch's ``file write failed`` or as a Rust panic from the
tokenizers library; :func:`fault_message` turns each into one line naming the folder being written, which the
commands declare with :func:`writing`.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path


class UserError(Exception):
    """An error caused by input the user controls. The message names the file and the fix."""

    exit_code = 2


_WRITING: ContextVar[str | None] = ContextVar("babyllama_writing", default=None)
_NO_SPACE = ("no space left on device", "file write failed", "disk quota exceeded")


@contextmanager
def writing(where: str | Path | None) -> Iterator[None]:
    """Declare the folder the enclosed work writes into: an exception leaving the block carries the innermost
    such folder (for the one-line message of a full disk)."""
    token = _WRITING.set(str(where) if where else _WRITING.get())
    try:
        yield
    except BaseException as e:
        if getattr(e, "babyllama_writing", None) is None and _WRITING.get():
            try:
                e.babyllama_writing = _WRITING.get()
            except AttributeError:  # exception types with __slots__
                pass
        raise
    finally:
        _WRITING.reset(token)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def fault_message(e: BaseException) -> str | None:
    """One line for a fault the user can fix (out of disk space), else None."""
    declared = getattr(e, "babyllama_writing", None) or _WRITING.get()
    for x in _chain(e):
        text = str(x).lower()
        if (isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT)) or any(n in text for n in _NO_SPACE):
            filename = getattr(x, "filename", None)
            where = declared or (str(Path(filename).parent) if filename else "the output folder")
            return (f"no space left on the device while writing {where}; free space there and run the same "
                    "command again (partial files were removed; finished results and the last good checkpoint "
                    "are kept)")
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST) and x.filename:
            return path_kind_message(x)
    return None


def file_on_path(path: str | Path) -> Path | None:
    """The regular file that stands where ``path`` or a folder above it should be (what blocks writing into
    ``path`` as a folder), else None; the walk up stops at the first folder that exists."""
    for p in (Path(path), *Path(path).parents):
        if p.is_file():
            return p
        if p.is_dir():
            return None
    return None


def path_kind_message(e: OSError) -> str:
    """One line for a write that met a file where a folder belongs, or a folder where a file belongs."""
    path = Path(e.filename)
    if e.errno == errno.EISDIR:
        return f"{path} is a folder where a file belongs; move it away or choose another path"
    # ENOTDIR: some component of the path is a regular file; EEXIST from mkdir: the path itself is one
    return f"{file_on_path(path) or path} is a file where a folder belongs; move it away or choose another path"
