"""The namespaced content store: what callers use to read, write, label and delete blobs.

The bytes live once in the shared ``LocalStore``; meta.db records which namespace holds which
blob, with its labels. As containerd's default ``shared`` policy does, a writer whose expected
blob is already on disk (held by any namespace) writes nothing: committing it only records the
blob for this namespace.

Every commit moves the data into ``blobs/`` *inside* a meta.db write transaction, and gc sweeps
blobs inside one too, so gc can never see a blob that is committed but not yet recorded.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import IO, BinaryIO, Literal

from ctrstore import _core, filters
from ctrstore import labels as labelutil
from ctrstore._timeutil import format_rfc3339, now, parse_rfc3339
from ctrstore.archive import Compression, DiffStats, write_diff
from ctrstore.content import Info, Status
from ctrstore.content.local import LocalStore
from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp
from ctrstore.metadata.leases import add_resource

__all__ = ["INGEST_EXPIRY", "ContentStore", "Writer"]

INGEST_EXPIRY = timedelta(hours=24)
"""An ingest is kept from gc for this long after it was last opened, inside a lease or not, so
that a killed download stays resumable after its lease's owner is gone (the metadata plugin's
``ingest_expiry_seconds`` changes it)."""

CHUNK = 4 << 20

SharingPolicy = Literal["shared", "isolated"]


def _info(row: tuple[str, int, str, str, str]) -> Info:
    digest, size, lb, created, updated = row
    return Info(digest, size, parse_rfc3339(created), parse_rfc3339(updated), loads_labels(lb))


class ContentStore:
    """Content as one namespace sees it (optionally writing under a lease)."""

    def __init__(
        self,
        db: DB,
        backend: LocalStore,
        namespace: str,
        *,
        lease: str | None = None,
        policy: SharingPolicy = "shared",
        ingest_expiry: timedelta = INGEST_EXPIRY,
    ) -> None:
        self.db = db
        self.backend = backend
        self.namespace = namespace
        self.lease = lease
        self.policy = policy
        self.ingest_expiry = ingest_expiry

    def with_lease(self, lease: str | None) -> ContentStore:
        return ContentStore(
            self.db,
            self.backend,
            self.namespace,
            lease=lease,
            policy=self.policy,
            ingest_expiry=self.ingest_expiry,
        )

    # -- reading -------------------------------------------------------------------------
    def _row(self, cur: sqlite3.Cursor, digest: str) -> tuple[str, int, str, str, str] | None:
        row: tuple[str, int, str, str, str] | None = cur.execute(
            "SELECT digest, size, labels, created_at, updated_at FROM content WHERE namespace=? AND digest=?",
            (self.namespace, digest),
        ).fetchone()
        return row

    def info(self, digest: str) -> Info:
        digest = _core.parse_digest(digest)
        with self.db.read() as cur:
            row = self._row(cur, digest)
            if row is None:
                DB.require_namespace(cur, self.namespace)
                raise NotFound(f"content {digest} not found in namespace {self.namespace!r}")
        return _info(row)

    def exists(self, digest: str) -> bool:
        try:
            self.info(digest)
        except NotFound:
            return False
        return True

    def walk(self, *filter_strings: str) -> Iterator[Info]:
        flt = filters.parse(*filter_strings)
        with self.db.read() as cur:
            DB.require_namespace(cur, self.namespace)
            rows = cur.execute(
                "SELECT digest, size, labels, created_at, updated_at FROM content WHERE namespace=? "
                "ORDER BY digest",
                (self.namespace,),
            ).fetchall()
        for row in rows:
            info = _info(row)
            if flt.match(filters.match_mapping({"digest": info.digest, "size": str(info.size)}, info.labels)):
                yield info

    def open(self, digest: str) -> BinaryIO:
        self.info(digest)
        return self.backend.open(digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def path(self, digest: str) -> str:
        """Where the blob's bytes are on disk (read-only)."""
        self.info(digest)
        return str(self.backend.blob_path(digest))

    # -- labels and deletion -------------------------------------------------------------
    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Change the labels of blob ``info.digest`` to ``info.labels``: no fieldpaths, or
        ``labels``, replaces them all; ``labels.<key>`` sets (or, with an empty value,
        removes) one key. Other fields cannot be changed."""
        digest = _core.parse_digest(info.digest)
        with self.db.write() as cur:
            row = self._row(cur, digest)
            if row is None:
                raise NotFound(f"content {digest} not found in namespace {self.namespace!r}")
            new = labelutil.update_by_fieldpaths(
                loads_labels(row[2]), info.labels, fieldpaths, f"content {digest}"
            )
            cur.execute(
                "UPDATE content SET labels=?, updated_at=? WHERE namespace=? AND digest=?",
                (dumps(new), timestamp(), self.namespace, digest),
            )
            row = self._row(cur, digest)
        assert row is not None
        return _info(row)

    def set_labels(self, digest: str, changes: Mapping[str, str]) -> Info:
        """Merge label changes (an empty value removes the key)."""
        return self.update(Info(digest, labels=dict(changes)), *(f"labels.{k}" for k in changes))

    def delete(self, digest: str) -> None:
        """Drop this namespace's record; the bytes go too once nothing names them. The record's
        removal is committed first; the file goes in a second transaction that checks again
        that no record, ingest or lease names it (so a failed commit never loses the bytes)."""
        digest = _core.parse_digest(digest)
        with self.db.write() as cur:
            n = cur.execute(
                "DELETE FROM content WHERE namespace=? AND digest=?", (self.namespace, digest)
            ).rowcount
            if n == 0:
                raise NotFound(f"content {digest} not found in namespace {self.namespace!r}")
        with self.db.write() as cur:
            still = cur.execute(
                "SELECT 1 FROM content WHERE digest=? UNION SELECT 1 FROM ingests WHERE expected=? "
                "UNION SELECT 1 FROM lease_resources WHERE type='content' AND id=?",
                (digest, digest, digest),
            ).fetchone()
            if still is None:
                try:
                    self.backend.delete(digest)
                except NotFound:
                    pass

    # -- writing -------------------------------------------------------------------------
    def _backend_ref(self, ref: str) -> str:
        return f"{self.namespace}/{ref}"

    def writer(
        self,
        ref: str,
        *,
        total: int | None = None,
        expected: str | None = None,
        wait: float = 0.0,
    ) -> Writer:
        """Open (or resume) the ingest ``ref``.

        AlreadyExists if this namespace already holds ``expected`` (the blob then becomes one
        of the lease's resources all the same: the error is raised after the transaction that
        records that, never inside it). Unavailable if another writer holds ``ref`` and it is
        not released within ``wait`` seconds.
        """
        if not ref:
            raise InvalidArgument("ingest ref must not be empty")
        if expected is not None:
            expected = _core.parse_digest(expected)
        if total is not None and total < 0:
            raise InvalidArgument(f"ingest {ref!r}: size must not be negative")
        exists = shared = False
        with self.db.write() as cur:
            DB.ensure_namespace(cur, self.namespace)
            if expected is not None:
                if self._row(cur, expected) is not None:
                    exists = True
                elif self._shareable(cur, expected, total):
                    shared = True
                if exists or shared:
                    # The lease holds the blob from now on, so no gc removes it before commit.
                    add_resource(cur, self.namespace, self.lease, "content", expected)
                    # An ingest of this ref left by a writer killed after its blob reached
                    # blobs/ (but before its record did) is finished: its record would keep
                    # the blob from gc until it expires. (The directory goes at gc.)
                    cur.execute(
                        "DELETE FROM ingests WHERE namespace=? AND ref=? AND expected=?",
                        (self.namespace, ref, expected),
                    )
            if not (exists or shared):
                self._record_ingest(cur, ref, expected)
        if exists:
            # Raised here, after the commit: inside the transaction it would roll back the
            # lease's hold on the blob, and a gc beside us could then remove it.
            raise AlreadyExists(f"content {expected} already exists in namespace {self.namespace!r}")
        if shared:
            assert expected is not None
            return Writer(self, ref, None, expected, self.backend.info(expected).size)
        return self._open_backend(ref, total, expected, wait)

    def _record_ingest(self, cur: sqlite3.Cursor, ref: str, expected: str | None) -> None:
        expires = format_rfc3339(now() + self.ingest_expiry)
        cur.execute(
            "INSERT INTO ingests(namespace, ref, backend_ref, expected, expires_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(namespace, ref) DO UPDATE SET expected=excluded.expected, "
            "expires_at=excluded.expires_at",
            (self.namespace, ref, self._backend_ref(ref), expected, expires),
        )
        add_resource(cur, self.namespace, self.lease, "ingests", ref)

    def _open_backend(self, ref: str, total: int | None, expected: str | None, wait: float) -> Writer:
        deadline = time.monotonic() + wait
        delay = 0.016
        check_exists = expected
        while True:
            try:
                w = self.backend.writer(self._backend_ref(ref), total, check_exists)
                break
            except AlreadyExists:
                assert expected is not None
                if self.policy == "isolated":
                    # The blob is on disk, but another namespace's (``_shareable`` said no):
                    # this one gets it only by writing it, verified at commit as any other.
                    check_exists = None
                    continue
                # Another namespace or process committed it meanwhile: share it.
                with self.db.write() as cur:
                    cur.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (self.namespace, ref))
                    add_resource(cur, self.namespace, self.lease, "content", expected)
                return Writer(self, ref, None, expected, self.backend.info(expected).size)
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"ref {ref!r} is locked: another writer holds its ingest") from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        return Writer(self, ref, w, expected, None)

    def _shareable(self, cur: sqlite3.Cursor, digest: str, total: int | None) -> bool:
        if not self.backend.exists(digest):
            return False
        if total and self.backend.info(digest).size != total:
            return False
        if self.policy == "shared":
            return True
        row = cur.execute(
            "SELECT n.labels FROM content c JOIN namespaces n ON n.name = c.namespace WHERE c.digest=?",
            (digest,),
        ).fetchall()
        return any(loads_labels(lb).get(labelutil.NAMESPACE_SHAREABLE) == "true" for (lb,) in row)

    def _record(self, cur: sqlite3.Cursor, digest: str, size: int, labels: Mapping[str, str]) -> None:
        ts = timestamp()
        cur.execute(
            "INSERT INTO content(namespace, digest, size, labels, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self.namespace, digest, size, dumps(labelutil.validate(labels)), ts, ts),
        )
        add_resource(cur, self.namespace, self.lease, "content", digest)

    def settle_commit(
        self, ref: str, digest: str, size: int, labels: Mapping[str, str] | None = None
    ) -> None:
        """Tidy after ingest ``ref``'s commit of ``digest`` failed on a full disk, once there
        may be room again (a pull calls it when all its work has stopped). The commit may have
        moved the verified blob into ``blobs/`` and then failed to write its record: the blob
        is recorded now (under the lease), as the commit meant to, and the ingest's record
        goes if its directory did. If the disk is still full, the blob is removed instead
        (unless something records or holds it), so that gc can give the space back: kept, it
        would be held by the ingest's record, which still expects it."""
        try:
            with self.db.write() as cur:
                stored = self.backend.exists(digest) and self.backend.info(digest).size == size
                if stored and self._row(cur, digest) is None:
                    self._record(cur, digest, size, labelutil.validate(labels or {}))
                if not self.backend.ingest_path(self._backend_ref(ref)).exists():
                    cur.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (self.namespace, ref))
        except ResourceExhausted:
            self._drop_unrecorded(ref, digest)
            raise

    def _drop_unrecorded(self, ref: str, digest: str) -> None:
        with self.db.write() as cur:
            named = cur.execute(
                "SELECT 1 FROM content WHERE digest=? "
                "UNION SELECT 1 FROM lease_resources WHERE type='content' AND id=?",
                (digest, digest),
            ).fetchone()
            if named is None:
                with contextlib.suppress(NotFound):
                    self.backend.delete(digest)  # first: the record's removal needs the room
            if not self.backend.ingest_path(self._backend_ref(ref)).exists():
                cur.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (self.namespace, ref))

    def status(self, ref: str) -> Status:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT expected FROM ingests WHERE namespace=? AND ref=?", (self.namespace, ref)
            ).fetchone()
        if row is None:
            raise NotFound(f"no active ingest for ref {ref!r} in namespace {self.namespace!r}")
        st = self.backend.status(self._backend_ref(ref))
        return Status(ref, st.offset, st.total, st.started_at, st.updated_at, row[0])

    def list_statuses(self, *filter_strings: str) -> list[Status]:
        flt = filters.parse(*filter_strings)
        with self.db.read() as cur:
            refs = [
                r
                for (r,) in cur.execute(
                    "SELECT ref FROM ingests WHERE namespace=? ORDER BY ref", (self.namespace,)
                ).fetchall()
            ]
        out = []
        for ref in refs:
            try:
                st = self.status(ref)
            except NotFound:
                continue
            if flt.match(filters.match_mapping({"ref": st.ref}, {})):
                out.append(st)
        return out

    def abort(self, ref: str) -> None:
        """Drop the ingest: its record first (committed), then its directory. Unavailable if a
        writer holds it (the record is gone then; the directory goes at a later gc)."""
        with self.db.write() as cur:
            n = cur.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (self.namespace, ref)).rowcount
        try:
            self.backend.abort(self._backend_ref(ref))
        except NotFound:
            if n == 0:
                raise NotFound(f"no active ingest for ref {ref!r} in namespace {self.namespace!r}") from None

    def ingest(
        self,
        ref: str,
        source: IO[bytes] | bytes,
        *,
        expected: str | None = None,
        size: int | None = None,
        labels: Mapping[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
        wait: float = 10.0,
    ) -> str:
        """Write a whole blob from ``source`` (bytes or a binary file), resuming a partial
        ingest of the same ref. Existing content counts as success, and gets ``labels`` all
        the same (whether the namespace held it before, or another writer committed it
        meanwhile). Returns the digest.

        If a resumed ingest then fails verification, the bytes it already had were wrong: it is
        started over — at once when ``source`` can seek back to its start, else on the next
        call (the FailedPrecondition says so) — so that a retry with the right data succeeds."""
        if isinstance(source, bytes):
            source = io.BytesIO(source)
            size = len(source.getbuffer()) if size is None else size
        for attempt in range(2):
            try:
                w = self.writer(ref, total=size, expected=expected, wait=wait)
            except AlreadyExists:
                assert expected is not None
                return self._exists(expected, labels)
            with w:
                resumed = w.offset if not w.complete else 0
                if attempt and not w.complete:
                    w.truncate(0)
                    resumed = 0
                if progress:
                    progress(w.offset)
                if not w.complete and not (size and w.offset == size):
                    if w.offset:
                        _skip(source, w.offset)
                    self._copy(w, source, progress)
                try:
                    return w.commit(size or 0, expected, labels)
                except AlreadyExists:
                    assert w.committed is not None
                    return self._exists(w.committed, labels)
                except FailedPrecondition as e:
                    if not resumed or expected is None:
                        raise
                    if not _rewind(source):
                        self._restart(ref)
                        raise FailedPrecondition(
                            f"{e}; the {resumed} bytes ingest {ref!r} had before were wrong, so it "
                            "starts over: run it again"
                        ) from e
        raise AssertionError("unreachable")

    def _exists(self, digest: str, labels: Mapping[str, str] | None) -> str:
        """An ingest found ``digest`` stored already: label it as a new blob would be."""
        if labels:
            self.set_labels(digest, labels)
        return digest

    def _restart(self, ref: str) -> None:
        w = self.writer(ref)
        with w:
            w.truncate(0)

    @staticmethod
    def _copy(w: Writer, source: IO[bytes], progress: Callable[[int], None] | None) -> None:
        fd = _fileno(source)
        while True:
            if fd is not None:
                n = w.write_from_fd(fd, CHUNK)
            else:
                chunk = source.read(CHUNK)
                n = w.write(chunk) if chunk else 0
            if progress:
                progress(w.offset)
            if n == 0:
                return


def _fileno(f: IO[bytes]) -> int | None:
    """The descriptor to copy from in Rust, for unbuffered files only (a buffered reader may
    hold bytes its descriptor has already passed)."""
    if isinstance(f, io.FileIO):
        return f.fileno()
    return None


def _rewind(source: IO[bytes]) -> bool:
    """Seek ``source`` back to its start, if it can."""
    try:
        if source.seekable():
            source.seek(0)
            return True
    except (OSError, AttributeError):
        pass
    return False


def _skip(source: IO[bytes], offset: int) -> None:
    """Move ``source`` past the bytes a resumed ingest already has."""
    try:
        if source.seekable():
            source.seek(offset)
            return
    except (OSError, AttributeError):
        pass
    left = offset
    while left:
        chunk = source.read(min(left, CHUNK))
        if not chunk:
            raise FailedPrecondition(
                f"source ended after {offset - left} bytes; the ingest already has {offset}"
            )
        left -= len(chunk)


class Writer:
    """A namespaced ingest writer (see ``ContentStore.writer``)."""

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        backend: _core.IngestWriter | None,
        expected: str | None,
        shared_size: int | None,
    ) -> None:
        self.store = store
        self.ref = ref
        self._w = backend
        self._expected = expected
        self._shared_size = shared_size
        self.committed: str | None = None

    @property
    def offset(self) -> int:
        if self._w is None:
            return self._shared_size or 0
        return self._w.offset

    @property
    def complete(self) -> bool:
        """True when the content is already stored and commit only records it."""
        return self._w is None

    @property
    def total(self) -> int | None:
        return self._shared_size if self._w is None else self._w.total

    def digest(self) -> str:
        if self._w is None:
            assert self._expected is not None
            return self._expected
        return self._w.digest()

    def _live(self) -> _core.IngestWriter:
        if self._w is None:
            raise FailedPrecondition(
                f"ingest {self.ref!r}: content {self._expected} is already stored; nothing to write"
            )
        return self._w

    def write(self, data: bytes | bytearray | memoryview) -> int:
        w = self._live()
        try:
            return w.write(data)
        except ResourceExhausted:
            self._give_back(w)
            raise

    def write_from_fd(self, fd: int, limit: int | None = None) -> int:
        if self._w is None:
            return 0
        try:
            return self._w.write_from_fd(fd, limit)
        except ResourceExhausted:
            self._give_back(self._w)
            raise

    def write_diff(
        self,
        upper: str | os.PathLike[str],
        *,
        lower: str | os.PathLike[str] | None = None,
        compression: Compression = "gzip",
    ) -> DiffStats:
        """Write the layer of a snapshot's changes into this ingest, from its start (see
        ``ctrstore.archive.write_diff``); commit it with the returned size and digest."""
        w = self._live()
        if w.offset:
            w.truncate(0)
        try:
            return write_diff(w, upper, lower=lower, compression=compression)
        except ResourceExhausted:
            self._give_back(w)
            raise

    def _give_back(self, w: _core.IngestWriter) -> None:
        """Out of disk space: drop the bytes written so far. Kept, they would hold the space
        that gc and the next try need; on a full disk the download cannot finish anyway."""
        try:
            w.truncate(0)
        except CtrstoreError:
            pass

    def truncate(self, size: int) -> None:
        self._live().truncate(size)

    def watch(self) -> _core.IngestWatch:
        """A handle for reading the ingest's bytes back while they are written (see
        ``ctrstore.stream``): its stream ends at a verified commit and breaks off if the
        writer is closed, truncated or its commit fails."""
        return self._live().watch()

    def commit(
        self, size: int = 0, expected: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str:
        """Verify and store the blob, and record it for the namespace (with labels).

        FailedPrecondition on a size or digest mismatch: nothing is committed and the ingest
        stays for a retry. AlreadyExists if the namespace already had the blob."""
        store = self.store
        labels = labelutil.validate(labels or {})
        if expected is not None:
            expected = _core.parse_digest(expected)
        exists = False
        with store.db.write() as cur:
            if self._w is None:
                digest = self._expected
                assert digest is not None and self._shared_size is not None
                if expected is not None and expected != digest:
                    raise FailedPrecondition(
                        f"commit of {self.ref!r}: content is {digest}, expected {expected}"
                    )
                if size and size != self._shared_size:
                    raise FailedPrecondition(
                        f"commit of {self.ref!r}: stored size is {self._shared_size}, expected {size}"
                    )
                stored = self._shared_size
            else:
                w, self._w = self._w, None
                stored, written = w.offset, w.digest()
                try:
                    # The writer's own expected digest too: a backend writer opened without it
                    # (isolated policy, the blob on disk already) must still be verified.
                    digest = w.commit(size, expected if expected is not None else self._expected)
                except AlreadyExists:
                    digest = written  # the same bytes were stored by someone else meanwhile
                self._shared_size = stored
                self._expected = digest
                cur.execute("DELETE FROM ingests WHERE namespace=? AND ref=?", (store.namespace, self.ref))
            self.committed = digest
            if store._row(cur, digest) is not None:
                add_resource(cur, store.namespace, store.lease, "content", digest)
                exists = True
            else:
                store._record(cur, digest, stored, labels)
        if exists:  # after the commit, which keeps the lease's hold (see ContentStore.writer)
            raise AlreadyExists(f"content {digest} already exists in namespace {store.namespace!r}")
        return digest

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
