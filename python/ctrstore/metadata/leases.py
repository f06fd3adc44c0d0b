"""Leases: named holds that keep what an operation creates safe from gc until it is done.

A lease is a gc root. While a ``ContentStore`` or ``ImageStore`` is bound to a lease, every
blob, ingest or image it writes becomes one of the lease's resources. A lease labelled
``containerd.io/gc.expire`` (RFC 3339) stops protecting anything once that time has passed.

Owned leases. containerd's leases are held by a daemon that outlives its clients; ctrstore has
no daemon, so a lease that an operation takes for itself (``Client.lease()``: pull, unpack,
import, commit) belongs to the process that made it. The label ``ctrstore.io/lease.owner``
records that process as ``pid=<pid>,start=<start time>,boot=<boot id>,pidns=<pid namespace>``
(start time in clock ticks since boot, field 22 of ``/proc/<pid>/stat``; boot id from
``/proc/sys/kernel/random/boot_id``). gc treats a lease whose owner is gone — another boot, no
such pid, or a pid now used by another process — as expired, so a killed pull's blobs and
snapshots go at the next gc instead of after the 24 h expiry. A checker in another pid
namespace cannot tell, and treats the owner as alive. Leases made with ``leases create`` (or
``LeaseManager.create``) have no owner: they live until deleted or expired.
"""

from __future__ import annotations

import builtins
import os
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

__all__ = ["Lease", "LeaseManager", "Resource", "owner_gone", "process_owner"]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pidns(pid: int | str = "self") -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks after boot), None if there is none, ""
    if it cannot be told (``/proc`` hides other users' processes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_owner(pid: int | None = None) -> str:
    """The owner label value for process ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f"pid={pid},start={_start_time(pid) or ''},boot={_boot_id()},pidns={_pidns()}"


def owner_gone(labels: Mapping[str, str]) -> bool:
    """Whether the lease's owner process (if it has one) no longer exists."""
    value = labels.get(labelutil.LEASE_OWNER)
    if not value:
        return False
    fields = dict(part.partition("=")[::2] for part in value.split(","))
    boot = fields.get("boot", "")
    if boot and boot != _boot_id():
        return True  # made before the last reboot: no process of that boot is left
    if fields.get("pidns", "") != _pidns():
        return False  # another pid namespace: its pids mean nothing here
    try:
        pid = int(fields.get("pid", ""))
    except ValueError:
        return False  # unreadable: keep the lease, as an unreadable expiry is kept
    start = _start_time(pid)
    if start == "":
        return False  # hidden from us: keep the lease
    return start is None or start != fields.get("start")


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
