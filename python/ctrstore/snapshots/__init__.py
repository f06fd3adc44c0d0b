"""Snapshotters: the file-system trees images unpack into and containers run on.

A snapshot is *active* (writable, prepared on a parent), a *view* (read-only, cannot be
committed) or *committed* (immutable, a parent for others). Keys of active snapshots and views,
and names of committed ones, share one key space. Snapshotters never mount anything
themselves: they return ``Mount`` descriptions that ``ctrstore.mount`` performs.

The usual flow, as when an image is unpacked::

    mounts = sn.prepare("extract-1", parent="")      # an empty, writable tree
    ...apply layer 1 into it...
    sn.commit("sha256:<chainID 1>", "extract-1")      # now immutable
    mounts = sn.prepare("extract-2", parent="sha256:<chainID 1>")
    ...
    mounts = sn.prepare("my-container", parent="sha256:<top chainID>")  # the rootfs

Implementations: ``overlay`` (``io.containerd.snapshotter.v1.overlayfs``), ``native`` and
``btrfs``; ``ctrstore.metadata.snapshots`` wraps any of them per namespace.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ctrstore.errdefs import FailedPrecondition, NotFound
from ctrstore.mount import Mount

__all__ = ["Info", "Kind", "NamedSnapshotter", "Snapshotter", "Usage", "remove_unreferenced"]


class Kind(enum.IntEnum):
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Kind:
        try:
            return cls[text.upper()]
        except KeyError:
            from ctrstore.errdefs import InvalidArgument

            raise InvalidArgument(f"unknown snapshot kind {text!r} (active, view or committed)") from None


@dataclass(frozen=True)
class Info:
    kind: Kind
    name: str
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Usage:
    inodes: int = 0
    size: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.inodes + other.inodes, self.size + other.size)


class Snapshotter(Protocol):
    """containerd's Snapshotter interface (``core/snapshots/snapshotter.go``)."""

    def stat(self, key: str) -> Info: ...
    def update(self, info: Info, *fieldpaths: str) -> Info: ...
    def usage(self, key: str) -> Usage: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]: ...

    @property
    def rebase(self) -> bool:
        """True if ``commit(..., parent=P)`` may put a parentless active snapshot onto P."""

    def commit(
        self, name: str, key: str, labels: Mapping[str, str] | None = None, *, parent: str | None = None
    ) -> None: ...
    def remove(self, key: str) -> None: ...
    def walk(self, *filters: str) -> Iterator[Info]: ...
    def close(self) -> None: ...


class NamedSnapshotter(Snapshotter, Protocol):
    """A snapshotter as a namespace sees it (``ctrstore.metadata.snapshots.SnapshotStore``):
    the role unpack, containers and commit take. ``name`` is its plugin id (``overlayfs``...),
    by which records and gc labels (``containerd.io/gc.ref.snapshot.<name>``) refer to it."""

    @property
    def name(self) -> str: ...


def remove_unreferenced(sn: Snapshotter, keep: set[str], dry_run: bool) -> list[str]:
    """Remove every snapshot whose key is not in ``keep`` (nor a parent of one), children
    before parents, then let the driver clean up stray directories. Used by gc."""
    infos = list(sn.walk())
    by_name = {i.name: i for i in infos}
    doomed = {i.name for i in infos if i.name not in keep}
    for i in infos:
        if i.name in keep:
            p = i.parent
            while p in doomed:
                doomed.discard(p)
                p = by_name[p].parent
    removed: list[str] = []
    while doomed:
        parents = {by_name[n].parent for n in doomed}
        leaves = sorted(doomed - parents)
        if not leaves:
            break
        for n in leaves:
            if not dry_run:
                try:
                    sn.remove(n)
                except FailedPrecondition:
                    continue
                except NotFound:
                    continue  # its owner removed it after dropping its record (as they do)
            removed.append(n)
        doomed -= set(leaves)
    cleanup = getattr(sn, "cleanup", None)
    if not dry_run and callable(cleanup):
        cleanup()
    return removed
