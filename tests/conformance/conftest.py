"""Fixtures for the snapshotter conformance suite: each snapshotter kind, fresh per test.

``btrfs`` needs a btrfs file system: one 300M image, loop-mounted once per session; every test
gets its own directory on it. Every fixture checks, when its test is done, that nothing is
left mounted below the test's directories (a leaked mount breaks pytest's tmp cleanup): such
mounts are detached and the test errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctrstore.mount import mountinfo, unmount
from ctrstore.snapshots import Snapshotter

SNAPSHOTTERS = ["overlay", "native", "btrfs", "metadata-overlay"]


@dataclass
class Subject:
    """A snapshotter under test, its scratch directory, and how it is backed."""

    kind: str
    sn: Snapshotter
    work: Path
    overlay_backed: bool


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True)


def _fail_on_leaked_mounts(*dirs: Path) -> None:
    roots = [d.resolve() for d in dirs]
    leaked = sorted(
        {m.mount_point for m in mountinfo() if any(m.mount_point.is_relative_to(r) for r in roots)},
        key=lambda p: len(p.parts),
        reverse=True,
    )
    for p in leaked:
        unmount(p, lazy=True)
    if leaked:
        pytest.fail(f"the test left mounts behind: {', '.join(map(str, leaked))}")


@pytest.fixture(scope="session")
def btrfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A freshly made btrfs, loop-mounted for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("btrfs: needs root to loop-mount a file system image")
    for tool in ("mkfs.btrfs", "btrfs", "losetup"):
        if shutil.which(tool) is None:
            pytest.skip(f"btrfs: {tool} is not installed (apt-get install btrfs-progs)")
    if not Path("/dev/loop-control").exists():
        pytest.skip("btrfs: no loop devices (/dev/loop-control is missing)")
    base = tmp_path_factory.mktemp("btrfs")
    img, mnt = base / "img", base / "mnt"
    with open(img, "wb") as f:
        f.truncate(300 * 1024 * 1024)
    r = _run("mkfs.btrfs", "-q", str(img))
    if r.returncode != 0:
        pytest.skip(f"btrfs: mkfs.btrfs failed: {r.stderr.strip()}")
    r = _run("losetup", "--find", "--show", str(img))
    if r.returncode != 0:
        pytest.skip(f"btrfs: no loop device available: {r.stderr.strip()}")
    dev = r.stdout.strip()
    mnt.mkdir()
    r = _run("mount", "-t", "btrfs", dev, str(mnt))
    if r.returncode != 0:
        _run("losetup", "-d", dev)
        pytest.skip(f"btrfs: mounting {dev} failed: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        _fail_on_leaked_mounts(mnt / "tests")  # bind mounts of subvolumes pin the file system
        if _run("umount", str(mnt)).returncode != 0:
            _run("umount", "-l", str(mnt))
        _run("losetup", "-d", dev)
        img.unlink(missing_ok=True)


@pytest.fixture
def subject(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Subject]:
    """One snapshotter of kind ``request.param`` under ``tmp_path``, closed afterwards."""
    kind: str = request.param
    work = tmp_path / "work"
    work.mkdir()
    closers = []
    watched = [tmp_path]
    if kind in ("overlay", "metadata-overlay"):
        from ctrstore.errdefs import Unimplemented
        from ctrstore.snapshots.overlay import check_overlay

        try:
            check_overlay()
        except Unimplemented as e:
            pytest.skip(str(e))
    sn: Snapshotter
    if kind == "overlay":
        from ctrstore.snapshots.overlay import OverlaySnapshotter

        sn = OverlaySnapshotter(tmp_path / "root")
    elif kind == "native":
        from ctrstore.snapshots.native import NativeSnapshotter

        sn = NativeSnapshotter(tmp_path / "root")
    elif kind == "btrfs":
        from ctrstore.snapshots.btrfs import BtrfsSnapshotter

        base: Path = request.getfixturevalue("btrfs_dir") / "tests"
        base.mkdir(exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f"{request.node.name[:60]}-", dir=base))
        watched.append(root)
        sn = BtrfsSnapshotter(root)
    elif kind == "metadata-overlay":
        from ctrstore import Client
        from ctrstore.metadata import Metadata

        if not hasattr(Metadata, "snapshotter"):
            pytest.skip("metadata wrapper not available yet")
        for var in ("CTRSTORE_CONFIG", "CTRSTORE_ROOT", "CTRSTORE_STATE", "CTRSTORE_NAMESPACE"):
            monkeypatch.delenv(var, raising=False)
        client = Client(root=tmp_path / "root", state=tmp_path / "state")
        closers.append(client.close)
        sn = client.metadata.snapshotter("overlayfs", "default")
    else:
        raise AssertionError(f"unknown snapshotter kind {kind!r}")
    closers.insert(0, sn.close)
    try:
        yield Subject(kind, sn, work, overlay_backed=kind in ("overlay", "metadata-overlay"))
    finally:
        for close in closers:
            close()
        _fail_on_leaked_mounts(*watched)


@pytest.fixture
def overlay_root(tmp_path: Path) -> Iterator[Path]:
    """A directory for an overlay snapshotter's root; skips without overlayfs, and checks for
    leaked mounts afterwards."""
    from ctrstore.errdefs import Unimplemented
    from ctrstore.snapshots.overlay import check_overlay

    try:
        check_overlay()
    except Unimplemented as e:
        pytest.skip(str(e))
    try:
        yield tmp_path / "root"
    finally:
        _fail_on_leaked_mounts(tmp_path)
