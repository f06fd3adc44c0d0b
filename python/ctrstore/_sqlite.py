"""SQLite as every ctrstore database uses it: autocommit connections shared by threads, WAL
journal, a busy timeout, and explicit transactions (``BEGIN IMMEDIATE`` for writers, so that
writers in several processes queue instead of deadlocking).

Every SQLite failure — at open, at ``BEGIN``, at any statement inside a transaction, at
``COMMIT`` — leaves this module as one ``ctrstore.errdefs`` class naming the database file: a
full disk is ``ResourceExhausted`` (with ``errno`` ENOSPC, so the CLI reports the free space), a
read-only file or file system ``PermissionDenied``, a busy database ``Unavailable``, a corrupt
one ``FailedPrecondition`` (pointing at ``ctrstore check``). A failed transaction is rolled
back: nothing of it is kept.

A database on a completely full file system cannot even be opened (SQLite must create its
``-wal`` and ``-shm`` files), and then not even gc could run to free space. So each database
keeps a reserve: ``<name>.reserve``, a 1 MiB file allocated next to it whenever there is room.
When opening fails for lack of space, the reserve is given up and the open tried again; gc
gives it up too when its own transaction finds the disk full (``release_reserve``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ctrstore.errdefs import (
    CtrstoreError,
    FailedPrecondition,
    Internal,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    Unknown,
)

__all__ = ["RESERVE_BYTES", "Corrupt", "Database", "disk_full", "map_error", "release_reserve"]

RESERVE_BYTES = 1 << 20


def _reserve(path: Path) -> Path:
    return path.with_name(path.name + ".reserve")


def _ensure_reserve(path: Path) -> None:
    """Allocate the reserve next to the database if it is missing and there is room."""
    reserve = _reserve(path)
    if reserve.exists():
        return
    tmp = reserve.with_name(reserve.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
        os.rename(tmp, reserve)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def release_reserve(path: Path) -> bool:
    """Give up the database's reserve; True if there was one."""
    try:
        os.unlink(_reserve(path))
    except OSError:
        return False
    return True


def disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no room left (used to tell a
    full disk behind SQLite's "disk I/O error")."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


class Corrupt(FailedPrecondition):
    """The database file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB)."""


# Primary result codes (https://www.sqlite.org/rescode.html).
_PERM, _BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = (
    3, 5, 6, 7, 8, 10, 11, 13, 14, 26,
)  # fmt: skip


def map_error(e: sqlite3.Error, what: str, path: Path, doing: str) -> CtrstoreError:
    """The errdefs class for a SQLite failure while ``doing`` something with ``what`` (e.g.
    "metadata database") at ``path``."""
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(e)
    where = f"{what} {path}"
    exc: CtrstoreError
    if primary == _FULL or "disk is full" in text or (primary == _IOERR and disk_full(path)):
        exc = ResourceExhausted(f"{doing} {where}: database or disk is full")
        exc.errno = errno.ENOSPC
        exc.filename = str(path)
    elif primary in (_BUSY, _LOCKED) or "database is locked" in text:
        exc = Unavailable(f"{where} is busy: {text}")
    elif primary in (_READONLY, _PERM) or "readonly database" in text:
        exc = PermissionDenied(f"{doing} {where}: {text} (is the file or its file system read-only?)")
        exc.filename = str(path)
    elif primary in (_CORRUPT, _NOTADB) or "malformed" in text or "not a database" in text:
        exc = Corrupt(
            f"{where} is corrupt ({text}); `ctrstore check` tells what is wrong, "
            "`ctrstore check --repair` rebuilds what it can"
        )
    elif primary == _CANTOPEN:
        exc = _cannot_open(path, f"{doing} {where}: {text}")
        exc.filename = str(path)
    elif primary == _NOMEM:
        exc = ResourceExhausted(f"{doing} {where}: out of memory")
    elif primary == _IOERR:
        exc = Unknown(f"{doing} {where}: {text}")
        exc.filename = str(path)
    else:
        exc = Internal(f"{doing} {where}: {type(e).__name__}: {text}")
    exc.__cause__ = e
    return exc


def _cannot_open(path: Path, message: str) -> CtrstoreError:
    """Why SQLite could not open (or create the journal files of) a database."""
    d = path.parent
    if not d.exists():
        return NotFound(f"{message} (directory {d} does not exist)")
    try:
        if os.statvfs(d).f_flag & os.ST_RDONLY:
            exc: CtrstoreError = PermissionDenied(f"{message}: {d} is on a read-only file system")
            exc.errno = errno.EROFS
            return exc
    except OSError:
        pass
    if not os.access(d, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
        exc = PermissionDenied(f"{message}: permission denied")
        exc.errno = errno.EACCES
        return exc
    return Unknown(message)


class Database:
    """One SQLite file; ``what`` names it in errors (e.g. "metadata database")."""

    def __init__(self, path: Path, what: str, *, timeout: float = 30.0) -> None:
        self.path = path
        self.what = what
        self._lock = threading.RLock()
        self.closed = False
        try:
            self.conn = self._open(timeout)
        except sqlite3.Error as e:
            exc = map_error(e, what, path, "opening")
            if not (isinstance(exc, ResourceExhausted) and release_reserve(path)):
                raise exc from e
            try:
                self.conn = self._open(timeout)  # with the reserve's room
            except sqlite3.Error as e2:
                raise map_error(e2, what, path, "opening") from e2
        _ensure_reserve(path)

    def _open(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        self.closed = True
        self.conn.close()

    def execute(self, sql: str) -> None:
        """One statement outside a transaction (a PRAGMA), with errors mapped."""
        try:
            self.conn.execute(sql)
        except sqlite3.Error as e:
            raise map_error(e, self.what, self.path, "opening") from e

    @contextmanager
    def transaction(self, writable: bool) -> Iterator[sqlite3.Cursor]:
        doing = "writing" if writable else "reading"
        with self._lock:
            if self.closed:  # (e.g. a store kept after its Client was closed)
                raise FailedPrecondition(f"{doing} {self.what} {self.path}: it is closed")
            cur = self.conn.cursor()
            try:
                try:
                    cur.execute("BEGIN IMMEDIATE" if writable else "BEGIN DEFERRED")
                except sqlite3.Error as e:
                    raise map_error(e, self.what, self.path, doing) from e
                try:
                    yield cur
                except BaseException as e:
                    self._rollback(cur)
                    if isinstance(e, sqlite3.Error):
                        raise map_error(e, self.what, self.path, doing) from e
                    raise
                try:
                    cur.execute("COMMIT")
                except sqlite3.Error as e:
                    self._rollback(cur)
                    raise map_error(e, self.what, self.path, "committing to") from e
            finally:
                cur.close()

    def _rollback(self, cur: sqlite3.Cursor) -> None:
        """Roll back what is left of a transaction (SQLite may have rolled it back itself, e.g.
        after SQLITE_FULL); a failing rollback changes nothing the caller can act on."""
        if not self.conn.in_transaction:
            return
        try:
            cur.execute("ROLLBACK")
        except sqlite3.Error:
            pass
