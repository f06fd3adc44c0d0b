"""Error kinds, one class each, as containerd's ``errdefs`` package defines them.

Every error ctrstore raises on purpose — from Python or from the Rust core — is one of these.
The Rust binding imports these very classes, so ``except NotFound`` catches both sides. An error
that came from the OS keeps it: ``errno`` (and ``filename`` where known) are set, and
``__cause__`` is the ``OSError``. Which class an errno becomes is decided by one table, in the
Rust core (``ctrstore._core.errno_kinds()``), for both languages (``from_oserror``).

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
     ├── ResourceExhausted                        out of disk space or quota (ENOSPC, EDQUOT),
     │                                            descriptors or memory
     ├── Internal                                 a bug: something ctrstore did not expect
     └── Unknown                                  an OS error no kind covers (e.g. EIO)
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
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "class_of_kind",
    "from_oserror",
]


class CtrstoreError(Exception):
    """Base of every ctrstore error. ``kind`` is the short errdefs name; ``errno`` and
    ``filename`` are set when the error came from the OS."""

    kind = "unknown"
    errno: int | None = None
    filename: str | None = None


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


class ResourceExhausted(CtrstoreError):
    kind = "resource exhausted"


class Internal(CtrstoreError):
    kind = "internal"


class Unknown(CtrstoreError):
    kind = "unknown"


def from_oserror(err: OSError, what: str) -> CtrstoreError:
    """The errdefs class matching an OSError (by the Rust core's errno table), with ``what``
    naming the object involved; it keeps ``errno``, ``filename`` and, as ``__cause__``, ``err``."""
    from ctrstore import _core

    cls = class_of_kind(_core.errno_kind(err.errno)) if err.errno else Unknown
    detail = err.strerror or str(err)
    exc = cls(f"{what}: {detail}")
    exc.errno = err.errno
    if isinstance(err.filename, str):
        exc.filename = err.filename
    exc.__cause__ = err
    return exc


def class_of_kind(kind: str) -> type[CtrstoreError]:
    """The class whose ``kind`` is ``kind`` (e.g. an error kind written to a file by another
    ctrstore process); Unknown for a kind this version does not know."""
    classes = {cls.kind: cls for cls in CtrstoreError.__subclasses__()}
    return classes.get(kind, Unknown)
