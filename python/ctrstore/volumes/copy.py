"""Copy-up: a volume mounted where the image has files starts with a copy of them, as docker
does (``copyExistingContents``: only into an empty volume, unless ``nocopy``).

The image is not trusted: the source is opened inside the container's rootfs by the Rust core
(``_core.open_in_root``: symlinks are followed as if the rootfs were ``/``), and everything
below it is read and written with ``*at`` calls relative to open directories and
``O_NOFOLLOW``, so no symlink of the image (or planted meanwhile in the volume by a container
that shares it) leads the copy outside the source or the volume. Symlinks are copied as
symlinks, never followed. Owners, modes (set-id bits included), times, hard links, device
nodes, fifos and ``user.*``/``security.*`` xattrs are kept; sockets are skipped.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ctrstore import _core
from ctrstore.errdefs import CtrstoreError, InvalidArgument, from_oserror

__all__ = ["MAX_DEPTH", "copy_up", "empty"]

MAX_DEPTH = 256
"""Directories nested deeper than this in the image's tree are refused (each level holds two
open directories while it is copied)."""
_MAX_LINK_FDS = 256
"""At most this many hard-linked files keep their first copy's directory open to link the
others to; beyond, further links become copies."""
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def empty(path: Path) -> bool:
    """Whether the directory ``path`` has no entries."""
    with os.scandir(path) as it:
        return next(it, None) is None


def copy_up(rootfs: str | os.PathLike[str], path: str, dest: str | os.PathLike[str]) -> bool:
    """Copy the directory ``path`` of the container's root file system (mounted at
    ``rootfs``) into the empty directory ``dest``, which also takes its owner and mode.
    Returns False, copying nothing, when the image has no directory at ``path`` or ``dest``
    is not empty."""
    # O_PATH: the Rust core follows a symlink in the last component too (O_DIRECTORY with its
    # O_NOFOLLOW would fail on one with ENOTDIR); the directory is then opened through it.
    try:
        where = _core.open_in_root(rootfs, path, os.O_PATH)
    except CtrstoreError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise
    try:
        src = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=where)
    except NotADirectoryError:
        return False
    except OSError as e:
        raise from_oserror(e, f"opening {path} in the container's root file system") from None
    finally:
        os.close(where)
    try:
        try:
            dst = os.open(dest, _O_DIR)
        except OSError as e:
            raise from_oserror(e, f"volume directory {dest}") from None
        try:
            if os.listdir(dst):
                return False
            _Copier(path, str(dest)).tree(src, dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return True


class _Copier:
    def __init__(self, path: str, dest: str) -> None:
        self.path = path
        self.dest = dest
        self.links: dict[tuple[int, int], tuple[int, str]] = {}

    def fail(self, e: OSError, rel: str) -> CtrstoreError:
        return from_oserror(e, f"copying {self.path}/{rel} of the image into the volume {self.dest}")

    def tree(self, src: int, dst: int) -> None:
        try:
            self._dir(src, dst, "", 0)
            self._meta(src, dst, os.fstat(src))
        finally:
            for fd, _ in self.links.values():
                os.close(fd)

    def _dir(self, src: int, dst: int, rel: str, depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise InvalidArgument(
                f"image directory {self.path}/{rel} is nested more than {MAX_DEPTH} levels deep: not copied "
                "into the volume"
            )
        for name in sorted(os.listdir(src)):
            where = f"{rel}/{name}" if rel else name
            try:
                st = os.stat(name, dir_fd=src, follow_symlinks=False)
                self._entry(src, dst, name, where, st, depth)
            except OSError as e:
                raise self.fail(e, where) from None

    def _entry(self, src: int, dst: int, name: str, rel: str, st: os.stat_result, depth: int) -> None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            s = os.open(name, _O_DIR, dir_fd=src)
            try:
                d = os.open(name, _O_DIR, dir_fd=dst)
                try:
                    self._dir(s, d, rel, depth + 1)
                    self._meta(s, d, st)
                finally:
                    os.close(d)
            finally:
                os.close(s)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key) if st.st_nlink > 1 else None
            if first is not None:
                os.link(first[1], name, src_dir_fd=first[0], dst_dir_fd=dst, follow_symlinks=False)
                return
            self._file(src, dst, name, st)
            if st.st_nlink > 1 and len(self.links) < _MAX_LINK_FDS:
                self.links[key] = (os.dup(dst), name)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dst)
            node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst)
            try:
                # O_PATH descriptors take no fchown/fchmod: go through their /proc link, which
                # names this very node (no path lookup a container could redirect).
                proc = f"/proc/self/fd/{node}"
                os.chown(proc, st.st_uid, st.st_gid)
                os.chmod(proc, stat.S_IMODE(mode))
                os.utime(proc, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(node)
        # sockets: skipped, as a copy of one is nothing a process listens on

    def _file(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        i = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
        try:
            o = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst
            )
            try:
                _copy_bytes(i, o, st.st_size)
                self._meta(i, o, st)
            finally:
                os.close(o)
        finally:
            os.close(i)

    @staticmethod
    def _meta(src: int, dst: int, st: os.stat_result) -> None:
        """Owner, xattrs, mode (after the owner: chown clears set-id bits), times."""
        os.fchown(dst, st.st_uid, st.st_gid)
        try:
            names = os.listxattr(src)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            names = []
        for x in names:
            if not x.startswith(("user.", "security.")):
                continue  # trusted.* (overlay's own, or an image's) and system.* are not copied
            try:
                os.setxattr(dst, x, os.getxattr(src, x))
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    raise
        os.fchmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_bytes(i: int, o: int, size: int) -> None:
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(i, o, min(left, 1 << 30))
            if n == 0:
                break
            left -= n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while True:
        chunk = os.read(i, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(o, view) :]
