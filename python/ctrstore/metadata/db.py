"""meta.db: the embedded SQLite database behind namespaces, content records, images, leases,
snapshot records and containers (``<root>/io.containerd.metadata.v1.sqlite/meta.db``).

Schema (one row per object, labels as JSON objects, times as RFC 3339 text)::

    namespaces(name PK, labels)
    content(namespace, digest) PK, size, labels        -- which namespace "has" a blob
    ingests(namespace, ref) PK, backend_ref, expected, expires_at
    images(namespace, name) PK, target_{media_type,digest,size,annotations}, labels
    leases(namespace, id) PK, labels
    lease_resources(namespace, lease_id, type, id) PK   -- type: content | ingests | images
                                                        --       | snapshots/<snapshotter>
    snapshots(namespace, snapshotter, key) PK, backend_key, parent, labels
    containers(namespace, id) PK, image, snapshotter, snapshot_key, runtime, spec, labels
    volumes(namespace, name) PK, driver, labels         -- v2: named volumes (ctrstore.volumes)

Several processes may use one meta.db at once: WAL journal, a busy timeout, and every write in
a ``BEGIN IMMEDIATE`` transaction (``DB.write()``), which also serialises writers against gc.
The schema version is ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes version i to i+1.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ctrstore._sqlite import Database, release_reserve
from ctrstore._timeutil import format_rfc3339, now
from ctrstore.errdefs import FailedPrecondition, InvalidArgument, NotFound

__all__ = ["DB", "SCHEMA_VERSION", "validate_identifier"]

_V1 = """
CREATE TABLE namespaces (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE content (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, digest)
);
CREATE INDEX content_by_digest ON content(digest);
CREATE TABLE ingests (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    ref TEXT NOT NULL,
    backend_ref TEXT NOT NULL UNIQUE,
    expected TEXT,
    expires_at TEXT,
    PRIMARY KEY (namespace, ref)
);
CREATE TABLE images (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    name TEXT NOT NULL,
    target_media_type TEXT NOT NULL,
    target_digest TEXT NOT NULL,
    target_size INTEGER NOT NULL,
    target_annotations TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE leases (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    id TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE TABLE lease_resources (
    namespace TEXT NOT NULL,
    lease_id TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (namespace, lease_id, type, id),
    FOREIGN KEY (namespace, lease_id) REFERENCES leases(namespace, id) ON DELETE CASCADE
);
CREATE TABLE snapshots (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    snapshotter TEXT NOT NULL,
    key TEXT NOT NULL,
    backend_key TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, snapshotter, key)
);
CREATE INDEX snapshots_by_backend ON snapshots(snapshotter, backend_key);
CREATE TABLE containers (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    id TEXT NOT NULL,
    image TEXT NOT NULL DEFAULT '',
    snapshotter TEXT NOT NULL DEFAULT '',
    snapshot_key TEXT NOT NULL DEFAULT '',
    runtime TEXT NOT NULL DEFAULT '{}',
    spec TEXT NOT NULL DEFAULT '{}',
    extensions TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, id)
);
"""

# v2: named volumes, whose data lives in the volume plugin's directory (ctrstore.volumes).
_V2 = """
CREATE TABLE volumes (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    name TEXT NOT NULL,
    driver TEXT NOT NULL DEFAULT 'local',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
"""

MIGRATIONS: list[str] = [_V1, _V2]
SCHEMA_VERSION = len(MIGRATIONS)

_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
MAX_IDENTIFIER = 76


def validate_identifier(kind: str, value: str) -> str:
    """containerd's identifier rule, used for namespaces, leases and container ids."""
    if not value:
        raise InvalidArgument(f"{kind} name must not be empty")
    if len(value) > MAX_IDENTIFIER:
        raise InvalidArgument(f"{kind} name {value!r} is longer than {MAX_IDENTIFIER} characters")
    if not _IDENTIFIER.match(value):
        raise InvalidArgument(
            f"{kind} name {value!r} is invalid: use letters and digits, separated by single . _ or -"
        )
    return value


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def loads_labels(text: str) -> dict[str, str]:
    value = json.loads(text)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def timestamp() -> str:
    return format_rfc3339(now())


class DB:
    """One meta.db. Use ``read()``/``write()`` for transactions; both yield a cursor."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Database(self.path, "metadata database", timeout=timeout)
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise FailedPrecondition(f"metadata database {self.path} is unusable: {e}") from None

    def close(self) -> None:
        self._db.close()

    def release_reserve(self) -> bool:
        """Give up the space kept beside meta.db for a full disk (see ``ctrstore._sqlite``)."""
        return release_reserve(self.path)

    @staticmethod
    def initialised(path: str | Path) -> bool:
        """Whether ``path`` is a meta.db that was set up (has a schema), read without creating
        or changing it. A missing file, an empty one, or one without a schema is not."""
        p = Path(path)
        try:
            with open(p, "rb") as f:
                header = f.read(100)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: let opening it report what is wrong
        if not header:
            return False
        if header.startswith(b"SQLite format 3\x00") and len(header) == 100 and header[60:64] != bytes(4):
            return True  # user_version (bytes 60-63 of the header) is set: no need to open it
        # The schema may still be only in the WAL (a process killed before its checkpoint).
        try:
            conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30)
            try:
                return int(conn.execute("PRAGMA user_version").fetchone()[0]) > 0
            finally:
                conn.close()
        except sqlite3.Error:
            return True  # corrupt or unreadable: opening it reports that

    def _migrate(self) -> None:
        with self.write() as cur:
            version = cur.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise FailedPrecondition(
                    f"metadata database {self.path} has schema version {version}, newer than this "
                    f"ctrstore understands ({SCHEMA_VERSION}); upgrade ctrstore"
                )
            for i in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        cur.execute(stmt)
            if version != SCHEMA_VERSION:
                cur.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            ts = timestamp()
            cur.execute(
                "INSERT OR IGNORE INTO namespaces(name, created_at, updated_at) VALUES ('default', ?, ?)",
                (ts, ts),
            )

    @property
    def schema_version(self) -> int:
        with self.read() as cur:
            return int(cur.execute("PRAGMA user_version").fetchone()[0])

    def read(self) -> AbstractContextManager[sqlite3.Cursor]:
        """A read transaction (a consistent snapshot)."""
        return self._db.transaction(False)

    def write(self) -> AbstractContextManager[sqlite3.Cursor]:
        """A write transaction, taken at once so that writers queue instead of deadlocking."""
        return self._db.transaction(True)

    # -- namespaces, the one object every other table hangs off ----------------------------
    @staticmethod
    def ensure_namespace(cur: sqlite3.Cursor, namespace: str) -> None:
        """Create the namespace if it does not exist (writes create namespaces implicitly)."""
        validate_identifier("namespace", namespace)
        ts = timestamp()
        cur.execute(
            "INSERT OR IGNORE INTO namespaces(name, created_at, updated_at) VALUES (?, ?, ?)",
            (namespace, ts, ts),
        )

    @staticmethod
    def require_namespace(cur: sqlite3.Cursor, namespace: str) -> None:
        validate_identifier("namespace", namespace)
        if cur.execute("SELECT 1 FROM namespaces WHERE name=?", (namespace,)).fetchone() is None:
            raise NotFound(
                f"namespace {namespace!r} does not exist "
                f"(create it with `ctrstore namespaces create {namespace}`)"
            )
