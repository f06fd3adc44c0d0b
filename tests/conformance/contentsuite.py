"""A conformance suite for content stores, ported from containerd's
``core/content/testsuite/testsuite.go``, with the cases it leaves to other tests (abort, walk,
delete, exists, mismatches, concurrent writers) added.

Every case is a plain function ``check_<case>(store)`` on a fresh, empty :class:`Store`, an
adapter that gives the two stores one interface: ``LocalStore`` (the files; no labels, no
namespaces) and the metadata store's namespaced ``ContentStore`` (meta.db records, labels,
namespaces, the ``shared`` or ``isolated`` policy). A case that needs what a store lacks
(:attr:`Case.needs`) is not run on it. A failing check raises ``AssertionError`` saying what
was expected.

Where ctrstore differs from containerd on purpose, the case says so: a writer opened on a blob
already stored (another namespace's, under the ``shared`` policy) is complete at once and
refuses more bytes, so containerd's ``CrossNamespaceAppend`` is replaced by a check of that in
``CrossNamespaceShare``; a commit returns the digest (a committed writer is closed, so its
``digest()`` is not read afterwards); times are compared allowing for the kernel's coarse file
times (``SLACK``).
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest

from ctrstore.content import Info, Status
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

__all__ = ["CASES", "Case", "Store", "Writer"]

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SLACK = timedelta(milliseconds=10)
"""How far a recorded time may fall outside the window the suite measured: the local store's
times are file times, which the kernel takes from its coarse clock (a tick, up to 4 ms, behind
the clock ``datetime.now`` reads)."""


class Writer(Protocol):
    """An open ingest (``_core.IngestWriter`` or the metadata store's ``Writer``)."""

    @property
    def offset(self) -> int: ...
    @property
    def total(self) -> int | None: ...
    def write(self, data: bytes) -> int: ...
    def digest(self) -> str: ...
    def truncate(self, size: int) -> None: ...
    def close(self) -> None: ...


class Store(Protocol):
    """What the suite needs of a content store."""

    features: frozenset[str]
    """Of ``labels``, ``namespaces``, ``shared``, ``isolated``, ``copy``."""

    def writer(self, ref: str, total: int | None = None, expected: str | None = None) -> Writer: ...
    def commit(
        self, w: Writer, size: int = 0, expected: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str: ...
    def copy(self, ref: str, source: io.RawIOBase | io.BytesIO, size: int, expected: str) -> str: ...
    def status(self, ref: str) -> Status: ...
    def list_statuses(self) -> list[Status]: ...
    def abort(self, ref: str) -> None: ...
    def info(self, digest: str) -> Info: ...
    def update(self, digest: str, labels: Mapping[str, str], fieldpaths: Sequence[str] = ()) -> Info: ...
    def read(self, digest: str) -> bytes: ...
    def exists(self, digest: str) -> bool: ...
    def walk(self) -> list[Info]: ...
    def delete(self, digest: str) -> None: ...
    def other(self, *, shareable: bool = False) -> Store:
        """The same store as another, new namespace sees it (``namespaces`` stores);
        ``shareable``: that namespace is labelled ``containerd.io/namespace.shareable``."""
        ...


# -- helpers ----------------------------------------------------------------------------------
_seed = 0
_seed_lock = threading.Lock()


def content(size: int) -> tuple[bytes, str]:
    """Random bytes (a new seed per call, the same sequence every run) and their digest."""
    global _seed
    with _seed_lock:
        _seed += 1
        seed = _seed
    data = random.Random(seed).randbytes(size)
    return data, digest_of(data)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _between(what: str, t: datetime, lo: datetime, hi: datetime) -> None:
    assert lo - SLACK <= t <= hi + SLACK, f"{what} is {t}, expected between {lo} and {hi}"


def gc_root() -> dict[str, str]:
    return {"containerd.io/gc.root": _now().strftime("%Y-%m-%dT%H:%M:%SZ")}


def _labels(store: Store, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels ``store`` keeps of ``labels`` (none, without the ``labels`` feature)."""
    return dict(labels) if "labels" in store.features else {}


def check_info(
    store: Store,
    digest: str,
    size: int,
    labels: Mapping[str, str],
    created: tuple[datetime, datetime],
    updated: tuple[datetime, datetime],
) -> None:
    info = store.info(digest)
    assert info.digest == digest, (info.digest, digest)
    assert info.size == size, f"info size {info.size}, expected {size}"
    _between("created_at", info.created_at, *created)
    _between("updated_at", info.updated_at, *updated)
    assert info.labels == _labels(store, labels), (info.labels, labels)


def check_content(store: Store, digest: str, size: int, window: tuple[datetime, datetime]) -> None:
    check_info(store, digest, size, {}, window, window)
    data = store.read(digest)
    assert len(data) == size, f"blob is {len(data)} bytes, expected {size}"
    assert digest_of(data) == digest


def check_status(
    store: Store,
    ref: str,
    w: Writer,
    offset: int,
    total: int | None,
    digest: str,
    started: tuple[datetime, datetime],
    updated: tuple[datetime, datetime],
) -> None:
    assert w.digest() == digest, f"writer digest {w.digest()}, expected {digest}"
    st = store.status(ref)
    assert st.ref == ref, (st.ref, ref)
    assert (st.offset, w.offset) == (offset, offset), f"offset {st.offset}/{w.offset}, expected {offset}"
    assert (st.total, w.total) == (total, total), f"total {st.total}/{w.total}, expected {total}"
    _between("started_at", st.started_at, *started)
    _between("updated_at", st.updated_at, *updated)


def write_all(w: Writer, data: bytes, chunk: int = 32) -> None:
    for i in range(0, len(data), chunk):
        n = w.write(data[i : i + chunk])
        assert n == len(data[i : i + chunk]), "short write"


def write_blob(store: Store, ref: str, data: bytes, expected: str | None = None) -> str:
    w = store.writer(ref, len(data), expected)
    try:
        write_all(w, data, 1 << 16)
        return store.commit(w, len(data), expected)
    finally:
        w.close()


def raises(kind: type[Exception], what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Exception:
    try:
        fn(*args, **kw)
    except kind as e:
        return e
    except Exception as e:
        raise AssertionError(f"{what}: expected {kind.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: expected {kind.__name__}, got no error")


@contextmanager
def opened(store: Store, ref: str, total: int | None = None, expected: str | None = None) -> Iterator[Writer]:
    w = store.writer(ref, total, expected)
    try:
        yield w
    finally:
        w.close()


def ref_not_available(store: Store, ref: str) -> None:
    """A second writer of ``ref`` is refused while the first holds it."""
    raises(Unavailable, f"a second writer of {ref!r}", store.writer, ref)


def discard(w: Writer) -> None:
    w.truncate(0)
    w.close()


# -- containerd's cases -------------------------------------------------------------------------
def check_writer(store: Store) -> None:
    """Writers with no size or digest, a size, a digest, both; small writes; commit with labels."""
    c1, d1 = content(256)
    c2, d2 = content(256)
    c3, d3 = content(256)
    c4, d4 = content(256)
    c5, d5 = content(1 << 20)
    writers = [
        (c1, d1, store.writer("c1")),
        (c2, d2, store.writer("c2", len(c2))),
        (c3, d3, store.writer("c3", None, d3)),
        (c4, d4, store.writer("c4", len(c4), d4)),
        (c5, d5, store.writer("c5", len(c5), d5)),
    ]
    labels = gc_root()
    try:
        for data, digest, w in writers:
            write_all(w, data, 32 if len(data) < 4096 else 4096)
            pre = _now()
            # containerd reads the writer's Digest() after Commit; here commit returns it (the
            # Rust writer is closed by its commit).
            assert store.commit(w, 0, None, labels) == digest
            post = _now()
            check_info(store, digest, len(data), labels, (pre, post), (pre, post))
    finally:
        for _, _, w in writers:
            w.close()


def check_update_status(store: Store) -> None:
    c1, d1 = content(256)
    pre_start = _now()
    with opened(store, "c1", 256, d1) as w:
        post_start = _now()
        check_status(store, "c1", w, 0, 256, EMPTY, (pre_start, post_start), (pre_start, post_start))
        for a, b in ((0, 64), (64, 192), (192, 256)):
            pre = _now()
            w.write(c1[a:b])
            post = _now()
            check_status(store, "c1", w, b, 256, digest_of(c1[:b]), (pre_start, post_start), (pre, post))
        labels = gc_root()
        pre = _now()
        store.commit(w, 0, None, labels)
        post = _now()
    check_info(store, d1, 256, labels, (pre, post), (pre, post))


def check_commit_exists(store: Store) -> None:
    """Committing bytes that are already stored is AlreadyExists, with or without a digest."""
    c1, d1 = content(256)
    write_blob(store, "c1", c1, d1)
    for i, expected in enumerate((d1, None)):
        with opened(store, f"c1-commitexists-{i}") as w:
            w.write(c1)
            raises(AlreadyExists, f"commit {i}", store.commit, w, len(c1), expected)


def check_resume_writer(store: Store) -> None:
    """A writer closed half way resumes where it stopped, with the same status (but see
    ``check_resume_keeps_updated_at``: here the reopened status's update time may be anything
    from the last write on)."""
    ref = "cb"
    cb, dgst = content(256)
    first, second = cb[:128], cb[128:]
    pre_start = _now()
    w1 = store.writer(ref, 256, dgst)
    post_start = _now()
    try:
        w1.write(first)
        post_update = _now()
        window = (pre_start, post_start)
        check_status(store, ref, w1, 128, 256, digest_of(first), window, (post_start, post_update))
    finally:
        w1.close()
    with opened(store, ref, 256, dgst) as w2:
        check_status(store, ref, w2, 128, 256, digest_of(first), window, (post_start, _now()))
        pre = _now()
        w2.write(second)
        post = _now()
        check_status(store, ref, w2, 256, 256, dgst, window, (pre, post))
        pre = _now()
        store.commit(w2)
        post = _now()
    check_info(store, dgst, 256, {}, (pre, post), (pre, post))


def check_resume_keeps_updated_at(store: Store) -> None:
    """containerd: "status should be consistent with version before close": closing a writer
    and opening it again does not change the ingest's update time (the time of its last
    write)."""
    data, d = content(256)
    with opened(store, "cb", 256, d) as w:
        w.write(data[:128])
        before = store.status("cb").updated_at
    after_close = store.status("cb").updated_at
    with opened(store, "cb", 256, d):
        after_reopen = store.status("cb").updated_at
    assert after_close == before, f"closing moved updated_at from {before} to {after_close}"
    assert after_reopen == before, f"reopening moved updated_at from {before} to {after_reopen}"


def _resume(store: Store, how: Callable[[Store, str, Writer, bytes, int, str], None]) -> None:
    for i, size in enumerate((500, 5000, 50000)):
        for j, part in enumerate((0.0, 0.1, 0.5, 0.9, 1.0)):
            data, d = content(size)
            limit = int(size * part)
            ref = f"ref-{i}-{j}"
            with opened(store, ref, size, d) as w:
                w.write(data[:limit])
            with opened(store, ref, size, d) as w:
                st = store.status(ref)
                assert st.offset == limit, f"{ref}: resumed at {st.offset}, expected {limit}"
                pre = _now()
                how(store, ref, w, data, limit, d)
                post = _now()
            check_info(store, d, size, {}, (pre, post), (pre, post))


def check_resume_truncate(store: Store) -> None:
    def how(store: Store, ref: str, w: Writer, data: bytes, written: int, d: str) -> None:
        w.truncate(0)
        write_all(w, data, 1024)
        store.commit(w, len(data), d)

    _resume(store, how)


def check_resume_discard(store: Store) -> None:
    def how(store: Store, ref: str, w: Writer, data: bytes, written: int, d: str) -> None:
        write_all(w, data[written:], 1024)
        store.commit(w, len(data), d)

    _resume(store, how)


def _resume_copy(seekable: bool) -> Callable[[Store], None]:
    def check(store: Store) -> None:
        def how(store: Store, ref: str, w: Writer, data: bytes, written: int, d: str) -> None:
            w.close()  # the copy opens its own writer
            source: io.RawIOBase | io.BytesIO = io.BytesIO(data) if seekable else _Unseekable(data)
            assert store.copy(ref, source, len(data), d) == d

        _resume(store, how)

    return check


class _Unseekable(io.RawIOBase):
    """A reader that cannot seek (containerd's ``struct{ io.Reader }``)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._data.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def check_small_blob(store: Store) -> None:
    blob = b"foobar"
    d = digest_of(blob)
    with opened(store, "small", len(blob), d) as w:
        w.write(blob)
        store.commit(w, len(blob), d)
    assert store.read(d) == blob


def check_labels(store: Store) -> None:
    c1, d1 = content(256)
    root = gc_root()
    labels = {"k1": "v1", "k2": "v2", **root}
    with opened(store, "c1-checklabels", 256, d1) as w:
        w.write(c1)
        pre_commit = _now()
        store.commit(w, 0, None, labels)
        post_commit = _now()
    committed = (pre_commit, post_commit)
    check_info(store, d1, 256, labels, committed, committed)

    labels = {"k1": "newvalue", "k3": "v3", **root}
    pre = _now()
    store.update(d1, labels)
    post = _now()
    check_info(store, d1, 256, labels, committed, (pre, post))

    pre = _now()
    store.update(d1, {"k1": "v1", **root}, ["labels.k3", "labels.k1"])
    post = _now()
    check_info(store, d1, 256, {"k1": "v1", **root}, committed, (pre, post))


def check_commit_error_state(store: Store) -> None:
    """After every failed commit the ingest is still there, under its ref, for a retry."""
    c1, d1 = content(256)
    _, d2 = content(256)
    write_blob(store, "c1", c1, d1)
    ref = "c1-commiterror-state"

    w = store.writer(ref)
    w.write(c1)
    ref_not_available(store, ref)
    raises(AlreadyExists, "commit of stored bytes with their digest", store.commit, w, len(c1), d1)
    w.close()

    w = store.writer(ref)
    ref_not_available(store, ref)
    w.write(c1)
    raises(AlreadyExists, "commit of stored bytes without a digest", store.commit, w, len(c1))
    w.close()

    w = store.writer(ref)
    ref_not_available(store, ref)
    w.write(c1 + b"more")
    raises(FailedPrecondition, "commit with the wrong digest", store.commit, w, len(c1) + 4, d2)
    w.close()

    w = store.writer(ref)
    ref_not_available(store, ref)
    assert w.offset == len(c1) + 4, f"the failed commit lost bytes: offset {w.offset}"
    raises(FailedPrecondition, "commit with the wrong size", store.commit, w, len(c1))
    w.close()

    w = store.writer(ref)
    ref_not_available(store, ref)
    store.commit(w, len(c1) + 4)
    w.close()

    w = store.writer(ref)  # the ref is free again after its commit
    w.write(c1)
    ref_not_available(store, ref)
    raises(AlreadyExists, "commit of stored bytes again", store.commit, w, len(c1), d1)
    w.close()

    w = store.writer(ref)
    ref_not_available(store, ref)
    discard(w)
    w = store.writer(ref)
    discard(w)


# -- cases containerd's suite leaves to other tests ------------------------------------------
def check_abort(store: Store) -> None:
    data, d = content(1000)
    with opened(store, "partial", 1000, d) as w:
        w.write(data[:400])
    assert [s.ref for s in store.list_statuses()] == ["partial"]
    with opened(store, "partial", 1000, d):
        raises(Unavailable, "abort while a writer holds the ingest", store.abort, "partial")
    store.abort("partial")
    raises(NotFound, "status after abort", store.status, "partial")
    assert store.list_statuses() == []
    raises(NotFound, "abort of an unknown ref", store.abort, "partial")
    with opened(store, "partial", 1000, d) as w:
        assert w.offset == 0, f"an aborted ingest resumed at {w.offset}"
        w.write(data)
        store.commit(w, 1000, d)
    assert store.list_statuses() == []
    assert not store.exists(digest_of(data[:400]))


def check_walk(store: Store) -> None:
    assert store.walk() == []
    blobs = dict(content(n)[::-1] for n in (10, 200, 3000))
    for i, (d, data) in enumerate(blobs.items()):
        write_blob(store, f"w{i}", data, d)
    with opened(store, "unfinished") as w:
        w.write(b"not a blob yet")
    infos = store.walk()
    assert [i.digest for i in infos] == sorted(blobs), "walk lists the committed blobs, by digest"
    assert {i.digest: i.size for i in infos} == {d: len(b) for d, b in blobs.items()}


def check_info_exists_delete(store: Store) -> None:
    data, d = content(777)
    raises(NotFound, "info of a blob never written", store.info, d)
    raises(NotFound, "read of a blob never written", store.read, d)
    raises(NotFound, "delete of a blob never written", store.delete, d)
    assert not store.exists(d)
    write_blob(store, "blob", data, d)
    assert store.exists(d) and store.info(d).size == 777 and store.read(d) == data
    store.delete(d)
    assert not store.exists(d)
    raises(NotFound, "info after delete", store.info, d)
    raises(NotFound, "read after delete", store.read, d)
    raises(NotFound, "delete twice", store.delete, d)
    assert store.walk() == []
    write_blob(store, "again", data, d)  # a deleted blob can be written again
    assert store.read(d) == data


def check_invalid_digests(store: Store) -> None:
    for bad in ("sha256:1234", "md5:" + "0" * 32, "sha256:" + "G" * 64, ""):
        raises(InvalidArgument, f"info({bad!r})", store.info, bad)
        raises(InvalidArgument, f"writer(expected={bad!r})", store.writer, "bad", None, bad)


def check_size_and_digest_mismatch(store: Store) -> None:
    """A commit that does not match what the writer was told, or is told, stores nothing and
    keeps the ingest as it was."""
    data, d = content(1000)
    _, d_other = content(1000)

    with opened(store, "wrong-digest", 1000, d_other) as w:  # told one digest, given other bytes
        w.write(data)
        raises(FailedPrecondition, "commit of bytes that do not match the expected digest", store.commit, w)
    with opened(store, "wrong-size", 999) as w:  # told 999 bytes, given 1000
        w.write(data)
        raises(FailedPrecondition, "commit of more bytes than the total", store.commit, w)
    with opened(store, "short", 2000) as w:  # told 2000, given 1000
        w.write(data)
        raises(FailedPrecondition, "commit of fewer bytes than the total", store.commit, w)
    with opened(store, "commit-size", None) as w:
        w.write(data)
        raises(FailedPrecondition, "commit with the wrong size", store.commit, w, 1001)
    with opened(store, "commit-digest", None) as w:
        w.write(data)
        raises(FailedPrecondition, "commit with the wrong digest", store.commit, w, 0, d_other)
    assert not store.exists(d) and not store.exists(d_other)
    assert store.walk() == []
    for ref in ("wrong-digest", "wrong-size", "short", "commit-size", "commit-digest"):
        assert store.status(ref).offset == 1000, f"{ref}: the failed commit changed the ingest"


def check_concurrent_writers(store: Store) -> None:
    """Threads writing at once: one writer per ref (the others get Unavailable); writers of the
    same bytes under different refs all succeed or find them stored, and they are stored once;
    writers of different blobs do not disturb each other."""
    data, d = content(200_000)
    with opened(store, "held", len(data), d):
        errors: list[BaseException] = []

        def second() -> None:
            try:
                store.writer("held")
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=second)
        t.start()
        t.join(30)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], Unavailable), errors
    store.abort("held")

    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def same_bytes(i: int) -> None:
        start.wait(30)
        try:
            got = write_blob(store, f"same-{i}", data, d)
        except AlreadyExists:
            got = "exists"
        except BaseException as e:
            got = f"{type(e).__name__}: {e}"
        with lock:
            outcomes.append(got)

    threads = [threading.Thread(target=same_bytes, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(o in (d, "exists") for o in outcomes) and d in outcomes, outcomes
    assert [i.digest for i in store.walk()] == [d]
    assert store.list_statuses() == []

    blobs = dict(content(50_000 + i)[::-1] for i in range(4))
    done: dict[str, str] = {}

    def one(i: int, digest: str, blob: bytes) -> None:
        got = write_blob(store, f"different-{i}", blob, digest)
        with lock:
            done[digest] = got

    threads = [threading.Thread(target=one, args=(i, dg, b)) for i, (dg, b) in enumerate(blobs.items())]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert done == {dg: dg for dg in blobs}, done
    for dg, blob in blobs.items():
        assert store.read(dg) == blob


# -- namespaces ----------------------------------------------------------------------------------
def check_cross_namespace_share(store: Store) -> None:
    """``shared`` policy: a blob another namespace stored is complete at once; committing it
    records it for this namespace too, and deleting one record keeps the other's blob."""
    data, d = content(1000)
    t1 = _now()
    write_blob(store, "ref-1000", data, d)
    other = store.other()
    with opened(other, "ref-1000", 1000, d) as w:
        assert (w.offset, w.total, w.digest()) == (1000, 1000, d)
        # ctrstore, not containerd: a writer of stored bytes takes no more (no CrossNamespaceAppend).
        raises(FailedPrecondition, "a write to a writer of stored bytes", w.write, b"appended bytes")
        other.commit(w, 1000, d)
    t3 = _now()
    check_content(store, d, 1000, (t1, t3))
    check_content(other, d, 1000, (t1, t3))
    other.delete(d)
    assert not other.exists(d)
    assert store.read(d) == data


def check_cross_namespace_isolate(store: Store) -> None:
    """``isolated`` policy: another namespace's blob is not this one's; its writer starts empty."""
    data, d = content(1000)
    write_blob(store, "ref-1000", data, d)
    other = store.other()
    t3 = _now()
    with opened(other, "ref-1000", 1000, d) as w:
        t4 = _now()
        assert (w.offset, w.digest()) == (0, EMPTY)
        _between("started_at", other.status("ref-1000").started_at, t3, t4)
        raises(NotFound, "info of the other namespace's blob", other.info, d)
        w.write(data)
        other.commit(w, 1000, d)
    assert other.read(d) == data


def check_shared_namespace_isolate(store: Store) -> None:
    """``isolated`` policy: a blob of a namespace labelled shareable is shared all the same."""
    shareable = store.other(shareable=True)
    data, d = content(1000)
    t1 = _now()
    write_blob(shareable, "ref-1000", data, d)
    other = store.other()
    with opened(other, "ref-1000", 1000, d) as w:
        assert (w.offset, w.total, w.digest()) == (1000, 1000, d)
        other.commit(w, 1000, d)
    t3 = _now()
    check_content(shareable, d, 1000, (t1, t3))
    check_content(other, d, 1000, (t1, t3))


@dataclass(frozen=True)
class Case:
    check: Callable[[Store], None]
    needs: frozenset[str] = frozenset()


def _case(check: Callable[[Store], None], *needs: str) -> Case:
    return Case(check, frozenset(needs))


CASES: dict[str, Case] = {
    # containerd's ContentSuite
    "Writer": _case(check_writer),
    "UpdateStatus": _case(check_update_status),
    "CommitExists": _case(check_commit_exists),
    "Resume": _case(check_resume_writer),
    "ResumeKeepsUpdatedAt": _case(check_resume_keeps_updated_at),
    "ResumeTruncate": _case(check_resume_truncate),
    "ResumeDiscard": _case(check_resume_discard),
    "ResumeCopy": _case(_resume_copy(seekable=False), "copy"),
    "ResumeCopySeeker": _case(_resume_copy(seekable=True), "copy"),
    "SmallBlob": _case(check_small_blob),
    "Labels": _case(check_labels, "labels"),
    "CommitErrorState": _case(check_commit_error_state),
    # added here
    "Abort": _case(check_abort),
    "Walk": _case(check_walk),
    "InfoExistsDelete": _case(check_info_exists_delete),
    "InvalidDigests": _case(check_invalid_digests),
    "SizeAndDigestMismatch": _case(check_size_and_digest_mismatch),
    "ConcurrentWriters": _case(check_concurrent_writers),
    # containerd's ContentCrossNSSharedSuite, ContentCrossNSIsolatedSuite, ContentSharedNSIsolatedSuite
    "CrossNamespaceShare": _case(check_cross_namespace_share, "namespaces", "shared"),
    "CrossNamespaceIsolate": _case(check_cross_namespace_isolate, "namespaces", "isolated"),
    "SharedNamespaceIsolate": _case(check_shared_namespace_isolate, "namespaces", "isolated"),
}


def run(name: str, store: Store) -> None:
    """Run case ``name`` on ``store``; skip (pytest) if the store lacks what it needs."""
    case = CASES[name]
    missing = case.needs - store.features
    if missing:
        pytest.skip(f"{name} needs {', '.join(sorted(missing))}")
    case.check(store)
