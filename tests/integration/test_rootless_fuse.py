"""Rootless overlay through fuse-overlayfs (issue 13): where the kernel's overlay does not mount
in the user namespace (kernel < 5.11), the overlayfs snapshotter's mounts are served by
Debian's ``fuse-overlayfs`` instead (type ``fuse3.fuse-overlayfs``, as containerd's
fuse-overlayfs snapshotter), else the native snapshotter is used.

This machine's kernel mounts overlay with ``userxattr``, so the tests force the FUSE path with
the config's ``mount_program = "fuse-overlayfs"`` (as containers/storage spells it) for a user
made by the session fixtures (``rootless_users``: the first has subordinate ids). fuse-overlayfs
opens /dev/fuse as that user: Debian's udev rules make it 0666, this machine (no udev) has it
0600, so the tests that mount through it make it 0666 for their own run and restore it
(``tests.support.rootless.opened_to_users``), as the slirp4netns tests do with /dev/net/tun.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctrstore import Client
from ctrstore.mount import mountinfo
from tests.support.rootless import ROOTLESS_MARKS, User, live_processes, opened_to_users

FUSE = Path("/dev/fuse")
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"

pytestmark = [
    *ROOTLESS_MARKS,
    pytest.mark.skipif(
        shutil.which("fuse-overlayfs") is None,
        reason="fuse-overlayfs is not installed (Debian's fuse-overlayfs)",
    ),
    pytest.mark.skipif(not FUSE.exists(), reason="/dev/fuse does not exist (no FUSE in this kernel)"),
    pytest.mark.timeout(300),
]


@pytest.fixture
def fuse_for_users() -> Iterator[None]:
    """/dev/fuse usable by ordinary users (0666, Debian's mode) for the test's run: this
    machine has it 0600; the mode is restored afterwards."""
    with opened_to_users(FUSE):
        yield


def _set_config(user: User, text: str) -> None:
    cfg = user.home / ".config/ctrstore"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.toml").write_text(text)
    for p in (user.home / ".config", cfg, cfg / "config.toml"):
        os.chown(p, user.uid, user.gid)


def _mount_program(program: str) -> str:
    return f'[plugins."{OVERLAY}"]\nmount_program = "{program}"\n'


def _empty_store(user: User) -> None:
    """Remove the user's containers and images, and gc: an empty store (other rootless test
    modules share the user)."""
    with opened_to_users(FUSE):  # rm of a container mounted through fuse-overlayfs unmounts it
        for cid in user.ctrstore("ps", "-a", "-q", check=False).stdout.split():
            user.ctrstore("rm", "-f", cid, check=False)
        ids = set(user.ctrstore("images", "-q", check=False).stdout.split())
        if ids:
            user.ctrstore("rmi", "-f", *ids, check=False)
        user.ctrstore("gc", check=False)


@pytest.fixture
def alice(rootless_users: tuple[User, User]) -> Iterator[User]:
    """The user with subids, their store empty, their config forcing fuse-overlayfs;
    afterwards the config is removed and the store emptied again."""
    user = rootless_users[0]
    _set_config(user, _mount_program("fuse-overlayfs"))
    _empty_store(user)
    yield user
    _empty_store(user)
    (user.home / ".config/ctrstore/config.toml").unlink(missing_ok=True)


def _no_fuse_left(uid: int, timeout: float = 10) -> None:
    """Wait (bounded) until no fuse-overlayfs of ``uid`` runs: each ends once its mount goes."""
    deadline = time.monotonic() + timeout
    while live_processes(uid, "fuse-overlayfs"):
        assert time.monotonic() < deadline, (
            f"fuse-overlayfs still running: {live_processes(uid, 'fuse-overlayfs')}"
        )
        time.sleep(0.1)


def _fuse_mounts(user: User) -> list[str]:
    """The fuse-overlayfs mounts in the user's mount namespace (the pause process's)."""
    pid = user.pause_pid
    lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if " - fuse.fuse-overlayfs " in line]


def _overlayfs_status(user: User) -> str:
    out = user.ctrstore("plugin", "ls").stdout
    [line] = [ln for ln in out.splitlines() if "snapshotter" in ln and " overlayfs " in ln]
    return line


WALK = r"""
import json, os, sys
top = sys.argv[1]
out = {}
for d, dirs, files in os.walk(top):
    for n in dirs + files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        kind = {0o040000: "dir", 0o100000: "file", 0o120000: "link", 0o020000: "char"}.get(
            st.st_mode & 0o170000, "other")
        data = ""
        if kind == "link":
            data = os.readlink(p)
        elif kind == "file":
            with open(p, "rb") as f:
                data = f.read().hex()
        elif kind == "char":
            data = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        xattrs = sorted(k for k in os.listxattr(p, follow_symlinks=False) if k.startswith("user."))
        out[os.path.relpath(p, top)] = [kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, data, xattrs]
print(json.dumps(out, sort_keys=True))
"""
"""A tree as ``path -> [kind, mode, uid, gid, content or link target, user.* xattr names]``;
run by the test (root's tree) and by the user inside their namespace (through the FUSE mount)."""


def _walk_here(top: Path) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-c", WALK, str(top)], capture_output=True, text=True, timeout=60, check=True
    )
    return dict(json.loads(r.stdout))


def test_plugin_ls_says_fuse_overlayfs_and_the_seed_walk(
    alice: User, rootless_images: dict[str, str], fuse_for_users: None
) -> None:
    """pull → run (served by a fuse-overlayfs process) → write a file → see it in the upper dir
    → cp, commit → rm (no fuse-overlayfs left) → rmi → gc (nothing left)."""
    ref = rootless_images["busybox"]
    status = _overlayfs_status(alice)
    assert "ok: rootless, fuse-overlayfs: mount_program = 'fuse-overlayfs' in the config" in status, status
    alice.ctrstore("pull", "-q", ref)
    _no_fuse_left(alice.uid)  # the plugin's probe mount is gone with its process

    r = alice.ctrstore("run", "--rm", "--network", "none", ref, "sh", "-c", "id -u; cat /data/hello.txt")
    assert r.stdout.splitlines() == ["0", "hello from a ctrstore image"]
    _no_fuse_left(alice.uid)

    alice.ctrstore(
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "web",
        ref,
        "sh",
        "-c",
        "echo written > /root/f; sleep 300",
    )
    deadline = time.monotonic() + 20
    while alice.ctrstore("exec", "web", "cat", "/root/f", check=False).stdout != "written\n":
        assert time.monotonic() < deadline, "the container wrote no file"
        time.sleep(0.2)
    assert len(live_processes(alice.uid, "fuse-overlayfs")) == 1, live_processes(alice.uid, "fuse-overlayfs")
    [rootfs] = _fuse_mounts(alice)
    assert rootfs.endswith("/rootfs"), rootfs
    written = list((alice.root / OVERLAY / "snapshots").glob("*/fs/root/f"))
    assert len(written) == 1, written
    st = written[0].stat()
    assert (st.st_uid, st.st_gid) == (alice.uid, alice.gid)  # the container's root is alice on disk
    assert written[0].read_text() == "written\n"

    (alice.home / "in.txt").write_text("copied in\n")
    alice.ctrstore("cp", str(alice.home / "in.txt"), "web:/tmp/")
    committed = ref.rsplit(":", 1)[0] + ":fuse-committed"
    alice.ctrstore("commit", "web", committed)
    r = alice.ctrstore("run", "--rm", "--network", "none", committed, "cat", "/root/f", "/tmp/in.txt")
    assert r.stdout == "written\ncopied in\n"

    alice.ctrstore("stop", "-t", "1", "web")
    # A stopped container's files through a temporary mount (tmpmounts), unmounted after.
    alice.ctrstore("cp", "web:/root/f", str(alice.home / "out.txt"))
    assert (alice.home / "out.txt").read_text() == "written\n"
    alice.ctrstore("rm", "web")
    _no_fuse_left(alice.uid)
    assert _fuse_mounts(alice) == []
    assert alice.ctrstore("ps", "-a", "-q").stdout.strip() == ""
    alice.ctrstore("rmi", ref, committed)
    alice.ctrstore("gc")
    assert list((alice.root / OVERLAY / "snapshots").iterdir()) == []
    assert list((alice.root / "io.containerd.content.v1.content/blobs/sha256").iterdir()) == []


def test_killed_and_removed_containers_leave_no_fuse_process(
    alice: User, rootless_images: dict[str, str], fuse_for_users: None
) -> None:
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    for name in ("a", "b"):
        alice.ctrstore("run", "-d", "--network", "none", "--name", name, ref, "sleep", "300")
    assert len(live_processes(alice.uid, "fuse-overlayfs")) == 2, live_processes(alice.uid, "fuse-overlayfs")
    alice.ctrstore("kill", "a")  # SIGKILL: the container ends, its rootfs stays mounted
    deadline = time.monotonic() + 20
    while "running" in alice.ctrstore("ps", "-a", "--filter", "name=a", "--format", "{{.State}}").stdout:
        assert time.monotonic() < deadline, "the killed container still runs"
        time.sleep(0.2)
    alice.ctrstore("rm", "a")
    alice.ctrstore("rm", "-f", "b")  # running
    _no_fuse_left(alice.uid)
    assert _fuse_mounts(alice) == []


def test_stale_fuse_temp_mount_is_swept_by_gc(
    alice: User, rootless_images: dict[str, str], fuse_for_users: None
) -> None:
    """A temporary mount (tmpmounts/ctrstore-mount-<pid>-*) left by a killed command, served
    by fuse-overlayfs: gc unmounts and removes it, and its fuse-overlayfs ends."""
    alice.ctrstore("pull", "-q", rootless_images["busybox"])
    tmp = alice.root / "tmpmounts"
    stale = tmp / "ctrstore-mount-999999999-x"
    lower = alice.home / "lower"
    script = (
        f"mkdir -p {stale} {lower} && echo hi > {lower}/f && "
        f"fuse-overlayfs -o lowerdir={lower} {stale} 2>/dev/null && cat {stale}/f"
    )
    assert alice.ctrstore("unshare", "sh", "-c", script).stdout == "hi\n"
    assert str(stale) in _fuse_mounts(alice)
    assert len(live_processes(alice.uid, "fuse-overlayfs")) == 1
    alice.ctrstore("gc")
    assert _fuse_mounts(alice) == []
    assert not stale.exists()
    _no_fuse_left(alice.uid)


def test_kinds_through_fuse_overlayfs_is_the_root_view(
    alice: User, rootless_images: dict[str, str], fuse_for_users: None, tmp_path: Path
) -> None:
    """The image with every kind of entry, mounted through fuse-overlayfs by the user, is the
    tree a root pull mounts through the kernel's overlay: whiteouts and the opaque directory
    honoured, owners, modes, links, contents and user xattrs alike. Seen inside the user's
    namespace the ids are the image's own (on disk they are shifted: test_rootless checks)."""
    ref = rootless_images["kinds"]
    with Client(root=tmp_path / "root", state=tmp_path / "state") as c:
        c.pull(ref)
        target = tmp_path / "view"
        target.mkdir()
        c.mount_image(ref, target)
        try:
            expected = _walk_here(target)
        finally:
            c.unmount_image(target)
    # Device nodes cannot be made in a user namespace and are skipped (as podman does).
    expected = {p: v for p, v in expected.items() if v[0] != "char"}
    assert "opaque/new" in expected and "opaque/old" not in expected and "gone" not in expected

    alice.ctrstore("pull", "-q", ref)
    view = alice.home / "view"
    view.mkdir()
    os.chown(view, alice.uid, alice.gid)
    alice.ctrstore("images", "mount", ref, str(view))
    try:
        assert len(live_processes(alice.uid, "fuse-overlayfs")) == 1
        walked = alice.ctrstore("unshare", alice.env["CTRSTORE_PYTHON"], "-c", WALK, str(view))
    finally:
        alice.ctrstore("images", "unmount", str(view))
    _no_fuse_left(alice.uid)
    assert json.loads(walked.stdout) == expected


def test_commit_of_deletions_through_fuse_overlayfs(
    alice: User, rootless_images: dict[str, str], fuse_for_users: None
) -> None:
    """A container deletes a file, changes one, empties and refills a directory; its committed
    layer holds exactly the OCI whiteouts for that (``.wh.<name>``, ``.wh..wh..opq``), none of
    fuse-overlayfs's own markers or xattrs, and the committed image runs with the changes."""
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    change = (
        "rm /etc/group && echo changed >> /etc/passwd && "
        "rm -rf /data && mkdir /data && echo new > /data/only && "
        "mkdir /root/sub && echo x > /root/sub/x && rm /root/sub/x && touch /tmp/done"
    )
    alice.ctrstore("run", "-d", "--network", "none", "--name", "ch", ref, "sh", "-c", f"{change}; sleep 300")
    deadline = time.monotonic() + 20
    while alice.ctrstore("exec", "ch", "ls", "/tmp/done", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the container did not make its changes"
        time.sleep(0.2)
    upper = next((alice.root / OVERLAY / "snapshots").glob("*/fs/tmp/done")).parents[1]
    # What fuse-overlayfs wrote unprivileged: a 0:0 device for the deleted file, its own
    # opaque xattr (and marker file) on the refilled directory.
    assert os.major(os.lstat(upper / "etc/group").st_rdev) == 0
    assert "user.fuseoverlayfs.opaque" in os.listxattr(upper / "data")
    assert "user.fuseoverlayfs.origin" in os.listxattr(upper / "etc/passwd")

    blobs = alice.root / "io.containerd.content.v1.content/blobs/sha256"
    before = {p.name for p in blobs.iterdir()}
    committed = ref.rsplit(":", 1)[0] + ":fuse-deleted"
    alice.ctrstore("commit", "ch", committed)
    layers = [p.read_bytes() for p in blobs.iterdir() if p.name not in before]
    [layer] = [b for b in layers if b[:2] == b"\x1f\x8b"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tf:
        entries = tf.getmembers()
    members = {m.name: m for m in entries}
    assert len(members) == len(entries), [m.name for m in entries]  # each name once
    # fuse-overlayfs marks every directory it makes opaque, so the new /root/sub has a marker
    # too (hiding nothing: nothing is below it); the kernel's overlay marks only /data.
    whiteouts = sorted(m.name for m in entries if ".wh." in m.name)
    assert whiteouts == ["data/.wh..wh..opq", "etc/.wh.group", "root/sub/.wh..wh..opq"], sorted(members)
    assert {"etc/passwd", "data", "data/only", "root/sub"} <= set(members), sorted(members)
    for n in whiteouts:
        assert members[n].isfile() and members[n].size == 0 and members[n].mode == 0
    for m in members.values():  # no overlay's or fuse-overlayfs's own xattrs
        assert not [k for k in m.pax_headers if "overlay" in k], (m.name, m.pax_headers)

    alice.ctrstore("rm", "-f", "ch")
    r = alice.ctrstore(
        "run", "--rm", "--network", "none", committed, "sh", "-c", "ls /data /etc; tail -1 /etc/passwd"
    )
    assert r.stdout.split() == [
        "/data:",
        "only",
        "/etc:",
        "hostname",
        "hosts",
        "passwd",
        "resolv.conf",
        "changed",
    ]
    _no_fuse_left(alice.uid)


def test_fuse_overlayfs_forced_but_unusable_falls_back_to_native(
    rootless_users: tuple[User, User], rootless_images: dict[str, str]
) -> None:
    """mount_program naming no program, or fuse-overlayfs with /dev/fuse not usable by the user
    (this machine's 0600): the overlayfs plugin is skipped with the reason, native is used."""
    alice = rootless_users[0]
    try:
        _set_config(alice, _mount_program("/nonexistent/fuse-overlayfs"))
        status = _overlayfs_status(alice)
        assert (
            "skip: rootless: mount_program /nonexistent/fuse-overlayfs does not mount here "
            "(/nonexistent/fuse-overlayfs is not installed); use native" in status
        ), status
        alice.ctrstore("pull", "-q", rootless_images["busybox"])
        assert list((alice.root / "io.containerd.snapshotter.v1.native/snapshots").iterdir())
        r = alice.ctrstore(
            "run", "--rm", "--network", "none", rootless_images["busybox"], "cat", "/data/hello.txt"
        )
        assert r.stdout == "hello from a ctrstore image\n"

        if FUSE.stat().st_mode & 0o006 != 0o006:  # this machine: no udev, /dev/fuse is 0600
            _set_config(alice, _mount_program("fuse-overlayfs"))
            status = _overlayfs_status(alice)
            assert "skip: rootless: mount_program fuse-overlayfs does not mount here (" in status, status
            assert "fuse" in status.split("(", 1)[1] and "; use native" in status, status
            assert live_processes(alice.uid, "fuse-overlayfs") == []
    finally:
        (alice.home / ".config/ctrstore/config.toml").unlink(missing_ok=True)
        alice.ctrstore("rmi", rootless_images["busybox"], check=False)
        alice.ctrstore("gc", check=False)


@pytest.fixture
def store_on_overlay(rootless_users: tuple[User, User], rootless_dir: Path) -> Iterator[Path]:
    """A store root for the user on an overlay mounted here by root: the kernel refuses an
    overlay as an upper dir, so overlay with userxattr does not mount there while
    fuse-overlayfs does (a kernel older than 5.11 the test cannot boot)."""
    alice = rootless_users[0]
    base = Path(tempfile.mkdtemp(prefix="on-overlay-", dir=rootless_dir))
    base.chmod(0o755)
    for sub in ("l", "u", "w", "m"):
        (base / sub).mkdir()
    opts = f"lowerdir={base / 'l'},upperdir={base / 'u'},workdir={base / 'w'}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(base / "m")], check=True, timeout=30)
    store = base / "m/store"
    store.mkdir()
    os.chown(store, alice.uid, alice.gid)
    alice.drop_namespace()  # the next namespace sees the new overlay mount
    try:
        yield store
    finally:
        with opened_to_users(FUSE):
            for cid in alice.ctrstore("--root", str(store), "ps", "-a", "-q", check=False).stdout.split():
                alice.ctrstore("--root", str(store), "rm", "-f", cid, check=False)
        alice.drop_namespace()
        subprocess.run(["umount", "-l", str(base / "m")], timeout=30, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_where_userxattr_does_not_mount_fuse_overlayfs_is_used(
    rootless_users: tuple[User, User],
    rootless_images: dict[str, str],
    store_on_overlay: Path,
    fuse_for_users: None,
) -> None:
    """No mount_program in the config: rootless, the kernel's overlay is tried first; where it
    does not mount (here: the store is on an overlay, which cannot be an upper dir), the
    snapshotter uses fuse-overlayfs and ``plugin ls`` says why."""
    alice = rootless_users[0]
    (alice.home / ".config/ctrstore/config.toml").unlink(missing_ok=True)
    root = ("--root", str(store_on_overlay))
    out = alice.ctrstore(*root, "plugin", "ls").stdout
    [status] = [ln for ln in out.splitlines() if "snapshotter" in ln and " overlayfs " in ln]
    assert "ok: rootless, fuse-overlayfs: overlay with userxattr does not mount here (" in status, status
    ref = rootless_images["busybox"]
    alice.ctrstore(*root, "pull", "-q", ref)
    alice.ctrstore(*root, "run", "-d", "--network", "none", "--name", "f", ref, "sleep", "300")
    assert len(live_processes(alice.uid, "fuse-overlayfs")) == 1
    assert (
        alice.ctrstore(*root, "exec", "f", "cat", "/data/hello.txt").stdout == "hello from a ctrstore image\n"
    )
    alice.ctrstore(*root, "rm", "-f", "f")
    _no_fuse_left(alice.uid)


def test_unmount_falls_back_to_fusermount3(
    rootless_users: tuple[User, User], rootless_dir: Path, fuse_for_users: None
) -> None:
    """A FUSE mount an ordinary user made outside any user namespace (through Debian's setuid
    fusermount3) cannot be removed with umount2 by that user: ``ctrstore.mount.unmount`` uses
    ``fusermount3 -u``, and fuse-overlayfs ends."""
    if shutil.which("fusermount3") is None:
        pytest.skip("fusermount3 is not installed (Debian's fuse3)")
    alice = rootless_users[0]
    base = Path(tempfile.mkdtemp(prefix="fusermount-", dir=rootless_dir))
    try:
        for sub in ("lower", "upper", "work", "merged"):
            (base / sub).mkdir()
        (base / "lower/f").write_text("hi\n")
        subprocess.run(["chown", "-R", f"{alice.uid}:{alice.gid}", str(base)], check=True, timeout=30)
        opts = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}"
        alice.run("fuse-overlayfs", "-o", opts, str(base / "merged"))
        merged = str(base / "merged")
        assert [m.fstype for m in mountinfo() if str(m.mount_point) == merged] == ["fuse.fuse-overlayfs"]
        assert len(live_processes(alice.uid, "fuse-overlayfs")) == 1
        code = "import sys; from ctrstore.mount import unmount; unmount(sys.argv[1])"
        alice.run(alice.env["CTRSTORE_PYTHON"], "-c", code, str(base / "merged"))
        assert [m for m in mountinfo() if str(m.mount_point) == merged] == []
        _no_fuse_left(alice.uid)
    finally:
        subprocess.run(["umount", "-l", str(base / "merged")], capture_output=True, timeout=30, check=False)
        shutil.rmtree(base, ignore_errors=True)
