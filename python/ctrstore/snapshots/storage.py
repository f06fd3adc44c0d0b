"""Transactional bookkeeping shared by every snapshotter: its own ``metadata.db``.

One SQLite file per snapshotter (as containerd's ``core/snapshots/storage``): each snapshot has
a key, a numeric id from a sequence that never reuses a value (the id names its directory,
``snapshots/<id>``), a kind, its parent's key, labels, times and — once committed — its usage.
Drivers do their directory work inside ``MetaStore.transaction()`` so that a failed rename
rolls the record back, and a failed record leaves only a stray directory for ``cleanup``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from ctrstore import filters
from ctrstore import labels as labelutil
from ctrstore._sqlite import Database
from ctrstore._timeutil import format_rfc3339, now, parse_rfc3339
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ctrstore.snapshots import Info, Kind, Usage

__all__ = ["MetaStore", "Snapshot"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    parent TEXT NOT NULL DEFAULT '' ,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    inodes INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots(parent);
CREATE TABLE IF NOT EXISTS sequence (
    id INTEGER PRIMARY KEY AUTOINCREMENT
)
"""


@dataclass(frozen=True)
class Snapshot:
    """What a driver needs to build mounts: ids, kind and the parent chain's ids."""

    id: str
    kind: Kind
    parent_ids: tuple[str, ...]
    """Immediate parent first."""


def _info(row: sqlite3.Row) -> Info:
    return Info(
        kind=Kind(row["kind"]),
        name=row["key"],
        parent=row["parent"],
        labels=json.loads(row["labels"]),
        created_at=parse_rfc3339(row["created_at"]),
        updated_at=parse_rfc3339(row["updated_at"]),
    )


class MetaStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = Database(path, "snapshot metadata")
            self._db.conn.row_factory = sqlite3.Row
            with self.transaction(True) as cur:
                for stmt in _SCHEMA.split(";"):
                    cur.execute(stmt)
        except sqlite3.DatabaseError as e:
            raise FailedPrecondition(f"snapshot metadata {path} is unusable: {e}") from None

    def close(self) -> None:
        self._db.close()

    def transaction(self, writable: bool) -> AbstractContextManager[sqlite3.Cursor]:
        return self._db.transaction(writable)

    # -- queries (call inside a transaction) -----------------------------------------------
    @staticmethod
    def _row(cur: sqlite3.Cursor, key: str) -> sqlite3.Row:
        row: sqlite3.Row | None = cur.execute("SELECT * FROM snapshots WHERE key=?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist")
        return row

    def get_info(self, cur: sqlite3.Cursor, key: str) -> tuple[str, Info, Usage]:
        row = self._row(cur, key)
        return str(row["id"]), _info(row), Usage(row["inodes"], row["size"])

    def get_snapshot(self, cur: sqlite3.Cursor, key: str) -> Snapshot:
        row = self._row(cur, key)
        return Snapshot(str(row["id"]), Kind(row["kind"]), self._parent_ids(cur, row["parent"]))

    def _committed_parent(self, cur: sqlite3.Cursor, parent: str, child: str) -> sqlite3.Row:
        """The row of ``parent``, which must exist and be committed to have ``child``."""
        try:
            prow = self._row(cur, parent)
        except NotFound:
            raise NotFound(f"parent snapshot {parent!r} of {child!r} does not exist") from None
        if prow["kind"] != Kind.COMMITTED:
            raise InvalidArgument(f"parent {parent!r} of {child!r} is not committed")
        return prow

    def _parent_ids(self, cur: sqlite3.Cursor, parent: str) -> tuple[str, ...]:
        ids: list[str] = []
        while parent:
            row = self._row(cur, parent)
            ids.append(str(row["id"]))
            parent = row["parent"]
        return tuple(ids)

    def walk(self, cur: sqlite3.Cursor, *filter_strings: str) -> list[Info]:
        flt = filters.parse(*filter_strings)
        out = []
        for row in cur.execute("SELECT * FROM snapshots ORDER BY id").fetchall():
            info = _info(row)
            fields = {"name": info.name, "parent": info.parent, "kind": str(info.kind)}
            if flt.match(filters.match_mapping(fields, info.labels)):
                out.append(info)
        return out

    def descendants(self, cur: sqlite3.Cursor, keys: Sequence[str]) -> list[str]:
        """``keys`` and every snapshot on top of them, children first."""
        children: dict[str, list[str]] = {}
        for r in cur.execute("SELECT key, parent FROM snapshots"):
            children.setdefault(r["parent"], []).append(r["key"])
        order: list[str] = []
        seen: set[str] = set()

        def visit(k: str) -> None:
            if k in seen:
                return
            seen.add(k)
            for c in children.get(k, ()):
                visit(c)
            order.append(k)

        for k in keys:
            visit(k)
        return order

    def id_map(self, cur: sqlite3.Cursor) -> dict[str, str]:
        """id -> key of every snapshot."""
        return {str(r["id"]): r["key"] for r in cur.execute("SELECT id, key FROM snapshots")}

    # -- changes ---------------------------------------------------------------------------
    def create(
        self, cur: sqlite3.Cursor, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> Snapshot:
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise InvalidArgument(f"snapshot {key!r}: can only create active snapshots or views")
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        if cur.execute("SELECT 1 FROM snapshots WHERE key=?", (key,)).fetchone():
            raise AlreadyExists(f"snapshot {key!r} already exists")
        parent_ids: tuple[str, ...] = ()
        if parent:
            prow = self._committed_parent(cur, parent, key)
            parent_ids = (str(prow["id"]), *self._parent_ids(cur, prow["parent"]))
        new_id = cur.execute("INSERT INTO sequence DEFAULT VALUES").lastrowid
        ts = format_rfc3339(now())
        cur.execute(
            "INSERT INTO snapshots(key, id, kind, parent, labels, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (key, new_id, int(kind), parent, json.dumps(labelutil.validate(labels or {})), ts, ts),
        )
        return Snapshot(str(new_id), kind, parent_ids)

    def update(self, cur: sqlite3.Cursor, info: Info, fieldpaths: Sequence[str]) -> Info:
        row = self._row(cur, info.name)
        new = labelutil.update_by_fieldpaths(
            json.loads(row["labels"]), info.labels, fieldpaths, f"snapshot {info.name!r}"
        )
        cur.execute(
            "UPDATE snapshots SET labels=?, updated_at=? WHERE key=?",
            (json.dumps(new), format_rfc3339(now()), info.name),
        )
        return _info(self._row(cur, info.name))

    def remove(self, cur: sqlite3.Cursor, key: str) -> tuple[str, Kind]:
        row = self._row(cur, key)
        child = cur.execute("SELECT key FROM snapshots WHERE parent=? LIMIT 1", (key,)).fetchone()
        if child is not None:
            raise FailedPrecondition(f"cannot remove snapshot {key!r}: {child['key']!r} is its child")
        cur.execute("DELETE FROM snapshots WHERE key=?", (key,))
        return str(row["id"]), Kind(row["kind"])

    def commit_active(
        self,
        cur: sqlite3.Cursor,
        key: str,
        name: str,
        usage: Usage,
        labels: Mapping[str, str] | None,
        parent: str | None = None,
    ) -> str:
        """Commit active ``key`` as ``name``. ``parent`` rebases it (containerd's WithParent):
        allowed only when the snapshot was prepared without a parent, or on that same parent."""
        row = self._row(cur, key)
        if row["kind"] != Kind.ACTIVE:
            raise FailedPrecondition(
                f"snapshot {key!r} is a {Kind(row['kind'])}, only active snapshots commit"
            )
        if not name:
            raise InvalidArgument("commit name must not be empty")
        if cur.execute("SELECT 1 FROM snapshots WHERE key=?", (name,)).fetchone():
            raise AlreadyExists(f"snapshot {name!r} already exists")
        new_parent = row["parent"]
        if parent is not None and parent != row["parent"]:
            if row["parent"]:
                raise InvalidArgument(
                    f"snapshot {key!r} has parent {row['parent']!r}; it cannot be committed onto {parent!r}"
                )
            if parent:
                self._committed_parent(cur, parent, name)
            new_parent = parent
        ts = format_rfc3339(now())
        cur.execute(
            "UPDATE snapshots SET key=?, kind=?, parent=?, labels=?, created_at=?, updated_at=?, inodes=?, "
            "size=? WHERE key=?",
            (
                name,
                int(Kind.COMMITTED),
                new_parent,
                json.dumps(labelutil.validate(labels or {})),
                ts,
                ts,
                usage.inodes,
                usage.size,
                key,
            ),
        )
        return str(row["id"])
