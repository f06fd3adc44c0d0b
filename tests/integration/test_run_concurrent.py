"""Several ``ctrstore`` processes running and removing containers in one root at once, with
real runc: ``run --rm``, ``run -d`` then ``rm -f``, ``run -d --rm`` (removed by its shim when
it exits), while ``ps -a`` looks on. Every container must run and be removed, and nothing may
be left behind: no mount under the store, bundle, work dir, container snapshot, meta.db
record, runc state, cgroup or shim process.

Counts and times are bounded: a handful of containers per test, every command with a
subprocess timeout, every wait with a deadline.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.mount import mountinfo
from tests.support.images import BUSYBOX

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

IMAGE = BUSYBOX
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"
TASKS = "io.containerd.runtime.v2.task"
TIMEOUT = 120
"""Seconds any one command, or one mix of them, may take (they take well under one alone; the
machine is shared: with helpers building beside it, the mix once took over 60 s)."""


def name(prefix: str) -> str:
    """Unique names: cgroups (``/<ns>/<id>``) are shared by every store on this machine."""
    return f"{prefix}-{secrets.token_hex(3)}"


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    return env | {"CTRSTORE_ROOT": str(store / "root"), "CTRSTORE_STATE": str(store / "state")}


def spawn(store: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ctrstore", *args],
        env=_env(store),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    """Wait for every process (killing any still running after TIMEOUT seconds); their exit
    statuses and output."""
    deadline = time.monotonic() + TIMEOUT
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
            stderr += "\n(killed: timed out)"
        out.append((p.returncode, stdout, stderr))
    return out


def cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctrstore", *args],
        env=_env(store),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def our_mounts(store: Path) -> list[str]:
    return [str(m.mount_point) for m in mountinfo() if str(m.mount_point).startswith(str(store))]


def shims(store: Path) -> list[int]:
    """Shim processes (named ``ctrstore-shim``) with a file of this store's bundles open."""
    found = []
    marker = str(store / "state" / TASKS)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "ctrstore-shim":
                continue
            targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(t.startswith(marker) for t in targets):
            found.append(int(pid))
    return found


def cgroups(namespace: str, cid: str) -> list[Path]:
    return [
        Path(f"{m.mount_point}/{namespace}/{cid}")
        for m in mountinfo()
        if m.fstype in ("cgroup", "cgroup2") and Path(f"{m.mount_point}/{namespace}/{cid}").exists()
    ]


def listing(d: Path) -> list[str]:
    return sorted(os.listdir(d)) if d.is_dir() else []


def assert_nothing_left(store: Path, names: list[str]) -> None:
    """Of all those containers: no record, bundle, work dir, snapshot, mount, runc state,
    cgroup or shim (shims and cgroups get a few seconds to go: a shim exits after it has
    recorded the exit and run its --on-exit command)."""
    deadline = time.monotonic() + 15
    while (shims(store) or our_mounts(store)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shims(store) == []
    assert our_mounts(store) == []
    c = Client(root=store / "root", state=store / "state")
    try:
        assert [x.id for x in c.containers.store.list()] == []
        # Only the image's three layers are left, in the snapshotter and in meta.db.
        layers = sorted(i.name for i in c.snapshotter().walk())
        assert len(layers) == 3 and not set(layers) & set(names)
    finally:
        c.close()
    assert len(listing(store / "root" / OVERLAY / "snapshots")) == 3
    assert listing(store / "state" / TASKS / "default") == []
    assert listing(store / "root" / TASKS / "default") == []
    assert listing(store / "state" / "runc" / "default") == []
    for n in names:
        assert cgroups("default", n) == []


@pytest.fixture
def store(busybox_store: Path) -> Path:
    """conftest's store holding the busybox image, not yet unpacked (so the first runs race to
    unpack it too); afterwards every container is removed and nothing stays mounted."""
    return busybox_store


def test_concurrent_run_rm(store: Path) -> None:
    """Six ``run --rm`` at once: each exits with its own status and prints its own output,
    then is gone."""
    names = [name(f"rm{i}") for i in range(6)]
    procs = [
        spawn(store, "run", "--rm", "--name", n, IMAGE, "sh", "-c", f"echo $HOSTNAME; exit {i + 1}")
        for i, n in enumerate(names)
    ]
    for i, (n, (code, out, err)) in enumerate(zip(names, finish(procs), strict=True)):
        assert (code, out) == (i + 1, f"{n[:12]}\n"), err
    assert_nothing_left(store, names)


def test_concurrent_run_detached_and_rm_force(store: Path) -> None:
    """Five ``run -d`` at once, all running together; then five ``rm -f`` at once."""
    names = [name(f"d{i}") for i in range(5)]
    started = finish([spawn(store, "run", "-d", "--name", n, IMAGE, "sleep", "1000") for n in names])
    for n, (code, out, err) in zip(names, started, strict=True):
        assert (code, out) == (0, f"{n}\n"), err
    ps = cli(store, "ps", "-q", "--no-trunc")
    assert sorted(ps.stdout.split()) == sorted(names), ps.stderr
    assert len(shims(store)) == 5
    removed = finish([spawn(store, "rm", "-f", n) for n in names])
    for n, (code, out, err) in zip(names, removed, strict=True):
        assert (code, out) == (0, f"{n}\n"), err
    assert_nothing_left(store, names)


def test_concurrent_mix_with_ps(store: Path) -> None:
    """All at once: ``run --rm``, ``run -d`` + ``rm -f`` as soon as it is up, and ``run -d
    --rm`` containers that exit on their own (their shims remove them), while ``ps -a``
    runs over and over (it reads every container's state, and records a lost task's exit,
    while the containers are being removed)."""
    attached = [name("at") for _ in range(3)]
    detached = [name("dt") for _ in range(3)]
    self_removing = [name("sr") for _ in range(3)]
    script = "sleep 0.3; echo ok"
    procs = [spawn(store, "run", "--rm", "--name", n, IMAGE, "sh", "-c", script) for n in attached]
    procs += [
        spawn(store, "run", "-d", "--rm", "--name", n, IMAGE, "sh", "-c", "sleep 0.5") for n in self_removing
    ]
    starters = [spawn(store, "run", "-d", "--name", n, IMAGE, "sleep", "1000") for n in detached]
    watchers: list[subprocess.Popen[str]] = []
    removers: list[subprocess.Popen[str]] = []
    deadline = time.monotonic() + TIMEOUT
    pending = dict(zip(detached, starters, strict=True))
    while (pending or any(p.poll() is None for p in procs)) and time.monotonic() < deadline:
        watchers.append(spawn(store, "ps", "-a"))
        for n, p in list(pending.items()):
            if p.poll() is not None:
                removers.append(spawn(store, "rm", "-f", n))
                del pending[n]
        time.sleep(0.1)
    results = finish(procs)
    for code, out, err in results[: len(attached)]:
        assert (code, out) == (0, "ok\n"), err
    for code, _, err in results[len(attached) :]:
        assert code == 0, err
    for code, _, err in finish(starters) + finish(removers):
        assert code == 0, err
    for code, _, err in finish(watchers):
        assert code == 0, err  # ps never failed while containers came and went
    # The self-removing ones are removed by their shims once they exit.
    end = time.monotonic() + 20
    while cli(store, "ps", "-a", "-q").stdout and time.monotonic() < end:
        time.sleep(0.2)
    assert cli(store, "ps", "-a", "-q").stdout == ""
    assert_nothing_left(store, attached + detached + self_removing)
