"""The OCI runtime spec (``config.json``) of a container, as containerd + nerdctl generate it.

:func:`generate` starts from containerd's default Linux spec (``pkg/oci/spec.go``
``populateDefaultUnixSpec``) and applies, in nerdctl's order, the image config
(``WithImageConfigArgs``), the working directory, the tty, the user, the environment, the
network mode, user mounts, capabilities and ``--privileged``::

    spec = generate("web1", "default", image_config, SpecOptions(args=["sh"], tty=True), rootfs)
    (bundle / "config.json").write_text(json.dumps(spec))

What the defaults are:

* ``root`` is ``rootfs`` (relative to the bundle), read-only with ``read_only``.
* the process runs as uid 0 in ``/`` (or the image's ``WorkingDir``) with ``noNewPrivileges``,
  ``RLIMIT_NOFILE`` 1024/1024 and containerd's default capability set (bounding, effective and
  permitted; no inheritable or ambient ones).
* namespaces pid, ipc, uts, mount and network (no network namespace with ``net="host"``; a new
  one holds only a loopback interface, which is what nerdctl's ``--net none`` gives);
  ``cgroupsPath`` is ``/<namespace>/<id>``, the form runc's cgroupfs driver takes.
* mounts ``/proc``, ``/dev``, ``/dev/pts``, ``/dev/shm``, ``/dev/mqueue``, ``/sys`` (ro) and
  ``/run`` with containerd's options, plus nerdctl's read-only ``/sys/fs/cgroup``; containerd's
  masked and read-only paths; a device cgroup that denies everything but nerdctl's (and
  containerd's ``WithDefaultUnixDevices``) null, zero, full, random, urandom, tty, console,
  ptmx and pts devices.

Not done here:

* **no seccomp profile** (``linux.seccomp`` is absent, i.e. unconfined; nerdctl would load
  containerd's default profile), no AppArmor or SELinux labels.
* ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` are **not** bind-mounted; the step
  that writes a bundle may add them.
* ``-e KEY`` without ``=`` *deletes* KEY here; a CLI that wants Docker's "take KEY from my
  environment" must expand it before calling :func:`generate`.
"""

from __future__ import annotations

__all__ = [
    "ALL_CAPS",
    "DEFAULT_CAPS",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_PATH_ENV",
    "DEFAULT_READONLY_PATHS",
    "MAX_ID",
    "OCI_VERSION",
    "NetMode",
    "ResolvedUser",
    "SpecMount",
    "SpecOptions",
    "current_capabilities",
    "default_mounts",
    "generate",
    "host_devices",
    "merge_env",
    "parse_mount",
    "parse_volume",
    "resolve_user",
    "validate_container_id",
]

import errno
import os
import posixpath
import re
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ctrstore.errdefs import InvalidArgument, NotFound, Unimplemented, from_oserror
from ctrstore.metadata.db import validate_identifier
from ctrstore.mount import Mount

OCI_VERSION = "1.1.0"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_ID = 2**31 - 1
"""The largest uid/gid accepted: runc requires ids <= MaxInt32, and containerd follows it."""

NetMode = Literal["host", "none", "private"]

DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""containerd's ``defaultUnixCaps``, in its order."""

ALL_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
"""Every capability Linux knows, indexed by its number (containerd's ``pkg/cap``)."""

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_NAMESPACES = ("pid", "ipc", "uts", "mount", "network")

# containerd's WithDefaultUnixDevices: (type, major, minor); minor None = any.
_DEFAULT_DEVICE_RULES: tuple[tuple[str, int, int | None], ...] = (
    ("c", 1, 3),  # /dev/null
    ("c", 1, 8),  # /dev/random
    ("c", 1, 7),  # /dev/full
    ("c", 5, 0),  # /dev/tty
    ("c", 1, 5),  # /dev/zero
    ("c", 1, 9),  # /dev/urandom
    ("c", 5, 1),  # /dev/console
    ("c", 136, None),  # /dev/pts/*
    ("c", 5, 2),  # /dev/ptmx
)

_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
_SYMLOOP_MAX = 40
_MAX_USER_FILE = 10 << 20
_NUMERIC = re.compile(r"^[+-]?[0-9]+$")
# Docker's volume-name rule: a -v source matching it is a named volume, not a path.
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def validate_container_id(id: str) -> str:
    """``id`` if it is a valid container id (containerd's identifier rule: letters and digits
    separated by single ``.``, ``_`` or ``-``, at most 76 characters); else InvalidArgument."""
    return validate_identifier("container", id)


# --------------------------------------------------------------------------------------------
# Mounts


@dataclass(frozen=True)
class SpecMount:
    """One entry of the spec's ``mounts``: a :class:`ctrstore.mount.Mount` plus where it goes
    in the container."""

    destination: str
    source: str
    type: str = "bind"
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.options, tuple):
            object.__setattr__(self, "options", tuple(self.options))

    @property
    def readonly(self) -> bool:
        return "ro" in self.options

    def to_json(self) -> dict[str, Any]:
        """The OCI form: ``{"destination", "type", "source", "options"}``."""
        return {
            "destination": self.destination,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }

    def to_mount(self) -> Mount:
        """The mount without its destination."""
        return Mount(self.type, self.source, self.options)


def default_mounts() -> list[dict[str, Any]]:
    """containerd's ``defaultMounts`` (OCI JSON form), then nerdctl's ``/sys/fs/cgroup``."""

    def m(dest: str, typ: str, source: str, *options: str) -> dict[str, Any]:
        return {"destination": dest, "type": typ, "source": source, "options": list(options)}

    return [
        m("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        m("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        m("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        m("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        m("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        m("/run", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        m("/sys/fs/cgroup", "cgroup", "cgroup", "ro", "nosuid", "noexec", "nodev"),
    ]


def _clean_destination(dest: str, spec: str) -> str:
    if not dest:
        raise InvalidArgument(f"mount {spec!r}: no target (container path) given")
    if not dest.startswith("/"):
        raise InvalidArgument(f"mount {spec!r}: the target {dest!r} must be an absolute path")
    clean = posixpath.normpath(dest)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidArgument(f"mount {spec!r}: the target must not be '/'")
    return clean


def _host_source(source: str, spec: str) -> str:
    if not source:
        raise InvalidArgument(f"mount {spec!r}: no source (host path) given")
    path = os.path.abspath(source)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"mount {spec!r}: the host path {path} does not exist") from None
    except OSError as e:
        raise from_oserror(e, f"mount {spec!r}: host path {path}") from None
    return path


def _bind_options(readonly: bool, propagation: str, recursive: bool = True) -> tuple[str, ...]:
    return ("rbind" if recursive else "bind", "ro" if readonly else "rw", propagation)


def parse_volume(spec: str) -> SpecMount:
    """Parse ``-v HOST:CONTAINER[:OPTS]``: a bind mount of a host path.

    ``OPTS`` is a comma-separated list of ``ro``/``rw``, ``bind``/``rbind`` and one propagation
    mode (default ``rprivate``). The result's options are ``[rbind, rw|ro, <propagation>]``.
    A relative host path is made absolute; one that does not exist is NotFound. Named and
    anonymous volumes are Unimplemented.
    """
    parts = spec.lstrip(":").split(":")
    if len(parts) == 1:
        raise Unimplemented(
            f"volume {spec!r}: anonymous volumes are not supported; use -v HOST_PATH:CONTAINER_PATH"
        )
    if len(parts) > 3:
        raise InvalidArgument(f"volume {spec!r}: expected HOST_PATH:CONTAINER_PATH[:OPTIONS]")
    source, dest = parts[0], parts[1]
    if source and not source.startswith((".", "/")) and _VOLUME_NAME.match(source):
        raise Unimplemented(
            f"volume {spec!r}: named volumes are not supported; give a path (./{source} for a relative one)"
        )
    readonly: bool | None = None
    propagation: str | None = None
    recursive: bool | None = None
    for opt in parts[2].split(",") if len(parts) == 3 else []:
        if opt in ("ro", "rw"):
            if readonly is not None:
                raise InvalidArgument(f"volume {spec!r}: duplicated read/write option {opt!r}")
            readonly = opt == "ro"
        elif opt in _PROPAGATIONS:
            if propagation is not None:
                raise InvalidArgument(f"volume {spec!r}: duplicated propagation option {opt!r}")
            propagation = opt
        elif opt in ("bind", "rbind"):
            if recursive is not None:
                raise InvalidArgument(f"volume {spec!r}: duplicated bind/rbind option {opt!r}")
            recursive = opt == "rbind"
        elif opt:
            raise InvalidArgument(
                f"volume {spec!r}: unknown option {opt!r} "
                "(supported: ro, rw, bind, rbind, [r]private, [r]shared, [r]slave)"
            )
    dest = _clean_destination(dest, spec)
    return SpecMount(
        dest,
        _host_source(source, spec),
        "bind",
        _bind_options(bool(readonly), propagation or "rprivate", recursive is not False),
    )


def _parse_bool(key: str, value: str, spec: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise InvalidArgument(f"mount {spec!r}: invalid value for {key}: {value!r}")


def parse_mount(spec: str) -> SpecMount:
    """Parse ``--mount type=bind,source=HOST,target=CONTAINER[,readonly][,...]``.

    Keys: ``type`` (must be ``bind``), ``source``/``src``, ``target``/``dst``/``destination``,
    ``readonly``/``ro`` (bare or ``=true|false``), ``bind-propagation`` (default ``rprivate``)
    and ``bind-nonrecursive``. Anything else is InvalidArgument; a missing host path NotFound.
    """
    typ: str | None = None
    source = dest = ""
    readonly = False
    propagation = "rprivate"
    recursive = True
    for fld in spec.split(","):
        key, sep, value = fld.partition("=")
        key = key.strip().lower()
        if not sep:
            if key in ("readonly", "ro"):
                readonly = True
                continue
            if key == "bind-nonrecursive":
                recursive = False
                continue
            raise InvalidArgument(f"mount {spec!r}: invalid field {fld!r}: must be a key=value pair")
        if key == "type":
            if value != "bind":
                raise InvalidArgument(f"mount {spec!r}: type {value!r} is not supported; only type=bind is")
            typ = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "dst", "destination"):
            dest = value
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(key, value, spec)
        elif key == "bind-propagation":
            if value not in _PROPAGATIONS:
                raise InvalidArgument(f"mount {spec!r}: invalid bind-propagation {value!r}")
            propagation = value
        elif key == "bind-nonrecursive":
            recursive = not _parse_bool(key, value, spec)
        else:
            raise InvalidArgument(f"mount {spec!r}: unknown key {key!r}")
    if typ is None:
        raise InvalidArgument(f"mount {spec!r}: type=bind is required (no other type is supported)")
    dest = _clean_destination(dest, spec)
    options = _bind_options(readonly, propagation, recursive)
    return SpecMount(dest, _host_source(source, spec), "bind", options)


# --------------------------------------------------------------------------------------------
# Environment


def merge_env(base: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """containerd's ``replaceOrAppendEnvValues``: each ``K=V`` of ``overrides`` replaces the
    entry of ``base`` with key K in place, or is appended; a bare ``K`` deletes K.

    Unlike containerd, keys appended by earlier overrides are replaced or deleted by later ones
    too (``["A=1", "A=2"]`` gives ``A=2``, not both).
    """
    result: list[str | None] = list(base)
    index = {entry.partition("=")[0]: i for i, entry in enumerate(base)}
    for value in overrides:
        key, sep, _ = value.partition("=")
        i = index.get(key)
        if not sep:
            if i is not None:
                result[i] = None
            continue
        if i is None:
            index[key] = len(result)
            result.append(value)
        else:
            result[i] = value
    return [e for e in result if e is not None]


# --------------------------------------------------------------------------------------------
# Users


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


def _resolve_in_root(root: str, name: str) -> str | None:
    """``name`` resolved inside ``root`` as if ``root`` were ``/`` (containerd's
    ``resolveInRootFS``): symlinks are followed, an absolute target restarts at ``root`` and
    ``..`` stops at it, so nothing outside ``root`` is ever reached. The result has no
    symlinks in it; None if a component does not exist (or is not a directory)."""
    pending = [p for p in name.split("/") if p]
    parts: list[str] = []
    followed = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
        full = os.path.join(root, *parts)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise from_oserror(e, f"/{'/'.join(parts)} in the container's rootfs") from None
        if stat.S_ISLNK(st.st_mode):
            followed += 1
            if followed > _SYMLOOP_MAX:
                raise InvalidArgument(f"/{name} in the container's rootfs: too many levels of symbolic links")
            target = os.readlink(full)
            if target.startswith("/"):
                parts.clear()
            else:
                parts.pop()
            pending[:0] = [p for p in target.split("/") if p]
        elif pending and not stat.S_ISDIR(st.st_mode):
            return None
    return "/".join(parts)


def _read_root_file(rootfs: Path, name: str) -> str | None:
    """The text of ``/<name>`` inside ``rootfs``, or None if there is none. The path is resolved
    inside the rootfs (see :func:`_resolve_in_root`) and opened one component at a time with
    ``O_NOFOLLOW``, so a symlink swapped in meanwhile fails instead of escaping. Only a
    regular file of at most 10 MiB is read."""
    root = os.fspath(rootfs)
    what = f"/{name} in the container's rootfs"
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"the container's rootfs {root} does not exist") from None
    except OSError as e:
        raise from_oserror(e, f"the container's rootfs {root}") from None
    try:
        rel = _resolve_in_root(root, name)
        if rel is None:
            return None
        if not rel:
            raise InvalidArgument(f"{what} is not a regular file")
        comps = rel.split("/")
        dir_fd = root_fd
        try:
            for comp in comps[:-1]:
                nfd = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                if dir_fd != root_fd:
                    os.close(dir_fd)
                dir_fd = nfd
            fd = os.open(comps[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(f"{what}: changed while being resolved") from None
            raise from_oserror(e, what) from None
        finally:
            if dir_fd != root_fd:
                os.close(dir_fd)
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
    finally:
        os.close(root_fd)


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


# --------------------------------------------------------------------------------------------
# Capabilities and devices


def current_capabilities() -> list[str]:
    """The effective capabilities of this process (containerd's ``cap.Current``)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "CapEff":
                bits = int(value.strip(), 16)
                return [name for i, name in enumerate(ALL_CAPS) if bits >> i & 1]
    raise InvalidArgument("/proc/self/status has no CapEff line")


def _canonical_cap(name: str) -> str:
    cap = name.strip().upper()
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in ALL_CAPS:
        raise InvalidArgument(f"unknown capability {name!r}")
    return cap


def _capabilities(cap_add: Sequence[str], cap_drop: Sequence[str]) -> list[str]:
    """nerdctl's ``generateCapOpts`` on containerd's default set."""
    add = [c.upper() for c in cap_add]
    drop = [c.upper() for c in cap_drop]
    caps = [] if "ALL" in drop else list(DEFAULT_CAPS)
    if "ALL" in add:
        caps = current_capabilities()
    else:
        for c in add:
            cap = _canonical_cap(c)
            if cap not in caps:
                caps.append(cap)
    if "ALL" not in drop:
        dropped = {_canonical_cap(c) for c in drop}
        caps = [c for c in caps if c not in dropped]
    return caps


def host_devices(path: str = "/dev") -> list[dict[str, Any]]:
    """The device nodes under ``path`` as ``linux.devices`` entries (containerd's
    ``HostDevices``, used by ``--privileged``): char and block devices, not fifos, skipping
    ``pts``, ``shm``, ``fd``, ``mqueue`` and ``console``."""
    out: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as e:
        raise from_oserror(e, f"listing devices in {path}") from None
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"):
                out.extend(host_devices(entry.path))
            continue
        if entry.name == "console":
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISCHR(st.st_mode):
            typ = "c"
        elif stat.S_ISBLK(st.st_mode):
            typ = "b"
        else:
            continue
        out.append(
            {
                "path": entry.path,
                "type": typ,
                "major": os.major(st.st_rdev),
                "minor": os.minor(st.st_rdev),
                "fileMode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# The spec


@dataclass
class SpecOptions:
    """What ``nerdctl run`` flags add to the image's config.

    ``env`` entries are ``K=V`` (set) or ``K`` (delete). ``net``: ``host`` shares the host's
    network namespace; ``none`` and ``private`` give a new one with only loopback.
    ``cap_add``/``cap_drop`` take names with or without ``CAP_``, or ``ALL``.
    """

    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    cwd: str | None = None
    user: str | None = None
    hostname: str | None = None
    tty: bool = False
    read_only: bool = False
    net: NetMode = "private"
    mounts: list[SpecMount] = field(default_factory=list)
    privileged: bool = False
    cgroups_path: str | None = None
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _ImageConfig:
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str
    user: str


def _image_config(image_config: Mapping[str, Any]) -> _ImageConfig:
    """The runtime part of an image config: accepts the whole config blob (with ``config``)
    or only its ``config`` object."""
    inner = image_config.get("config") if "config" in image_config else image_config
    if inner is None:
        inner = {}
    if not isinstance(inner, Mapping):
        raise InvalidArgument(f"image config: 'config' must be an object, got {inner!r}")

    def strings(key: str) -> tuple[str, ...]:
        value = inner.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"image config: {key!r} must be a list of strings, got {value!r}")
        return tuple(value)

    def string(key: str) -> str:
        value = inner.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidArgument(f"image config: {key!r} must be a string, got {value!r}")
        return value

    return _ImageConfig(
        strings("Env"), strings("Entrypoint"), strings("Cmd"), string("WorkingDir"), string("User")
    )


def _mounts(opts: SpecOptions) -> tuple[list[dict[str, Any]], str | None]:
    """Default mounts with the user's on top (a user mount replaces a default one at the same
    destination, as Docker does) and the rootfs propagation the user's mounts need."""
    seen: set[str] = set()
    for m in opts.mounts:
        if m.destination in seen:
            raise InvalidArgument(f"duplicate mount point {m.destination}")
        seen.add(m.destination)
    mounts = [m for m in default_mounts() if m["destination"] not in seen]
    mounts.extend(m.to_json() for m in opts.mounts)
    propagation = None
    options = {o for m in opts.mounts for o in m.options}
    if options & {"shared", "rshared"}:
        propagation = "shared"
    elif options & {"slave", "rslave"}:
        propagation = "rslave"
    return mounts, propagation


def generate(
    container_id: str,
    namespace: str,
    image_config: Mapping[str, Any],
    opts: SpecOptions,
    rootfs: Path,
) -> dict[str, Any]:
    """The OCI runtime spec (``config.json`` as a dict) of container ``container_id`` in
    ``namespace``, run from an image with config ``image_config`` (the config blob or its
    ``config`` object) whose root file system is mounted at ``rootfs`` (read only to look up
    users; the spec's ``root.path`` is ``rootfs``, relative to the bundle).

    * args: Entrypoint + (``opts.args`` if any, else Cmd); none at all is InvalidArgument.
    * env: the image's Env (or ``PATH=...`` if it has none), then ``TERM=xterm`` with a tty,
      then ``opts.env``, then ``HOSTNAME=<hostname>`` (nerdctl), merged by :func:`merge_env`.
    * cwd: ``opts.cwd``, else WorkingDir, else ``/``; it must be absolute.
    * user: ``opts.user``, else the image's User, resolved by :func:`resolve_user`.
    * hostname: ``opts.hostname``, else the first 12 characters of the id; with
      ``net="host"`` the host's name (nerdctl).
    * ``privileged``: all of this process's capabilities, no masked or read-only paths,
      writable ``/sys`` and ``/sys/fs/cgroup``, every host device, ``noNewPrivileges`` false;
      ``cap_add``/``cap_drop`` are then ignored (as Docker and nerdctl do).
    """
    validate_container_id(container_id)
    validate_identifier("namespace", namespace)
    if opts.net not in get_args(NetMode):
        raise InvalidArgument(f"network mode {opts.net!r} is not supported (use host, none or private)")
    cfg = _image_config(image_config)

    args = [*cfg.entrypoint, *(opts.args or cfg.cmd)]
    if not args:
        raise InvalidArgument(
            "no command specified: the image has neither Entrypoint nor Cmd, give a command to run"
        )

    if opts.cwd:
        if not opts.cwd.startswith("/"):
            raise InvalidArgument(f"working directory {opts.cwd!r} must be an absolute path")
        cwd = opts.cwd
    else:
        cwd = cfg.working_dir or "/"
        if not cwd.startswith("/"):
            raise InvalidArgument(f"the image's WorkingDir {cwd!r} is not an absolute path")

    if opts.hostname:
        hostname = opts.hostname
    elif opts.net == "host":
        hostname = socket.gethostname()
    else:
        hostname = container_id[:12]

    env = merge_env(cfg.env or (DEFAULT_PATH_ENV,), ())
    if opts.tty:
        env = merge_env(env, ["TERM=xterm"])
    env = merge_env(env, [*opts.env, f"HOSTNAME={hostname}"])

    user = resolve_user(rootfs, opts.user or cfg.user)

    mounts, propagation = _mounts(opts)

    namespaces = [{"type": t} for t in _NAMESPACES if not (t == "network" and opts.net == "host")]
    devices_cgroup: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for typ, major, minor in _DEFAULT_DEVICE_RULES:
        rule: dict[str, Any] = {"allow": True, "type": typ, "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        devices_cgroup.append(rule)

    linux: dict[str, Any] = {
        "resources": {"devices": devices_cgroup},
        "cgroupsPath": opts.cgroups_path or f"/{namespace}/{container_id}",
        "namespaces": namespaces,
        "maskedPaths": list(DEFAULT_MASKED_PATHS),
        "readonlyPaths": list(DEFAULT_READONLY_PATHS),
    }
    if propagation is not None:
        linux["rootfsPropagation"] = propagation

    if opts.privileged:
        caps = current_capabilities()
        del linux["maskedPaths"], linux["readonlyPaths"]
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        linux["devices"] = host_devices()
        for m in mounts:
            if m["type"] in ("sysfs", "cgroup"):
                m["options"] = ["rw" if o == "ro" else o for o in m["options"]]
    else:
        caps = _capabilities(opts.cap_add, opts.cap_drop)

    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": opts.tty,
            "user": user.to_json(),
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": not opts.privileged,
        },
        "root": {"path": "rootfs", "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
