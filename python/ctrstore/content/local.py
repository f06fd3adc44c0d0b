"""The local content store: ``blobs/sha256/<hex>`` and ``ingest/<sha256(ref)>/``.

This is the layer that owns files on disk; it knows nothing of namespaces or labels. Writing
and verifying bytes happens in the Rust core (``ctrstore._core.IngestWriter``): resumable,
locked across processes, committed with fsync and an atomic rename.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from ctrstore import _core
from ctrstore._timeutil import parse_rfc3339
from ctrstore.content import Info, Status
from ctrstore.errdefs import NotFound, from_oserror

__all__ = ["LocalStore"]


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    # -- blobs ---------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return _core.blob_path(self.root, digest)

    def exists(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def info(self, digest: str) -> Info:
        p = self.blob_path(digest)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None
        t = _mtime(st)
        return Info(digest=digest, size=st.st_size, created_at=t, updated_at=t)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def walk(self) -> Iterator[Info]:
        base = self.root / "blobs" / "sha256"
        try:
            entries = list(os.scandir(base))
        except FileNotFoundError:
            return
        for e in sorted(entries, key=lambda e: e.name):
            if len(e.name) != 64 or not e.is_file(follow_symlinks=False):
                continue
            st = e.stat(follow_symlinks=False)
            t = _mtime(st)
            yield Info(digest=f"sha256:{e.name}", size=st.st_size, created_at=t, updated_at=t)

    def delete(self, digest: str) -> None:
        p = self.blob_path(digest)
        try:
            p.unlink()
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None
        except OSError as e:
            raise from_oserror(e, str(p)) from e

    # -- ingests -------------------------------------------------------------------------
    def writer(self, ref: str, total: int | None = None, expected: str | None = None) -> _core.IngestWriter:
        return _core.IngestWriter(self.root, ref, total, expected)

    def ingest_path(self, ref: str) -> Path:
        return _core.ingest_dir(self.root, ref)

    def status(self, ref: str) -> Status:
        st = self._status_of(self.ingest_path(ref))
        if st is None or st.ref != ref:
            raise NotFound(f"no active ingest for ref {ref!r}")
        return st

    def list_statuses(self) -> Iterator[Status]:
        base = self.root / "ingest"
        if not base.is_dir():
            return
        for d in sorted(base.iterdir()):
            st = self._status_of(d)
            if st is not None:
                yield st

    def abort(self, ref: str) -> None:
        _core.abort_ingest(self.root, ref)

    @staticmethod
    def _status_of(d: Path) -> Status | None:
        """Read an ingest dir's files; None if it is not (or no longer) a readable ingest."""
        try:
            ref = (d / "ref").read_text()
            data = (d / "data").stat()
            started = parse_rfc3339((d / "startedat").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        updated = _mtime(data)
        try:
            updated = max(updated, parse_rfc3339((d / "updatedat").read_text()))
        except (FileNotFoundError, ValueError):
            pass
        total: int | None = None
        try:
            total = int((d / "total").read_text())
        except (FileNotFoundError, ValueError):
            pass
        return Status(ref=ref, offset=data.st_size, total=total, started_at=started, updated_at=updated)
