"""Container records: what a container is made of (image, snapshot, runtime, spec, labels).

A container is a gc root: its snapshot (``<snapshotter>/<snapshot_key>``) and whatever its
labels reference are kept. Records are never collected; ``delete`` removes one.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ctrstore import filters
from ctrstore import labels as labelutil
from ctrstore._timeutil import parse_rfc3339
from ctrstore.errdefs import AlreadyExists, InvalidArgument, NotFound
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp, validate_identifier

__all__ = ["Container", "ContainerStore"]


@dataclass(frozen=True)
class Container:
    id: str
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    runtime: Mapping[str, Any] = field(default_factory=dict)
    """``{"name": "io.containerd.runc.v2", "options": {...}}``"""
    spec: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


_COLS = "id, image, snapshotter, snapshot_key, runtime, spec, extensions, labels, created_at, updated_at"


def _container(row: tuple[Any, ...]) -> Container:
    cid, image, sn, key, runtime, spec, ext, lb, created, updated = row
    return Container(
        cid,
        image,
        sn,
        key,
        json.loads(runtime),
        json.loads(spec),
        loads_labels(lb),
        json.loads(ext),
        parse_rfc3339(created),
        parse_rfc3339(updated),
    )


class ContainerStore:
    def __init__(self, db: DB, namespace: str) -> None:
        self.db = db
        self.namespace = namespace

    def _get(self, cur: sqlite3.Cursor, cid: str) -> Container | None:
        row = cur.execute(
            f"SELECT {_COLS} FROM containers WHERE namespace=? AND id=?", (self.namespace, cid)
        ).fetchone()
        return None if row is None else _container(row)

    def get(self, cid: str) -> Container:
        with self.db.read() as cur:
            c = self._get(cur, cid)
        if c is None:
            raise NotFound(f"container {cid!r} not found in namespace {self.namespace!r}")
        return c

    def list(self, *filter_strings: str) -> builtins.list[Container]:
        flt = filters.parse(*filter_strings)
        with self.db.read() as cur:
            DB.require_namespace(cur, self.namespace)
            rows = cur.execute(
                f"SELECT {_COLS} FROM containers WHERE namespace=? ORDER BY created_at, id", (self.namespace,)
            ).fetchall()
        out = []
        for row in rows:
            c = _container(row)
            fields = {
                "id": c.id,
                "image": c.image,
                "snapshotter": c.snapshotter,
                "runtime.name": str(c.runtime.get("name", "")),
            }
            if flt.match(filters.match_mapping(fields, dict(c.labels))):
                out.append(c)
        return out

    def create(self, c: Container) -> Container:
        validate_identifier("container", c.id)
        if not c.runtime.get("name"):
            raise InvalidArgument(f"container {c.id!r}: a runtime name is required")
        if c.snapshot_key and not c.snapshotter:
            raise InvalidArgument(f"container {c.id!r}: a snapshot key needs a snapshotter")
        lb = labelutil.validate(c.labels)
        ts = timestamp()
        with self.db.write() as cur:
            DB.ensure_namespace(cur, self.namespace)
            if self._get(cur, c.id) is not None:
                raise AlreadyExists(f"container {c.id!r} already exists")
            cur.execute(
                f"INSERT INTO containers(namespace, {_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.namespace,
                    c.id,
                    c.image,
                    c.snapshotter,
                    c.snapshot_key,
                    dumps(c.runtime),
                    dumps(c.spec),
                    dumps(c.extensions),
                    dumps(lb),
                    ts,
                    ts,
                ),
            )
            created = self._get(cur, c.id)
        assert created is not None
        return created

    def update(self, c: Container, *fieldpaths: str) -> Container:
        """Update ``labels``/``labels.<k>``, ``spec``, ``image``, ``extensions``."""
        with self.db.write() as cur:
            cur_c = self._get(cur, c.id)
            if cur_c is None:
                raise NotFound(f"container {c.id!r} not found in namespace {self.namespace!r}")
            fieldpaths = fieldpaths or ("labels", "spec", "image", "extensions")
            new = cur_c
            for fp in fieldpaths:
                if fp in ("spec", "image", "extensions"):
                    new = replace(new, **{fp: getattr(c, fp)})
            label_paths = [fp for fp in fieldpaths if fp not in ("spec", "image", "extensions")]
            if label_paths:
                labels = labelutil.update_by_fieldpaths(
                    new.labels, c.labels, label_paths, f"container {c.id!r}", others="spec, image, extensions"
                )
                new = replace(new, labels=labels)
            cur.execute(
                "UPDATE containers SET image=?, spec=?, extensions=?, labels=?, updated_at=? "
                "WHERE namespace=? AND id=?",
                (
                    new.image,
                    dumps(new.spec),
                    dumps(new.extensions),
                    dumps(new.labels),
                    timestamp(),
                    self.namespace,
                    c.id,
                ),
            )
            out = self._get(cur, c.id)
        assert out is not None
        return out

    def delete(self, cid: str) -> None:
        with self.db.write() as cur:
            n = cur.execute(
                "DELETE FROM containers WHERE namespace=? AND id=?", (self.namespace, cid)
            ).rowcount
        if n == 0:
            raise NotFound(f"container {cid!r} not found in namespace {self.namespace!r}")
