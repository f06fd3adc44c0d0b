"""Mounting for real: bind, read-only bind, overlay (also with 128 long lowerdirs), recursive
unmount and temporary mounts. Needs root."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore.errdefs import CtrstoreError, InvalidArgument, NotFound, Unimplemented
from ctrstore.mount import (
    Mount,
    is_mountpoint,
    mount_all,
    mount_command,
    mountinfo,
    remove_volatile,
    temp_mount,
    unmount,
    unmount_all,
)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, with anything a failing test left mounted under it unmounted afterwards."""
    yield tmp_path
    unmount(tmp_path, lazy=True)


def mkdirs(base: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        p = base / n
        p.mkdir(parents=True)
        out.append(p)
    return out


def overlay(lowers: list[Path], upper: Path | None = None, work: Path | None = None) -> Mount:
    opts = []
    if upper is not None and work is not None:
        opts += [f"workdir={work}", f"upperdir={upper}"]
    opts += ["lowerdir=" + ":".join(str(p) for p in lowers), "index=off"]
    return Mount("overlay", "overlay", tuple(opts))


def test_mount_json_and_command() -> None:
    m = Mount("overlay", "overlay", ("workdir=/w", "upperdir=/u", "lowerdir=/a:/b", "volatile"))
    j = m.to_json()
    assert j == {"type": "overlay", "source": "overlay", "options": list(m.options)}
    assert Mount.from_json(json.loads(json.dumps(j))) == m
    assert Mount.from_json({"Type": "bind", "Source": "/x", "Options": None}) == Mount("bind", "/x")
    with pytest.raises(InvalidArgument):
        Mount.from_json({"source": "/x"})
    with pytest.raises(Unimplemented):
        Mount.from_json({"type": "bind", "source": "/x", "target": "sub"})
    assert mount_command([m, Mount("bind", "/a b", ())], "/mnt") == (
        "mount -t overlay overlay /mnt -o workdir=/w,upperdir=/u,lowerdir=/a:/b,volatile\n"
        "mount -t bind '/a b' /mnt"
    )
    assert remove_volatile([m])[0].options == ("workdir=/w", "upperdir=/u", "lowerdir=/a:/b")
    assert not m.readonly
    assert overlay([Path("/a"), Path("/b")]).readonly
    assert Mount("bind", "/x", ("rbind", "ro")).readonly


@pytest.mark.root
def test_bind_and_read_only_bind(scratch: Path) -> None:
    src, rw, ro = mkdirs(scratch, "src", "rw", "ro")
    (src / "f").write_text("hello")
    Mount("bind", str(src), ("rbind", "rw")).mount(rw)
    Mount("bind", str(src), ("rbind", "ro")).mount(ro)
    assert is_mountpoint(rw) and is_mountpoint(ro)
    assert (ro / "f").read_text() == "hello"
    (rw / "g").write_text("via rw")
    assert (src / "g").read_text() == "via rw"
    with pytest.raises(OSError) as e:
        (ro / "h").write_text("nope")
    assert e.value.errno == errno.EROFS
    ro_info = next(m for m in mountinfo() if m.mount_point == ro.resolve())
    assert "ro" in ro_info.options.split(",")
    unmount(rw)
    unmount(ro)
    assert not is_mountpoint(rw) and not is_mountpoint(ro)


@pytest.mark.root
def test_overlay_upper_and_lowerdir_order(scratch: Path) -> None:
    top, bottom, upper, work, merged = mkdirs(scratch, "top", "bottom", "upper", "work", "merged")
    (top / "both").write_text("top")
    (bottom / "both").write_text("bottom")
    (bottom / "only-bottom").write_text("b")
    overlay([top, bottom], upper, work).mount(merged)
    assert (merged / "both").read_text() == "top"  # leftmost lowerdir wins
    assert (merged / "only-bottom").read_text() == "b"
    (merged / "new").write_text("written")
    assert (upper / "new").read_text() == "written"
    assert not (top / "new").exists() and not (bottom / "new").exists()
    info = next(m for m in mountinfo() if m.mount_point == merged.resolve())
    assert info.fstype == "overlay"
    unmount(merged)
    assert not is_mountpoint(merged)


@pytest.mark.root
def test_overlay_128_long_lowerdirs(scratch: Path) -> None:
    snapshots = scratch / ("x" * 60) / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    lowers = [snapshots / str(i) / "fs" for i in range(128, 0, -1)]
    for p in lowers:
        p.mkdir(parents=True)
    (snapshots / "1" / "fs" / "f").write_text("1")
    (snapshots / "128" / "fs" / "f").write_text("128")
    (snapshots / "64" / "fs" / "mid").write_text("64")
    upper, work, merged = mkdirs(snapshots / "129", "fs", "work", "merged")
    m = overlay(lowers, upper, work)
    assert sum(len(o) for o in m.options) > 4096  # more than a page: needs relative lowerdirs
    m.mount(merged)
    assert (merged / "f").read_text() == "128"
    assert (merged / "mid").read_text() == "64"
    (merged / "new").write_text("n")
    assert (upper / "new").exists()
    unmount(merged)
    assert not is_mountpoint(merged)


@pytest.mark.root
def test_recursive_unmount_of_nested_mounts(scratch: Path) -> None:
    (top,) = mkdirs(scratch, "top")
    tmpfs = Mount("tmpfs", "tmpfs", ("size=1m",))
    tmpfs.mount(top)
    (top / "a" / "b").mkdir(parents=True)
    tmpfs.mount(top / "a")
    (top / "a" / "b").mkdir()
    Mount("bind", str(scratch), ("rbind", "ro")).mount(top / "a" / "b")

    def under() -> int:
        t = top.resolve()
        return sum(1 for m in mountinfo() if m.mount_point == t or t in m.mount_point.parents)

    assert under() >= 3
    unmount(top, recursive=True)
    assert under() == 0
    unmount(scratch / "missing", recursive=True)  # nothing there: fine


@pytest.mark.root
def test_stacked_mounts_and_unmount_all(scratch: Path) -> None:
    (t,) = mkdirs(scratch, "t")
    mount_all([Mount("tmpfs", "one", ("size=1m",)), Mount("tmpfs", "two", ("size=1m",))], t)
    assert [m.source for m in mountinfo() if m.mount_point == t.resolve()] == ["one", "two"]
    unmount(t, recursive=False)
    assert [m.source for m in mountinfo() if m.mount_point == t.resolve()] == ["one"]
    unmount_all(t)
    assert not is_mountpoint(t)
    unmount(t, recursive=False)  # not a mount point: fine


@pytest.mark.root
def test_mount_all_undoes_on_failure(scratch: Path) -> None:
    (t,) = mkdirs(scratch, "t")
    with pytest.raises(NotFound, match="no-such-source"):
        mount_all(
            [
                Mount("tmpfs", "tmpfs", ("size=1m",)),
                Mount("bind", str(scratch / "no-such-source"), ("rbind",)),
            ],
            t,
        )
    assert not is_mountpoint(t)


@pytest.mark.root
def test_temp_mount_cleans_up_even_on_error(scratch: Path) -> None:
    lower, upper, work = mkdirs(scratch, "lower", "upper", "work")
    (lower / "f").write_text("lower")
    base = scratch / "tmpmounts"
    m = Mount("overlay", "overlay", (*overlay([lower], upper, work).options, "volatile"))
    with temp_mount([m], base) as root:
        assert is_mountpoint(root) and root.parent == base
        assert (root / "f").read_text() == "lower"
        info = next(i for i in mountinfo() if i.mount_point == root.resolve())
        assert "volatile" not in info.super_options
    assert not root.exists()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), temp_mount([Mount("tmpfs", "tmpfs", ("size=1m",))], base) as root:
        (root / "x").mkdir()
        Mount("tmpfs", "tmpfs", ("size=1m",)).mount(root / "x")  # nested: unmounted too
        raise Boom
    assert not root.exists()
    assert list(base.iterdir()) == []

    missing = Mount("bind", str(scratch / "missing"), ("rbind",))
    with pytest.raises(NotFound), temp_mount([missing], base):  # failing to mount cleans up too
        pytest.fail("not reached")
    assert list(base.iterdir()) == []


@pytest.mark.root
def test_clear_errors(scratch: Path) -> None:
    (t,) = mkdirs(scratch, "t")
    with pytest.raises(Unimplemented, match=r"nosuchfs.*unknown or unsupported file system type") as e:
        Mount("nosuchfs", "none").mount(t)
    assert str(t) in str(e.value)
    with pytest.raises(NotFound, match="no-such-dir"):
        Mount("bind", str(scratch / "no-such-dir"), ("rbind",)).mount(t)
    with pytest.raises(InvalidArgument, match=r"mount tmpfs .*Invalid argument"):
        Mount("tmpfs", "tmpfs", ("size=lots",)).mount(t)
    with pytest.raises(CtrstoreError, match="overlay"):
        overlay([scratch / "no-a", scratch / "no-b"]).mount(t)
    with pytest.raises(NotFound):
        Mount("tmpfs", "tmpfs").mount(scratch / "no-target")
    assert not is_mountpoint(t)
