"""The container's user: containerd's ``WithUser`` + ``WithAdditionalGIDs``, resolved in the
image's own ``/etc/passwd`` and ``/etc/group`` without ever leaving its rootfs (the Rust core's
root-confined open: symlinks are resolved inside it, files opened one component at a time with
``O_NOFOLLOW``)."""

from __future__ import annotations

__all__ = ["MAX_ID", "ResolvedUser", "resolve_user"]

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctrstore import _core
from ctrstore.errdefs import InvalidArgument, NotFound

MAX_ID = 2**31 - 1
"""The largest uid/gid accepted: runc requires ids <= MaxInt32, and containerd follows it."""

_MAX_USER_FILE = 10 << 20
_NUMERIC = re.compile(r"^[+-]?[0-9]+$")


@dataclass(frozen=True)
class ResolvedUser:
    """``process.user``: the primary ``gid`` is always first in ``additional_gids``."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid, "additionalGids": list(self.additional_gids)}


@dataclass(frozen=True)
class _Passwd:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _open_root_file(rootfs: Path, name: str) -> int | None:
    """A descriptor for ``/<name>`` inside ``rootfs``, or None if there is no such file. The
    Rust core resolves it (``_core.open_in_root``, containerd's ``resolveInRootFS``): symlinks
    are followed inside the rootfs, an absolute target restarting at it and ``..`` stopping at
    it, and every component is opened with ``O_NOFOLLOW``, so nothing outside is ever reached
    and a symlink swapped in meanwhile fails instead of escaping."""
    what = f"/{name} in the container's rootfs"
    try:
        return _core.open_in_root(rootfs, name, os.O_RDONLY | os.O_NONBLOCK)
    except (NotFound, InvalidArgument) as e:
        if not rootfs.is_dir():
            raise NotFound(f"the container's rootfs {rootfs} does not exist") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None  # a component is missing, or is not a directory
        if e.errno == errno.ELOOP:
            raise InvalidArgument(f"{what}: too many levels of symbolic links") from None
        raise


def _read_root_file(rootfs: Path, name: str) -> str | None:
    """The text of ``/<name>`` inside ``rootfs`` (see :func:`_open_root_file`), or None if
    there is none. Only a regular file of at most 10 MiB is read."""
    what = f"/{name} in the container's rootfs"
    fd = _open_root_file(rootfs, name)
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgument(f"{what} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_USER_FILE and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > _MAX_USER_FILE:
        raise InvalidArgument(f"{what} is larger than {_MAX_USER_FILE} bytes")
    return data.decode("utf-8", errors="replace")


def _id_in_range(text: str) -> int | None:
    value = int(text)
    return value if 0 <= value <= MAX_ID else None


def _read_passwd(rootfs: Path) -> list[_Passwd] | None:
    text = _read_root_file(rootfs, "etc/passwd")
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        f = line.strip().split(":")
        # name:password:uid:gid:gecos:home:shell; lines that do not parse are skipped
        if len(f) < 4 or not f[0] or f[0].startswith("#"):
            continue
        if not (_NUMERIC.match(f[2]) and _NUMERIC.match(f[3])):
            continue
        uid, gid = _id_in_range(f[2]), _id_in_range(f[3])
        if uid is None or gid is None:
            continue
        out.append(_Passwd(f[0], uid, gid))
    return out


def _read_group(rootfs: Path) -> list[_Group] | None:
    text = _read_root_file(rootfs, "etc/group")
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        f = line.strip().split(":")
        # name:password:gid:member,member
        if len(f) < 3 or not f[0] or f[0].startswith("#") or not _NUMERIC.match(f[2]):
            continue
        gid = _id_in_range(f[2])
        if gid is None:
            continue
        members = tuple(m for m in (f[3].split(",") if len(f) > 3 else []) if m)
        out.append(_Group(f[0], gid, members))
    return out


def _parse_id(text: str, what: str, userstr: str) -> int | None:
    """The number ``text`` is (range-checked), or None if it is a name."""
    if not _NUMERIC.match(text):
        return None
    value = int(text)
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"invalid user {userstr!r}: {what} {text} is out of range (0 to {MAX_ID})")
    return value


def resolve_user(rootfs: Path, user: str) -> ResolvedUser:
    """containerd's ``WithUser`` + ``WithAdditionalGIDs`` against the rootfs' ``/etc/passwd``
    and ``/etc/group``.

    ``user`` is ``""`` (root), ``uid``, ``name``, ``uid:gid``, ``uid:group``, ``name:gid`` or
    ``name:group``. A uid absent from ``/etc/passwd`` (or with no ``/etc/passwd``) runs with
    gid 0; an unknown user or group name is NotFound; an id outside 0..2^31-1 is
    InvalidArgument. Without an explicit group, the additional gids are those of the groups in
    ``/etc/group`` that list the user's name (``root`` for the default user), except the group
    named like the user; with one, only the primary gid. The primary gid is always first.
    """
    default = user == ""
    parts = ["0"] if default else user.split(":")
    if len(parts) > 2 or not all(parts):
        raise InvalidArgument(
            f"invalid user {user!r}: expected uid, name, uid:gid, uid:group, name:gid or name:group"
        )
    uid = _parse_id(parts[0], "uid", user)
    gid_arg = _parse_id(parts[1], "gid", user) if len(parts) == 2 else None
    if uid is not None and gid_arg is not None:
        # Both numeric: nothing to look up (as containerd).
        return ResolvedUser(uid, gid_arg, (gid_arg,))

    passwd = _read_passwd(rootfs)
    entry: _Passwd | None
    if uid is None:
        name = parts[0]
        if passwd is None:
            raise NotFound(f"cannot resolve user {name!r}: the image has no /etc/passwd")
        entry = next((e for e in passwd if e.name == name), None)
        if entry is None:
            raise NotFound(f"user {name!r} not found in the image's /etc/passwd")
        uid, gid = entry.uid, entry.gid
    else:
        entry = next((e for e in passwd or () if e.uid == uid), None)
        gid = entry.gid if entry is not None else 0

    groups: list[_Group] | None = None
    if len(parts) == 2:
        if gid_arg is not None:
            gid = gid_arg
        else:
            groupname = parts[1]
            groups = _read_group(rootfs)
            if groups is None:
                raise NotFound(f"cannot resolve group {groupname!r}: the image has no /etc/group")
            g = next((g for g in groups if g.name == groupname), None)
            if g is None:
                raise NotFound(f"group {groupname!r} not found in the image's /etc/group")
            gid = g.gid
        return ResolvedUser(uid, gid, (gid,))

    username = entry.name if entry is not None else ("root" if default else None)
    extra: list[int] = []
    if username is not None:
        groups = _read_group(rootfs)
        for g in groups or ():
            if g.name != username and username in g.members and g.gid != gid and g.gid not in extra:
                extra.append(g.gid)
    return ResolvedUser(uid, gid, (gid, *extra))
