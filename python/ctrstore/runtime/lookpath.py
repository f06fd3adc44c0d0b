"""Finding a command in a container before running it, as Go's ``exec.LookPath`` (which runc
uses) finds it — but from outside, inside the container's root, so that ``exec`` of a command
that is not there fails with one clear error (exit status 127, or 126 for one that cannot be
run) instead of the runtime's raw log line on the user's terminal."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

from ctrstore import _core
from ctrstore.errdefs import CtrstoreError

__all__ = ["check_command"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _probe(root: Path, path: str) -> str | None:
    """None if ``path`` (inside ``root``) is an executable file; else why not."""
    try:
        fd = _core.open_in_root(root, path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, CtrstoreError) as e:
        return os.strerror(e.errno).lower() if e.errno else str(e)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o111:
        return "permission denied"
    return None


def check_command(root: Path, command: str, env: Sequence[str], cwd: str = "/") -> None:
    """Raise (as runc words it: ``exec: "x": executable file not found in $PATH``) if
    ``command`` would not be found or not be runnable in the container whose root is ``root``,
    with ``env``'s ``PATH``. A command with a ``/`` is taken relative to ``cwd``."""
    if "/" in command:
        path = command if command.startswith("/") else posixpath.join(cwd or "/", command)
        why = _probe(root, path)
        if why is not None:
            raise CtrstoreError(f'exec failed: exec: "{command}": stat {command}: {why}')
        return
    search = DEFAULT_PATH
    for e in env:
        if e.startswith("PATH="):
            search = e[5:]
    denied = False
    for d in search.split(":"):
        # (an empty or relative PATH entry is relative to the working directory, as Go's)
        why = _probe(root, posixpath.join(cwd, d, command))
        if why is None:
            return
        denied = denied or why == "permission denied"
    if denied:
        raise CtrstoreError(f'exec failed: exec: "{command}": permission denied')
    raise CtrstoreError(f'exec failed: exec: "{command}": executable file not found in $PATH')
