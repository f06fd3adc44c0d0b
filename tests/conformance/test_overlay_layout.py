"""The overlay snapshotter's on-disk layout and mount descriptions, as containerd's overlayfs
snapshotter has them (design notes §6): ``snapshots/<N>/fs`` and ``work``, ids never reused,
commit keeping N, cleanup of strays, bind mounts where no overlay is needed, ``index=off`` and
lowerdirs nearest first."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore.errdefs import AlreadyExists, NotFound
from ctrstore.labels import OVERLAY_UPPERDIR as UPPERDIR_LABEL
from ctrstore.mount import Mount
from ctrstore.snapshots.overlay import OverlaySnapshotter
from ctrstore.snapshots.testsuite import mounted

pytestmark = pytest.mark.root

INDEX_PARAM = Path("/sys/module/overlay/parameters/index")


@pytest.fixture
def sn(overlay_root: Path) -> Iterator[OverlaySnapshotter]:
    s = OverlaySnapshotter(overlay_root, upperdir_label=True)
    yield s
    s.close()


def snapshot_dir(sn: OverlaySnapshotter, key: str) -> Path:
    """``snapshots/<N>`` of ``key``, found through the upperdir label."""
    upper = Path(sn.stat(key).labels[UPPERDIR_LABEL])
    assert upper.name == "fs" and upper.parent.parent == sn.root / "snapshots", upper
    return upper.parent


def snapshot_id(sn: OverlaySnapshotter, key: str) -> int:
    return int(snapshot_dir(sn, key).name)


def entries(sn: OverlaySnapshotter) -> set[str]:
    return {p.name for p in (sn.root / "snapshots").iterdir()}


def commit_with_file(sn: OverlaySnapshotter, work: Path, name: str, parent: str, content: bytes) -> None:
    """Prepare ``name-a`` on ``parent``, write /who = ``content``, commit as ``name``."""
    mounts = sn.prepare(f"{name}-a", parent)
    with mounted(mounts, work / name) as mp:
        (mp / "who").write_bytes(content)
    sn.commit(name, f"{name}-a")


def option(m: Mount, prefix: str) -> list[str]:
    return [o[len(prefix) :] for o in m.options if o.startswith(prefix)]


def test_active_and_view_dirs(sn: OverlaySnapshotter) -> None:
    sn.prepare("active")
    d = snapshot_dir(sn, "active")
    assert (d / "fs").is_dir() and (d / "work").is_dir()
    assert stat.S_IMODE((d / "fs").stat().st_mode) == 0o755
    assert stat.S_IMODE((d / "work").stat().st_mode) == 0o711
    sn.view("view")
    v = snapshot_dir(sn, "view")
    assert (v / "fs").is_dir()
    assert not (v / "work").exists(), "a view needs no overlay work dir"
    assert entries(sn) == {d.name, v.name}, "nothing but the snapshots' own directories"


def test_ids_never_reused(sn: OverlaySnapshotter, overlay_root: Path) -> None:
    sn.prepare("a")
    first = snapshot_id(sn, "a")
    sn.remove("a")
    assert not (sn.root / "snapshots" / str(first)).exists()
    sn.prepare("a")
    second = snapshot_id(sn, "a")
    assert second > first
    sn.commit("c", "a")
    sn.remove("c")
    sn.cleanup()
    sn.close()
    # A new instance on the same root continues the sequence.
    again = OverlaySnapshotter(overlay_root, upperdir_label=True)
    try:
        again.prepare("a")
        assert snapshot_id(again, "a") > second
    finally:
        again.close()


def test_commit_keeps_id(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    mounts = sn.prepare("a")
    n = snapshot_dir(sn, "a")
    assert mounts == [Mount("bind", str(n / "fs"), ("rw", "rbind"))]
    with mounted(mounts, tmp_path / "mnt") as mp:
        (mp / "file").write_bytes(b"data")
    sn.commit("c", "a")
    assert snapshot_dir(sn, "c") == n
    assert (n / "fs" / "file").read_bytes() == b"data"
    [child] = sn.prepare("child", "c")
    assert option(child, "lowerdir=") == [str(n / "fs")]


def test_cleanup_removes_strays(sn: OverlaySnapshotter) -> None:
    sn.prepare("live")
    sn.prepare("base-a")
    sn.commit("base", "base-a")
    live = entries(sn)
    snaps = sn.root / "snapshots"
    for name in ("new-0123456789ab", "rm-77", "unknown", "999"):
        (snaps / name / "fs").mkdir(parents=True)
        (snaps / name / "fs" / "file").write_bytes(b"stray")
    removed = sn.cleanup()
    assert sorted(removed) == sorted(["new-0123456789ab", "rm-77", "unknown", "999"])
    assert entries(sn) == live
    assert sn.cleanup() == []
    assert {i.name for i in sn.walk()} == {"live", "base"}


def test_cleanup_removes_stray_files(sn: OverlaySnapshotter) -> None:
    (sn.root / "snapshots" / "stray-file").write_bytes(b"x")
    assert sn.cleanup() == ["stray-file"]
    assert not (sn.root / "snapshots" / "stray-file").exists()


def test_failed_create_leaves_no_directory(sn: OverlaySnapshotter) -> None:
    sn.prepare("a")
    before = entries(sn)
    with pytest.raises(AlreadyExists):
        sn.prepare("a")
    with pytest.raises(NotFound):
        sn.view("b", "missing")
    assert entries(sn) == before, "no new-* directory may survive a refused prepare/view"


def test_no_parent_is_a_bind(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    active = sn.prepare("active")
    assert active == [Mount("bind", str(snapshot_dir(sn, "active") / "fs"), ("rw", "rbind"))]
    view = sn.view("view")
    assert view == [Mount("bind", str(snapshot_dir(sn, "view") / "fs"), ("ro", "rbind"))]
    assert sn.mounts("active") == active and sn.mounts("view") == view
    with mounted(view, tmp_path / "view") as mp, pytest.raises(OSError):
        (mp / "x").write_bytes(b"x")


def test_single_parent_view_is_ro_bind_of_parent(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    commit_with_file(sn, tmp_path, "c1", "", b"c1")
    mounts = sn.view("view", "c1")
    assert mounts == [Mount("bind", str(snapshot_dir(sn, "c1") / "fs"), ("ro", "rbind"))]
    with mounted(mounts, tmp_path / "view") as mp:
        assert (mp / "who").read_bytes() == b"c1"
        with pytest.raises(OSError):
            (mp / "x").write_bytes(b"x")
    assert not (snapshot_dir(sn, "c1") / "fs" / "x").exists()


def test_lowerdirs_nearest_first(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    parent = ""
    for name in ("c1", "c2", "c3"):
        commit_with_file(sn, tmp_path, name, parent, name.encode())
        parent = name
    lowers = [str(snapshot_dir(sn, n) / "fs") for n in ("c3", "c2", "c1")]

    [active] = sn.prepare("active", "c3")
    a = snapshot_dir(sn, "active")
    assert (active.type, active.source) == ("overlay", "overlay")
    assert active.options[:3] == (
        f"workdir={a / 'work'}",
        f"upperdir={a / 'fs'}",
        "lowerdir=" + ":".join(lowers),
    )
    with mounted([active], tmp_path / "active") as mp:
        assert (mp / "who").read_bytes() == b"c3", "the nearest layer must win"
        (mp / "new").write_bytes(b"new")
    assert (a / "fs" / "new").read_bytes() == b"new", "writes land in the upper dir"

    [view] = sn.view("view", "c3")
    assert view.type == "overlay"
    assert option(view, "lowerdir=") == [":".join(lowers)]
    assert not option(view, "upperdir=") and not option(view, "workdir=")
    with mounted([view], tmp_path / "view") as mp:
        assert (mp / "who").read_bytes() == b"c3"
        with pytest.raises(OSError):
            (mp / "x").write_bytes(b"x")


@pytest.mark.skipif(not INDEX_PARAM.exists(), reason=f"{INDEX_PARAM} does not exist")
def test_index_off(sn: OverlaySnapshotter, overlay_root: Path, tmp_path: Path) -> None:
    commit_with_file(sn, tmp_path, "c1", "", b"c1")
    [m] = sn.prepare("active", "c1")
    assert m.options.count("index=off") == 1
    sn.close()
    configured = OverlaySnapshotter(overlay_root, mount_options=("index=on",))
    try:
        [m] = configured.prepare("active-2", "c1")
        assert "index=off" not in m.options and "index=on" in m.options
    finally:
        configured.close()


def test_no_index_off_without_parameter(overlay_root: Path) -> None:
    sn = OverlaySnapshotter(overlay_root)
    try:
        assert ("index=off" in sn.options) == INDEX_PARAM.exists()
    finally:
        sn.close()


def test_child_fs_owned_like_parent(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    mounts = sn.prepare("p-a")
    with mounted(mounts, tmp_path / "p") as mp:
        os.chown(mp, 1000, 1001)
    sn.commit("p", "p-a")
    sn.prepare("child", "p")
    st = (snapshot_dir(sn, "child") / "fs").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1001)
