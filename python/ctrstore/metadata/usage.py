"""What the store's files take on disk, and which records name them: the ground truth behind
``system df`` and the space a prune reports.

A *unit* is one thing on disk that goes as a whole: a blob (``blobs/sha256/<hex>``), a backend
snapshot (``<snapshotter>/<backend key>``) or an ingest directory. Its size is what ``du``
counts for it: allocated blocks, hard-linked files once (a committed snapshot's size is the
usage its snapshotter recorded at commit; an active one's is measured now). Its ``nodes`` are
the gc graph's records (``ctrstore.metadata.gc``) that name it, in every namespace; a unit no
record names is garbage, which the next gc removes.

The sizes do not include the store's own bookkeeping: directories of the layout, a snapshot's
directory and overlay ``work`` dir (a few KiB each), the databases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ctrstore.content.local import LocalStore
from ctrstore.errdefs import NotFound
from ctrstore.metadata.db import DB
from ctrstore.metadata.gc import Node

__all__ = ["Unit", "blob_size", "ingest_size", "snapshot_size", "units"]

UnitKind = Literal["blob", "snapshot", "ingest"]


@dataclass(frozen=True)
class Unit:
    kind: UnitKind
    key: str
    """A blob's digest, ``<snapshotter>/<backend key>``, or an ingest's directory name."""
    size: int
    nodes: frozenset[Node]
    """The records that name it (gc nodes, any namespace); empty for garbage."""


def blob_size(content: LocalStore, digest: str) -> int:
    """A blob's allocated bytes (0 if it is gone)."""
    try:
        return os.stat(content.blob_path(digest)).st_blocks * 512
    except (FileNotFoundError, NotFound):
        return 0


def snapshot_size(snapshotter: Any, backend_key: str) -> int:
    """A backend snapshot's usage in bytes (0 if it is gone)."""
    try:
        return int(snapshotter.usage(backend_key).size)
    except (FileNotFoundError, NotFound):
        return 0


def ingest_size(path: str | os.PathLike[str]) -> int:
    """An ingest directory's allocated bytes (0 if it is gone)."""
    total = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    total += e.stat(follow_symlinks=False).st_blocks * 512
                except FileNotFoundError:
                    continue
        total += os.lstat(path).st_blocks * 512
    except FileNotFoundError:
        return 0
    return total


def units(db: DB, content: LocalStore, snapshotters: Mapping[str, Any]) -> list[Unit]:
    """Every unit on disk with the records that name it. Read with no lock held across the
    file walk, so a store in use may change meanwhile: a unit made after the records were read
    shows as garbage, one removed meanwhile with its last size or 0."""
    blobs: dict[str, set[Node]] = {}
    snaps: dict[tuple[str, str], set[Node]] = {}
    ingests: dict[str, set[Node]] = {}
    with db.read() as cur:
        for ns, digest in cur.execute("SELECT namespace, digest FROM content"):
            blobs.setdefault(digest, set()).add(("content", ns, digest))
        for ns, sn, key, bkey in cur.execute(
            "SELECT namespace, snapshotter, key, backend_key FROM snapshots"
        ):
            snaps.setdefault((sn, bkey), set()).add(("snapshot", ns, f"{sn}/{key}"))
        for ns, ref in cur.execute("SELECT namespace, ref FROM ingests"):
            ingests.setdefault(f"{ns}/{ref}", set()).add(("ingest", ns, ref))
    out: list[Unit] = []
    for info in content.walk():
        out.append(
            Unit("blob", info.digest, blob_size(content, info.digest), frozenset(blobs.get(info.digest, ())))
        )
    for entry in content.list_ingests():
        nodes = frozenset(ingests.get(entry.reference or "", ()))
        out.append(Unit("ingest", entry.name, ingest_size(entry.path), nodes))
    for name, sn in snapshotters.items():
        walk = getattr(sn, "walk", None)
        if not callable(walk):
            continue
        for info in walk():
            nodes = frozenset(snaps.get((name, info.name), ()))
            out.append(Unit("snapshot", f"{name}/{info.name}", snapshot_size(sn, info.name), nodes))
    return out
