"""Rootless ctrstore (issue 13): an ordinary user, made by these tests, pulls, unpacks and runs
containers in a user namespace of their own (0 → the user, 1..N → subordinate ids).

The tests add two users (one with subids in /etc/subuid and /etc/subgid, one without), run
the CLI as them with Debian's ``/usr/bin/python3`` in a venv under a shared temp dir (the
project's interpreter lives under /root, which they cannot read; the venv imports ctrstore
from this checkout through a ``.pth`` file), and remove them again afterwards, restoring
/etc/subuid and /etc/subgid byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from ctrstore import Client
from tests.support.registry import free_port
from tests.support.rootless import (
    ROOTLESS_MARKS,
    SUBID_COUNT,
    TUN,
    User,
    live_processes,
    nsfs_mounts,
    try_get,
)

pytestmark = ROOTLESS_MARKS


def _tree(top: Path) -> dict[str, tuple[str, int, int, int, str]]:
    """path -> (kind, mode, uid, gid, content or link) of every entry under ``top``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in [*dirnames, *filenames]:
            p = Path(dirpath) / n
            st = p.lstat()
            kind = {0o040000: "dir", 0o100000: "file", 0o120000: "link", 0o020000: "char"}.get(
                st.st_mode & 0o170000, "other"
            )
            data = os.readlink(p) if kind == "link" else (p.read_bytes().hex() if kind == "file" else "")
            if kind == "char":
                data = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            out[str(p.relative_to(top))] = (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, data)
    return out


def _layer_trees(sn_root: Path) -> list[dict[str, tuple[str, int, int, int, str]]]:
    """The trees of every snapshot of an overlay snapshotter, in a stable order."""
    trees = [_tree(d / "fs") for d in (sn_root / "snapshots").iterdir() if (d / "fs").is_dir()]
    return sorted(trees, key=lambda t: sorted(t))


def test_unshare_runs_as_root_in_the_users_namespace(rootless_users: tuple[User, User]) -> None:
    alice, _ = rootless_users
    assert alice.ctrstore("unshare", "id", "-u").stdout.strip() == "0"
    uid_map = alice.ctrstore("unshare", "cat", "/proc/self/uid_map").stdout.split()
    assert uid_map == ["0", str(alice.uid), "1", "1", str(alice.subuid), str(SUBID_COUNT)]
    # The namespace is kept by one pause process: a second command joins the same one.
    pid = alice.pause_pid
    ns = os.readlink(f"/proc/{pid}/ns/user")
    assert alice.ctrstore("unshare", "readlink", "/proc/self/ns/user").stdout.strip() == ns


def test_no_subids_is_single_id_mode(rootless_users: tuple[User, User]) -> None:
    """A user with no subids gets a single-id namespace (test_rootless_singleid.py) and a
    warning saying which line to add."""
    _, bob = rootless_users
    r = bob.ctrstore("unshare", "cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", str(bob.uid), "1"]
    if "single id" in r.stderr:  # (only where this command made the namespace)
        assert f"add '{bob.name}:100000:65536' to /etc/subuid" in r.stderr


def test_seed_walk_rootless(rootless_users: tuple[User, User], rootless_images: dict[str, str]) -> None:
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    plugins = alice.ctrstore("plugin", "ls").stdout
    assert any(
        "overlayfs" in line and "ok: rootless" in line and "userxattr" in line
        for line in plugins.splitlines()
    ), plugins

    r = alice.ctrstore("run", "--rm", ref, "sh", "-c", "id -u; cat /data/hello.txt")
    assert r.stdout.splitlines() == ["0", "hello from a ctrstore image"]
    # The default network is slirp4netns where the user can open /dev/net/tun; else loopback only.
    if _tun_mode() & 0o006 != 0o006:
        assert "default bridge network needs root and /dev/net/tun is not usable" in r.stderr

    alice.ctrstore(
        "run", "-d", "--name", "web", ref, "sh", "-c", "echo started; echo written > /root/f; sleep 300"
    )
    deadline = time.monotonic() + 20
    while "started" not in alice.ctrstore("logs", "web").stdout:
        assert time.monotonic() < deadline, "the container wrote no log line"
        time.sleep(0.2)
    ps = json.loads(alice.ctrstore("ps", "--format", "json").stdout.splitlines()[0])
    assert ps["Names"] == "web" and ps["State"] == "running"
    written = [
        p for p in (alice.root / "io.containerd.snapshotter.v1.overlayfs/snapshots").glob("*/fs/root/f")
    ]
    assert len(written) == 1, written
    st = written[0].stat()
    assert (st.st_uid, st.st_gid) == (alice.uid, alice.gid)  # the container's root is alice on disk
    assert written[0].read_text() == "written\n"

    assert alice.ctrstore("exec", "web", "cat", "/root/f").stdout == "written\n"
    (alice.home / "in.txt").write_text("copied in\n")
    alice.ctrstore("cp", str(alice.home / "in.txt"), "web:/tmp/")
    committed = ref.rsplit(":", 1)[0] + ":committed"
    alice.ctrstore("commit", "web", committed)
    r = alice.ctrstore("run", "--rm", "--network", "none", committed, "cat", "/root/f", "/tmp/in.txt")
    assert r.stdout == "written\ncopied in\n"

    alice.ctrstore("stop", "-t", "1", "web")
    alice.ctrstore("rm", "web")
    assert alice.ctrstore("ps", "-a", "-q").stdout.strip() == ""
    alice.ctrstore("rmi", ref, committed)
    alice.ctrstore("gc")
    assert list((alice.root / "io.containerd.snapshotter.v1.overlayfs/snapshots").iterdir()) == []
    assert list((alice.root / "io.containerd.content.v1.content/blobs/sha256").iterdir()) == []


def test_network_modes_and_limits_rootless(
    rootless_users: tuple[User, User], rootless_images: dict[str, str]
) -> None:
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    r = alice.ctrstore(
        "run",
        "--rm",
        "--network",
        "host",
        "-m",
        "64m",
        ref,
        "sh",
        "-c",
        "ls /sys/class >/dev/null && echo ok",
    )
    assert r.stdout.strip() == "ok"
    assert "resource limits (memory) cannot apply" in r.stderr
    assert alice.ctrstore("run", "--rm", "--network", "none", ref, "true").returncode == 0
    r = alice.ctrstore("run", "--rm", "--network", "mynet", ref, "true", check=False)
    assert r.returncode != 0 and "network mynet needs root (CNI)" in r.stderr, r.stderr


def test_unpack_is_a_root_pull_shifted(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], tmp_path: Path
) -> None:
    alice, _ = rootless_users
    ref = rootless_images["kinds"]
    with Client(root=tmp_path / "root", state=tmp_path / "state") as c:
        c.pull(ref)
    alice.ctrstore("rmi", rootless_images["busybox"], check=False)  # only this image's layers in the store
    alice.ctrstore("gc")
    alice.ctrstore("pull", "-q", ref)
    assert alice.subuid is not None

    def shift(i: int, own: int) -> int:
        return own if i == 0 else alice.subuid + i - 1  # type: ignore[operator]

    expected = [
        {
            p: (kind, mode, shift(u, alice.uid), shift(g, alice.gid), data)
            for p, (kind, mode, u, g, data) in tree.items()
            # Device nodes cannot be made in a user namespace and are skipped (as podman and
            # containerd do); whiteouts (0:0 character devices) can, and are there.
            if kind != "char" or data == "0:0"
        }
        for tree in _layer_trees(tmp_path / "root/io.containerd.snapshotter.v1.overlayfs")
    ]
    got = _layer_trees(alice.root / "io.containerd.snapshotter.v1.overlayfs")
    assert got == sorted(expected, key=lambda t: sorted(t))
    assert any(v[2] == alice.subuid + 999 for t in got for v in t.values())  # image uid 1000
    snapshots = alice.root / "io.containerd.snapshotter.v1.overlayfs/snapshots"
    opaque = [d / "fs/opaque" for d in snapshots.iterdir()]
    marked = [p for p in opaque if p.is_dir() and "user.overlay.opaque" in os.listxattr(p)]
    assert len(marked) == 1


def test_nothing_outside_the_users_dirs_changed(
    rootless_users: tuple[User, User], rootless_dir: Path
) -> None:
    """Every file the user (or its subordinate ids) owns is in its home, its state dir or the
    shared test dir; root's default store was not touched by them."""
    alice, _ = rootless_users
    assert alice.subuid is not None
    ids = {alice.uid, *range(alice.subuid, alice.subuid + SUBID_COUNT)}
    tops = [
        p for p in ("/tmp", "/var", "/run", "/etc", "/home", "/dev/shm", "/opt", "/srv") if Path(p).exists()
    ]
    r = subprocess.run(
        ["find", *tops, "-xdev", "-printf", "%U\t%p\n"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    allowed = (str(alice.home), str(alice.state), str(rootless_dir))
    stray = []
    for line in r.stdout.splitlines():
        uid_s, _, path = line.partition("\t")
        if uid_s.isdigit() and int(uid_s) in ids and not path.startswith(allowed):
            stray.append(path)
    assert stray == []


def _tun_mode() -> int:
    try:
        return TUN.stat().st_mode & 0o7777
    except OSError:
        return 0


HTTPD = "mkdir -p /www && echo hello-rootless > /www/index.html && exec httpd -f -p 80 -h /www"


def test_slirp4netns_network_and_published_port(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], tun_for_users: None
) -> None:
    """The default network of a rootless container is slirp4netns: tap0 with 10.0.2.100, slirp's
    DNS in resolv.conf, ``-p`` forwarded by slirp4netns to 127.0.0.1 of the host; stop tears it
    all down (slirp4netns killed, the namespace unmounted)."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    port = free_port()
    alice.ctrstore("run", "-d", "--name", "web", "-p", f"{port}:80", ref, "sh", "-c", HTTPD)
    deadline = time.monotonic() + 30
    while (body := try_get(port)) is None:
        assert time.monotonic() < deadline, alice.ctrstore("logs", "web", check=False)
        time.sleep(0.3)
    assert body == "hello-rootless\n"

    addr = alice.ctrstore("exec", "web", "busybox", "ip", "-4", "addr", "show", "tap0").stdout
    assert "inet 10.0.2.100/24" in addr, addr
    assert "nameserver 10.0.2.3" in alice.ctrstore("exec", "web", "cat", "/etc/resolv.conf").stdout
    hosts = alice.ctrstore("exec", "web", "cat", "/etc/hosts").stdout
    assert any(line.startswith("10.0.2.100\t") for line in hosts.splitlines()), hosts
    assert f"80/tcp -> 0.0.0.0:{port}" in alice.ctrstore("port", "web").stdout
    inspect = json.loads(alice.ctrstore("inspect", "web").stdout)[0]
    assert inspect["NetworkSettings"]["IPAddress"] == "10.0.2.100"

    pause = alice.pause_pid
    slirps = live_processes(alice.uid, "slirp4netns")
    assert len(slirps) == 1, slirps
    assert len(nsfs_mounts(pause)) == 1, nsfs_mounts(pause)

    alice.ctrstore("stop", "-t", "1", "web")
    # The shim's final-exit teardown: slirp4netns killed, the namespace unmounted.
    deadline = time.monotonic() + 10
    while live_processes(alice.uid, "slirp4netns") or nsfs_mounts(pause):
        assert time.monotonic() < deadline, (live_processes(alice.uid, "slirp4netns"), nsfs_mounts(pause))
        time.sleep(0.1)
    assert try_get(port) is None
    alice.ctrstore("rm", "web")
    assert live_processes(alice.uid, "slirp4netns") == [] and nsfs_mounts(pause) == []
    assert list(alice.root.rglob("network.json")) == []


def test_slirp4netns_rm_force_tears_down(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], tun_for_users: None
) -> None:
    """``check`` finds a slirp4netns that died; ``rm -f`` of the running container leaves no
    slirp4netns and no namespace mount."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    pause = alice.pause_pid
    alice.ctrstore("run", "-d", "--name", "a", ref, "sleep", "300")
    assert alice.ctrstore("check").returncode == 0
    [pid] = live_processes(alice.uid, "slirp4netns")
    # slirp4netns killed under the container: check says so, rm -f still cleans up.
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while live_processes(alice.uid, "slirp4netns"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = alice.ctrstore("check", check=False)
    assert f"slirp4netns (pid {pid}) is not running" in r.stdout + r.stderr, r.stdout + r.stderr
    alice.ctrstore("rm", "-f", "a")
    assert live_processes(alice.uid, "slirp4netns") == [] and nsfs_mounts(pause) == []
