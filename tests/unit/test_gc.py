"""Garbage collection: roots, references, leases, expiry, dry runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ctrstore import Client, Descriptor, Image

INDEX = "application/vnd.oci.image.index.v1+json"


def blobs(client: Client) -> set[str]:
    base = client.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in base.iterdir()}


def test_gc_keeps_what_images_reference(client: Client) -> None:
    c = client.content
    layer = c.ingest("l", b"layer")
    config = c.ingest("c", b"config")
    manifest = c.ingest(
        "m",
        b"manifest",
        labels={"containerd.io/gc.ref.content.config": config, "containerd.io/gc.ref.content.l.0": layer},
    )
    index = c.ingest("i", b"index", labels={"containerd.io/gc.ref.content.m.0": manifest})
    stray = c.ingest("s", b"stray")
    rooted = c.ingest("r", b"rooted", labels={"containerd.io/gc.root": "1"})
    client.images.create(Image("img", Descriptor(INDEX, index, 5)))

    dry = client.gc(dry_run=True)
    assert dry.blobs == [stray]
    assert blobs(client) >= {stray}
    result = client.gc()
    assert result.blobs == [stray]
    assert result.records["content"] == [f"default/{stray}"]
    assert blobs(client) == {layer, config, manifest, index, rooted}
    # Removing the image makes the whole chain collectable.
    client.images.delete("img")
    client.gc()
    assert blobs(client) == {rooted}
    assert client.gc().empty


def test_gc_respects_other_namespaces_and_leases(client: Client) -> None:
    d = client.content.ingest("a", b"shared", labels={"containerd.io/gc.root": "y"})
    other = client.with_namespace("other")
    other.content.writer("b", expected=d).commit()
    client.gc()
    assert d in blobs(client)
    with other.lease() as lease:
        x = other.content.ingest("x", b"in a lease")
        other.gc()
        assert x in blobs(client)
        assert other.leases.resources(lease.id)
    other.gc()
    assert x not in blobs(client)
    other.close()


def test_expired_lease_and_image(client: Client) -> None:
    lease = client.leases.create("short", expire=timedelta(seconds=-1))
    with_lease = client.content.with_lease(lease.id)
    d = with_lease.ingest("x", b"expired lease")
    client.images.create(
        Image("gone", Descriptor(INDEX, d, 13), {"containerd.io/gc.expire": "2000-01-01T00:00:00Z"})
    )
    result = client.gc()
    assert d in result.blobs
    assert result.records["leases"] == ["default/short"]
    assert result.records["images"] == ["default/gone"]


def test_gc_removes_stale_ingests_only(client: Client) -> None:
    w = client.content.writer("live")
    w.write(b"partial")
    # An ingest directory no record points at (e.g. a crash between the two): collectable.
    orphan = client.content.backend.writer("default/orphan")
    orphan.write(b"x")
    orphan.close()
    result = client.gc()
    assert result.ingests == ["default/orphan"]
    assert client.content.status("live").offset == 7
    w.close()


def test_gc_skips_ingests_a_writer_holds(client: Client) -> None:
    """An ingest no record names is garbage unless a writer holds it; a directory under
    ``ingest/`` that is no ingest at all (no ref file) is garbage too, named by its name."""
    backend = client.content.backend
    held = backend.writer("default/held")
    held.write(b"x")
    bare = backend.ingest_path("default/held").parent / "not-an-ingest"
    bare.mkdir()
    assert client.gc(dry_run=True).ingests == ["not-an-ingest"]
    assert bare.exists()
    assert client.gc().ingests == ["not-an-ingest"]
    assert not bare.exists()
    assert backend.status("default/held").offset == 1
    held.close()
    assert client.gc(dry_run=True).ingests == ["default/held"]
    assert client.gc().ingests == ["default/held"]
    assert [st.ref for st in backend.list_statuses()] == []


def test_flat_lease_does_not_follow_labels(client: Client) -> None:
    child = client.content.ingest("child", b"child")
    lease = client.leases.create("flat", labels={"containerd.io/gc.flat": "1"})
    parent = client.content.with_lease(lease.id).ingest(
        "parent", b"parent", labels={"containerd.io/gc.ref.content": child}
    )
    client.gc()
    assert parent in blobs(client)
    assert child not in blobs(client)


def test_backref_keeps_referrer(client: Client, tmp_path: Path) -> None:
    target = client.content.ingest("t", b"target", labels={"containerd.io/gc.root": "1"})
    sig = client.content.ingest("s", b"signature", labels={"containerd.io/gc.bref.content": target})
    client.gc()
    assert sig in blobs(client)


def test_snapshot_cleanup_passes_over_a_snapshot_removed_under_it(tmp_path: Path) -> None:
    """A snapshot's owner drops its record, commits, then removes the backend snapshot
    (``metadata.snapshots``): gc, walking the backend between the two, may find it gone when
    it comes to remove it. That is not a failure of gc."""
    from ctrstore.snapshots import remove_unreferenced
    from ctrstore.snapshots.native import NativeSnapshotter

    sn = NativeSnapshotter(tmp_path / "root")
    sn.prepare("kept")
    sn.prepare("gone")
    real_remove = sn.remove

    def owner_first(key: str) -> None:  # its owner removes it just before gc does
        real_remove(key)
        real_remove(key)

    sn.remove = owner_first  # type: ignore[method-assign]
    assert remove_unreferenced(sn, {"kept"}, dry_run=False) == []
    assert [i.name for i in sn.walk()] == ["kept"]
