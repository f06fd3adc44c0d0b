"""Network namespaces that belong to one container: made empty, bind-mounted on a file (so
that it outlives no one: unmounting the file and the container's exit free it), and removed.

A namespace is made as ``ip netns add`` and the CNI plugins' ``testutils`` make one, but
without a daemon or a thread of our own left in it: a short-lived thread calls
``unshare(CLONE_NEWNET)`` (which moves only that thread), bind-mounts its
``/proc/thread-self/ns/net`` on the file, and exits.
"""

from __future__ import annotations

__all__ = ["create", "is_netns", "remove"]

import contextlib
import ctypes
import errno
import os
import threading
from pathlib import Path

from ctrstore.errdefs import from_oserror

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
NSFS_MAGIC = 0x6E736673


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def is_netns(path: Path) -> bool:
    """Whether ``path`` is a mounted namespace (nsfs), not the empty file under it."""

    class Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]

    buf = Statfs()
    if _libc().statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return bool(buf.f_type == NSFS_MAGIC)


def create(path: Path) -> None:
    """Make a new, empty network namespace and bind-mount it on ``path`` (created, 0444).
    An error is the errdefs class of its errno (EPERM: PermissionDenied), naming ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o444)
    os.close(fd)
    failure: list[OSError] = []

    def make() -> None:
        libc = _libc()
        if libc.unshare(CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            failure.append(OSError(e, f"unshare(CLONE_NEWNET): {os.strerror(e)}"))
            return
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        if libc.mount(src, os.fsencode(path), None, MS_BIND, None) != 0:
            e = ctypes.get_errno()
            failure.append(OSError(e, f"bind-mounting the namespace: {os.strerror(e)}", str(path)))
        # The thread ends here, and the namespace stays only as the mount.

    t = threading.Thread(target=make, name="ctrstore-netns")
    t.start()
    t.join()
    if failure:
        with contextlib.suppress(OSError):
            path.unlink()
        raise from_oserror(failure[0], f"creating network namespace {path}")


def remove(path: Path) -> None:
    """Unmount the namespace at ``path`` (lazily: a process still holding it keeps it until it
    lets go) and remove the file; nothing there is not an error."""
    libc = _libc()
    for _ in range(8):  # (mounted more than once: each umount uncovers the next)
        if libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
            e = ctypes.get_errno()
            if e in (errno.EINVAL, errno.ENOENT):
                break
            raise from_oserror(OSError(e, os.strerror(e), str(path)), f"unmounting network namespace {path}")
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise from_oserror(e, f"removing network namespace file {path}") from None
