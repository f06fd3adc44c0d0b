"""``cp``: files into and out of a container's root file system, as ``docker cp`` copies them.

``root`` is the container's root as its processes see it: ``/proc/<init>/root`` while it runs
(so volumes and tmpfs mounts inside it are seen), its mounted rootfs otherwise. Everything in
there belongs to the container and may be hostile (a symlink ``/etc -> /`` planted to make a
copy reach the host): paths are resolved inside ``root`` only, by the Rust core's
``open_in_root`` (symlinks followed as if ``root`` were ``/``), trees are walked with
descriptors and ``O_NOFOLLOW``, and what is copied in is written by the layer applier, which
creates every entry relative to its target directory and never follows a link out of it.

Where things land follows docker's rules:

* out of the container, SRC a file: DEST a directory gets ``DEST/<name>``; otherwise DEST is
  the file (a DEST ending in ``/`` must be an existing directory);
* SRC a directory: an existing DEST directory gets ``DEST/<name>`` (``SRC/.``: SRC's contents);
  a DEST that does not exist is created with SRC's contents; a DEST that is a file is an error;
* into the container, the same, DEST inside the container; files copied in belong to root
  unless ``archive`` (``-a``) keeps the owners they have;
* ``-`` for SRC or DEST: a tar stream on stdin/stdout (into the container, DEST must be a
  directory). A symlink SRC is copied as a link unless ``follow_link`` (``-L``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ctrstore import _core
from ctrstore.errdefs import CtrstoreError, FailedPrecondition, InvalidArgument, NotFound, from_oserror
from ctrstore.rootless import single_id

__all__ = ["copy_in", "copy_out"]

_CLOEXEC = os.O_CLOEXEC


def _clean(path: str) -> tuple[str, bool, bool]:
    """``path`` made absolute and clean, whether it asked for a directory's contents
    (``/.``) and whether it ended in ``/``."""
    contents = path.endswith("/.") or path == "."
    trailing = path.endswith("/")
    clean = posixpath.normpath("/" + path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    return clean, contents, trailing


def _open_in_root(root: Path, path: str, flags: int, what: str) -> int:
    """``open_in_root``, its failures named as ``cp`` sees them."""
    try:
        return _core.open_in_root(root, path, flags | _CLOEXEC)
    except (OSError, CtrstoreError) as e:
        if e.errno == errno.ENOENT:
            raise NotFound(f"{what}: no such file or directory in the container: {path}") from None
        if e.errno == errno.ENOTDIR:
            raise InvalidArgument(f"{what}: {path}: a part of the path is not a directory") from None
        if isinstance(e, CtrstoreError):
            raise
        raise from_oserror(e, f"{what}: {path} in the container") from None


def _open_dir(root: Path, path: str, what: str) -> int:
    """A directory in the container (an ``O_PATH`` descriptor); a final symlink is followed
    inside the root. Checked here rather than with ``O_DIRECTORY``, so that a file gets an
    error that says so."""
    fd = _open_in_root(root, path, os.O_PATH, what)
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidArgument(f"{what}: {path} is not a directory in the container")
    return fd


# ---------------------------------------------------------------------------------------------
# Out of the container


_MAGIC = -1
"""A "parent fd" meaning: the name is a ``/proc/self/fd/N`` path, opened following it."""


def _stat(pfd: int, name: str) -> os.stat_result:
    if pfd == _MAGIC:
        return os.stat(name)
    return os.stat(name, dir_fd=pfd, follow_symlinks=False)


def _open_file(pfd: int, name: str) -> int:
    if pfd == _MAGIC:
        return os.open(name, os.O_RDONLY | _CLOEXEC)
    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=pfd)


Node = tuple[str, os.stat_result, int, str]
"""``(relative name, lstat, parent dir fd, name in it)``."""


def _walk(pfd: int, name: str, rel: str) -> Iterator[Node]:
    """``name`` and, for a directory, everything below it (sorted), never following a
    symlink."""
    st = _stat(pfd, name)
    yield rel, st, pfd, name
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=pfd)
        try:
            for child in sorted(os.listdir(fd)):
                yield from _walk(fd, child, f"{rel}/{child}" if rel else child)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _source(root: Path, src: str, follow_link: bool) -> Iterator[tuple[int, str, bool]]:
    """The copy's source: ``(parent dir fd, name in it, contents only)``."""
    path, contents, trailing = _clean(src)
    what = f"copying {src}"
    if follow_link or path == "/":
        fd = _open_in_root(root, path, os.O_PATH, what)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                yield fd, ".", contents
            else:  # a followed link to a file: opened through our descriptor's magic link
                yield _MAGIC, f"/proc/self/fd/{fd}", False
        finally:
            os.close(fd)
        return
    parent, base = posixpath.split(path)
    pfd = _open_dir(root, parent, what)
    try:
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"{what}: no such file or directory in the container: {path}") from None
        if (trailing or contents) and not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"{what}: {path} is not a directory")
        yield pfd, base, contents
    finally:
        os.close(pfd)


def copy_out(root: Path, src: str, dest: str | BinaryIO, *, follow_link: bool = False) -> None:
    """Copy ``src`` (a path in the container) to the host path ``dest``, or as a tar stream
    to the binary file ``dest``."""
    with _source(root, src, follow_link) as (pfd, name, contents):
        top = posixpath.basename(_clean(src)[0]) or "."
        nodes = _walk(pfd, name, "")
        if not isinstance(dest, str):
            if contents:
                _write_tar(dest, (n for n in nodes if n[0]))
            else:
                _write_tar(dest, ((f"{top}/{r}" if r else top, st, d, n) for r, st, d, n in nodes))
            return
        is_dir = stat.S_ISDIR(_stat(pfd, name).st_mode)
        target = os.path.abspath(dest)
        if os.path.isdir(target):
            if not (is_dir and contents):
                target = os.path.join(target, top)
        elif dest.endswith("/"):
            raise NotFound(f"copying to {dest}: the destination directory does not exist")
        elif os.path.lexists(target) and is_dir:
            raise InvalidArgument(f"copying {src} to {dest}: cannot copy a directory to a file")
        elif not os.path.isdir(os.path.dirname(target)):
            raise NotFound(f"copying to {dest}: directory {os.path.dirname(target)} does not exist")
        try:
            _write_host(target, nodes)
        except OSError as e:
            raise from_oserror(e, f"copying {src} to {dest}") from None


def _write_host(target: str, entries: Iterator[Node]) -> None:
    """Make the tree of ``entries`` (names relative to ``target``; "" is ``target`` itself)."""
    dirs: list[tuple[str, os.stat_result]] = []
    for rel, st, pfd, name in entries:
        path = os.path.join(target, rel) if rel else target
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o700 | stat.S_IMODE(mode))  # writable until its entries are in
            dirs.append((path, st))
            continue
        if os.path.lexists(path) and not (stat.S_ISREG(mode) and os.path.isfile(path)):
            os.unlink(path)
        if stat.S_ISREG(mode):
            fd = _open_file(pfd, name)
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC, stat.S_IMODE(mode))
                try:
                    while os.sendfile(out, fd, None, 1 << 20) > 0:
                        pass
                finally:
                    os.close(out)
            finally:
                os.close(fd)
            os.chmod(path, stat.S_IMODE(mode))
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=pfd), path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(path, mode, st.st_rdev)
        else:
            continue  # sockets are not copied (as tar skips them)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    for path, st in reversed(dirs):
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _image_owner(pfd: int, name: str, st: os.stat_result) -> tuple[int, int]:
    """The owner a file of a single-id store has in its image: what its
    ``user.rootlesscontainers`` xattr records (the Rust core reads the format), else its own."""
    path = name if name.startswith("/") else f"/proc/self/fd/{pfd}/{name}"
    try:
        value = os.getxattr(path, _core.ROOTLESS_OWNER_XATTR, follow_symlinks=False)
    except OSError:
        return st.st_uid, st.st_gid
    return _core.rootless_owner(value, st.st_uid, st.st_gid)


def _write_tar(out: BinaryIO, entries: Iterator[Node]) -> None:
    links: dict[tuple[int, int], str] = {}
    recorded = single_id()  # owners live in an xattr: the tar carries the image's, as commit's
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st, pfd, name in entries:
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = _image_owner(pfd, name, st) if recorded else (st.st_uid, st.st_gid)
            info.mtime = int(st.st_mtime)
            m = st.st_mode
            if stat.S_ISDIR(m):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(m):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(name, dir_fd=pfd)
            elif stat.S_ISREG(m):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type = tarfile.LNKTYPE
                    info.linkname = links[key]
                else:
                    links[key] = rel
                    info.size = st.st_size
                    with os.fdopen(_open_file(pfd, name), "rb") as f:
                        tar.addfile(info, f)
                    continue
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(m):
                info.type = tarfile.FIFOTYPE
            else:
                continue
            tar.addfile(info)


# ---------------------------------------------------------------------------------------------
# Into the container


def _apply(dir_fd: int, feed: BinaryIO | None, host: str | None, arcname: str, archive: bool) -> None:
    """Extract a tar into the container directory ``dir_fd``: the stream ``feed``, or one made
    of the host path ``host`` named ``arcname``. With ``archive`` in a single-id store the
    owners go into ``user.rootlesscontainers`` (no other id can be chowned to there)."""
    target = f"/proc/self/fd/{dir_fd}"
    recorded = archive and single_id()
    if feed is not None:
        _core.apply_layer_fd(
            target, feed.fileno(), whiteouts="delete", no_same_owner=not archive, owner_xattr=recorded
        )
        return
    assert host is not None
    r, w = os.pipe2(_CLOEXEC)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with (
                os.fdopen(w, "wb") as out,
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as t,
            ):

                def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
                    if not archive:
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                    return info

                t.add(host, arcname=arcname, filter=owner)
        except BrokenPipeError:
            pass  # the applier stopped reading: its error is the one to report
        except BaseException as e:
            failure.append(e)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    try:
        _core.apply_layer_fd(target, r, whiteouts="delete", no_same_owner=not archive, owner_xattr=recorded)
    finally:
        os.close(r)
        writer.join()
    if failure:
        e = failure[0]
        raise from_oserror(e, f"reading {host}") if isinstance(e, OSError) else e


def copy_in(root: Path, src: str | BinaryIO, dest: str, *, archive: bool = False) -> None:
    """Copy the host path ``src`` (or the tar stream of the binary file ``src``) to ``dest``, a
    path in the container."""
    path, _, trailing = _clean(dest)
    what = f"copying to {dest}"
    try:
        fd = _open_in_root(root, path, os.O_PATH, what)
    except NotFound:
        fd = -1
    try:
        dest_is_dir = fd >= 0 and stat.S_ISDIR(os.fstat(fd).st_mode)
        if not isinstance(src, str):
            if not dest_is_dir:
                raise NotFound(f"{what}: a tar stream goes into a directory, and {path} is none")
            _apply(fd, src, None, "", archive)
            return
        contents = src.endswith("/.") or src == "."
        host = os.path.abspath(src)
        try:
            hst = os.lstat(host)
        except FileNotFoundError:
            raise NotFound(f"copying {src}: no such file or directory on this host") from None
        except OSError as e:
            raise from_oserror(e, f"copying {src}") from None
        src_dir = stat.S_ISDIR(hst.st_mode)
        if dest_is_dir:
            if src_dir and contents:
                for child in sorted(os.listdir(host)):
                    _apply(fd, None, os.path.join(host, child), child, archive)
                return
            _apply(fd, None, host, os.path.basename(host), archive)
            return
        if fd >= 0 and src_dir:
            raise InvalidArgument(f"copying {src} to {dest}: cannot copy a directory to a file")
        if fd < 0 and trailing:
            raise NotFound(f"{what}: the destination directory {path} does not exist in the container")
        parent, base = posixpath.split(path)
        if not base:
            raise InvalidArgument(f"{what}: give a path in the container")
        pfd = _open_dir(root, parent, what)
        try:
            _apply(pfd, None, host, base, archive)
        finally:
            os.close(pfd)
    except FileNotFoundError as e:
        raise NotFound(f"{what}: {e.strerror}: {e.filename or path}") from None
    except NotADirectoryError:
        raise FailedPrecondition(f"{what}: a part of {path} is not a directory") from None
    finally:
        if fd >= 0:
            os.close(fd)
