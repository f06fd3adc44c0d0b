"""The store's fsck: find (and, asked to, repair) what a crash, a full disk or a hand in the
store left inconsistent. ``ctrstore check [--verify] [--repair]`` is a thin layer over
``Client.check_store``, which calls ``check`` here.

What is reconciled (area: inconsistency -> what ``repair`` does):

- content: a record whose blob file is gone -> drop the record (a pull fetches it again)
- content: a blob whose size (or, with ``verify``, digest) is wrong -> remove blob and records
- content: a blob no record, ingest or lease names -> remove it (what gc would do)
- ingests: a record whose ingest directory is gone -> drop the record
- ingests: an ingest directory no record names (and no writer holds) -> remove it
- snapshots: a snapshotter record whose directory is gone -> remove it and what sits on it
- snapshots: a snapshot directory no snapshotter record names -> remove it
- snapshots: a meta.db record whose backend snapshot is gone -> drop the record
- snapshots: a backend snapshot no meta.db record names -> remove it (what gc would do)
- leases: a lease whose owner process is gone -> delete it (what gc would do)
- containers: a bundle under ``state`` (rootfs mounted or not) for no container record, older
  than a minute -> unmount the rootfs, remove the bundle
- volumes: a volume directory with data but no record (a lost meta.db) -> record it again
  (labelled ``ctrstore.io/recovered``); a record whose ``_data`` is gone -> make an empty one
  (so its containers start); a ``.new-*``/``.rm-*`` leftover of a cut-short create or remove,
  older than a minute -> remove it
- database: meta.db missing or empty while blobs or snapshots exist -> rebuild (below)
- database: meta.db corrupt -> move it aside (``meta.db.corrupt-<time>``), rebuild (below)

Rebuilding a lost meta.db (``rebuild``) recovers what the files themselves say: every blob
becomes a content record in the ``default`` namespace, every ingest directory an ingest record,
every backend snapshot a snapshot record in the namespace its backend key names (with its
parent). Recovered records are labelled ``ctrstore.io/recovered=<time>`` and
``containerd.io/gc.root=recovered``, so that no gc removes them before someone has looked: image
names, container records and labels are not in the files and cannot be recovered. To let gc
collect recovered objects, remove their ``containerd.io/gc.root`` label (or the objects).

The analysis runs inside a meta.db write transaction, so that no writer is half-way through a
change while it looks (every change to blobs, ingests and snapshots happens inside one).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrstore import _core
from ctrstore import labels as labelutil
from ctrstore._timeutil import format_rfc3339, now
from ctrstore.content.local import LocalStore
from ctrstore.errdefs import CtrstoreError, FailedPrecondition, NotFound
from ctrstore.metadata.content import INGEST_EXPIRY
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp
from ctrstore.metadata.gc import repair_snapshot_records
from ctrstore.metadata.leases import owner_gone

__all__ = [
    "RECOVERED_LABEL",
    "CheckReport",
    "Finding",
    "StoreLost",
    "check",
    "lost_or_corrupt",
    "move_aside",
    "rebuild",
    "refuse_if_lost",
]

RECOVERED_LABEL = labelutil.RECOVERED
TASK_DIR = "io.containerd.runtime.v2.task"
BUNDLE_GRACE_SECONDS = 60.0
"""A bundle without a container record is a leftover only once it is this old: ``create`` makes
the bundle and mounts its rootfs just before it records the container."""


class StoreLost(FailedPrecondition):
    """meta.db is missing or empty while the store holds blobs or snapshots."""


@dataclass
class Finding:
    area: str
    """``content``, ``ingests``, ``snapshots``, ``leases``, ``containers`` or ``database``."""
    problem: str
    repair: str
    """What ``--repair`` does (or did) about it."""
    repaired: bool = False


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    verified: int = 0
    """Blobs whose digest was computed again (``verify``)."""

    @property
    def ok(self) -> bool:
        """Nothing is wrong any more (nothing was, or everything found was repaired)."""
        return all(f.repaired for f in self.findings)

    def add(self, area: str, problem: str, repair: str, repaired: bool = False) -> None:
        self.findings.append(Finding(area, problem, repair, repaired))


# -- a lost meta.db -------------------------------------------------------------------------
def _backend_snapshots(snapshotters: Mapping[str, Any]) -> int:
    n = 0
    for sn in snapshotters.values():
        walk = getattr(sn, "walk", None)
        if callable(walk):
            n += sum(1 for _ in walk())
    return n


def refuse_if_lost(path: Path, content: LocalStore, snapshotters: Mapping[str, Any]) -> None:
    """Raise StoreLost if meta.db at ``path`` is missing or empty while the store holds blobs
    or snapshots: opening it as a new store would make every one of them garbage."""
    if DB.initialised(path):
        return
    blobs = sum(1 for _ in content.walk())
    snapshots = _backend_snapshots(snapshotters)
    if blobs or snapshots:
        state = "empty" if path.exists() else "missing"
        raise StoreLost(
            f"metadata database {path} is {state}, but the store holds {blobs} blobs and "
            f"{snapshots} snapshots: opened as a new store, gc would remove them all. "
            "Run `ctrstore check --repair` to rebuild the records it can"
        )


def _split_backend_key(bkey: str) -> tuple[str, str]:
    """meta.db's backend keys are ``<namespace>/<n>/<key>``; anything else goes to default."""
    parts = bkey.split("/", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[0]:
        return parts[0], parts[2]
    return "default", bkey


def rebuild(db: DB, content: LocalStore, snapshotters: Mapping[str, Any]) -> list[str]:
    """Recreate the records the files can tell of (see the module docstring). Returns what was
    recovered, one line per kind."""
    ts = timestamp()
    labels = {RECOVERED_LABEL: ts, labelutil.GC_ROOT: "recovered"}
    done: list[str] = []
    with db.write() as cur:
        DB.ensure_namespace(cur, "default")
        n = 0
        for info in content.walk():
            cur.execute(
                "INSERT OR IGNORE INTO content(namespace, digest, size, labels, created_at, updated_at) "
                "VALUES ('default', ?, ?, ?, ?, ?)",
                (info.digest, info.size, dumps(labels), ts, ts),
            )
            n += 1
        done.append(f"{n} blobs recorded in namespace default")
        n = 0
        expires = format_rfc3339(now() + INGEST_EXPIRY)
        for st in content.list_statuses():
            ns, _, ref = st.ref.partition("/")
            if not ref:
                continue
            try:
                DB.ensure_namespace(cur, ns)
            except CtrstoreError:
                continue
            cur.execute(
                "INSERT OR IGNORE INTO ingests(namespace, ref, backend_ref, expected, expires_at) "
                "VALUES (?, ?, ?, NULL, ?)",
                (ns, ref, st.ref, expires),
            )
            n += 1
        done.append(f"{n} ingests recorded")
        for name, sn in snapshotters.items():
            walk = getattr(sn, "walk", None)
            if not callable(walk):
                continue
            infos = list(walk())
            keys = {i.name: _split_backend_key(i.name) for i in infos}
            n = 0
            for info in infos:
                ns, key = keys[info.name]
                parent = keys.get(info.parent, ("", ""))[1] if info.parent else ""
                try:
                    DB.ensure_namespace(cur, ns)
                except CtrstoreError:
                    ns = "default"
                cur.execute(
                    "INSERT OR IGNORE INTO snapshots(namespace, snapshotter, key, backend_key, parent, "
                    "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ns, name, key, info.name, parent, dumps({**info.labels, **labels}), ts, ts),
                )
                n += 1
            done.append(f"{n} {name} snapshots recorded")
    return done


# -- the check ------------------------------------------------------------------------------
def _verify_blobs(content: LocalStore) -> tuple[int, dict[str, str]]:
    """Digest every blob again (outside any transaction: this takes a while)."""
    bad: dict[str, str] = {}
    n = 0
    for info in content.walk():
        try:
            actual, _ = _core.sha256_file(content.blob_path(info.digest))
        except CtrstoreError:
            continue  # removed meanwhile
        n += 1
        if actual != info.digest:
            bad[info.digest] = actual
    return n, bad


def check(
    db: DB,
    content: LocalStore,
    snapshotters: Mapping[str, Any],
    *,
    root: Path,
    state: Path,
    verify: bool = False,
    repair: bool = False,
) -> CheckReport:
    """Check the store (see the module docstring); with ``repair``, fix what can be fixed."""
    report = CheckReport()
    bad_digests: dict[str, str] = {}
    if verify:
        report.verified, bad_digests = _verify_blobs(content)
    with db.write() as cur:
        _check_database(cur, db, report)
        _check_leases(cur, report, repair)
        _check_content(cur, content, report, repair, bad_digests)
        _check_ingests(cur, content, report, repair)
        _check_snapshots(cur, snapshotters, report, repair)
        _check_containers(cur, state, report, repair)
        _check_volumes(cur, root, report, repair)
    return report


def _check_database(cur: sqlite3.Cursor, db: DB, report: CheckReport) -> None:
    rows = [r for (r,) in cur.execute("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        report.add(
            "database",
            f"metadata database {db.path} fails its integrity check: {'; '.join(rows[:3])}",
            "move it aside and run `ctrstore check --repair` to rebuild the records",
        )


def _check_leases(cur: sqlite3.Cursor, report: CheckReport, repair: bool) -> None:
    for ns, lid, lb in cur.execute("SELECT namespace, id, labels FROM leases").fetchall():
        labels = loads_labels(lb)
        if owner_gone(labels):
            if repair:
                cur.execute("DELETE FROM leases WHERE namespace=? AND id=?", (ns, lid))
            report.add(
                "leases",
                f"lease {ns}/{lid}: its owner ({labels.get(labelutil.LEASE_OWNER)}) is gone",
                "delete the lease (gc treats it as expired)",
                repair,
            )


def _check_content(
    cur: sqlite3.Cursor, content: LocalStore, report: CheckReport, repair: bool, bad: dict[str, str]
) -> None:
    on_disk = {i.digest: i.size for i in content.walk()}
    records: dict[str, list[tuple[str, int]]] = {}
    for ns, digest, size in cur.execute("SELECT namespace, digest, size FROM content").fetchall():
        records.setdefault(digest, []).append((ns, size))
    for digest, holders in sorted(records.items()):
        names = ", ".join(ns for ns, _ in holders)
        if digest not in on_disk:
            if repair:
                cur.execute("DELETE FROM content WHERE digest=?", (digest,))
            report.add(
                "content",
                f"content {digest} (namespaces {names}) has no blob file",
                "drop its records (pulling the image again fetches it)",
                repair,
            )
            continue
        sizes = {s for _, s in holders}
        problem = None
        if digest in bad:
            problem = f"blob {digest} is corrupt: its content hashes to {bad[digest]}"
        elif sizes != {on_disk[digest]}:
            problem = f"blob {digest} has {on_disk[digest]} bytes, its records say {sorted(sizes)}"
        if problem:
            if repair:
                cur.execute("DELETE FROM content WHERE digest=?", (digest,))
                _unlink(content, digest)
            report.add("content", problem, "remove the blob and its records", repair)
    held = {d for (d,) in cur.execute("SELECT expected FROM ingests WHERE expected IS NOT NULL")}
    held |= {d for (d,) in cur.execute("SELECT id FROM lease_resources WHERE type='content'")}
    for digest in sorted(set(on_disk) - set(records) - held):
        if repair:
            _unlink(content, digest)
        report.add("content", f"blob {digest} is recorded by no namespace", "remove it (gc would)", repair)


def _unlink(content: LocalStore, digest: str) -> None:
    try:
        content.delete(digest)
    except NotFound:
        pass


def _check_ingests(cur: sqlite3.Cursor, content: LocalStore, report: CheckReport, repair: bool) -> None:
    rows = cur.execute("SELECT namespace, ref, backend_ref FROM ingests").fetchall()
    backend_refs = {br for _, _, br in rows}
    entries = content.list_ingests()
    present = {e.path for e in entries}
    for ns, ref, bref in rows:
        if content.ingest_path(bref) not in present:
            if repair:
                cur.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (ns, ref))
            report.add("ingests", f"ingest {ns}/{ref} has no ingest directory", "drop its record", repair)
    for e in entries:
        ref = e.reference or ""
        if ref in backend_refs:
            continue
        if repair:
            if not content.remove_ingest(e):
                continue  # a writer holds it
        elif content.ingest_held(e):
            continue
        what = f"ingest {ref!r}" if ref else f"ingest directory {e.name} (no ref file)"
        report.add("ingests", f"{what} is recorded in no namespace", "remove it", repair)


def _check_snapshots(
    cur: sqlite3.Cursor, snapshotters: Mapping[str, Any], report: CheckReport, repair: bool
) -> None:
    for line in repair_snapshot_records(cur, snapshotters, dry_run=not repair):
        problem = line.rpartition(": ")[0] or line
        report.add("snapshots", problem, "remove it (and what sits on it)", repair)
    for name, sn in snapshotters.items():
        walk = getattr(sn, "walk", None)
        if not callable(walk):
            continue
        keep = {bk for (bk,) in cur.execute("SELECT backend_key FROM snapshots WHERE snapshotter=?", (name,))}
        infos = list(walk())
        by_name = {i.name: i for i in infos}
        needed = set()
        for k in keep:
            p = k
            while p in by_name and p not in needed:
                needed.add(p)
                p = by_name[p].parent
        orphans = sorted(set(by_name) - needed)
        for key in orphans:
            report.add(
                "snapshots",
                f"{name} snapshot {key!r} is recorded in no namespace",
                "remove it (gc would)",
                repair,
            )
        if repair and orphans:
            sn.gc_cleanup(keep, False)


def _check_containers(cur: sqlite3.Cursor, state: Path, report: CheckReport, repair: bool) -> None:
    from ctrstore.mount import mountinfo, unmount

    base = state / TASK_DIR
    if not base.is_dir():
        return
    records = {(ns, cid) for ns, cid in cur.execute("SELECT namespace, id FROM containers")}
    mounted = {str(m.mount_point) for m in mountinfo()}
    for nsdir in sorted(p for p in base.iterdir() if p.is_dir()):
        for bundle in sorted(p for p in nsdir.iterdir() if p.is_dir()):
            if (nsdir.name, bundle.name) in records:
                continue
            try:
                age = time.time() - bundle.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < BUNDLE_GRACE_SECONDS:
                continue  # a create in progress records its container right after mounting
            rootfs = bundle / "rootfs"
            is_mounted = str(rootfs) in mounted
            problem = f"bundle {bundle} belongs to no container" + (
                " and its rootfs is still mounted" if is_mounted else ""
            )
            if repair:
                try:
                    if is_mounted:
                        unmount(rootfs, lazy=True)
                    shutil.rmtree(bundle)
                except (OSError, CtrstoreError) as e:
                    report.add("containers", f"{problem} (repair failed: {e})", "unmount, remove", False)
                    continue
            report.add("containers", problem, "unmount its rootfs and remove the bundle", repair)


def _check_volumes(cur: sqlite3.Cursor, root: Path, report: CheckReport, repair: bool) -> None:
    from ctrstore.plugin import VOLUME

    base = root / f"{VOLUME}.local" / "volumes"
    records = {(ns, n) for ns, n in cur.execute("SELECT namespace, name FROM volumes")}
    for ns, name in sorted(records):
        data = base / ns / name / "_data"
        if data.is_dir():
            continue
        if repair:
            data.mkdir(parents=True, exist_ok=True)
        report.add(
            "volumes",
            f"volume {ns}/{name}: its data directory {data} is gone",
            "make it again, empty",
            repair,
        )
    if not base.is_dir():
        return
    for nsdir in sorted(p for p in base.iterdir() if p.is_dir()):
        for d in sorted(nsdir.iterdir()):
            if d.name.startswith((".new-", ".rm-")):
                try:
                    if time.time() - d.lstat().st_mtime < BUNDLE_GRACE_SECONDS:
                        continue  # a create or remove under way
                except FileNotFoundError:
                    continue
                if repair:
                    shutil.rmtree(d, ignore_errors=True)
                report.add(
                    "volumes", f"{d} is left from a volume create or remove cut short", "remove it", repair
                )
            elif (nsdir.name, d.name) not in records and (d / "_data").is_dir():
                if repair:
                    DB.ensure_namespace(cur, nsdir.name)
                    ts = timestamp()
                    labels = {labelutil.RECOVERED: format_rfc3339(now())}
                    cur.execute(
                        "INSERT INTO volumes(namespace, name, labels, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (nsdir.name, d.name, dumps(labels), ts, ts),
                    )
                report.add(
                    "volumes", f"volume directory {d} has no record", "record the volume again", repair
                )


def move_aside(path: Path) -> Path:
    """Rename a corrupt database (and its WAL files) out of the way; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.rename(src, f"{dest}{suffix}")
    return dest


def lost_or_corrupt(exc: BaseException | None) -> bool:
    """Whether a metadata plugin failure is one that ``check --repair`` can rebuild from."""
    from ctrstore._sqlite import Corrupt

    return isinstance(exc, StoreLost | Corrupt)
