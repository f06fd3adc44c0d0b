"""Error kinds, one class each, as containerd's ``errdefs`` package defines them.

Every error ctrstore raises on purpose — from Python or from the Rust core — is one of these.
The Rust binding imports these very classes, so ``except NotFound`` catches both sides.

::

    CtrstoreError
     ├── NotFound            (also LookupError)   the named object does not exist
     ├── AlreadyExists                            the object exists already
     ├── InvalidArgument     (also ValueError)    the input is malformed
     ├── FailedPrecondition                       the state of things forbids the operation
     ├── PermissionDenied                         the OS or a registry refused access
     ├── Unavailable                              busy or unreachable; retrying may help
     ├── Unimplemented                            not supported here
     ├── Unauthenticated                          credentials missing or refused
     ├── Aborted                                  the operation was interrupted
     └── Internal                                 a bug or an unexpected OS error
"""

from __future__ import annotations

__all__ = [
    "Aborted",
    "AlreadyExists",
    "CtrstoreError",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "class_of_kind",
    "from_oserror",
]

import errno


class CtrstoreError(Exception):
    """Base of every ctrstore error. ``kind`` is the short errdefs name."""

    kind = "unknown"


class NotFound(CtrstoreError, LookupError):
    kind = "not found"


class AlreadyExists(CtrstoreError):
    kind = "already exists"


class InvalidArgument(CtrstoreError, ValueError):
    kind = "invalid argument"


class FailedPrecondition(CtrstoreError):
    kind = "failed precondition"


class PermissionDenied(CtrstoreError):
    kind = "permission denied"


class Unavailable(CtrstoreError):
    kind = "unavailable"


class Unimplemented(CtrstoreError):
    kind = "not implemented"


class Unauthenticated(CtrstoreError):
    kind = "unauthenticated"


class Aborted(CtrstoreError):
    kind = "aborted"


class Internal(CtrstoreError):
    kind = "internal"


_ERRNO_KINDS: dict[int, type[CtrstoreError]] = {
    errno.ENOENT: NotFound,
    errno.EEXIST: AlreadyExists,
    errno.ENOTEMPTY: FailedPrecondition,
    errno.EACCES: PermissionDenied,
    errno.EPERM: PermissionDenied,
    errno.EROFS: PermissionDenied,
    errno.EWOULDBLOCK: Unavailable,
    errno.EBUSY: Unavailable,
    errno.ENOSYS: Unimplemented,
    errno.EOPNOTSUPP: Unimplemented,
    errno.EINVAL: InvalidArgument,
    errno.ENOTDIR: InvalidArgument,
}


def from_oserror(err: OSError, what: str) -> CtrstoreError:
    """The errdefs class matching an OSError, with ``what`` naming the object involved."""
    cls = _ERRNO_KINDS.get(err.errno or 0, Internal)
    detail = err.strerror or str(err)
    return cls(f"{what}: {detail}")


def class_of_kind(kind: str) -> type[CtrstoreError]:
    """The class whose ``kind`` is ``kind`` (e.g. an error kind written to a file by another
    ctrstore process); Internal for a kind this version does not know."""
    kinds: list[type[CtrstoreError]] = [CtrstoreError, *CtrstoreError.__subclasses__()]
    classes = {cls.kind: cls for cls in kinds}
    return classes.get(kind, Internal)
