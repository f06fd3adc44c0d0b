"""The metadata store: meta.db and the namespaced views over the shared stores.

``Metadata`` is what the ``io.containerd.metadata.v1.sqlite`` plugin provides: the database,
the shared content store, and factories for the per-namespace stores. Garbage collection
(``ctrstore.metadata.gc``) is imported when it is first used: most commands never collect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ctrstore.content.local import LocalStore
from ctrstore.errdefs import NotFound, ResourceExhausted
from ctrstore.metadata.containers import Container, ContainerStore
from ctrstore.metadata.content import INGEST_EXPIRY, ContentStore, SharingPolicy
from ctrstore.metadata.db import DB
from ctrstore.metadata.images import Image, ImageStore
from ctrstore.metadata.leases import Lease, LeaseManager
from ctrstore.metadata.namespaces import Namespace, NamespaceStore
from ctrstore.metadata.snapshots import SnapshotStore

if TYPE_CHECKING:
    from ctrstore.metadata.gc import GCResult, SnapshotCleaner

__all__ = [
    "DB",
    "Container",
    "ContainerStore",
    "ContentStore",
    "GCResult",
    "Image",
    "ImageStore",
    "Lease",
    "LeaseManager",
    "Metadata",
    "Namespace",
    "NamespaceStore",
    "SnapshotStore",
]


class Metadata:
    def __init__(
        self,
        db: DB,
        content: LocalStore,
        snapshotters: Mapping[str, SnapshotCleaner] | None = None,
        *,
        policy: SharingPolicy = "shared",
        ingest_expiry: timedelta = INGEST_EXPIRY,
    ) -> None:
        self.db = db
        self.content_backend = content
        self.snapshotters = dict(snapshotters or {})
        self.policy = policy
        self.ingest_expiry = ingest_expiry
        self.namespaces = NamespaceStore(db)

    def content(self, namespace: str, *, lease: str | None = None) -> ContentStore:
        return ContentStore(
            self.db,
            self.content_backend,
            namespace,
            lease=lease,
            policy=self.policy,
            ingest_expiry=self.ingest_expiry,
        )

    def images(self, namespace: str, *, lease: str | None = None) -> ImageStore:
        return ImageStore(self.db, namespace, lease=lease)

    def snapshotter(self, name: str, namespace: str, *, lease: str | None = None) -> SnapshotStore:
        """The snapshotter plugin ``name`` (e.g. ``overlayfs``) as ``namespace`` sees it."""
        try:
            backend = self.snapshotters[name]
        except KeyError:
            known = ", ".join(sorted(self.snapshotters)) or "none"
            raise NotFound(f"snapshotter {name!r} is not available (available: {known})") from None
        return SnapshotStore(self.db, name, backend, namespace, lease=lease)  # type: ignore[arg-type]

    def containers(self, namespace: str) -> ContainerStore:
        return ContainerStore(self.db, namespace)

    def leases(self, namespace: str) -> LeaseManager:
        return LeaseManager(self.db, namespace)

    def close(self) -> None:
        self.db.close()

    def gc(self, *, dry_run: bool = False) -> GCResult:
        """Collect garbage; on a disk too full for gc's own transaction, give up the
        database's reserve (see ``ctrstore._sqlite``) and try once more."""
        from ctrstore.metadata.gc import collect

        try:
            return collect(self.db, self.content_backend, self.snapshotters, dry_run=dry_run)
        except ResourceExhausted:
            if not self.db.release_reserve():
                raise
            return collect(self.db, self.content_backend, self.snapshotters, dry_run=dry_run)


def __getattr__(name: str) -> Any:
    """``GCResult``, from ``ctrstore.metadata.gc`` on first use (PEP 562)."""
    if name == "GCResult":
        from ctrstore.metadata.gc import GCResult

        return GCResult
    raise AttributeError(f"module 'ctrstore.metadata' has no attribute {name!r}")
