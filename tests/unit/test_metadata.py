"""meta.db: namespaces, images, leases, schema version (several processes at once:
``tests/integration/test_processes.py``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ctrstore import (
    AlreadyExists,
    Client,
    Descriptor,
    FailedPrecondition,
    Image,
    InvalidArgument,
    NotFound,
)
from ctrstore.metadata.db import DB, SCHEMA_VERSION

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def meta_db(client: Client) -> Path:
    return client.root / "io.containerd.metadata.v1.sqlite" / "meta.db"


def test_layout_matches_containerd(client: Client) -> None:
    client.content.ingest("x", b"x")
    assert meta_db(client).is_file()
    assert (client.root / "io.containerd.content.v1.content" / "blobs" / "sha256").is_dir()
    with sqlite3.connect(meta_db(client)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_namespaces(client: Client) -> None:
    ns = client.namespaces
    assert [n.name for n in ns.list()] == ["default"]
    ns.create("team-a", {"owner": "me"})
    with pytest.raises(AlreadyExists):
        ns.create("team-a")
    with pytest.raises(InvalidArgument, match="invalid"):
        ns.create("-bad")
    assert ns.set_labels("team-a", {"owner": "", "x": "1"}).labels == {"x": "1"}
    other = client.with_namespace("team-a")
    d = other.content.ingest("r", b"data")
    with pytest.raises(FailedPrecondition, match="still has 1 blobs"):
        ns.delete("team-a")
    other.content.delete(d)
    ns.delete("team-a")
    with pytest.raises(NotFound):
        ns.get("team-a")
    other.close()


def test_images(client: Client) -> None:
    d = client.content.ingest("m", b"{}")
    img = client.images.create(Image("docker.io/library/x:1", Descriptor(MANIFEST, d, 2), {"l": "1"}))
    assert img.created_at is not None
    with pytest.raises(AlreadyExists):
        client.images.create(img)
    with pytest.raises(InvalidArgument):
        client.images.create(Image("y", Descriptor("", d, 2)))
    with pytest.raises(InvalidArgument, match="invalid digest"):
        client.images.create(Image("y", Descriptor(MANIFEST, "sha256:zz", 2)))
    assert [i.name for i in client.images.list("name~=library/x")] == ["docker.io/library/x:1"]
    assert client.images.list(f"target.digest=={d}")[0].labels == {"l": "1"}
    up = client.images.set_labels("docker.io/library/x:1", {"l": "", "m": "2"})
    assert up.labels == {"m": "2"}
    client.images.delete("docker.io/library/x:1")
    with pytest.raises(NotFound):
        client.images.get("docker.io/library/x:1")


def test_leases_hold_resources(client: Client) -> None:
    with client.lease() as lease:
        d = client.content.ingest("r", b"leased")
        res = client.leases.resources(lease.id)
        assert ("content", d) in {(r.type, r.id) for r in res}
    assert client.leases.list() == []
    lease = client.leases.create("mine", labels={"k": "v"})
    assert [x.id for x in client.leases.list("labels.k==v")] == ["mine"]
    with pytest.raises(AlreadyExists):
        client.leases.create("mine")
    client.leases.delete("mine")
    with pytest.raises(NotFound):
        client.leases.delete(lease.id)


def test_newer_schema_is_refused(client: Client) -> None:
    client.close()
    with sqlite3.connect(meta_db(client)) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(FailedPrecondition, match="newer than this ctrstore"):
        DB(meta_db(client))


def test_corrupt_db_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "meta.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FailedPrecondition, match="is corrupt"):
        DB(p)
