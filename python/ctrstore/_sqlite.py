"""SQLite as every ctrstore database uses it: autocommit connections shared by threads, WAL
journal, a busy timeout, and explicit transactions (``BEGIN IMMEDIATE`` for writers, so that
writers in several processes queue instead of deadlocking)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ctrstore.errdefs import Unavailable

__all__ = ["Database"]


class Database:
    """One SQLite file; ``what`` names it in errors (e.g. "metadata database")."""

    def __init__(self, path: Path, what: str, *, timeout: float = 30.0) -> None:
        self.path = path
        self.what = what
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self, writable: bool) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self.conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if writable else "BEGIN DEFERRED")
            except sqlite3.OperationalError as e:
                raise Unavailable(f"{self.what} {self.path} is busy: {e}") from None
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()
