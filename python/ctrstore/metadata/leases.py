"""Leases: named holds that keep what an operation creates safe from gc until it is done.

A lease is a gc root. While a ``ContentStore`` or ``ImageStore`` is bound to a lease, every
blob, ingest or image it writes becomes one of the lease's resources. A lease labelled
``containerd.io/gc.expire`` (RFC 3339) stops protecting anything once that time has passed.
"""

from __future__ import annotations

import builtins
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ctrstore import filters
from ctrstore import labels as labelutil
from ctrstore._timeutil import format_rfc3339, now, parse_rfc3339
from ctrstore.errdefs import AlreadyExists, NotFound
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp, validate_identifier

__all__ = ["Lease", "LeaseManager", "Resource"]


@dataclass(frozen=True)
class Lease:
    id: str
    labels: dict[str, str]
    created_at: datetime


@dataclass(frozen=True)
class Resource:
    type: str
    """``content``, ``ingests``, ``images`` or ``snapshots/<snapshotter>``."""
    id: str


def add_resource(cur: sqlite3.Cursor, namespace: str, lease: str | None, type_: str, id_: str) -> None:
    """Record that ``lease`` holds a resource (no-op without a lease)."""
    if lease is None:
        return
    if cur.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?", (namespace, lease)).fetchone() is None:
        raise NotFound(f"lease {lease!r} not found in namespace {namespace!r}")
    cur.execute(
        "INSERT OR IGNORE INTO lease_resources(namespace, lease_id, type, id) VALUES (?, ?, ?, ?)",
        (namespace, lease, type_, id_),
    )


class LeaseManager:
    def __init__(self, db: DB, namespace: str) -> None:
        self.db = db
        self.namespace = namespace

    def create(
        self,
        id: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        expire: timedelta | None = None,
    ) -> Lease:
        lease_id = id or f"ctrstore-{secrets.token_hex(8)}"
        validate_identifier("lease", lease_id)
        lb = dict(labels or {})
        if expire is not None:
            lb[labelutil.GC_EXPIRE] = format_rfc3339(now() + expire)
        lb = labelutil.validate(lb)
        ts = timestamp()
        with self.db.write() as cur:
            DB.ensure_namespace(cur, self.namespace)
            exists = cur.execute(
                "SELECT 1 FROM leases WHERE namespace=? AND id=?", (self.namespace, lease_id)
            ).fetchone()
            if exists:
                raise AlreadyExists(f"lease {lease_id!r} already exists")
            cur.execute(
                "INSERT INTO leases(namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
                (self.namespace, lease_id, dumps(lb), ts),
            )
        return Lease(lease_id, lb, parse_rfc3339(ts))

    def list(self, *filter_strings: str) -> builtins.list[Lease]:
        flt = filters.parse(*filter_strings)
        with self.db.read() as cur:
            DB.require_namespace(cur, self.namespace)
            rows = cur.execute(
                "SELECT id, labels, created_at FROM leases WHERE namespace=? ORDER BY created_at, id",
                (self.namespace,),
            ).fetchall()
        out = []
        for id_, lb, created in rows:
            lease = Lease(id_, loads_labels(lb), parse_rfc3339(created))
            if flt.match(filters.match_mapping({"id": lease.id}, lease.labels)):
                out.append(lease)
        return out

    def delete(self, id: str) -> None:
        with self.db.write() as cur:
            n = cur.execute("DELETE FROM leases WHERE namespace=? AND id=?", (self.namespace, id)).rowcount
            if n == 0:
                raise NotFound(f"lease {id!r} not found")

    def resources(self, id: str) -> builtins.list[Resource]:
        with self.db.read() as cur:
            if not cur.execute(
                "SELECT 1 FROM leases WHERE namespace=? AND id=?", (self.namespace, id)
            ).fetchone():
                raise NotFound(f"lease {id!r} not found")
            rows = cur.execute(
                "SELECT type, id FROM lease_resources WHERE namespace=? AND lease_id=? ORDER BY type, id",
                (self.namespace, id),
            ).fetchall()
        return [Resource(t, i) for t, i in rows]

    def add_resource(self, id: str, resource: Resource) -> None:
        with self.db.write() as cur:
            add_resource(cur, self.namespace, id, resource.type, resource.id)

    def delete_resource(self, id: str, resource: Resource) -> None:
        with self.db.write() as cur:
            cur.execute(
                "DELETE FROM lease_resources WHERE namespace=? AND lease_id=? AND type=? AND id=?",
                (self.namespace, id, resource.type, resource.id),
            )
