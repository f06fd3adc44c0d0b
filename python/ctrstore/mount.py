"""Mounts: containerd's ``mount.Mount`` and the helpers around it.

A snapshotter hands out a list of :class:`Mount` (``type``, ``source``, ``options``); mounting
them in order onto one target gives the container's root file system::

    mounts = [Mount("overlay", "overlay", ("workdir=...", "upperdir=...", "lowerdir=...:..."))]
    with temp_mount(mounts, root / "tmpmounts") as rootfs:
        ...  # rootfs is mounted here, and unmounted and removed afterwards

The mount(2) work is done by the Rust core (``ctrstore._core``): options become ``MS_*`` flags,
a read-only bind gets its remount, and an overlay with many long lowerdirs is mounted with
relative lowerdirs so that its options fit in a page. Errors are ``ctrstore.errdefs`` classes.

A FUSE mount (type ``fuse3.PROGRAM`` or ``fuse.PROGRAM``, containerd's spelling: the
rootless overlay snapshotter's ``fuse3.fuse-overlayfs``) cannot be made with mount(2) alone:
the program serves the file system, so it is run as ``PROGRAM -o OPTIONS TARGET`` and stays
in the background until the mount goes (unmounting ends it). ``PROGRAM`` is a name looked up
on PATH or an absolute path.
"""

from __future__ import annotations

__all__ = [
    "Mount",
    "MountInfo",
    "fuse_program",
    "fuse_program_path",
    "is_mountpoint",
    "mount_all",
    "mount_command",
    "mountinfo",
    "remove_volatile",
    "temp_mount",
    "unmount",
    "unmount_all",
]

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ctrstore import _core
from ctrstore._core import MountInfo
from ctrstore.errdefs import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable, Unimplemented

StrPath = str | os.PathLike[str]

_VOLATILE = frozenset({"volatile", "fsync=volatile"})


@dataclass(frozen=True)
class Mount:
    """One mount, as containerd describes it: file system ``type``, ``source`` and fstab-style
    ``options`` (``ro``, ``rbind``, ``lowerdir=...``)."""

    type: str
    source: str
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept any sequence of options, but keep the dataclass hashable.
        if not isinstance(self.options, tuple):
            object.__setattr__(self, "options", tuple(self.options))

    def to_json(self) -> dict[str, Any]:
        """containerd's JSON form: ``{"type": ..., "source": ..., "options": [...]}``."""
        return {"type": self.type, "source": self.source, "options": list(self.options)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Mount:
        """Parse containerd's JSON form (Go's capitalized field names are accepted too).

        A non-empty ``target`` (a sub-directory of the mount target) is not supported.
        """

        def field(name: str) -> Any:
            return obj.get(name, obj.get(name.capitalize()))

        typ, source, options = field("type"), field("source"), field("options")
        if not isinstance(typ, str) or not typ:
            raise InvalidArgument(f"mount: 'type' must be a non-empty string, got {typ!r}")
        if not isinstance(source, str):
            raise InvalidArgument(f"mount: 'source' must be a string, got {source!r}")
        if options is None:
            options = []
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise InvalidArgument(f"mount: 'options' must be a list of strings, got {options!r}")
        if field("target"):
            raise Unimplemented(f"mount: a sub-directory target ({field('target')!r}) is not supported")
        return cls(typ, source, tuple(options))

    @property
    def is_overlay(self) -> bool:
        """Whether this is an overlay: the kernel's, or one served by a FUSE program
        (fuse-overlayfs) with the same ``lowerdir``/``upperdir``/``workdir`` options."""
        if self.type == "overlay":
            return True
        return fuse_program(self.type) is not None and any(o.startswith("lowerdir=") for o in self.options)

    @property
    def readonly(self) -> bool:
        """Whether this mount is read-only (an overlay is writable only with an upperdir)."""
        if self.is_overlay:
            opts = ",".join(self.options).split(",")
            return "ro" in opts or not any(o.startswith("upperdir=") for o in opts)
        return "ro" in self.options

    def mount(self, target: StrPath) -> None:
        """Mount onto ``target`` (which must exist)."""
        program = fuse_program(self.type)
        if program is not None:
            _mount_fuse(program, self.options, target)
            return
        _core.mount(self.type, self.source, list(self.options), target)


FUSE_TIMEOUT = 60.0
"""Seconds a FUSE program may take to mount (it returns once the mount is up)."""


def fuse_program(type_: str) -> str | None:
    """The program behind a FUSE mount type (``fuse3.fuse-overlayfs`` -> ``fuse-overlayfs``),
    or None for any other type."""
    for prefix in ("fuse3.", "fuse."):
        if type_.startswith(prefix) and len(type_) > len(prefix):
            return type_[len(prefix) :]
    return None


def fuse_program_path(program: str) -> str | None:
    """Where FUSE ``program`` (a name looked up on PATH, or an absolute path) is, if it can be
    run."""
    path = program if "/" in program else shutil.which(program)
    return path if path is not None and os.access(path, os.X_OK) else None


def _mount_fuse(program: str, options: Sequence[str], target: StrPath) -> None:
    """Run ``program -o OPTIONS TARGET``: it mounts, daemonises and serves the mount until it
    is unmounted. Its messages become the error when it fails."""
    path = fuse_program_path(program)
    if path is None:
        raise FailedPrecondition(f"mount: {program} is not installed (Debian's {Path(program).name} package)")
    argv = [path]
    if options:
        argv += ["-o", ",".join(options)]
    argv.append(os.fspath(target))
    try:
        r = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=FUSE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise Unavailable(
            f"mount: {program} did not mount {os.fspath(target)} in {FUSE_TIMEOUT:g}s"
        ) from None
    except OSError as e:
        raise FailedPrecondition(f"mount: cannot run {path}: {e.strerror or e}") from None
    if r.returncode != 0:
        # fuse-overlayfs prints "unknown argument ignored: lazytime" (its own default) first.
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "unknown argument ignored" not in ln]
        why = "; ".join(lines) or f"exit status {r.returncode}"
        raise Unavailable(f"mount: {program} could not mount {os.fspath(target)}: {why}")


def remove_volatile(mounts: Sequence[Mount]) -> list[Mount]:
    """The mounts without overlay's ``volatile``/``fsync=volatile``, as containerd does for
    temporary mounts: a volatile overlay cannot be mounted again on the same upper/work dirs."""
    out: list[Mount] = []
    for m in mounts:
        if m.is_overlay and _VOLATILE.intersection(m.options):
            m = replace(m, options=tuple(o for o in m.options if o not in _VOLATILE))
        out.append(m)
    return out


def mount_all(mounts: Sequence[Mount], target: StrPath) -> None:
    """Mount each of ``mounts`` onto ``target``, in order. If one fails, the ones already
    mounted are unmounted again (last first) and the error is raised."""
    done = 0
    try:
        for m in mounts:
            m.mount(target)
            done += 1
    except BaseException:
        for _ in range(done):
            with contextlib.suppress(Exception):
                unmount(target, recursive=False)
        raise


def unmount(target: StrPath, *, lazy: bool = False, recursive: bool = True) -> None:
    """Unmount ``target`` and, with ``recursive`` (the default), every mount below it, deepest
    first. EBUSY is retried for a while; ``lazy`` detaches instead (``umount -l``). A target
    that is not a mount point is left alone; one that does not exist is fine when recursive.

    A FUSE mount that umount2(2) may not remove here (mounted by an ordinary user through
    ``fusermount3``, seen from outside a user namespace) is unmounted with ``fusermount3 -u``;
    uid 0 in the user namespace that owns the mount namespace unmounts it directly."""
    try:
        _core.unmount(target, lazy=lazy, recursive=recursive)
    except PermissionDenied:
        if not _fusermount_unmount(target, lazy=lazy):
            raise


def _fusermount_unmount(target: StrPath, *, lazy: bool) -> bool:
    """``fusermount3 -u [-z] TARGET`` where ``target`` is a FUSE mount: whether it worked."""
    real = Path(target).resolve()
    fuse = any(m.mount_point == real and m.fstype.startswith("fuse") for m in _core.mountinfo())
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if not fuse or tool is None:
        return False
    argv = [tool, "-u", *(["-z"] if lazy else []), str(real)]
    try:
        r = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=FUSE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def unmount_all(target: StrPath, *, lazy: bool = False) -> None:
    """Unmount ``target`` until it is no longer a mount point (undoes stacked mounts)."""
    _core.unmount_all(target, lazy=lazy)


def mountinfo() -> list[MountInfo]:
    """This process's mounts (``/proc/self/mountinfo``), parents first."""
    return _core.mountinfo()


def is_mountpoint(path: StrPath) -> bool:
    """Whether ``path`` (symlinks resolved) is a mount point; False if it does not exist."""
    p = Path(path)
    if not p.exists():
        return False
    real = p.resolve()
    return any(m.mount_point == real for m in _core.mountinfo())


def mount_command(mounts: Sequence[Mount], target: StrPath) -> str:
    """Shell lines that perform ``mounts`` on ``target``, one per mount, as ``ctr snapshots
    mounts`` prints them: ``mount -t TYPE SOURCE TARGET -o OPT,OPT``."""
    lines = []
    for m in mounts:
        line = f"mount -t {shlex.quote(m.type)} {shlex.quote(m.source)} {shlex.quote(os.fspath(target))}"
        if m.options:
            line += f" -o {shlex.quote(','.join(m.options))}"
        lines.append(line)
    return "\n".join(lines)


@contextlib.contextmanager
def temp_mount(mounts: Sequence[Mount], base_dir: StrPath) -> Iterator[Path]:
    """Mount ``mounts`` onto a fresh directory under ``base_dir`` (containerd uses
    ``<root>/tmpmounts``) and yield it; afterwards, even on an exception, unmount everything
    there and remove the directory.

    Overlay ``volatile`` is dropped first. As in containerd the directory is removed with
    rmdir, never recursively: if unmounting fails, nothing below it is deleted.
    """
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{TEMP_MOUNT_PREFIX}{os.getpid()}-", dir=base))
    try:
        mount_all(remove_volatile(mounts), root)
        yield root
    finally:
        try:
            unmount(root, recursive=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                if not is_mountpoint(root):
                    root.rmdir()


TEMP_MOUNT_PREFIX = "ctrstore-mount-"
"""``temp_mount`` directories are named ``ctrstore-mount-<pid>-<random>``: the pid says
whether the process that made one is still there to unmount it."""


def stale_temp_mounts(base_dir: StrPath) -> list[Path]:
    """The ``temp_mount`` directories under ``base_dir`` whose process is gone (killed while
    the mount was up: nothing else would ever unmount them)."""
    try:
        entries = sorted(Path(base_dir).iterdir())
    except FileNotFoundError:
        return []
    out = []
    for d in entries:
        pid, _, rest = d.name.removeprefix(TEMP_MOUNT_PREFIX).partition("-")
        owned = d.name.startswith(TEMP_MOUNT_PREFIX) and pid.isdigit() and rest
        if owned and not os.path.exists(f"/proc/{pid}"):
            out.append(d)
    return out


def remove_stale_temp_mounts(base_dir: StrPath, *, dry_run: bool = False) -> list[str]:
    """Unmount and remove :func:`stale_temp_mounts` (as containerd clears its tmpmounts at
    start-up; with no daemon, gc does it). A directory that stays mounted is kept."""
    removed = []
    for d in stale_temp_mounts(base_dir):
        removed.append(str(d))
        if dry_run:
            continue
        with contextlib.suppress(Exception):
            unmount(d, recursive=True)
        with contextlib.suppress(OSError):
            if not is_mountpoint(d):
                d.rmdir()
    return removed
