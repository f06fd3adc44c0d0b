"""Rootless ctrstore: an ordinary user's store inside a user namespace of their own (issue 13).

The namespace maps 0 to the user and 1..N to the user's subordinate ids (``/etc/subuid``,
``/etc/subgid``, installed by Debian's ``uidmap`` tools ``newuidmap``/``newgidmap``), so an
image's uid 0 is the user on disk and uid 1000 is subuid+999. It is made once and kept alive by
a pause process (podman's design, no daemon): ``userns.enter`` joins the pause process's user
and mount namespaces with setns(2) — creating it first if there is none — so every command of
the user sees the same namespace and the same mounts (a container's rootfs mounted by ``run -d``
is still there for ``rm``). ``ctrstore unshare CMD`` runs a command in it.

- ``subids``: the user's ranges in ``/etc/subuid`` and ``/etc/subgid``, and the error that says
  which line to add when there are none;
- ``userns``: whether this process is in a user namespace, the pause process, joining it.
- ``idmap``: single-id mode (no subids, or ``--single-id``): the namespace maps only 0 → the
  user; image owners are kept in the ``user.rootlesscontainers`` xattr (as umoci does); the
  mapping a store was unpacked with, and the warnings that go with it.
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "ROOTLESS_UID_ENV",
    "SINGLE_ID_ENV",
    "in_userns",
    "is_rootless",
    "maps_single_id",
    "single_id",
    "warn",
]

ROOTLESS_UID_ENV = "_CTRSTORE_ROOTLESS_UID"
"""Set in a command that entered the user namespace: the real uid of the user, so that the
defaults (``config.user_defaults``) and messages stay the user's while the uid is 0."""


SINGLE_ID_ENV = "CTRSTORE_SINGLE_ID"
"""``1``: an ordinary user's namespace maps a single id even where the user has subids
(the CLI's ``--single-id``)."""


_IDENTITY = ["0", "0", "4294967295"]
"""The initial user namespace's ``uid_map``: the identity over all 2^32-1 ids."""


def _uid_map() -> list[str]:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split()
    except OSError:
        return _IDENTITY


def in_userns() -> bool:
    """Whether this process runs in a user namespace other than the initial one."""
    return _uid_map() != _IDENTITY


def maps_single_id(uid_map: str) -> bool:
    """Whether ``uid_map`` (a ``/proc/PID/uid_map``'s text) maps one id only."""
    fields = uid_map.split()
    return len(fields) == 3 and fields[2] == "1"


def single_id() -> bool:
    """Whether this process runs in a user namespace that maps one id only (single-id mode:
    files cannot be chowned, their image owners live in ``user.rootlesscontainers``)."""
    return maps_single_id(" ".join(_uid_map()))


def is_rootless() -> bool:
    """Whether this process works for an ordinary user: not root, or in the user's namespace."""
    return os.getuid() != 0 or ROOTLESS_UID_ENV in os.environ or in_userns()


def warn(message: str) -> None:
    """One warning line on stderr, as the CLI prints them (what rootless cannot do here)."""
    print(f"ctrstore: warning: {message}", file=sys.stderr, flush=True)
