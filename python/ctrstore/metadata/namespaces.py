"""Namespaces: every image, blob record, lease, snapshot and container belongs to one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ctrstore import labels as labelutil
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, NotFound
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp, validate_identifier

__all__ = ["Namespace", "NamespaceStore"]


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict[str, str]


# Tables whose rows keep a namespace from being removed, with the word for them.
_OWNED = (
    ("images", "images"),
    ("content", "blobs"),
    ("containers", "containers"),
    ("snapshots", "snapshots"),
    ("volumes", "volumes"),
)


class NamespaceStore:
    def __init__(self, db: DB) -> None:
        self.db = db

    def list(self) -> list[Namespace]:
        with self.db.read() as cur:
            rows = cur.execute("SELECT name, labels FROM namespaces ORDER BY name").fetchall()
        return [Namespace(n, loads_labels(lb)) for n, lb in rows]

    def get(self, name: str) -> Namespace:
        validate_identifier("namespace", name)
        with self.db.read() as cur:
            row = cur.execute("SELECT labels FROM namespaces WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {name!r} not found")
        return Namespace(name, loads_labels(row[0]))

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        validate_identifier("namespace", name)
        lb = labelutil.validate(labels or {})
        ts = timestamp()
        with self.db.write() as cur:
            if cur.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone():
                raise AlreadyExists(f"namespace {name!r} already exists")
            cur.execute(
                "INSERT INTO namespaces(name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (name, dumps(lb), ts, ts),
            )
        return Namespace(name, lb)

    def set_labels(self, name: str, changes: Mapping[str, str]) -> Namespace:
        with self.db.write() as cur:
            DB.require_namespace(cur, name)
            row = cur.execute("SELECT labels FROM namespaces WHERE name=?", (name,)).fetchone()
            merged = labelutil.apply_update(loads_labels(row[0]), changes)
            cur.execute(
                "UPDATE namespaces SET labels=?, updated_at=? WHERE name=?",
                (dumps(merged), timestamp(), name),
            )
        return Namespace(name, merged)

    def delete(self, name: str) -> None:
        """Remove an empty namespace; one that still holds anything is refused."""
        with self.db.write() as cur:
            DB.require_namespace(cur, name)
            held = []
            for table, word in _OWNED:
                (n,) = cur.execute(f"SELECT COUNT(*) FROM {table} WHERE namespace=?", (name,)).fetchone()
                if n:
                    held.append(f"{n} {word}")
            if held:
                raise FailedPrecondition(
                    f"namespace {name!r} must be empty to be removed, but it still has {', '.join(held)}"
                )
            cur.execute("DELETE FROM lease_resources WHERE namespace=?", (name,))
            cur.execute("DELETE FROM leases WHERE namespace=?", (name,))
            cur.execute("DELETE FROM ingests WHERE namespace=?", (name,))
            cur.execute("DELETE FROM namespaces WHERE name=?", (name,))
