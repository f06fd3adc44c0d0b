"""Garbage collection, in the shape containerd uses: mark from roots, sweep the rest.

Roots (in every namespace): leases that have not expired and whose owner process (see
``ctrstore.metadata.leases``) is alive, with everything they hold; images
without ``containerd.io/gc.expire`` or not yet expired; containers; content and snapshots
labelled ``containerd.io/gc.root``; ingests whose expiry is in the future.

Edges: an image to its target blob; a snapshot to its parent; a container to its snapshot;
an ingest to its expected blob; and from any object, its reference labels:
``containerd.io/gc.ref.content[.x|/x]=<digest>``,
``containerd.io/gc.ref.snapshot.<snapshotter>[/x]=<key>``,
``containerd.io/gc.ref.image[.x|/x]=<name>``, plus the back-references
``containerd.io/gc.bref.{content,image,container}[.x|/x]`` and
``containerd.io/gc.bref.snapshot.<snapshotter>[/x]``, which make the *named* object point at
the labelled one. Objects reached only through a lease labelled ``containerd.io/gc.flat`` are
kept without following their labels.

Sweep, in two write transactions. The first repairs what a crash between meta.db and a
snapshotter's metadata.db can leave (records whose backend snapshot is gone; a snapshotter's
records without a directory), marks, and deletes the unmarked records; it commits before any
file goes. The second — which changes no record, so it cannot fail at COMMIT and roll anything
back — holds writers off while the files go: blobs no namespace records (and no live ingest
expects, no live lease holds), backend ingests no record points at (unless a writer holds
them), and backend snapshots no record points at (through each snapshotter's ``gc_cleanup``).
So a file is removed only after the metadata that stopped referencing it is committed, and a
gc that fails (a full disk) has removed nothing a record still names. A file already missing is
not an error.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ctrstore import labels as labelutil
from ctrstore._timeutil import now, parse_rfc3339
from ctrstore.content.local import LocalStore
from ctrstore.errdefs import NotFound
from ctrstore.metadata.db import DB, loads_labels
from ctrstore.metadata.leases import owner_gone

__all__ = ["GCResult", "Reachability", "SnapshotCleaner", "collect", "reachability"]

Node = tuple[str, str, str]
"""(kind, namespace, key): kind is content, snapshot, image, ingest, lease or container;
a snapshot's key is ``<snapshotter>/<key>``."""


class SnapshotCleaner(Protocol):
    """What a snapshotter offers gc: remove every backend snapshot not in ``keep``."""

    def gc_cleanup(self, keep: set[str], dry_run: bool) -> list[str]: ...


@dataclass
class GCResult:
    dry_run: bool
    records: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Removed metadata records by kind, as ``<namespace>/<key>``."""
    blobs: list[str] = field(default_factory=list)
    ingests: list[str] = field(default_factory=list)
    snapshots: dict[str, list[str]] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)
    """What a crash had left inconsistent and this gc repaired (or, dry, would repair)."""
    mounts: list[str] = field(default_factory=list)
    """Temporary mounts of processes that are gone, unmounted (``<root>/tmpmounts``)."""

    @property
    def empty(self) -> bool:
        return not (
            any(self.records.values())
            or self.blobs
            or self.ingests
            or any(self.snapshots.values())
            or self.mounts
            or self.repaired
        )


_REF = {
    labelutil.GC_REF_CONTENT: "content",
    labelutil.GC_REF_IMAGE: "image",
}
_BREF = {
    labelutil.GC_BREF_CONTENT: "content",
    labelutil.GC_BREF_IMAGE: "image",
    labelutil.GC_BREF_CONTAINER: "container",
}
_REF_SNAPSHOT = labelutil.GC_REF_SNAPSHOT
_BREF_SNAPSHOT = labelutil.GC_BREF_SNAPSHOT


def _prefixed(key: str, prefix: str) -> bool:
    return key == prefix or (key.startswith(prefix) and key[len(prefix)] in "./")


def _label_targets(
    ns: str, labels: Mapping[str, str], table: Mapping[str, str], snap_prefix: str
) -> list[Node]:
    out: list[Node] = []
    for k, v in labels.items():
        for prefix, kind in table.items():
            if _prefixed(k, prefix):
                out.append((kind, ns, v))
        if k.startswith(snap_prefix):
            snapshotter = k[len(snap_prefix) :].split("/", 1)[0]
            if snapshotter:
                out.append(("snapshot", ns, f"{snapshotter}/{v}"))
    return out


def _expired(labels: Mapping[str, str], at: datetime) -> bool:
    text = labels.get(labelutil.GC_EXPIRE)
    if text is None:
        return False
    try:
        return parse_rfc3339(text) <= at
    except ValueError:
        return False  # an unreadable expiry never expires, as in containerd


class _Graph:
    def __init__(self) -> None:
        self.nodes: set[Node] = set()
        self.edges: dict[Node, list[Node]] = defaultdict(list)  # structural: always followed
        self.label_edges: dict[Node, list[Node]] = defaultdict(list)  # skipped for flat members
        self.roots: list[tuple[Node, bool]] = []

    def add(self, node: Node, labels: Mapping[str, str] | None = None) -> None:
        self.nodes.add(node)
        if labels:
            ns = node[1]
            self.label_edges[node].extend(_label_targets(ns, labels, _REF, _REF_SNAPSHOT))
            for src in _label_targets(ns, labels, _BREF, _BREF_SNAPSHOT):
                self.label_edges[src].append(node)

    def mark(self, roots: Iterable[tuple[Node, bool]] | None = None) -> set[Node]:
        full: set[Node] = set()
        flat: set[Node] = set()
        stack = list(self.roots if roots is None else roots)
        while stack:
            node, is_flat = stack.pop()
            if node in full or (is_flat and node in flat):
                continue
            (flat if is_flat else full).add(node)
            for nxt in self.edges.get(node, ()):
                stack.append((nxt, is_flat))
            if not is_flat:
                for nxt in self.label_edges.get(node, ()):
                    stack.append((nxt, False))
        return full | flat


def _build(cur: sqlite3.Cursor, at: datetime) -> _Graph:
    g = _Graph()
    for ns, digest, lb in cur.execute("SELECT namespace, digest, labels FROM content"):
        labels = loads_labels(lb)
        node: Node = ("content", ns, digest)
        g.add(node, labels)
        if labelutil.GC_ROOT in labels:
            g.roots.append((node, False))
    for ns, sn, key, parent, lb in cur.execute(
        "SELECT namespace, snapshotter, key, parent, labels FROM snapshots"
    ):
        labels = loads_labels(lb)
        node = ("snapshot", ns, f"{sn}/{key}")
        g.add(node, labels)
        if parent:
            g.edges[node].append(("snapshot", ns, f"{sn}/{parent}"))
        if labelutil.GC_ROOT in labels:
            g.roots.append((node, False))
    for ns, name, digest, lb in cur.execute("SELECT namespace, name, target_digest, labels FROM images"):
        labels = loads_labels(lb)
        node = ("image", ns, name)
        g.add(node, labels)
        g.edges[node].append(("content", ns, digest))
        if not _expired(labels, at):
            g.roots.append((node, False))
    for ns, cid, sn, skey, lb in cur.execute(
        "SELECT namespace, id, snapshotter, snapshot_key, labels FROM containers"
    ):
        node = ("container", ns, cid)
        g.add(node, loads_labels(lb))
        if sn and skey:
            g.edges[node].append(("snapshot", ns, f"{sn}/{skey}"))
        g.roots.append((node, False))
    for ns, ref, expected, expires in cur.execute("SELECT namespace, ref, expected, expires_at FROM ingests"):
        node = ("ingest", ns, ref)
        g.add(node)
        if expected:
            g.edges[node].append(("content", ns, expected))
        if expires and parse_rfc3339(expires) > at:
            g.roots.append((node, False))
    leases: dict[tuple[str, str], Node] = {}
    for ns, lid, lb in cur.execute("SELECT namespace, id, labels FROM leases"):
        labels = loads_labels(lb)
        node = ("lease", ns, lid)
        g.add(node)
        leases[(ns, lid)] = node
        if not _expired(labels, at) and not owner_gone(labels):
            g.roots.append((node, labelutil.GC_FLAT in labels))
    kinds = {"content": "content", "ingests": "ingest", "images": "image"}
    for ns, lid, typ, rid in cur.execute("SELECT namespace, lease_id, type, id FROM lease_resources"):
        lease = leases.get((ns, lid))
        if lease is None:
            continue
        if typ.startswith("snapshots/"):
            target: Node = ("snapshot", ns, f"{typ[len('snapshots/') :]}/{rid}")
        elif typ in kinds:
            target = (kinds[typ], ns, rid)
        else:
            continue
        g.edges[lease].append(target)
    return g


class Reachability:
    """The gc graph of the whole store, read in one transaction, for the questions
    housekeeping asks (``system df``, what a prune would free): what is reachable from every
    root, or from only the roots a predicate keeps. gc itself does not use it."""

    def __init__(self, graph: _Graph) -> None:
        self._graph = graph

    @property
    def nodes(self) -> set[Node]:
        return self._graph.nodes

    @property
    def roots(self) -> list[Node]:
        return [n for n, _ in self._graph.roots]

    def mark(self, keep: Callable[[Node], bool] | None = None) -> set[Node]:
        """The nodes gc would keep if only the roots ``keep`` accepts were roots (all of them
        without ``keep``)."""
        if keep is None:
            return self._graph.mark()
        return self._graph.mark((n, flat) for n, flat in self._graph.roots if keep(n))


def reachability(db: DB) -> Reachability:
    """The store's gc graph as it is now (see :class:`Reachability`)."""
    with db.read() as cur:
        return Reachability(_build(cur, now()))


_SWEEP = {
    "content": ("DELETE FROM content WHERE namespace=? AND digest=?", "content"),
    "image": ("DELETE FROM images WHERE namespace=? AND name=?", "images"),
    "ingest": ("DELETE FROM ingests WHERE namespace=? AND ref=?", "ingests"),
    "lease": ("DELETE FROM leases WHERE namespace=? AND id=?", "leases"),
}


def repair_ingest_records(cur: sqlite3.Cursor, content: LocalStore, dry_run: bool) -> list[str]:
    """Delete ingest records whose write finished on disk but not in meta.db: the backend
    moved the data into ``blobs/`` (and removed the ingest directory), then the meta.db commit
    that would have recorded the blob and dropped the ingest did not happen (a kill, a full
    disk). Kept, such a record would hold its blob from gc until it expires. A record whose
    directory is missing while its blob is not stored is left alone: a writer may be about to
    create the directory (a record is written before its directory)."""
    out: list[str] = []
    for ns, ref, backend_ref, expected in cur.execute(
        "SELECT namespace, ref, backend_ref, expected FROM ingests WHERE expected IS NOT NULL"
    ).fetchall():
        if not content.exists(expected) or content.ingest_path(backend_ref).exists():
            continue
        out.append(f"ingest record {ns}/{ref} had finished writing {expected} on disk: removed")
        if not dry_run:
            cur.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (ns, ref))
    return out


def repair_snapshot_records(cur: sqlite3.Cursor, snapshotters: Mapping[str, Any], dry_run: bool) -> list[str]:
    """Make each snapshotter's own bookkeeping whole (``repair()``: records without a directory,
    directories without a record), then delete meta.db snapshot records whose backend snapshot
    is gone (a crash between the two databases' commits). Call inside a meta.db write
    transaction: every change to a backend snapshot happens inside one, so none is under way."""
    out: list[str] = []
    for name, sn in snapshotters.items():
        repair = getattr(sn, "repair", None)
        if callable(repair):
            out += [f"{name}: {x}" for x in repair(dry_run)]
        walk = getattr(sn, "walk", None)
        if not callable(walk):
            continue
        present = {i.name for i in walk()}
        rows = cur.execute(
            "SELECT namespace, key, backend_key FROM snapshots WHERE snapshotter=? ORDER BY namespace, key",
            (name,),
        ).fetchall()
        for ns, key, bkey in rows:
            if bkey in present:
                continue
            out.append(f"{name}: snapshot record {ns}/{key} had no backend snapshot {bkey!r}: removed")
            if not dry_run:
                cur.execute(
                    "DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?", (ns, name, key)
                )
    return out


def collect(
    db: DB,
    content: LocalStore,
    snapshotters: Mapping[str, SnapshotCleaner] | None = None,
    *,
    dry_run: bool = False,
) -> GCResult:
    """Run one full collection (or, with ``dry_run``, report what it would remove)."""
    result = GCResult(dry_run=dry_run)
    snapshotters = snapshotters or {}
    with db.write() as cur:
        result.repaired = repair_snapshot_records(cur, snapshotters, dry_run)
        result.repaired += repair_ingest_records(cur, content, dry_run)
        g = _build(cur, now())
        marked = g.mark()
        for node in sorted(g.nodes - marked):
            kind, ns, key = node
            if kind == "snapshot":
                sn, _, skey = key.partition("/")
                result.records["snapshots"].append(f"{ns}/{key}")
                if not dry_run:
                    cur.execute(
                        "DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?", (ns, sn, skey)
                    )
            elif kind in _SWEEP:
                sql, word = _SWEEP[kind]
                result.records[word].append(f"{ns}/{key}")
                if not dry_run:
                    cur.execute(sql, (ns, key))
        if dry_run:
            # What is kept is exactly what was marked.
            expected = {
                (ns, r): d for ns, r, d in cur.execute("SELECT namespace, ref, expected FROM ingests")
            }
            keep_digests = {key for kind, _, key in marked if kind == "content"}
            keep_digests |= {d for (ns, r), d in expected.items() if d and ("ingest", ns, r) in marked}
            keep_refs = {f"{ns}/{key}" for kind, ns, key in marked if kind == "ingest"}
            _sweep_files(cur, content, snapshotters, result, True, keep_digests, keep_refs, marked)
            return result
    # The records are committed; now the files they named, with writers held off.
    with db.write() as cur:
        _sweep_files(cur, content, snapshotters, result, False, set(), set(), None)
    return result


def _sweep_files(
    cur: sqlite3.Cursor,
    content: LocalStore,
    snapshotters: Mapping[str, SnapshotCleaner],
    result: GCResult,
    dry_run: bool,
    keep_digests: set[str],
    keep_refs: set[str],
    marked: set[Node] | None,
) -> None:
    """Remove what no record names. Real runs keep everything the committed records name —
    what was marked, and whatever a writer recorded since."""
    if marked is None:
        keep_digests |= {d for (d,) in cur.execute("SELECT digest FROM content")}
        keep_digests |= {d for (d,) in cur.execute("SELECT expected FROM ingests WHERE expected IS NOT NULL")}
        keep_digests |= {d for (d,) in cur.execute("SELECT id FROM lease_resources WHERE type='content'")}
        keep_refs |= {f"{ns}/{r}" for ns, r in cur.execute("SELECT namespace, ref FROM ingests")}
    _sweep_blobs(content, keep_digests, result, dry_run)
    _sweep_ingests(content, keep_refs, result, dry_run)
    for name, cleaner in snapshotters.items():
        rows = cur.execute(
            "SELECT namespace, key, backend_key FROM snapshots WHERE snapshotter=?", (name,)
        ).fetchall()
        keep = {bk for ns, k, bk in rows if marked is None or ("snapshot", ns, f"{name}/{k}") in marked}
        result.snapshots[name] = cleaner.gc_cleanup(keep, dry_run)


def _sweep_blobs(content: LocalStore, keep: Iterable[str], result: GCResult, dry_run: bool) -> None:
    keep = set(keep)
    for info in content.walk():
        if info.digest not in keep:
            result.blobs.append(info.digest)
            if not dry_run:
                try:
                    content.delete(info.digest)
                except NotFound:
                    pass


def _sweep_ingests(content: LocalStore, keep_refs: set[str], result: GCResult, dry_run: bool) -> None:
    for entry in content.list_ingests():
        ref = entry.reference or ""
        if ref in keep_refs:
            continue
        if dry_run:
            if content.ingest_held(entry):
                continue
        elif not content.remove_ingest(entry):
            continue  # a writer holds it
        result.ingests.append(ref or entry.name)
