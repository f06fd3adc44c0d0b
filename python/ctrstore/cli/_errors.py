"""How a failed command is reported: one line on stderr, never a Python traceback.

Errors ctrstore raises on purpose (``ctrstore.errdefs``) already name what was wrong. Anything
else — an OSError that escaped, a database error, a bug — is reported as one line naming the
exception, the function and the file where it happened; ``--debug`` (or ``CTRSTORE_DEBUG=1``)
adds the traceback.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import traceback

from ctrstore.errdefs import CtrstoreError, from_oserror

__all__ = ["DEBUG_ENV", "debug_enabled", "describe", "free_space"]

DEBUG_ENV = "CTRSTORE_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")


def free_space(path: str) -> str:
    """``N MB free`` on the file system holding ``path`` (or its nearest existing parent)."""
    p = os.path.abspath(path)
    while p != "/" and not os.path.exists(p):
        p = os.path.dirname(p)
    try:
        st = os.statvfs(p)
    except OSError:
        return "free space unknown"
    return f"{st.f_bavail * st.f_frsize // 1_000_000} MB free on {p}"


def _where(exc: BaseException) -> str:
    """``function (file:line)`` of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    f = frames[-1]
    return f"{f.name} ({os.path.basename(f.filename)}:{f.lineno})"


def describe(exc: BaseException) -> str:
    """The one line (without the ``ctrstore:`` prefix) that reports ``exc``."""
    if isinstance(exc, CtrstoreError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            what = exc.filename or str(exc)
            return f"no space left on device while writing {what}: {free_space(exc.filename or what)}"
        return f"{exc.kind}: {exc}"
    if isinstance(exc, OSError):
        what = exc.filename if isinstance(exc.filename, str) else _where(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"no space left on device while writing {what}: {free_space(str(what))}"
        err = from_oserror(exc, str(what))
        return f"{err.kind}: {err}"
    if isinstance(exc, sqlite3.Error):
        return f"database error in {_where(exc)}: {exc}"
    text = str(exc).replace("\n", " ").strip()
    return f"internal error: {type(exc).__name__} in {_where(exc)}" + (f": {text}" if text else "")
