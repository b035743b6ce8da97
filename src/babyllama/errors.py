"""User-facing errors.

Anything the user can fix (a missing file, a bad config key, a mismatching tokenizer) is raised as
:class:`UserError`. The CLI prints its message as one line and exits with status 2, without a traceback.
Programming errors stay ordinary exceptions and keep their tracebacks.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user controls. The message names the file and the fix."""

    exit_code = 2
