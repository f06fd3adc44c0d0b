"""Volumes without containers running: the store's records and directories (create, list,
filters, labels, removal refused while a container record mounts the volume, adoption of a
directory without a record, leftovers of a cut-short removal), meta.db's migration to schema
2, the copy-up of an image's files (owners, modes, links, devices, xattrs; never outside), and
the helpers the prune commands use (filters, docker's sizes, the image's ``Volumes``)."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.cli._prune import docker_size
from ctrstore.client.housekeeping import PruneFilter, dangling
from ctrstore.client.volumes import MAX_IMAGE_VOLUMES, anonymous_volumes, image_volumes
from ctrstore.content import Descriptor
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ctrstore.labels import ANONYMOUS_VOLUMES, RECOVERED, VOLUME_ANONYMOUS
from ctrstore.metadata.containers import Container
from ctrstore.metadata.db import DB, MIGRATIONS, SCHEMA_VERSION
from ctrstore.metadata.images import Image
from ctrstore.volumes import validate_volume_name
from ctrstore.volumes.copy import MAX_DEPTH, copy_up


def _user(client: Client, cid: str, *sources: str) -> None:
    """A container record whose spec mounts ``sources`` (what create writes)."""
    mounts = [
        {"destination": f"/m{i}", "type": "bind", "source": s, "options": ["rbind"]}
        for i, s in enumerate(sources)
    ]
    client.metadata.containers(client.namespace).create(
        Container(cid, runtime={"name": "io.containerd.runc.v2"}, spec={"mounts": mounts})
    )


def test_create_list_remove(client: Client) -> None:
    vols = client.volumes
    v = vols.create("data", {"team": "a"})
    assert v.mountpoint == client.root / "io.containerd.volume.v1.local/volumes/default/data/_data"
    assert v.mountpoint.is_dir() and stat.S_IMODE(v.mountpoint.stat().st_mode) == 0o755
    assert (v.name, dict(v.labels), v.anonymous, v.driver) == ("data", {"team": "a"}, False, "local")
    with pytest.raises(AlreadyExists, match="data"):
        vols.create("data")
    anon = vols.create(anonymous=True)
    assert len(anon.name) == 64 and anon.anonymous and anon.labels == {VOLUME_ANONYMOUS: "true"}
    assert [x.name for x in vols.list()] == sorted(["data", anon.name])
    assert vols.ensure("data") == (vols.get("data"), False)
    new, created = vols.ensure("other")
    assert created and new.mountpoint.is_dir()
    assert vols.set_labels("data", {"team": "", "x": "1"}).labels == {"x": "1"}
    doc = vols.get("data").to_json()
    assert doc["Name"] == "data" and doc["Mountpoint"] == str(v.mountpoint) and doc["Scope"] == "local"
    # Other namespaces have their own.
    assert client.with_namespace("ns2").volumes.list() == []
    vols.remove("data")
    assert not v.mountpoint.parent.exists()
    with pytest.raises(NotFound, match="no such volume: data"):
        vols.get("data")
    with pytest.raises(NotFound):
        vols.remove("data")
    for bad in ("a", "-x", "a/b", "..", "x" * 256, "sp ace"):
        with pytest.raises(InvalidArgument, match="volume name"):
            validate_volume_name(bad)


def test_in_use_is_refused(client: Client) -> None:
    vols = client.volumes
    a, b = vols.create("aa"), vols.create("bb")
    _user(client, "c1", str(a.mountpoint))
    _user(client, "c2", str(a.mountpoint), str(b.mountpoint) + "/sub")
    assert vols.users() == {"aa": ["c1", "c2"], "bb": ["c2"]}
    with pytest.raises(FailedPrecondition, match="volume aa is in use by container c1, c2"):
        vols.remove("aa")
    # All or nothing: an unused name given with one in use is not removed either.
    c = vols.create("cc")
    with pytest.raises(FailedPrecondition):
        vols.remove_many(["cc", "bb"])
    assert c.mountpoint.is_dir()
    # if_unused (prune) skips what is in use, and what is missing.
    assert vols.remove_many(["aa", "bb", "cc", "gone"], if_unused=True) == ["cc"]
    assert [v.name for v in vols.list("dangling=true")] == []
    assert [v.name for v in vols.list("dangling=false")] == ["aa", "bb"]
    client.metadata.containers(client.namespace).delete("c2")
    assert [v.name for v in vols.list("dangling=true")] == ["bb"]
    assert [v.name for v in vols.list("name=b", "name=a")] == ["aa", "bb"]
    with pytest.raises(InvalidArgument, match="color"):
        vols.list("color=red")
    # A namespace with volumes cannot be removed.
    with pytest.raises(FailedPrecondition, match="2 volumes"):
        client.with_namespace("default").namespaces.delete("default")


def test_directories_without_records(client: Client) -> None:
    vols = client.volumes
    vols.create("xx")
    # A volume directory with data but no record (a lost meta.db) is adopted, not emptied.
    lost = vols.path("lost") / "_data"
    lost.mkdir(parents=True)
    (lost / "keep").write_text("precious")
    assert vols.create("lost").mountpoint == lost
    assert (lost / "keep").read_text() == "precious"
    # Leftovers of a cut-short create or remove are listed and cleaned, nothing else.
    (vols.root / ".rm-y-1234").mkdir()
    (vols.root / ".new-abcd").mkdir()
    assert [p.name for p in vols.strays()] == [".new-abcd", ".rm-y-1234"]
    assert vols.cleanup() == [".new-abcd", ".rm-y-1234"]
    assert sorted(p.name for p in vols.root.iterdir()) == ["lost", "xx"]


def test_schema_migrates_from_v1(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO namespaces(name, created_at, updated_at) VALUES ('default', '2020-01-01T00:00:00Z', "
        "'2020-01-01T00:00:00Z')"
    )
    conn.commit()
    conn.close()
    db = DB(path)
    try:
        assert db.schema_version == SCHEMA_VERSION == 2
        with db.read() as cur:
            assert cur.execute("SELECT COUNT(*) FROM volumes").fetchone() == (0,)
    finally:
        db.close()


def test_image_volumes_are_checked() -> None:
    assert image_volumes({"config": {"Volumes": {"/data": {}, "/x/../y/": {}, "//data": {}}}}) == [
        "/data",
        "/y",
    ]
    assert image_volumes({"config": {}}) == [] and image_volumes({}) == []
    for bad, match in (
        ({"Volumes": ["/a"]}, "must be an object"),
        ({"Volumes": {"rel": {}}}, "not an absolute path"),
        ({"Volumes": {"/": {}}}, "must not be '/'"),
        ({"Volumes": {f"/v{i}": {} for i in range(MAX_IMAGE_VOLUMES + 1)}}, "more than"),
    ):
        with pytest.raises(InvalidArgument, match=match):
            image_volumes({"config": bad})
    assert anonymous_volumes({ANONYMOUS_VOLUMES: '["a", 3, "b"]'}) == ["a", "b"]
    assert anonymous_volumes({ANONYMOUS_VOLUMES: "{"}) == [] and anonymous_volumes({}) == []


def test_prune_filters_and_sizes() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    f = PruneFilter.parse(["until=2024-01-02", "label=a", "label!=b=1"])
    assert f.match(t, {"a": "x"})
    assert not f.match(t, {"a": "x", "b": "1"}) and f.match(t, {"a": "x", "b": "2"})
    assert not f.match(t, {}) and not f.match(t + timedelta(days=2), {"a": ""})
    recent = PruneFilter.parse(["until=1h30m"])
    assert recent.until is not None
    assert abs((datetime.now(UTC) - recent.until).total_seconds() - 5400) < 60
    assert PruneFilter.parse(["until=1704067200"]).until == t
    assert PruneFilter.parse(["until=2024-01-01T00:00:00Z"]).until == t
    for bad in ("until=soon", "colour=red", "label"):
        with pytest.raises(InvalidArgument):
            PruneFilter.parse([bad])
    assert [docker_size(n) for n in (0, 999, 1000, 16384, 3104768, 1_230_000_000)] == [
        "0B",
        "999B",
        "1kB",
        "16.4kB",
        "3.1MB",
        "1.23GB",
    ]
    d = Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "0" * 64, 1)
    assert dangling(Image("r@sha256:" + "1" * 64, d)) and not dangling(Image("r:1", d))


@pytest.mark.root
def test_copy_up_keeps_what_docker_keeps(tmp_path: Path) -> None:
    rootfs, dest = tmp_path / "rootfs", tmp_path / "dest"
    src = rootfs / "srv"
    (src / "sub").mkdir(parents=True)
    dest.mkdir()
    (src / "f").write_bytes(b"x" * 100_000)
    os.chown(src / "f", 1000, 1001)
    os.chmod(src / "f", 0o4750)
    os.link(src / "f", src / "sub" / "hard")
    os.symlink("/etc/passwd", src / "abs")
    os.mkfifo(src / "fifo")
    os.chmod(src / "fifo", 0o620)
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.setxattr(src / "sub", "user.k", b"v")
    os.chmod(src, 0o1777)
    os.utime(src / "sub", ns=(1_000_000_000, 2_000_000_000))
    assert copy_up(rootfs, "/srv", dest)
    assert sorted(os.listdir(dest)) == ["abs", "f", "fifo", "null", "sub"]
    st = os.stat(dest / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_size) == (1000, 1001, 0o4750, 100_000)
    assert st.st_ino == os.stat(dest / "sub" / "hard").st_ino
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert (
        stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
        and stat.S_IMODE(os.lstat(dest / "fifo").st_mode) == 0o620
    )
    assert os.lstat(dest / "null").st_rdev == os.makedev(1, 3)
    assert os.getxattr(dest / "sub", "user.k") == b"v"
    assert os.stat(dest / "sub").st_mtime_ns == 2_000_000_000
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o1777  # the volume takes the directory's mode
    # Not again into a volume that has files; nothing where the image has no directory.
    assert not copy_up(rootfs, "/srv", dest)
    other = tmp_path / "other"
    other.mkdir()
    assert not copy_up(rootfs, "/nowhere", other) and not copy_up(rootfs, "/srv/f", other)
    assert os.listdir(other) == []


@pytest.mark.root
def test_copy_up_refuses_too_deep_a_tree(tmp_path: Path) -> None:
    rootfs, dest = tmp_path / "rootfs", tmp_path / "dest"
    dest.mkdir()
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.mkdir("rootfs", dir_fd=fd)
        cur = os.open("rootfs", os.O_RDONLY, dir_fd=fd)
        for _ in range(MAX_DEPTH + 2):
            os.mkdir("d", dir_fd=cur)
            nxt = os.open("d", os.O_RDONLY, dir_fd=cur)
            os.close(cur)
            cur = nxt
        os.close(cur)
    finally:
        os.close(fd)
    with pytest.raises(InvalidArgument, match="nested more than"):
        copy_up(rootfs, "/d", dest)


def test_check_reconciles_volumes(client: Client) -> None:
    vols = client.volumes
    kept, emptied = vols.create("kept"), vols.create("emptied")
    (kept.mountpoint / "f").write_text("data")
    with client.metadata.db.write() as cur:  # as a lost meta.db would leave it
        cur.execute("DELETE FROM volumes WHERE name='kept'")
    emptied.mountpoint.rmdir()
    old = vols.root / ".rm-gone-0000"
    old.mkdir()
    os.utime(old, (1, 1))
    fresh = vols.root / ".new-0000"
    fresh.mkdir()  # a create under way: left alone
    report = client.check_store()
    problems = sorted(f.problem for f in report.findings if f.area == "volumes")
    assert len(problems) == 3 and not report.ok
    assert any("kept has no record" in p for p in problems)
    assert any("emptied: its data directory" in p for p in problems)
    assert any(".rm-gone-0000 is left" in p for p in problems)
    assert [v.name for v in vols.list()] == ["emptied"]
    client.check_store(repair=True)
    assert [v.name for v in vols.list()] == ["emptied", "kept"]
    assert RECOVERED in vols.get("kept").labels and (kept.mountpoint / "f").read_text() == "data"
    assert emptied.mountpoint.is_dir() and not old.exists() and fresh.exists()
    assert client.check_store().ok
