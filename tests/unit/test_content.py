"""The namespaced content store against the real file system, in one process (several at once:
``tests/integration/test_processes.py``)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from ctrstore import AlreadyExists, Client, FailedPrecondition, Info, InvalidArgument, NotFound


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_file(client: Client, digest: str) -> Path:
    return client.root / "io.containerd.content.v1.content" / "blobs" / "sha256" / digest.split(":")[1]


def test_ingest_commits_read_only_blob(client: Client) -> None:
    data = os.urandom(300_000)
    d = client.content.ingest("layer-1", data, expected=digest_of(data), labels={"a": "b"})
    assert d == digest_of(data)
    p = blob_file(client, d)
    assert p.read_bytes() == data
    assert stat.S_IMODE(p.stat().st_mode) & 0o222 == 0
    info = client.content.info(d)
    assert (info.size, info.labels) == (len(data), {"a": "b"})
    assert client.content.read_bytes(d) == data
    assert not any((client.root / "io.containerd.content.v1.content" / "ingest").iterdir())


def test_digest_mismatch_commits_nothing(client: Client) -> None:
    good = b"good bytes"
    with pytest.raises(FailedPrecondition, match=f"expected {digest_of(good)}"):
        client.content.ingest("r", b"evil bytes", expected=digest_of(good))
    assert list(client.content.walk()) == []
    assert not blob_file(client, digest_of(good)).exists()
    assert not blob_file(client, digest_of(b"evil bytes")).exists()
    # The ingest is kept; after aborting it the right bytes go through.
    client.content.abort("r")
    assert client.content.ingest("r", good, expected=digest_of(good)) == digest_of(good)


def test_truncated_ingest_then_resume(client: Client) -> None:
    data = os.urandom(2_500_000)
    cut = 1_000_003
    with pytest.raises(FailedPrecondition, match=f"wrote {cut} bytes, expected {len(data)}"):
        client.content.ingest("big", io.BytesIO(data[:cut]), size=len(data))
    st = client.content.status("big")
    assert (st.offset, st.total) == (cut, len(data))
    assert [s.ref for s in client.content.list_statuses()] == ["big"]
    assert [s.ref for s in client.content.list_statuses("ref==other")] == []
    ingest_dir = next((client.root / "io.containerd.content.v1.content" / "ingest").iterdir())
    assert (ingest_dir / "hashstate").exists(), "the hash state is saved so a resume need not re-read"
    seen: list[int] = []
    d = client.content.ingest("big", io.BytesIO(data), size=len(data), progress=seen.append)
    assert d == digest_of(data)
    assert seen[0] == cut, "resumed at the stored offset"
    assert client.content.list_statuses() == []


def test_resume_from_unseekable_source(client: Client) -> None:
    data = b"0123456789" * 1000
    with pytest.raises(FailedPrecondition):
        client.content.ingest("r", io.BytesIO(data[:4000]), size=len(data))

    class Pipe(io.RawIOBase):
        def __init__(self, b: bytes) -> None:
            self.b = io.BytesIO(b)

        def readable(self) -> bool:
            return True

        def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
            return self.b.readinto(buf)

    assert client.content.ingest("r", Pipe(data), size=len(data)) == digest_of(data)  # type: ignore[arg-type]


def test_existing_content_and_sharing(client: Client) -> None:
    data = b"shared blob"
    d = client.content.ingest("a", data)
    with pytest.raises(AlreadyExists):
        client.content.writer("b", expected=d)
    other = client.with_namespace("other")
    w = other.content.writer("c", expected=d, total=len(data))
    assert w.complete and w.offset == len(data)
    assert w.commit(len(data), d) == d
    assert other.content.info(d).size == len(data)
    # Deleting from one namespace keeps the bytes for the other.
    client.content.delete(d)
    assert blob_file(client, d).exists()
    with pytest.raises(NotFound):
        client.content.info(d)
    other.content.delete(d)
    assert not blob_file(client, d).exists()
    other.close()


def test_labels_update_and_filters(client: Client) -> None:
    d1 = client.content.ingest("1", b"one", labels={"containerd.io/gc.root": "x", "k": "v"})
    d2 = client.content.ingest("2", b"two")
    assert [i.digest for i in client.content.walk('labels."containerd.io/gc.root"')] == [d1]
    assert {i.digest for i in client.content.walk("labels.k==v", f"digest=={d2}")} == {d1, d2}
    info = client.content.set_labels(d2, {"new": "1"})
    assert info.labels == {"new": "1"}
    assert client.content.set_labels(d2, {"new": ""}).labels == {}
    assert client.content.update(Info(d1, labels={"only": "this"})).labels == {"only": "this"}
    with pytest.raises(InvalidArgument, match="only labels"):
        client.content.update(Info(d1), "size")
    with pytest.raises(InvalidArgument, match="exceed 4096"):
        client.content.set_labels(d1, {"big": "x" * 5000})
    with pytest.raises(InvalidArgument, match="invalid filter"):
        list(client.content.walk("labels.==x"))


def test_bad_digest_and_unknown_namespace(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="invalid digest"):
        client.content.info("sha256:1234")
    with pytest.raises(InvalidArgument, match="invalid digest"):
        client.content.writer("r", expected="md5:abc")
    nowhere = client.with_namespace("nowhere")
    with pytest.raises(NotFound, match="namespace 'nowhere' does not exist"):
        list(nowhere.content.walk())
    nowhere.close()


def test_a_commit_whose_record_finds_the_disk_full_is_settled_later(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob is verified and moved into blobs/, then writing its record finds the disk full
    (a layer applied beside the download filled it). ``settle_commit`` (what a pull runs
    once its work has stopped) records it after all, or, if the disk is still full, removes
    it: never a blob held past the next gc by an ingest record without its directory. The
    full disk is injected at the record's INSERT; the rest is real."""
    from ctrstore.errdefs import ResourceExhausted
    from ctrstore.metadata.content import ContentStore

    def full(*args: object, **kwargs: object) -> None:
        raise ResourceExhausted("no space left on device while writing meta.db")

    def fail_commit(ref: str, data: bytes) -> None:
        with monkeypatch.context() as m:
            m.setattr(ContentStore, "_record", full)
            with pytest.raises(ResourceExhausted):
                client.content.ingest(ref, data, expected=digest_of(data))
        assert blob_file(client, digest_of(data)).exists()  # moved, not recorded
        assert [s.ref for s in client.content.list_statuses()] == []  # its directory is gone

    # Room again: the blob is recorded, the ingest's record dropped.
    data = os.urandom(200_000)
    fail_commit("layer-x", data)
    client.content.settle_commit("layer-x", digest_of(data), len(data), {"a": "b"})
    assert client.content.info(digest_of(data)).labels == {"a": "b"}
    report = client.check_store()
    assert report.ok, report.findings

    # Still full: the blob goes (the download starts over next time), and so does the record.
    other = os.urandom(100_000)
    fail_commit("layer-y", other)
    with monkeypatch.context() as m:
        m.setattr(ContentStore, "_record", full)
        with pytest.raises(ResourceExhausted):
            client.content.settle_commit("layer-y", digest_of(other), len(other))
    assert not blob_file(client, digest_of(other)).exists()
    client.gc()
    assert [i.digest for i in client.content.walk()] == []
    report = client.check_store()
    assert report.ok, report.findings
    assert client.content.ingest("layer-y", other, expected=digest_of(other)) == digest_of(other)
