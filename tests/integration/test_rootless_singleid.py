"""Rootless single-id mode (issue 13): a user with no subordinate ids gets a user namespace
that maps only 0 -> the user. Nothing can be chowned there: files are the user's on disk and
keep their image owners in the ``user.rootlesscontainers`` xattr (umoci's encoding), commit
writes those owners back, and only root processes of an image can run.

The users are the session's (``rootless_users``: the first with subids, the second without);
the commands run as them through Debian's python3 (``tests.support.rootless``).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries
from tests.support.images import find_busybox
from tests.support.registry import RegistryServer
from tests.support.rootless import ROOTLESS_MARKS, User

pytestmark = ROOTLESS_MARKS

XATTR = "user.rootlesscontainers"
NOOP = 0xFFFFFFFF
OWNED = [
    Entry("srv", "dir", uid=1000, gid=1000),
    Entry("srv/app", data=b"app\n", mode=0o4755, uid=1000, gid=50),
    Entry("srv/data", data=b"data\n", uid=0, gid=50),
]
"""A layer on busybox with owners other than root (and a setuid file)."""


@pytest.fixture(scope="module")
def singleid_images(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """busybox with a layer of non-root owners, and busybox whose USER is 1000."""
    d = tmp_path_factory.mktemp("singleid-src")
    refs = {"owned": registry.ref("singleid/owned:1"), "user": registry.ref("singleid/user:1")}
    base = [
        Entry("bin", "dir"),
        Entry("bin/busybox", data=find_busybox().read_bytes(), mode=0o755),
        *(Entry(f"bin/{a}", "symlink", link="busybox") for a in ("sh", "cat", "id", "ls", "mkdir", "true")),
        *(Entry(d, "dir") for d in ("proc", "sys", "dev", "tmp", "root", "etc")),
        Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/:/bin/sh\n"),
        Entry("etc/group", data=b"root:x:0:\n"),
    ]
    layers = [tar_from_entries(base)]
    with Client(root=d / "root", state=d / "state") as c:
        build_image(c.content, c.images, refs["owned"], [*layers, tar_from_entries(OWNED)], ImageSpec())
        build_image(c.content, c.images, refs["user"], layers, ImageSpec(user="1000", cmd=("id", "-u")))
        for ref in refs.values():
            c.push(ref)
    return refs


def _varints(value: bytes) -> Iterator[tuple[int, int]]:
    """(field, value) of a protobuf message made of varint fields only."""
    at = 0

    def varint() -> int:
        nonlocal at
        v = shift = 0
        while True:
            b = value[at]
            at += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    while at < len(value):
        tag = varint()
        assert tag & 7 == 0, value
        yield tag >> 3, varint()


def _recorded(p: Path) -> tuple[int, int]:
    """The owner ``user.rootlesscontainers`` records for ``p`` (0:0 without one)."""
    try:
        value = os.getxattr(p, XATTR, follow_symlinks=False)
    except OSError:
        return 0, 0
    fields = dict(_varints(value))
    uid, gid = fields.get(1, 0), fields.get(2, 0)
    return (0 if uid == NOOP else uid), (0 if gid == NOOP else gid)


def _tree(top: Path) -> dict[str, tuple[str, int, int, int, int, int]]:
    """path -> (kind, mode, uid and gid on disk, uid and gid recorded) under ``top``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in [*dirnames, *filenames]:
            p = Path(dirpath) / n
            st = p.lstat()
            kind = {0o040000: "dir", 0o100000: "file", 0o120000: "link", 0o020000: "char"}.get(
                st.st_mode & 0o170000, "other"
            )
            if kind == "char" and st.st_rdev == 0:
                kind = "whiteout"
            elif st.st_mode & 0o170000 == 0o060000:
                kind = "block"
            out[str(p.relative_to(top))] = (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, *_recorded(p))
    return out


def test_seed_walk_single_id(rootless_users: tuple[User, User], rootless_images: dict[str, str]) -> None:
    _, bob = rootless_users
    bob.drop_namespace()
    ref = rootless_images["busybox"]
    r = bob.ctrstore("pull", "-q", ref)
    # The warning comes once, when the namespace is made: what it means and how to add subids.
    assert "the store runs with a single id" in r.stderr, r.stderr
    assert f"add '{bob.name}:100000:65536' to /etc/subuid and /etc/subgid" in r.stderr
    assert f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {bob.name}" in r.stderr
    assert "user.rootlesscontainers" in r.stderr
    uid_map = bob.ctrstore("unshare", "cat", "/proc/self/uid_map")
    assert uid_map.stdout.split() == ["0", str(bob.uid), "1"]
    assert "single id" not in uid_map.stderr
    gid_map = bob.ctrstore("unshare", "cat", "/proc/self/gid_map").stdout.split()
    assert gid_map == ["0", str(bob.gid), "1"]
    assert " Id Mapping: single-id" in bob.ctrstore("info").stdout
    plugins = bob.ctrstore("plugin", "ls").stdout
    assert any("overlayfs" in line and "single id" in line for line in plugins.splitlines()), plugins

    r = bob.ctrstore("run", "--rm", "--network", "none", ref, "sh", "-c", "id -u; cat /data/hello.txt")
    assert r.stdout.splitlines() == ["0", "hello from a ctrstore image"]
    bob.ctrstore(
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        ref,
        "sh",
        "-c",
        "echo written > /root/f; echo started; sleep 300",
    )
    deadline = time.monotonic() + 20
    while "started" not in bob.ctrstore("logs", "web").stdout:
        assert time.monotonic() < deadline, "the container wrote no log line"
        time.sleep(0.2)
    ps = json.loads(bob.ctrstore("ps", "--format", "json").stdout.splitlines()[0])
    assert ps["Names"] == "web" and ps["State"] == "running"
    written = list((bob.root / "io.containerd.snapshotter.v1.overlayfs/snapshots").glob("*/fs/root/f"))
    assert len(written) == 1, written
    st = written[0].stat()
    assert (st.st_uid, st.st_gid) == (bob.uid, bob.gid)
    assert bob.ctrstore("exec", "web", "cat", "/root/f").stdout == "written\n"
    bob.ctrstore("stop", "-t", "1", "web")
    bob.ctrstore("rm", "web")
    assert bob.ctrstore("ps", "-a", "-q").stdout.strip() == ""
    bob.ctrstore("rmi", ref)
    r = bob.ctrstore("gc")
    assert "single id" not in r.stderr  # no warning on every command
    assert list((bob.root / "io.containerd.snapshotter.v1.overlayfs/snapshots").iterdir()) == []
    assert list((bob.root / "io.containerd.content.v1.content/blobs/sha256").iterdir()) == []


def test_unpack_records_the_owners_of_a_root_pull(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], tmp_path: Path
) -> None:
    _, bob = rootless_users
    ref = rootless_images["kinds"]
    with Client(root=tmp_path / "root", state=tmp_path / "state") as c:
        c.pull(ref)
    bob.ctrstore("rmi", rootless_images["busybox"], check=False)  # only this image's layers
    bob.ctrstore("gc")
    bob.ctrstore("pull", "-q", ref)

    def layers(sn: Path) -> list[dict[str, tuple[str, int, int, int, int, int]]]:
        trees = [_tree(d / "fs") for d in (sn / "snapshots").iterdir() if (d / "fs").is_dir()]
        return sorted(trees, key=lambda t: sorted(t))

    roots = layers(tmp_path / "root/io.containerd.snapshotter.v1.overlayfs")
    got = layers(bob.root / "io.containerd.snapshotter.v1.overlayfs")
    # Every entry is bob's on disk.
    assert {(v[2], v[3]) for t in got for v in t.values()} == {(bob.uid, bob.gid)}
    # The xattr records what a root pull has on disk, for everything that can carry a user.*
    # xattr; symlinks and whiteout devices cannot (the kernel refuses), as with umoci.
    expected = [
        {
            p: (kind, mode, u, g) if kind in ("file", "dir") else (kind, mode)
            for p, (kind, mode, u, g, _, _) in tree.items()
            if kind not in ("char", "block")  # device nodes are skipped rootless
        }
        for tree in roots
    ]
    recorded = [
        {
            p: (kind, mode, ru, rg) if kind in ("file", "dir") else (kind, mode)
            for p, (kind, mode, _, _, ru, rg) in tree.items()
        }
        for tree in got
    ]
    assert recorded == expected
    assert any(v[4:] == (1000, 1000) for t in got for v in t.values())  # the image's uid 1000
    bob.ctrstore("rmi", ref)
    bob.ctrstore("gc")


def _layer_with(blobs: Path, name: str) -> list[tarfile.TarInfo]:
    """The members of the one layer blob in ``blobs`` that has member ``name``."""
    found = []
    for b in blobs.iterdir():
        try:
            with tarfile.open(b) as tf:
                members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError):
            continue
        if any(m.name == name for m in members):
            found.append(members)
    assert len(found) == 1, [b.name for b in blobs.iterdir()]
    return found[0]


def test_commit_writes_the_recorded_owners(
    rootless_users: tuple[User, User], singleid_images: dict[str, str]
) -> None:
    _, bob = rootless_users
    ref = singleid_images["owned"]
    bob.ctrstore("pull", "-q", ref)
    app = next((bob.root / "io.containerd.snapshotter.v1.overlayfs/snapshots").glob("*/fs/srv/app"))
    st = app.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (bob.uid, bob.gid, 0o4755)
    assert _recorded(app) == (1000, 50)

    # Copied up, the files keep their xattr; a new file is root's.
    cmd = "echo more >> /srv/data && mkdir /srv/new && ls -ln /srv/app"
    r = bob.ctrstore("run", "--name", "c", "--network", "none", ref, "sh", "-c", cmd)
    assert r.stdout.split()[2:4] == ["0", "0"], r.stdout  # inside, everything is root's
    committed = ref.rsplit(":", 1)[0] + ":committed"
    bob.ctrstore("commit", "c", committed)
    members = {
        m.name: m for m in _layer_with(bob.root / "io.containerd.content.v1.content/blobs/sha256", "srv/new")
    }
    assert (members["srv"].uid, members["srv"].gid) == (1000, 1000)
    assert (members["srv/data"].uid, members["srv/data"].gid) == (0, 50)
    assert (members["srv/new"].uid, members["srv/new"].gid) == (0, 0)
    assert not [m.name for m in members.values() if f"SCHILY.xattr.{XATTR}" in m.pax_headers]
    # Unpacked again (the committed image's layer is a layer like any other), the same owners.
    bob.ctrstore("rm", "c")
    r = bob.ctrstore("run", "--rm", "--network", "none", committed, "cat", "/srv/data")
    assert r.stdout == "data\nmore\n"
    bob.ctrstore("rmi", ref, committed)
    bob.ctrstore("gc")


def _cp_out_owners(u: User, src: str) -> dict[str, str]:
    """path -> "uid/gid" of the tar ``cp SRC -`` writes (read by GNU tar, numerically)."""
    cp = f"{u.env['CTRSTORE_PYTHON']} -m ctrstore cp {src} -"
    r = u.run("bash", "-c", f"set -o pipefail; {cp} | tar --numeric-owner -tvf -")
    return {line.split()[-1]: line.split()[1] for line in r.stdout.splitlines()}


def test_cp_carries_the_recorded_owners(
    rootless_users: tuple[User, User], singleid_images: dict[str, str]
) -> None:
    """``cp`` out as a tar gives the image's owners (the xattr's), as commit does; ``cp -a``
    in records a tar's owners in the xattr (nothing but 0 can be chowned to there)."""
    _, bob = rootless_users
    ref = singleid_images["owned"]
    bob.ctrstore("run", "-d", "--name", "cpc", "--network", "none", ref, "sh", "-c", "sleep 300")
    try:
        owners = _cp_out_owners(bob, "cpc:/srv")
        assert owners["srv/"] == "1000/1000" and owners["srv/app"] == "1000/50", owners
        assert owners["srv/data"] == "0/50", owners

        made = bob.home / "in.tar"
        with tarfile.open(made, "w") as t:
            info = tarfile.TarInfo("owned-in")
            info.uid, info.gid, info.size = 1000, 1000, 3
            t.addfile(info, io.BytesIO(b"in\n"))
        os.chmod(made, 0o644)
        bob.run("sh", "-c", f"{bob.env['CTRSTORE_PYTHON']} -m ctrstore cp -a - cpc:/tmp < {made}")
        inside = bob.ctrstore("exec", "cpc", "ls", "-ln", "/tmp/owned-in").stdout.split()
        assert inside[2:4] == ["0", "0"]  # in a single-id namespace every file is root's
        assert _cp_out_owners(bob, "cpc:/tmp/owned-in") == {"owned-in": "1000/1000"}
    finally:
        bob.ctrstore("rm", "-f", "cpc", check=False)
    bob.ctrstore("rmi", ref, check=False)


def test_non_root_process_is_a_clear_error(
    rootless_users: tuple[User, User], singleid_images: dict[str, str]
) -> None:
    _, bob = rootless_users
    for args in (
        ["--network", "none", "-u", "1000", singleid_images["owned"], "true"],
        ["--network", "none", singleid_images["user"]],
    ):
        r = bob.ctrstore("run", "--rm", *args, check=False)
        assert r.returncode == 125, r.stdout + r.stderr  # docker's "the run failed"
        assert "user 1000 cannot run with a single id" in r.stderr
        assert "add subordinate ids" in r.stderr
        assert "Traceback" not in r.stderr
    assert bob.ctrstore("ps", "-a", "-q").stdout.strip() == ""
    # exec -u into a running container: the same check (runc would fail less clearly).
    bob.ctrstore(
        "run", "-d", "--name", "ex", "--network", "none", singleid_images["owned"], "sh", "-c", "sleep 300"
    )
    try:
        r = bob.ctrstore("exec", "-u", "1000", "ex", "id", "-u", check=False)
        assert r.returncode != 0 and "user 1000 cannot run with a single id" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert bob.ctrstore("exec", "-u", "0", "ex", "id", "-u").stdout == "0\n"
    finally:
        bob.ctrstore("rm", "-f", "ex", check=False)
    bob.ctrstore("rmi", singleid_images["owned"], singleid_images["user"])
    bob.ctrstore("gc")


def test_single_id_option_with_a_subids_namespace(rootless_users: tuple[User, User]) -> None:
    alice, _ = rootless_users
    alice.ctrstore("images")  # her namespace (subids) runs
    pid = alice.pause_pid
    r = alice.ctrstore("--single-id", "images", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"the user namespace of pause process {pid} maps your subordinate ids" in r.stderr
    assert "--single-id (or CTRSTORE_SINGLE_ID=1) asks for a single-id namespace" in r.stderr
    assert f"stop it first (kill {pid};" in r.stderr
    assert "Traceback" not in r.stderr

    # Asked for with no namespace running, it is made; the store says once that what it
    # unpacked before keeps its ownership, and again when the subids come back.
    alice.drop_namespace()
    r = alice.ctrstore("--single-id", "images")
    assert "the store runs with a single id (0 -> you only): as asked (--single-id" in r.stderr, r.stderr
    assert "this store was unpacked with subordinate ids" in r.stderr
    assert "ctrstore system prune -a" in r.stderr
    r = alice.ctrstore("--single-id", "images")
    assert "single id" not in r.stderr and "unpacked with" not in r.stderr
    alice.drop_namespace()
    r = alice.ctrstore("images")
    assert "this store was unpacked with a single id" in r.stderr
    uid_map = alice.ctrstore("unshare", "cat", "/proc/self/uid_map").stdout.split()
    assert len(uid_map) == 6
