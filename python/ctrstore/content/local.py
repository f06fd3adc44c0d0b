"""The local content store: ``blobs/sha256/<hex>`` and ``ingest/<sha256(ref)>/``.

This is the layer that owns files on disk; it knows nothing of namespaces or labels. Every file
of the layout is the Rust core's (``ctrstore._core``): writing and verifying bytes
(``IngestWriter``: resumable, locked across processes, committed with fsync and an atomic
rename), reading an ingest's status files, listing and removing ingest directories, walking and
deleting blobs. This class turns what it returns into the ``ctrstore.content`` types.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ctrstore import _core
from ctrstore.content import Info, Status
from ctrstore.errdefs import NotFound

__all__ = ["LocalStore"]


def _status(st: _core.IngestStatus) -> Status:
    return Status(
        ref=st.reference, offset=st.offset, total=st.total, started_at=st.started_at, updated_at=st.updated_at
    )


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        _core.create_content_layout(self.root)

    # -- blobs ---------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return _core.blob_path(self.root, digest)

    def exists(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def info(self, digest: str) -> Info:
        b = _core.blob_info(self.root, digest)
        return Info(digest=b.digest, size=b.size, created_at=b.modified, updated_at=b.modified)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def walk(self) -> Iterator[Info]:
        for b in _core.walk_blobs(self.root):
            yield Info(digest=b.digest, size=b.size, created_at=b.modified, updated_at=b.modified)

    def delete(self, digest: str) -> None:
        """Remove the blob's file (NotFound if there is none)."""
        _core.delete_blob(self.root, digest)

    # -- ingests -------------------------------------------------------------------------
    def writer(self, ref: str, total: int | None = None, expected: str | None = None) -> _core.IngestWriter:
        return _core.IngestWriter(self.root, ref, total, expected)

    def ingest_path(self, ref: str) -> Path:
        return _core.ingest_dir(self.root, ref)

    def status(self, ref: str) -> Status:
        return _status(_core.ingest_status(self.root, ref))

    def list_statuses(self) -> Iterator[Status]:
        """Every readable ingest (a user's listing: no writer's lock is probed)."""
        for e in _core.list_ingests(self.root, probe_locks=False):
            if e.status is not None:
                yield _status(e.status)

    def list_ingests(self) -> list[_core.IngestEntry]:
        """Every directory under ``ingest/``, readable or not (for gc and check, which remove
        what no record names). No lock is probed: see :meth:`ingest_held`."""
        return _core.list_ingests(self.root, probe_locks=False)

    def ingest_held(self, entry: _core.IngestEntry) -> bool:
        """Whether a writer holds a listed ingest right now (the probe takes its lock for a
        moment, so only ingests about to be reported as garbage are probed)."""
        return _core.ingest_in_use(entry.path)

    def remove_ingest(self, entry: _core.IngestEntry) -> bool:
        """Remove a listed ingest directory unless a writer holds it (then False)."""
        return _core.remove_ingest(self.root, entry.name)

    def abort(self, ref: str) -> None:
        _core.abort_ingest(self.root, ref)
