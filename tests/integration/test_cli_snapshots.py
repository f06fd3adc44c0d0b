"""``ctrstore snapshots`` as a user runs it, on real overlay and native snapshotters."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import run

pytestmark = pytest.mark.root


def layer(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    path = tmp_path / f"layer-{len(list(tmp_path.glob('layer-*')))}.tar.gz"
    path.write_bytes(gzip.compress(raw))
    return path, "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_prepare_apply_commit_mount(tmp_path: Path, snapshotter: str) -> None:
    sn = ["snapshots", "--snapshotter", snapshotter]
    l1, d1 = layer(tmp_path, {"hello": b"one\n", "dir/a": b"a"})
    l2, d2 = layer(tmp_path, {"hello": b"two\n", "dir/.wh.a": b""})
    run(tmp_path, *sn, "prepare", "k1")
    assert run(tmp_path, *sn, "apply", "k1", str(l1)).stdout.strip() == d1
    run(tmp_path, *sn, "commit", "base", "k1")
    run(tmp_path, *sn, "prepare", "k2", "base")
    assert run(tmp_path, *sn, "apply", "k2", str(l2)).stdout.strip() == d2
    run(tmp_path, *sn, "commit", "top", "k2", "-l", "team=x")
    run(tmp_path, *sn, "prepare", "work", "top")
    listing = run(tmp_path, *sn, "ls").stdout.split()
    assert listing[:3] == ["KEY", "PARENT", "KIND"]
    assert "committed" in listing and "active" in listing
    assert "\\_ top" in run(tmp_path, *sn, "tree").stdout
    assert '"team": "x"' in run(tmp_path, *sn, "info", "top").stdout
    target = tmp_path / "mnt"
    target.mkdir()
    cmd = run(tmp_path, *sn, "mounts", str(target), "work").stdout.strip()
    assert cmd.startswith("mount -t ")
    subprocess.run(cmd, shell=True, check=True)
    try:
        assert (target / "hello").read_bytes() == b"two\n"
        assert not (target / "dir" / "a").exists()
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert "INODES" in run(tmp_path, *sn, "usage").stdout
    r = run(tmp_path, *sn, "rm", "top", ok=False)
    assert r.returncode == 1 and "is its child" in r.stderr
    run(tmp_path, *sn, "rm", "work", "top", "base")
    assert run(tmp_path, *sn, "ls").stdout.strip() == "KEY  PARENT  KIND"


def test_apply_refuses_a_hostile_layer(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("escape")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/"
        tf.addfile(ti)
        ti = tarfile.TarInfo("escape/tmp/pwned")
        tf.addfile(ti, io.BytesIO(b""))
        ti = tarfile.TarInfo("dir/.wh..")
        tf.addfile(ti, io.BytesIO(b""))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(buf.getvalue())
    run(tmp_path, "snapshots", "prepare", "k")
    r = run(tmp_path, "snapshots", "apply", "k", str(bad), ok=False)
    assert r.returncode == 1
    assert ".wh.." in r.stderr, r.stderr
    assert not Path("/tmp/pwned").exists()
