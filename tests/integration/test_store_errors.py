"""System errors through the CLI — a full disk, EACCES, a read-only root, a corrupt or lost
meta.db — give one line and exit 1, never a traceback; and ``ctrstore check`` finds and repairs
each kind of inconsistency."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.diff import overlay_upper
from ctrstore.images.archive import export_images
from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.labels import LEASE_OWNER as OWNER_LABEL
from ctrstore.oci import SpecOptions
from tests.support.images import busybox_image

pytestmark = pytest.mark.root


def run(root: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    env |= {"CTRSTORE_ROOT": str(root / "root"), "CTRSTORE_STATE": str(root / "state")}
    cmd = [sys.executable, "-m", "ctrstore", *args]
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def one_line_failure(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB ext4, loop-mounted for the test and removed after it."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (apt-get install e2fsprogs)")
    img, mnt = tmp_path / "fs.img", tmp_path / "fs"
    subprocess.run(["truncate", "-s", "24M", str(img)], check=True, timeout=30)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, capture_output=True, timeout=60)
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True, timeout=60
    )
    if r.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)
        img.unlink(missing_ok=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def big_image_archive(tmp_path: Path) -> Path:
    """An OCI archive of three 7 MB incompressible layers (more than the small fs holds)."""
    scratch = Client(root=tmp_path / "scratch" / "root", state=tmp_path / "scratch" / "state")
    layers = [tar_from_entries([Entry(f"l{i}", data=os.urandom(7 << 20))]) for i in range(3)]
    img = build_image(scratch.content, scratch.images, "example.com/big:1", layers, ImageSpec())
    out = tmp_path / "big.tar"
    with open(out, "wb") as f:
        export_images(scratch.content, [img], f)
    scratch.close()
    shutil.rmtree(tmp_path / "scratch")
    return out


def test_full_disk_is_one_line_and_the_next_gc_returns_the_space(small_fs: Path, tmp_path: Path) -> None:
    archive = big_image_archive(tmp_path)
    assert run(small_fs, "namespaces", "ls").returncode == 0  # the store exists, with its reserves
    before = free_bytes(small_fs)
    line = one_line_failure(run(small_fs, "images", "import", str(archive)))
    assert line.startswith("ctrstore: no space left on device while writing "), line
    assert " MB free on " in line, line
    # Nothing half-written is kept as if whole: no image, no partial blob among the blobs.
    assert run(small_fs, "images", "ls", "-q").stdout.strip() == ""
    r = run(small_fs, "gc")
    assert r.returncode == 0, r.stderr
    assert free_bytes(small_fs) >= before - (256 << 10), (before, free_bytes(small_fs))
    r = run(small_fs, "check")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)")
def test_commit_on_a_full_disk_is_one_line_and_leaves_no_ingest(small_fs: Path) -> None:
    """commit streams its layer into an ingest: when the disk fills up meanwhile, the CLI says
    so in one line, and the half-written layer is not left behind (its ingest is aborted)."""
    c = Client(root=small_fs / "root", state=small_fs / "state")
    cid = "full-disk-commit"
    try:
        busybox_image(c.content, c.images, "localhost/busybox:latest")
        c.containers.create(cid, "localhost/busybox:latest", SpecOptions(args=["true"]))
        upper = overlay_upper(c.snapshotter().mounts(cid))
        assert upper is not None
        # Room for the file once, not for its (incompressible) layer as well.
        (Path(upper[0]) / "noise").write_bytes(os.urandom(free_bytes(small_fs) * 2 // 3))
        line = one_line_failure(run(small_fs, "commit", cid, "localhost/full:1"))
        assert line.startswith("ctrstore: no space left on device while writing "), line
        assert c.content.list_statuses() == []
        assert "localhost/full:1" not in run(small_fs, "images", "ls", "--format", "{{.Name}}").stdout
        r = run(small_fs, "check")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        with contextlib.suppress(Exception):
            c.containers.delete(cid, force=True)
        c.close()


def test_completely_full_disk_still_opens_and_gc_works(small_fs: Path) -> None:
    assert run(small_fs, "leases", "create", "--id", "held").returncode == 0
    (small_fs / "root" / "io.containerd.content.v1.content").mkdir(parents=True, exist_ok=True)
    filler = small_fs / "filler"
    for bs in ("64k", "4k", "1k"):  # fill to the last block (delayed allocation leaves some)
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={filler}", f"bs={bs}", "oflag=append", "conv=notrunc"],
            capture_output=True,
            timeout=120,
        )
        os.sync()
    with pytest.raises(OSError, match="No space left"), open(small_fs / "probe", "wb") as f:
        f.write(b"x" * (64 << 10))
        f.flush()
        os.fsync(f.fileno())
    # Opening needs room for SQLite's -wal/-shm: the reserves give it, and gc runs.
    r = run(small_fs, "gc")
    assert r.returncode == 0, r.stderr
    assert "held" in run(small_fs, "leases", "ls", "-q").stdout
    # A write that needs more room than there is: one line naming the file and the free space.
    r = run(small_fs, "leases", "create", "--id", "x" * 60, *(f"k{i}={'v' * 4000}" for i in range(64)))
    if r.returncode != 0:
        line = one_line_failure(r)
        assert "no space left on device while writing" in line and "MB free" in line, line
    filler.unlink()
    assert run(small_fs, "gc").returncode == 0
    # The reserves come back once there is room.
    run(small_fs, "namespaces", "ls")
    assert (small_fs / "root" / "io.containerd.metadata.v1.sqlite" / "meta.db.reserve").exists()


def test_permission_denied_is_one_line(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed (util-linux)")
    assert run(tmp_path, "namespaces", "ls").returncode == 0
    os.chmod(tmp_path, 0o755)
    line = one_line_failure(run(tmp_path, "images", "ls", user="65534"))
    assert line.startswith("ctrstore: permission denied: "), line


def test_read_only_root_is_one_line(tmp_path: Path) -> None:
    assert run(tmp_path, "namespaces", "ls").returncode == 0
    root = tmp_path / "root"
    subprocess.run(["mount", "--bind", str(root), str(root)], check=True, timeout=30)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True, timeout=30)
        for args in (("leases", "create"), ("content", "ingest", "r"), ("gc",)):
            line = one_line_failure(run(tmp_path, *args))
            assert "permission denied" in line or "read-only" in line.lower(), line
    finally:
        subprocess.run(["umount", str(root)], check=True, timeout=30)


def test_corrupt_meta_db_is_one_line_and_check_rebuilds(tmp_path: Path) -> None:
    c = Client(root=tmp_path / "root", state=tmp_path / "state")
    d = c.content.ingest("a", b"kept through a corrupt meta.db", labels={"containerd.io/gc.root": "1"})
    c.close()
    db = tmp_path / "root" / "io.containerd.metadata.v1.sqlite" / "meta.db"
    for p in db.parent.glob("meta.db-*"):
        p.unlink()
    db.write_bytes(b"\x00garbage" * 4096)
    line = one_line_failure(run(tmp_path, "images", "ls"))
    assert "is corrupt" in line and "ctrstore check --repair" in line, line
    r = run(tmp_path, "check")
    assert r.returncode == 1 and "is corrupt" in r.stdout, r.stdout + r.stderr
    r = run(tmp_path, "check", "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "moved aside" in r.stdout and "1 blobs recorded" in r.stdout, r.stdout
    assert list(db.parent.glob("meta.db.corrupt-*"))
    assert run(tmp_path, "gc").returncode == 0
    assert d in run(tmp_path, "content", "ls", "-q").stdout


def test_lost_meta_db_is_refused_until_check_rebuilds(tmp_path: Path) -> None:
    c = Client(root=tmp_path / "root", state=tmp_path / "state")
    layers = [tar_from_entries([Entry("hello", data=b"hello")])]
    build_image(c.content, c.images, "example.com/small:1", layers, ImageSpec())
    result = c.unpack("example.com/small:1", snapshotter="native")
    blobs = {i.digest for i in c.content.walk()}
    c.close()
    db_dir = tmp_path / "root" / "io.containerd.metadata.v1.sqlite"
    for p in db_dir.glob("meta.db*"):
        p.unlink()
    for args in (("gc",), ("images", "ls")):
        line = one_line_failure(run(tmp_path, *args))
        assert "is missing" in line and "ctrstore check --repair" in line, line
    assert not (db_dir / "meta.db").exists(), "the refusal created a new meta.db"
    r = run(tmp_path, "check")
    assert r.returncode == 1 and "is missing" in r.stdout
    r = run(tmp_path, "check", "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(blobs)} blobs recorded" in r.stdout, r.stdout
    assert run(tmp_path, "gc").returncode == 0
    c = Client(root=tmp_path / "root", state=tmp_path / "state")
    assert {i.digest for i in c.content.walk()} == blobs
    info = c.snapshotter("native").stat(result.chain_id)
    assert "ctrstore.io/recovered" in info.labels
    assert c.check_store().ok
    c.close()


def test_check_finds_and_repairs_each_kind(tmp_path: Path) -> None:
    c = Client(root=tmp_path / "root", state=tmp_path / "state")
    content = c.content
    root_label = {"containerd.io/gc.root": "1"}
    no_file = content.ingest("a", b"record without a blob", labels=root_label)
    c.content.backend.blob_path(no_file).unlink()
    short = content.ingest("b", b"a blob cut short", labels=root_label)
    p = c.content.backend.blob_path(short)
    os.chmod(p, 0o644)
    p.write_bytes(b"a blob")
    flipped = content.ingest("c", b"same size, other bytes", labels=root_label)
    p = c.content.backend.blob_path(flipped)
    os.chmod(p, 0o644)
    p.write_bytes(b"SAME size, other bytes")
    stray = c.content.backend.writer("default/stray")
    stray.write(b"committed blob, never recorded")
    stray_digest = stray.commit()
    w = content.writer("no-dir")
    w.close()
    shutil.rmtree(c.content.backend.ingest_path("default/no-dir"))
    orphan = c.content.backend.writer("default/orphan-ingest")
    orphan.write(b"x")
    orphan.close()
    lease = c.leases.create("dead", labels={OWNER_LABEL: "pid=999999999,start=1,boot=x,pidns=y"})
    sn = c.snapshotter("native")
    sn.prepare("lost", "", root_label)
    sn.backend.remove(sn.backend_key("lost"))
    ghost = tmp_path / "state" / "io.containerd.runtime.v2.task" / "default" / "ghost"
    (ghost / "rootfs").mkdir(parents=True)
    old = time.time() - 3600
    os.utime(ghost, (old, old))

    r = run(tmp_path, "check")
    assert r.returncode == 1
    out = r.stdout
    expected = [
        f"content {no_file}",
        f"blob {short} has",
        f"blob {stray_digest} is recorded by no namespace",
        "ingest default/no-dir has no ingest directory",
        "'default/orphan-ingest' is recorded in no namespace",
        f"lease default/{lease.id}",
        "snapshot record default/lost",
        "bundle",
    ]
    for e in expected:
        assert e in out, (e, out)
    assert flipped not in out  # same size: only --verify finds it
    r = run(tmp_path, "check", "--verify")
    assert f"blob {flipped} is corrupt" in r.stdout, r.stdout
    r = run(tmp_path, "check", "--verify", "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("repaired: ") == len(expected) + 1, r.stdout
    assert not ghost.exists()
    r = run(tmp_path, "check", "--verify")
    assert r.returncode == 0 and "store is consistent" in r.stdout, r.stdout
    c.close()
