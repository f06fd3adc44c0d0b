"""Real containers through the Python API (``Client.containers``), run by runc.

The first test is the seed's walk-through, step by step: build a busybox image, create and
start a detached ``sleep``, find the rootfs overlay in ``/proc/self/mountinfo`` (lowerdir = the
image's layer snapshots' ``fs`` dirs newest first, upperdir = the container snapshot's ``fs``),
``exec`` a write to ``/root/hello``, find the file in that ``fs`` on the host, delete the
container and then the image, and check that nothing is left. The others cover what ``run``
users rely on: exit statuses, env/workdir/user, read-only rootfs, bind mounts, networking,
logs, stop/kill/wait, commit, failures that must leave nothing behind, a killed shim or a
reboot, runc's errors, the runtime plugin, and names. (Several processes at once:
``test_run_concurrent.py``.)

Every container is removed by the ``rt`` fixture's teardown, even when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.cli._run_flags import parse_volume
from ctrstore.client.commit import commit_container
from ctrstore.client.containers import ContainerManager, new_id_and_name
from ctrstore.content import Descriptor
from ctrstore.diff import overlay_upper
from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from ctrstore.images import manifest_for, read_json
from ctrstore.labels import CONTAINER_NAME as NAME_LABEL
from ctrstore.metadata.images import Image, ImageStore
from ctrstore.mount import mountinfo, unmount
from ctrstore.oci import SpecOptions
from ctrstore.plugins.snapshots import host_platform
from tests.support.cli import run as cli
from tests.support.images import busybox_image

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

IMAGE = "localhost/busybox:latest"
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"
TASKS = "io.containerd.runtime.v2.task"


def new_id(prefix: str = "ctr") -> str:
    """Unique ids: cgroups (``/<ns>/<id>``) are shared by every store on this machine."""
    return f"{prefix}-{secrets.token_hex(4)}"


def our_mounts(client: Client) -> list[str]:
    roots = (str(client.root), str(client.state))
    return [str(m.mount_point) for m in mountinfo() if str(m.mount_point).startswith(roots)]


def cgroup_dirs(cid: str, namespace: str = "default") -> list[Path]:
    return [
        Path(f"{m.mount_point}/{namespace}/{cid}")
        for m in mountinfo()
        if m.fstype in ("cgroup", "cgroup2") and Path(f"{m.mount_point}/{namespace}/{cid}").exists()
    ]


@pytest.fixture
def rt(client: Client) -> Iterator[Client]:
    """A client whose store holds the busybox image; its containers are removed afterwards
    (and anything still mounted under the store unmounted), whatever happened."""
    busybox_image(client.content, client.images, IMAGE)
    yield client
    mgr = client.containers
    for c in mgr.store.list():
        with suppress(Exception):
            mgr.delete(c.id, force=True)
    for m in sorted(our_mounts(client), key=len, reverse=True):
        with suppress(Exception):
            unmount(m)


def assert_gone(client: Client, cid: str) -> None:
    """Nothing of container ``cid`` is left: record, task, mount, bundle, snapshot, cgroups."""
    mgr = client.containers
    with pytest.raises(NotFound):
        mgr.store.get(cid)
    assert not mgr.bundle(cid).exists()
    assert not mgr.work(cid).exists()
    assert cid not in [i.name for i in client.snapshotter().walk()]
    assert mgr.runc().state(cid) is None
    assert [m for m in our_mounts(client) if m.startswith(str(mgr.bundle(cid)))] == []
    assert cgroup_dirs(cid) == []


def dead(pid: int) -> bool:
    """Gone, or a zombie (reaped by its new parent, not us)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def wait_dead(*pids: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not all(dead(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_detached(client: Client, opts: SpecOptions, *, timeout: float = 20) -> tuple[int, str]:
    """Create, start, wait for, read the log of and remove a container."""
    mgr = client.containers
    cid = new_id()
    mgr.create(cid, IMAGE, opts)
    try:
        mgr.start(cid)
        status = mgr.wait(cid, timeout)
        out = b"".join(mgr.logs(cid)).decode()
    finally:
        mgr.delete(cid, force=True)
    assert_gone(client, cid)
    return status, out


def run_attached(
    client: Client, capfd: pytest.CaptureFixture[str], opts: SpecOptions, image: str = IMAGE
) -> tuple[int, str]:
    """Create, run attached (runc run on our stdio), and remove a container; its exit
    status and what it printed."""
    mgr = client.containers
    cid = new_id()
    mgr.create(cid, image, opts)
    capfd.readouterr()
    try:
        status = mgr.run_attached(cid)
        out = capfd.readouterr()
    finally:
        mgr.delete(cid, force=True)
    assert_gone(client, cid)
    assert status is not None
    return status, out.out + out.err


def fs_of(client: Client, key: str) -> Path:
    """The overlay snapshotter's ``snapshots/<N>/fs`` of snapshot ``key``."""
    sn = client.snapshotter()
    backend = sn.backend
    with backend.ms.transaction(False) as cur:  # type: ignore[attr-defined]
        ids = {k: i for i, k in backend.ms.id_map(cur).items()}  # type: ignore[attr-defined]
    found: Path = client.root / OVERLAY / "snapshots" / ids[sn.backend_key(key)] / "fs"
    return found


def overlay_options(options: str | tuple[str, ...]) -> dict[str, str]:
    items = options.split(",") if isinstance(options, str) else list(options)
    return dict(o.split("=", 1) for o in items if "=" in o)


# ---------------------------------------------------------------------------------------------
# The seed's walk-through


def test_seed_walkthrough(rt: Client) -> None:
    c, mgr = rt, rt.containers
    sn = c.snapshotter()
    cid = new_id("redis")

    # run -d: a new active snapshot on top of the image's chain, a bundle, a running task.
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    st = mgr.start(cid)
    assert st.status == "running" and st.pid > 0
    bundle = c.state / TASKS / "default" / cid
    assert mgr.bundle(cid) == bundle
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["sleep", "1000"]
    assert (bundle / "work").resolve() == c.root / TASKS / "default" / cid

    # The image's snapshots, topmost first, then the container's: 3 layers -> 1, 2, 3; it is 4.
    chain = []
    key = sn.stat(cid).parent
    while key:
        chain.append(key)
        key = sn.stat(key).parent
    assert len(chain) == 3
    lowers = [fs_of(c, k) for k in chain]
    upper = fs_of(c, cid)
    assert [p.parent.name for p in lowers] == ["3", "2", "1"] and upper.parent.name == "4"
    assert (lowers[0] / "data" / "hello.txt").is_file()  # layer 3: data
    assert (lowers[1] / "etc" / "passwd").is_file()  # layer 2: /etc
    assert (lowers[2] / "bin" / "busybox").is_file()  # layer 1: busybox

    # mount | grep: overlay on <state>/io.containerd.runtime.v2.task/default/<id>/rootfs
    rootfs = bundle / "rootfs"
    [mi] = [m for m in mountinfo() if m.mount_point == rootfs]
    assert mi.fstype == "overlay"
    opts = overlay_options(mi.super_options)
    assert opts["lowerdir"].split(":") == [str(p) for p in lowers]
    assert opts["upperdir"] == str(upper)
    assert opts["workdir"] == str(upper.parent / "work")
    # ... which is what the snapshotter hands out for the container's snapshot.
    [m] = sn.mounts(cid)
    assert m.type == "overlay"
    assert {k: overlay_options(m.options)[k] for k in ("lowerdir", "upperdir", "workdir")} == {
        k: opts[k] for k in ("lowerdir", "upperdir", "workdir")
    }
    assert {"bin", "data", "dev", "etc", "proc", "root", "sys", "tmp"} <= set(os.listdir(rootfs))

    # exec ... echo hello > /root/hello: the file lands in the container snapshot's fs.
    assert mgr.exec(cid, ["sh", "-c", "echo hello > /root/hello"]) == 0
    assert (upper / "root" / "hello").read_text() == "hello\n"
    assert (rootfs / "root" / "hello").read_text() == "hello\n"
    assert not any((p / "root" / "hello").exists() for p in lowers)
    assert mgr.status(cid).status == "running"

    # delete --force: nothing mounted, no snapshot, bundle, record, task, cgroup, shim.
    shim = int((bundle / "shim.pid").read_text())
    mgr.delete(cid, force=True)
    assert_gone(c, cid)
    assert our_mounts(c) == []
    assert not upper.parent.exists()
    assert wait_dead(shim)
    assert [i.name for i in sn.walk()] == sorted(chain)  # the image's layers stay

    # images rm + gc: no snapshots, no blobs.
    c.images.delete(IMAGE)
    c.gc()
    assert list(sn.walk()) == []
    assert os.listdir(c.root / OVERLAY / "snapshots") == []
    blobs = c.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    assert not blobs.exists() or os.listdir(blobs) == []


# ---------------------------------------------------------------------------------------------
# Processes: exit status, env, workdir, user, rootfs, mounts, network


def test_attached_exit_status(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    assert run_attached(rt, capfd, SpecOptions(args=["sh", "-c", "echo out; echo err >&2; exit 7"])) == (
        7,
        "out\nerr\n",
    )
    assert run_attached(rt, capfd, SpecOptions(args=["true"]))[0] == 0


def test_attached_status_is_recorded(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", "exit 3"]))
    assert mgr.status(cid).status == "created"
    assert mgr.run_attached(cid) == 3
    st = mgr.status(cid)
    assert (st.status, st.exit_status) == ("exited", 3) and st.exited_at  # docker's word (#12)
    assert mgr.wait(cid, 5) == 3
    assert mgr.run_attached(cid) == 3  # again: a stopped container can run again
    mgr.delete(cid)
    assert_gone(rt, cid)


def test_env_merge_and_workdir(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    opts = SpecOptions(
        args=["sh", "-c", 'echo "$FOO|$PATH|$HOSTNAME"; pwd'],
        env=["FOO=bar", "PATH=/bin:/sbin"],
        cwd="/data",
        hostname="box",
    )
    assert run_attached(rt, capfd, opts) == (0, "bar|/bin:/sbin|box\n/data\n")
    # Without overrides: the image's PATH, cwd /, hostname = the first 12 characters of the id.
    status, out = run_attached(rt, capfd, SpecOptions(args=["sh", "-c", 'echo "$PATH"; pwd; hostname']))
    path, cwd, hostname = out.splitlines()
    assert (status, path, cwd) == (0, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "/")
    assert hostname.startswith("ctr-") and len(hostname) == 12


def test_user(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    assert run_attached(rt, capfd, SpecOptions(args=["sh", "-c", "id -u; id -g"], user="nobody")) == (
        0,
        "65534\n65534\n",
    )
    assert run_attached(rt, capfd, SpecOptions(args=["id", "-u"], user="1234"))[1] == "1234\n"
    assert run_attached(rt, capfd, SpecOptions(args=["id", "-u"]))[1] == "0\n"
    with pytest.raises(NotFound):
        rt.containers.create(new_id(), IMAGE, SpecOptions(args=["true"], user="nosuchuser"))
    assert our_mounts(rt) == [] and [c.id for c in rt.containers.store.list()] == []


def test_read_only_rootfs(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    status, out = run_attached(
        rt, capfd, SpecOptions(args=["sh", "-c", "cat /data/hello.txt; touch /x"], read_only=True)
    )
    assert status != 0
    assert out.startswith("hello from a ctrstore image\n") and "Read-only file system" in out
    # /tmp is part of the rootfs here (no tmpfs): read-only too; a writable rootfs is writable.
    assert run_attached(rt, capfd, SpecOptions(args=["touch", "/x"]))[0] == 0


def test_bind_mounts(rt: Client, capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    host = tmp_path / "vol"
    host.mkdir()
    (host / "in.txt").write_text("from the host\n")
    opts = SpecOptions(
        args=["sh", "-c", "cat /mnt/v/in.txt; echo from the container > /mnt/v/out.txt"],
        mounts=[parse_volume(f"{host}:/mnt/v")],
    )
    assert run_attached(rt, capfd, opts) == (0, "from the host\n")
    assert (host / "out.txt").read_text() == "from the container\n"
    ro = SpecOptions(
        args=["sh", "-c", "cat /mnt/v/in.txt; touch /mnt/v/x"], mounts=[parse_volume(f"{host}:/mnt/v:ro")]
    )
    status, out = run_attached(rt, capfd, ro)
    assert status != 0 and "Read-only file system" in out and not (host / "x").exists()


def _interfaces(text: str) -> set[str]:
    return {line.split(":")[0].strip() for line in text.splitlines()[2:] if ":" in line}


def test_network_none_vs_host(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    for net in ("none", "private"):
        status, out = run_attached(rt, capfd, SpecOptions(args=["cat", "/proc/net/dev"], net=net))
        assert status == 0 and _interfaces(out) == {"lo"}, out
    # The host's interfaces, read before and after: other processes (network tests) may add or
    # remove veths meanwhile, so the container sees every one that stayed, and none that
    # existed at neither moment.
    before = _interfaces(Path("/proc/net/dev").read_text())
    status, out = run_attached(rt, capfd, SpecOptions(args=["cat", "/proc/net/dev"], net="host"))
    after = _interfaces(Path("/proc/net/dev").read_text())
    assert status == 0 and before & after <= _interfaces(out) <= before | after, out


# ---------------------------------------------------------------------------------------------
# Detached tasks: logs, stop, kill, wait, exec, restart


def test_logs_of_detached_container(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", "echo out; echo err >&2; exit 4"]))
    mgr.start(cid)
    assert mgr.wait(cid, 20) == 4
    entries = list(mgr.log_entries(cid))
    # Each line with its stream (stdout and stderr are two pipes: their order is not kept),
    # and no runc chatter in the container's log.
    assert sorted((e.stream, e.data) for e in entries) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    assert all(e.time_ns > 0 for e in entries)
    mgr.delete(cid)
    assert_gone(rt, cid)


def test_logs_follow(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"]))
    mgr.start(cid)
    t = time.monotonic()
    assert b"".join(mgr.logs(cid, follow=True)) == b"1\n2\n3\n"
    assert 0.3 < time.monotonic() - t < 10
    assert mgr.status(cid).exit_status == 0


def test_detached_tty(rt: Client) -> None:
    status, out = run_detached(rt, SpecOptions(args=["sh", "-c", "tty; echo done"], tty=True))
    assert status == 0
    assert out.replace("\r\n", "\n").splitlines() == ["/dev/pts/0", "done"]


def test_stop_kills_after_timeout(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    mgr.start(cid)
    t = time.monotonic()
    # sleep is PID 1 of its namespace: SIGTERM (no handler) is ignored, SIGKILL is not.
    assert mgr.stop(cid, timeout=0.5) == 137
    assert time.monotonic() - t < 8
    st = mgr.status(cid)
    assert (st.status, st.exit_status) == ("exited", 137)
    assert mgr.stop(cid, timeout=0.5) is None  # stopping a stopped container does nothing
    assert mgr.wait(cid, 1) == 137
    mgr.delete(cid)  # stopped: no --force needed
    assert_gone(rt, cid)


def test_stop_graceful(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    script = "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", script]))
    mgr.start(cid)
    deadline = time.monotonic() + 5
    while b"ready" not in b"".join(mgr.logs(cid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mgr.stop(cid, timeout=5) == 0
    assert b"".join(mgr.logs(cid)) == b"ready\nbye\n"


def test_kill_and_wait(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    script = "trap 'exit 42' USR1; echo ready; while :; do sleep 0.05; done"
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", script]))
    with pytest.raises(FailedPrecondition):
        mgr.wait(cid, 1)  # created, never started
    with pytest.raises(FailedPrecondition):
        mgr.kill(cid, "SIGKILL")
    mgr.start(cid)
    with pytest.raises(FailedPrecondition, match="already running"):
        mgr.start(cid)
    with pytest.raises(Unavailable):
        mgr.wait(cid, 0.2)
    deadline = time.monotonic() + 5
    while b"ready" not in b"".join(mgr.logs(cid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    mgr.kill(cid, "SIGUSR1")
    assert mgr.wait(cid, 10) == 42
    with pytest.raises(FailedPrecondition, match="not running"):
        mgr.kill(cid, "SIGKILL")
    # start again; SIGKILL -> 137
    mgr.start(cid)
    mgr.kill(cid, "SIGKILL")
    assert mgr.wait(cid, 10) == 137
    with pytest.raises(NotFound):
        mgr.wait("no-such-container", 1)


def test_exec(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"], env=["FOO=from-run"]))
    with pytest.raises(FailedPrecondition, match="not running"):
        mgr.exec(cid, ["true"])
    mgr.start(cid)
    capfd.readouterr()
    assert mgr.exec(cid, ["sh", "-c", 'echo "$FOO"; id -u; pwd']) == 0
    assert mgr.exec(cid, ["id", "-u"], user="nobody") == 0
    assert mgr.exec(cid, ["pwd"], cwd="/data") == 0
    assert mgr.exec(cid, ["sh", "-c", 'echo "$FOO"'], env=["FOO=from-exec"]) == 0
    assert mgr.exec(cid, ["sh", "-c", "exit 9"]) == 9
    assert capfd.readouterr().out == "from-run\n0\n/\n65534\n/data\nfrom-exec\n"
    with pytest.raises(NotFound):
        mgr.exec(cid, ["true"], user="nosuchuser")
    with pytest.raises(InvalidArgument):
        mgr.exec(cid, ["true"], cwd="relative")
    with pytest.raises(NotFound):
        mgr.exec("no-such-container", ["true"])
    mgr.delete(cid, force=True)
    assert_gone(rt, cid)


def test_restart_keeps_the_snapshot(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", "cat /root/n 2>/dev/null; echo x >> /root/n"]))
    mgr.start(cid)
    assert mgr.wait(cid, 10) == 0
    mgr.start(cid)
    assert mgr.wait(cid, 10) == 0
    assert b"".join(mgr.logs(cid)) == b"x\n"
    assert (fs_of(rt, cid) / "root" / "n").read_text() == "x\nx\n"


def test_create_errors(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    mgr.start(cid)
    with pytest.raises(AlreadyExists):
        mgr.create(cid, IMAGE, SpecOptions(args=["true"]))
    assert mgr.status(cid).status == "running"  # the existing one is untouched
    with pytest.raises(FailedPrecondition, match="--force"):
        mgr.delete(cid)
    assert mgr.status(cid).status == "running"
    with pytest.raises(InvalidArgument):
        mgr.create("bad/id", IMAGE, SpecOptions(args=["true"]))
    with pytest.raises(InvalidArgument):
        mgr.create(new_id(), IMAGE, SpecOptions(args=["true"], cwd="relative"))
    mgr.delete(cid, force=True)
    assert_gone(rt, cid)
    assert [c.id for c in mgr.store.list()] == []


def test_leftover_bundle_is_replaced(rt: Client) -> None:
    """A bundle dir without a container record (a crash between steps) does not block
    creating the container again."""
    mgr = rt.containers
    cid = new_id()
    (mgr.bundle(cid) / "rootfs").mkdir(parents=True)
    (mgr.bundle(cid) / "junk").write_text("x")
    mgr.create(cid, IMAGE, SpecOptions(args=["true"]))
    assert not (mgr.bundle(cid) / "junk").exists()
    mgr.delete(cid)
    assert_gone(rt, cid)


# ---------------------------------------------------------------------------------------------
# commit


def test_commit(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    mgr = rt.containers
    cid = new_id()
    script = (
        "echo new > /root/new.txt; rm /data/hello.txt; echo kept > /data/kept.txt;"
        "rm -rf /etc; mkdir /etc; echo fresh > /etc/only"
    )
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", script]))
    assert mgr.run_attached(cid) == 0
    img = commit_container(rt, cid, "localhost/committed:1")
    assert rt.images.get("localhost/committed:1").target == img.target
    mgr.delete(cid)
    check = "cat /root/new.txt; ls /data; ls /etc; cat /etc/only"
    status, out = run_attached(rt, capfd, SpecOptions(args=["sh", "-c", check]), "localhost/committed:1")
    assert (status, out) == (0, "new\nkept.txt\nonly\nfresh\n")
    # The new image is its base's layers plus one.
    sn = rt.snapshotter()
    key = rt.unpack("localhost/committed:1").chain_id
    depth = 0
    while key:
        depth += 1
        key = sn.stat(key).parent
    assert depth == 4
    # The base image is unchanged.
    assert run_attached(rt, capfd, SpecOptions(args=["cat", "/data/hello.txt"]))[0] == 0


def test_commit_running_container(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    mgr.start(cid)
    assert mgr.exec(cid, ["sh", "-c", "echo live > /root/live"]) == 0
    commit_container(rt, cid, "localhost/live:1")
    assert mgr.status(cid).status == "running"
    assert run_attached(rt, capfd, SpecOptions(args=["cat", "/root/live"]), "localhost/live:1") == (
        0,
        "live\n",
    )


def test_commit_native_snapshotter(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    """On a snapshotter without an upper dir (native), commit compares the container's tree
    with its parent's: the new layer holds the changes only (deletions as whiteouts, a second
    name of a new file as a hard link), and the committed image has them."""
    mgr = rt.containers
    cid = new_id()
    script = (
        "echo new > /root/new.txt; ln /root/new.txt /root/hard; rm /data/hello.txt;"
        "echo kept > /data/kept.txt; rm -rf /etc; mkdir /etc; echo fresh > /etc/only"
    )
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", script]), snapshotter="native")
    assert mgr.run_attached(cid) == 0
    img = commit_container(rt, cid, "localhost/native-commit:1")
    mgr.delete(cid)
    _, manifest = manifest_for(rt.content, img.target)
    layer = manifest["layers"][-1]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    with rt.content.open(layer["digest"]) as f, tarfile.open(fileobj=f, mode="r:gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert {"root/new.txt", "root/hard", "data/.wh.hello.txt", "data/kept.txt", "etc/only"} <= set(members)
    assert "bin/busybox" not in members  # unchanged
    assert members["root/new.txt"].islnk() and members["root/new.txt"].linkname == "root/hard"
    check = "cat /root/new.txt /root/hard; ls /data; ls /etc; cat /etc/only"
    status, out = run_attached(rt, capfd, SpecOptions(args=["sh", "-c", check]), "localhost/native-commit:1")
    assert (status, out) == (0, "new\nnew\nkept.txt\nonly\nfresh\n")


def test_commit_streams_a_large_layer(rt: Client) -> None:
    """commit streams the layer into the content store: a 300 MiB file in the container does
    not make the committing process hold it (its peak RSS, measured in a subprocess, stays far
    below the file's size), and the layer has the whole file."""
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["true"]))
    upper = overlay_upper(rt.snapshotter().mounts(cid))
    assert upper is not None
    size = 300 << 20
    with open(Path(upper[0]) / "big", "wb") as out:  # sparse, but read back as 300 MiB of bytes
        out.truncate(size - 4)
        out.seek(size - 4)
        out.write(b"end\n")
    code = (
        "import sys\n"
        "from ctrstore import Client\n"
        "from ctrstore.client.commit import commit_container\n"
        "c = Client(root=sys.argv[1], state=sys.argv[2])\n"
        "commit_container(c, sys.argv[3], 'localhost/big:1')\n"
        # VmHWM is this process image's own peak: ru_maxrss carries the peak of the process
        # that forked us across exec (pytest's, which grows with the tests run before).
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(rt.root), str(rt.state), cid],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    peak = int(r.stdout.split()[-1]) << 10  # VmHWM is in KiB
    assert peak < 100 << 20, f"committing a {size >> 20} MiB file peaked at {peak >> 20} MiB"
    _, manifest = manifest_for(rt.content, rt.images.get("localhost/big:1").target)
    layer = manifest["layers"][-1]
    labels = rt.content.info(layer["digest"]).labels
    with rt.content.open(layer["digest"]) as f, tarfile.open(fileobj=f, mode="r|gz") as tf:
        sizes = {m.name: m.size for m in tf}
    assert sizes["big"] == size
    config = read_json(rt.content, Descriptor.from_json(manifest["config"]))
    assert config["rootfs"]["diff_ids"][-1] == labels["containerd.io/uncompressed"]


# ---------------------------------------------------------------------------------------------
# Failures leave nothing behind


def test_missing_runtime(rt: Client) -> None:
    rt.config.runtime = "nonexistent-runtime"
    cid = new_id()
    with pytest.raises(FailedPrecondition, match="nonexistent-runtime"):
        rt.containers.create(cid, IMAGE, SpecOptions(args=["true"]))
    assert_gone_without_runtime(rt, cid)


def test_runtime_removed_after_create(rt: Client) -> None:
    """A container made while the runtime was there: start fails clearly, rm still works."""
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["true"]))
    rt.config.runtime = "nonexistent-runtime"
    with pytest.raises(FailedPrecondition, match="nonexistent-runtime"):
        mgr.start(cid)
    assert mgr.status(cid).status == "created"
    mgr.delete(cid)
    assert_gone_without_runtime(rt, cid)


def assert_gone_without_runtime(client: Client, cid: str) -> None:
    mgr = client.containers
    with pytest.raises(NotFound):
        mgr.store.get(cid)
    assert not mgr.bundle(cid).exists()
    assert cid not in [i.name for i in client.snapshotter().walk()]
    assert our_mounts(client) == []


def test_missing_image(rt: Client) -> None:
    cid = new_id()
    with pytest.raises(NotFound, match="localhost/nothing"):
        rt.containers.create(cid, "localhost/nothing:latest", SpecOptions(args=["true"]))
    assert_gone(rt, cid)
    assert [c.id for c in rt.containers.store.list()] == []


def test_missing_command(rt: Client, capfd: pytest.CaptureFixture[str]) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["/nope"]))
    with pytest.raises(CtrstoreError, match=r'exec: "/nope": stat /nope: no such file or directory') as e:
        mgr.start(cid)
    assert str(e.value).startswith(f"starting container {cid}: OCI runtime create failed")
    assert "level=error" not in str(e.value) and "time=" not in str(e.value)
    st = mgr.status(cid)
    assert st.status == "created" and mgr.runc().state(cid) is None
    assert b"".join(mgr.logs(cid)) == b""  # runc's error is in log.json, not the container's log
    assert b"".join(mgr.logs(cid, follow=True)) == b""  # returns: nothing is running
    with pytest.raises(CtrstoreError, match="/nope"):
        mgr.start(cid)  # the same again, not a different error
    # Attached, the same error (the shim starts attached tasks too); no raw runc line.
    capfd.readouterr()
    with pytest.raises(CtrstoreError, match=r'exec: "/nope"'):
        mgr.run_attached(cid)
    assert capfd.readouterr().err == ""
    mgr.delete(cid)
    assert_gone(rt, cid)


def test_failed_spec_leaves_nothing(rt: Client) -> None:
    mgr = rt.containers
    cid = new_id()
    with pytest.raises(InvalidArgument):
        mgr.create(
            cid, IMAGE, SpecOptions(args=["true"], mounts=[parse_volume("/tmp:/a"), parse_volume("/tmp:/a")])
        )
    assert_gone(rt, cid)


# ---------------------------------------------------------------------------------------------
# A killed shim, a reboot


def _kill_task(mgr: ContainerManager, cid: str) -> None:
    """kill -9 the shim and the container's process, as an OOM killer or a crash would."""
    shim = int((mgr.bundle(cid) / "shim.pid").read_text())
    state = mgr.runc().state(cid)
    assert state is not None
    pid = int(state["pid"])
    os.kill(shim, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    assert wait_dead(shim, pid)


def test_killed_shim(rt: Client, tmp_path: Path) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    mgr.start(cid)
    _kill_task(mgr, cid)
    st = mgr.status(cid)
    assert st.status == "exited" and st.exit_status == 255  # as containerd reports a dead shim
    assert mgr.wait(cid, 5) == 255
    ps = cli(tmp_path, "ps", "-a").stdout
    assert "Exited (255)" in ps and cid in ps
    assert cid not in cli(tmp_path, "ps").stdout
    assert mgr.stop(cid, 1) is None
    mgr.delete(cid)
    assert_gone(rt, cid)


def test_reboot(rt: Client, tmp_path: Path) -> None:
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    mgr.start(cid)
    assert mgr.exec(cid, ["sh", "-c", "echo before > /root/f"]) == 0
    # A "reboot": every process gone, nothing mounted, runc's state (on tmpfs) gone.
    _kill_task(mgr, cid)
    unmount(mgr.bundle(cid) / "rootfs")
    shutil.rmtree(rt.state / "runc" / "default")
    assert our_mounts(rt) == []
    st = mgr.status(cid)
    assert st.status == "exited" and st.exit_status == 255
    assert "Exited (255)" in cli(tmp_path, "ps", "-a").stdout
    # start: the rootfs is mounted again, with what the container wrote before.
    assert mgr.start(cid).status == "running"
    assert str(mgr.bundle(cid) / "rootfs") in our_mounts(rt)
    assert mgr.exec(cid, ["sh", "-c", 'test "$(cat /root/f)" = before']) == 0
    # reboot again, then rm: everything goes, cgroups included.
    _kill_task(mgr, cid)
    unmount(mgr.bundle(cid) / "rootfs")
    shutil.rmtree(rt.state / "runc" / "default")
    cli(tmp_path, "rm", cid)
    assert_gone(rt, cid)


def test_reboot_with_state_wiped(rt: Client) -> None:
    """/run is a tmpfs: after a reboot the bundles are gone too. start makes the bundle again
    from the container's record; rm works with or without it."""
    mgr = rt.containers
    cid, other = new_id(), new_id()
    for i in (cid, other):
        mgr.create(i, IMAGE, SpecOptions(args=["sleep", "1000"]))
        mgr.start(i)
        _kill_task(mgr, i)
        unmount(mgr.bundle(i) / "rootfs")
    shutil.rmtree(rt.state)
    assert mgr.status(cid).status == "created"  # docker's word: it can be started
    assert mgr.tasks.status(cid).status == "unknown"
    assert mgr.start(cid).status == "running"
    assert json.loads((mgr.bundle(cid) / "config.json").read_text())["process"]["args"] == ["sleep", "1000"]
    mgr.delete(cid, force=True)
    assert_gone(rt, cid)
    mgr.delete(other)
    assert_gone(rt, other)


def test_ps_status_after_pid_reuse(rt: Client) -> None:
    """A shim.pid naming a live process that started after it was written (a reboot reused
    the number) is not taken for the shim."""
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    mgr.start(cid)
    _kill_task(mgr, cid)
    pid_file = mgr.bundle(cid) / "shim.pid"
    pid_file.write_text(str(os.getpid()))
    old = time.time() - 3600
    os.utime(pid_file, (old, old))
    assert mgr.status(cid).exit_status == 255
    mgr.delete(cid)
    assert_gone(rt, cid)


def test_namespaces_are_separate(rt: Client) -> None:
    other = rt.with_namespace("other")
    try:
        busybox_image(other.content, other.images, IMAGE)
        cid = new_id()
        for c in (rt, other):
            c.containers.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
            c.containers.start(cid)
        assert rt.containers.bundle(cid) != other.containers.bundle(cid)
        rt.containers.delete(cid, force=True)
        assert other.containers.status(cid).status == "running"
        other.containers.delete(cid, force=True)
        assert_gone(rt, cid)
        assert cgroup_dirs(cid, "other") == []
    finally:
        for left in other.containers.store.list():
            with suppress(Exception):
                other.containers.delete(left.id, force=True)
        other.close()


def test_shim_survives_its_starter(rt: Client, tmp_path: Path) -> None:
    """run -d returns; the container keeps running under its shim, in its own session."""
    r = cli(tmp_path, "run", "-d", "--name", "bg-" + secrets.token_hex(3), IMAGE, "sleep", "1000")
    cid = r.stdout.strip()
    mgr = rt.containers
    assert mgr.status(cid).status == "running"
    shim = int((mgr.bundle(cid) / "shim.pid").read_text())
    assert os.getsid(shim) != os.getsid(0)
    assert Path(f"/proc/{shim}/cwd").resolve() == Path("/")


# ---------------------------------------------------------------------------------------------
# runc's errors, the runtime plugin, names


def test_runc_errors_are_classified(rt: Client) -> None:
    """runc's errors come from its JSON log (``--log-format json``) and map to errdefs
    classes by runc's own error values, not by scraping its stderr."""
    runc = rt.containers.runc()
    assert runc.state("nosuch") is None
    runc.delete("nosuch")  # nothing to delete is fine
    with pytest.raises(NotFound, match=r"^signalling container nosuch: runc: container does not exist$"):
        runc.kill("nosuch", "SIGKILL")
    with pytest.raises(InvalidArgument, match="invalid container ID format"):
        runc.kill("../x", "SIGKILL")
    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sleep", "1000"]))
    mgr.start(cid)
    bundle = mgr.bundle(cid)
    with (bundle / "log").open("ab") as log, pytest.raises(AlreadyExists, match="already exists"):
        runc.create(cid, bundle, bundle / "other.pid", log, log_json=bundle / "log.json")
    with pytest.raises(CtrstoreError, match="already running") as e:
        runc.start(cid)
    assert type(e.value) is Internal  # no errdefs kind of its own in runc
    mgr.kill(cid, "SIGKILL")
    assert mgr.wait(cid, 10) == 137
    assert runc.state(cid) is None  # the shim deleted its runc state with the final exit
    # A runc container that stopped with nobody to delete it: kill is FailedPrecondition.
    raw = f"{cid}-raw"
    with (bundle / "log").open("ab") as log:
        runc.create(raw, bundle, bundle / "raw.pid", log, log_json=bundle / "log.json")
    runc.kill(raw, "SIGKILL")
    deadline = time.monotonic() + 10
    while (runc.state(raw) or {}).get("status") != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(FailedPrecondition, match=f"^container {raw} is not running$"):
        runc.kill(raw, "SIGKILL")
    runc.delete(raw, force=True)
    mgr.delete(cid)
    assert_gone(rt, cid)
    # No log file is left in runc's state dir (each call's log is an unlinked file).
    assert os.listdir(rt.state / "runc" / "default") == []


def test_runtime_plugin(rt: Client, tmp_path: Path) -> None:
    """The task manager is the plugin io.containerd.runtime.v2.task: bundles under its state
    dir, work dirs under its root dir, as containerd lays them out; disabled, containers
    cannot run (and say why)."""
    p = rt.plugins.get(TASKS)
    assert (p.registration.type, p.registration.id, p.status) == ("io.containerd.runtime.v2", "task", "ok")
    assert rt.tasks.manager.state == rt.state / TASKS and rt.tasks.manager.root == rt.root / TASKS
    lines = cli(tmp_path, "plugin", "ls").stdout.splitlines()
    assert ["io.containerd.runtime.v2", "task", host_platform(), "ok"] in [ln.split() for ln in lines]
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'root = "{rt.root}"\nstate = "{rt.state}"\ndisabled_plugins = ["io.containerd.runtime.v2.task"]\n'
    )
    off = Client(config=cfg)
    try:
        with pytest.raises(
            FailedPrecondition, match=r"io\.containerd\.runtime\.v2\.task: disabled in config"
        ):
            off.containers.create(new_id(), IMAGE, SpecOptions(args=["true"]))
    finally:
        off.close()
    assert [c.id for c in rt.containers.store.list()] == []


def test_names_and_prefixes(rt: Client) -> None:
    """A container is found by its id, its nerdctl name, or a unique prefix of its id."""
    mgr = rt.containers
    a_id, a_name = new_id_and_name(None, "localhost/busybox:latest")
    assert len(a_id) == 64 and a_name == f"busybox-{a_id[:5]}"
    assert new_id_and_name("web", IMAGE) == ("web", "web")
    a = mgr.create(a_id, IMAGE, SpecOptions(args=["true"]), name=a_name)
    assert a.labels[NAME_LABEL] == a_name and mgr.name_of(a) == a_name
    b = mgr.create(a_id[:6] + "x", IMAGE, SpecOptions(args=["true"]))
    assert mgr.name_of(b) == b.id  # no name: the id
    assert mgr.resolve(a_id) == mgr.resolve(a_name) == mgr.resolve(a_id[:7]) == a_id
    assert mgr.resolve(b.id) == b.id
    with pytest.raises(InvalidArgument, match=f"2 containers match '{a_id[:6]}'"):
        mgr.resolve(a_id[:6])
    with pytest.raises(NotFound, match="no such container: nosuch"):
        mgr.resolve("nosuch")
    for c in (a, b):
        mgr.delete(c.id)
        assert_gone(rt, c.id)


def test_commit_keeps_its_blobs_from_gc(rt: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """commit writes its layer, config and manifest under a lease: a gc that runs before the
    image names them (another process's ``ctrstore gc``) removes none of them."""

    create = ImageStore.create

    def gc_first(self: ImageStore, image: Image) -> Image:
        rt.gc()
        return create(self, image)

    mgr = rt.containers
    cid = new_id()
    mgr.create(cid, IMAGE, SpecOptions(args=["sh", "-c", "echo new > /root/new.txt"]))
    assert mgr.run_attached(cid) == 0
    monkeypatch.setattr(ImageStore, "create", gc_first)
    commit_container(rt, cid, "localhost/gc:1")
    monkeypatch.undo()
    check = rt.check("localhost/gc:1")
    assert check.complete, check.missing
    mgr.delete(cid)
