"""A user's subordinate ids, as ``newuidmap``/``newgidmap`` read them (shadow's ``subid(5)``):
lines ``NAME_OR_UID:START:COUNT`` in ``/etc/subuid`` and ``/etc/subgid``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ctrstore.errdefs import FailedPrecondition

__all__ = ["SUBGID", "SUBUID", "IdRange", "missing_message", "ranges", "require"]

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
SUGGESTED_START = 100000
SUGGESTED_COUNT = 65536


@dataclass(frozen=True)
class IdRange:
    start: int
    count: int


def ranges(path: Path, user: str, uid: int) -> list[IdRange]:
    """The ranges ``path`` gives ``user`` (by name or by uid), in file order; none when the
    file is missing."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            out.append(IdRange(start, count))
    return out


def missing_message(path: Path, user: str) -> str:
    end = SUGGESTED_START + SUGGESTED_COUNT - 1
    return (
        f"no subordinate ids for user {user} in {path}: add '{user}:{SUGGESTED_START}:{SUGGESTED_COUNT}' "
        f"to /etc/subuid and /etc/subgid (as root: usermod --add-subuids {SUGGESTED_START}-{end} "
        f"--add-subgids {SUGGESTED_START}-{end} {user})"
    )


def require(user: str, uid: int, gid: int) -> tuple[IdRange, IdRange]:
    """The first subuid and subgid range of ``user``, or FailedPrecondition saying which line
    to add (and how) where either is missing."""
    del gid  # subgid(5) is keyed by the user too
    uids = ranges(SUBUID, user, uid)
    if not uids:
        raise FailedPrecondition(missing_message(SUBUID, user))
    gids = ranges(SUBGID, user, uid)
    if not gids:
        raise FailedPrecondition(missing_message(SUBGID, user))
    return uids[0], gids[0]


def user_name(uid: int) -> str:
    """The user's name (``LOGNAME``/``USER`` when ``pwd`` does not know the uid)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return os.environ.get("LOGNAME") or os.environ.get("USER") or str(uid)
