"""Namespaced snapshots: one snapshotter's snapshots as one namespace sees them.

The backend snapshotter is shared by all namespaces; meta.db records, per namespace, each
snapshot's key, its backend key (``<namespace>/<n>/<key>``), its parent and its labels. Only
labels under ``containerd.io/snapshot/`` and ``containerd.io/snapshot.ref`` reach the backend.
Removing a snapshot drops its record and then its backend snapshot; gc removes backend
snapshots no record points at, children first.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping

from ctrstore import filters
from ctrstore import labels as labelutil
from ctrstore._timeutil import parse_rfc3339
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp
from ctrstore.metadata.leases import add_resource
from ctrstore.mount import Mount
from ctrstore.snapshots import Info, Snapshotter, Usage

__all__ = ["SnapshotStore"]

_BACKEND_PREFIXES = (labelutil.SNAPSHOT_PREFIX, labelutil.SNAPSHOT_REF)


def _backend_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(_BACKEND_PREFIXES)}


class SnapshotStore:
    def __init__(
        self, db: DB, name: str, backend: Snapshotter, namespace: str, *, lease: str | None = None
    ) -> None:
        self.db = db
        self.name = name
        self.backend = backend
        self.namespace = namespace
        self.lease = lease
        self._undo: dict[str, str] = {}
        """Backend snapshots that failed commits of these active keys left behind."""

    def _row(self, cur: sqlite3.Cursor, key: str) -> tuple[str, str, str, str, str] | None:
        row: tuple[str, str, str, str, str] | None = cur.execute(
            "SELECT backend_key, parent, labels, created_at, updated_at FROM snapshots "
            "WHERE namespace=? AND snapshotter=? AND key=?",
            (self.namespace, self.name, key),
        ).fetchone()
        return row

    def _need(self, cur: sqlite3.Cursor, key: str) -> tuple[str, str, str, str, str]:
        row = self._row(cur, key)
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist in namespace {self.namespace!r}")
        return row

    def _info(self, key: str, row: tuple[str, str, str, str, str], backend: Info) -> Info:
        _, parent, lb, created, updated = row
        return Info(
            backend.kind, key, parent, loads_labels(lb), parse_rfc3339(created), parse_rfc3339(updated)
        )

    def backend_key(self, key: str) -> str:
        with self.db.read() as cur:
            return self._need(cur, key)[0]

    # -- reading ---------------------------------------------------------------------------
    def stat(self, key: str) -> Info:
        with self.db.read() as cur:
            row = self._need(cur, key)
        return self._info(key, row, self.backend.stat(row[0]))

    def usage(self, key: str) -> Usage:
        return self.backend.usage(self.backend_key(key))

    def mounts(self, key: str) -> builtins.list[Mount]:
        return self.backend.mounts(self.backend_key(key))

    def walk(self, *filter_strings: str) -> Iterator[Info]:
        flt = filters.parse(*filter_strings)
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT key, backend_key, parent, labels, created_at, updated_at FROM snapshots "
                "WHERE namespace=? AND snapshotter=? ORDER BY key",
                (self.namespace, self.name),
            ).fetchall()
        backend = {i.name: i for i in self.backend.walk()}
        for key, *row in rows:
            b = backend.get(row[0])
            if b is None:
                continue
            info = self._info(key, tuple(row), b)
            fields = {"name": info.name, "parent": info.parent, "kind": str(info.kind)}
            if flt.match(filters.match_mapping(fields, info.labels)):
                yield info

    # -- changes ---------------------------------------------------------------------------
    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> builtins.list[Mount]:
        return self._create(False, key, parent, labels)

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> builtins.list[Mount]:
        return self._create(True, key, parent, labels)

    def _create(
        self, readonly: bool, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> builtins.list[Mount]:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        lb = labelutil.validate(labels or {})
        ref = lb.get(labelutil.SNAPSHOT_REF)
        exists = False
        with self.db.write() as cur:
            DB.ensure_namespace(cur, self.namespace)
            if ref and self._row(cur, ref) is not None:
                add_resource(cur, self.namespace, self.lease, f"snapshots/{self.name}", ref)
                exists = True
        if exists:
            # After the commit: raised inside the transaction, the error would roll back the
            # lease's hold on ``ref`` and let a gc beside us remove it.
            raise AlreadyExists(f"snapshot {ref!r} already exists in namespace {self.namespace!r}")
        with self.db.write() as cur:
            DB.ensure_namespace(cur, self.namespace)
            if self._row(cur, key) is not None:
                raise AlreadyExists(f"snapshot {key!r} already exists in namespace {self.namespace!r}")
            bparent = ""
            if parent:
                prow = self._row(cur, parent)
                if prow is None:
                    raise NotFound(f"parent snapshot {parent!r} of {key!r} does not exist")
                bparent = prow[0]
            bkey = f"{self.namespace}/{time.time_ns()}/{key}"
            ts = timestamp()
            cur.execute(
                "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, labels, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.namespace, self.name, key, bkey, parent, dumps(lb), ts, ts),
            )
            add_resource(cur, self.namespace, self.lease, f"snapshots/{self.name}", key)
            create = self.backend.view if readonly else self.backend.prepare
            return create(bkey, bparent, _backend_labels(lb))

    @property
    def rebase(self) -> bool:
        return self.backend.rebase

    def commit(
        self, name: str, key: str, labels: Mapping[str, str] | None = None, *, parent: str | None = None
    ) -> None:
        lb = labelutil.validate(labels or {})
        res = f"snapshots/{self.name}"
        exists = False
        with self.db.write() as cur:
            self._need(cur, key)
            if self._row(cur, name) is not None:
                add_resource(cur, self.namespace, self.lease, res, name)
                exists = True
        if exists:  # after the commit that keeps the lease's hold on ``name``
            raise AlreadyExists(f"snapshot {name!r} already exists in namespace {self.namespace!r}")
        committed: list[str] = []
        with self._undoing_backend_commit(key, committed), self.db.write() as cur:
            bkey, cur_parent = self._need(cur, key)[:2]
            if self._row(cur, name) is not None:
                raise AlreadyExists(f"snapshot {name!r} already exists in namespace {self.namespace!r}")
            bparent = None
            if parent is not None and parent != cur_parent:
                prow = self._row(cur, parent) if parent else None
                if parent and prow is None:
                    raise NotFound(f"parent snapshot {parent!r} of {name!r} does not exist")
                bparent = prow[0] if prow else ""
                cur_parent = parent
            bname = f"{self.namespace}/{time.time_ns()}/{name}"
            ts = timestamp()
            cur.execute(
                "UPDATE snapshots SET key=?, backend_key=?, parent=?, labels=?, created_at=?, updated_at=? "
                "WHERE namespace=? AND snapshotter=? AND key=?",
                (name, bname, cur_parent, dumps(lb), ts, ts, self.namespace, self.name, key),
            )
            cur.execute(
                "UPDATE lease_resources SET id=? WHERE namespace=? AND type=? AND id=?",
                (name, self.namespace, res, key),
            )
            add_resource(cur, self.namespace, self.lease, res, name)
            self.backend.commit(bname, bkey, _backend_labels(lb), parent=bparent)
            committed.append(bname)

    @contextlib.contextmanager
    def _undoing_backend_commit(self, key: str, committed: list[str]) -> Iterator[None]:
        """Around the transaction of active snapshot ``key``'s commit: if it fails after the
        backend committed (the disk filled up at COMMIT, say, as a layer applied beside it
        can make it), remove what the backend committed, now or, if that fails too (the disk
        still full), when the caller removes ``key``. The record, rolled back, still names
        the active snapshot: removing it (or gc) drops the record, and no backend snapshot is
        left that no record names."""
        try:
            yield
        except BaseException:
            for bname in committed:
                try:
                    self.backend.remove(bname)
                except Exception:
                    self._undo[key] = bname
            raise

    def update(self, info: Info, *fieldpaths: str) -> Info:
        with self.db.write() as cur:
            row = self._need(cur, info.name)
            new = labelutil.update_by_fieldpaths(
                loads_labels(row[2]), info.labels, fieldpaths, f"snapshot {info.name!r}"
            )
            cur.execute(
                "UPDATE snapshots SET labels=?, updated_at=? WHERE namespace=? AND snapshotter=? AND key=?",
                (dumps(new), timestamp(), self.namespace, self.name, info.name),
            )
        return self.stat(info.name)

    def remove(self, key: str) -> None:
        """Drop the record, commit, then remove the backend snapshot: a crash in between leaves
        an unreferenced backend snapshot, which gc removes, never a record without one."""
        with self.db.write() as cur:
            bkey = self._need(cur, key)[0]
            child = cur.execute(
                "SELECT key FROM snapshots WHERE namespace=? AND snapshotter=? AND parent=? LIMIT 1",
                (self.namespace, self.name, key),
            ).fetchone()
            if child is not None:
                raise FailedPrecondition(f"cannot remove snapshot {key!r}: {child[0]!r} is its child")
            cur.execute(
                "DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?",
                (self.namespace, self.name, key),
            )
            shared = cur.execute(
                "SELECT 1 FROM snapshots WHERE snapshotter=? AND backend_key=?", (self.name, bkey)
            ).fetchone()
        if shared is None:
            try:
                self.backend.remove(bkey)
            except (NotFound, FailedPrecondition):
                pass  # gone already, or a parent still in use elsewhere: gc will see to it
        undo = self._undo.pop(key, None)  # what a failed commit of ``key`` left in the backend
        if undo is not None:
            try:
                self.backend.remove(undo)
            except (NotFound, FailedPrecondition):
                pass

    def close(self) -> None:
        """The backend belongs to its plugin; nothing to close here."""
