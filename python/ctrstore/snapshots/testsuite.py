"""A conformance suite for snapshotters, ported from containerd's
``core/snapshots/testsuite`` (``testsuite.go``, ``helpers.go``, ``issues.go``).

Every case is a plain function ``check_<case>(sn, work)``: ``sn`` is a fresh, empty snapshotter
and ``work`` an empty scratch directory (mount points, reference trees) on an ordinary file
system. Cases perform real mounts through :mod:`ctrstore.mount`, so they need root; each one
unmounts whatever it mounted, also when it fails. A failing check raises ``AssertionError``
saying what was expected. :data:`CASES` maps containerd's case names to the functions::

    for name, check in CASES.items():
        sn = OverlaySnapshotter(tmp / name / "root")
        check(sn, tmp / name / "work")

Trees are compared as containerd's ``fstest.CheckDirectoryEqual`` does: type, permission bits,
owner, content, symlink target, device number, extended attributes (overlay's own hidden) and
hard-link groups; the root directory itself and times are not compared.

``check_rename`` takes ``skip_rename_dir=True`` for overlay-backed snapshotters: without
``redirect_dir`` (containerd never sets it) renaming a directory of a lower layer fails with
EXDEV, so containerd leaves that step out for overlayfs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctrstore._timeutil import format_rfc3339
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ctrstore.labels import GC_ROOT
from ctrstore.mount import Mount, mount_all, unmount
from ctrstore.snapshots import Info, Kind, Snapshotter

__all__ = [
    "CASES",
    "Applier",
    "apply",
    "check_directory_equal",
    "chown",
    "create_dir",
    "create_file",
    "link",
    "mounted",
    "remove_all",
    "rename",
]

Applier = Callable[[Path], None]
"""A change to a directory tree (containerd's ``fstest.Applier``)."""

Check = Callable[[Snapshotter, Path], None]


def _opt() -> dict[str, str]:
    """The labels containerd's suite gives every snapshot (a gc root, so gc leaves it alone)."""
    return {GC_ROOT: format_rfc3339(datetime.now(UTC).replace(microsecond=0))}


# -- appliers (fstest) ---------------------------------------------------------------------


def _at(root: Path, name: str) -> Path:
    return root / name.lstrip("/")


def create_file(name: str, data: bytes, mode: int) -> Applier:
    """Write ``name`` (replacing its content if it exists) and set its permission bits."""

    def fn(root: Path) -> None:
        p = _at(root, name)
        p.write_bytes(data)
        p.chmod(mode)

    return fn


def create_dir(name: str, mode: int) -> Applier:
    """Create ``name`` with ``mode`` (like ``os.MkdirAll``: an existing directory is kept)."""

    def fn(root: Path) -> None:
        p = _at(root, name)
        if not p.is_dir():
            p.mkdir(parents=True)
            p.chmod(mode)

    return fn


def remove_all(name: str) -> Applier:
    """Remove ``name`` and everything below it; a missing path is fine."""

    def fn(root: Path) -> None:
        p = _at(root, name)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    return fn


def chown(name: str, uid: int, gid: int) -> Applier:
    def fn(root: Path) -> None:
        os.lchown(_at(root, name), uid, gid)

    return fn


def link(old: str, new: str) -> Applier:
    """Hard-link ``old`` as ``new``."""

    def fn(root: Path) -> None:
        os.link(_at(root, old), _at(root, new), follow_symlinks=False)

    return fn


def rename(old: str, new: str) -> Applier:
    def fn(root: Path) -> None:
        os.rename(_at(root, old), _at(root, new))

    return fn


def apply(*appliers: Applier) -> Applier:
    """All of ``appliers``, in order."""

    def fn(root: Path) -> None:
        for a in appliers:
            a(root)

    return fn


# -- tree comparison (fstest.CheckDirectoryEqual) ---------------------------------------------

_IGNORED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")


@dataclass(frozen=True)
class _Entry:
    kind: str
    mode: int
    uid: int
    gid: int
    data: bytes | str | int | None
    xattrs: tuple[tuple[str, bytes], ...]

    def describe(self) -> str:
        data = "" if self.data is None else f" {self.data!r}"
        return f"{self.kind} 0{self.mode:o} {self.uid}:{self.gid}{data}"


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for n in sorted(names):
        if n.startswith(_IGNORED_XATTR_PREFIXES):
            continue
        try:
            out.append((n, os.getxattr(path, n, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


def _manifest(root: Path) -> tuple[dict[str, _Entry], set[frozenset[str]]]:
    """Every path below ``root`` (root excluded) and the hard-link groups among them."""
    entries: dict[str, _Entry] = {}
    inodes: dict[tuple[int, int], set[str]] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                r = f"{rel}/{e.name}" if rel else e.name
                st = e.stat(follow_symlinks=False)
                data: bytes | str | int | None = None
                if stat.S_ISDIR(st.st_mode):
                    kind = "dir"
                    stack.append(r)
                elif stat.S_ISREG(st.st_mode):
                    kind = "file"
                    with open(e.path, "rb") as f:
                        data = f.read()
                elif stat.S_ISLNK(st.st_mode):
                    kind, data = "symlink", os.readlink(e.path)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
                    data = st.st_rdev
                elif stat.S_ISFIFO(st.st_mode):
                    kind = "fifo"
                else:
                    kind = "socket"
                if kind != "dir" and st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), set()).add(r)
                entries[r] = _Entry(
                    kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data, _xattrs(e.path)
                )
    return entries, {frozenset(g) for g in inodes.values() if len(g) > 1}


def check_directory_equal(expected: Path, actual: Path) -> None:
    """Raise AssertionError listing how the tree at ``actual`` differs from ``expected``."""
    want, want_links = _manifest(expected)
    got, got_links = _manifest(actual)
    problems: list[str] = []
    for p in sorted(want.keys() - got.keys()):
        problems.append(f"/{p}: missing (expected {want[p].describe()})")
    for p in sorted(got.keys() - want.keys()):
        problems.append(f"/{p}: unexpected {got[p].describe()}")
    for p in sorted(want.keys() & got.keys()):
        if want[p] != got[p]:
            problems.append(f"/{p}: expected {want[p].describe()}, got {got[p].describe()}")
            if want[p].xattrs != got[p].xattrs:
                problems.append(f"/{p}: xattrs expected {want[p].xattrs}, got {got[p].xattrs}")
    if want_links != got_links:
        problems.append(
            f"hard links: expected {sorted(map(sorted, want_links))}, got {sorted(map(sorted, got_links))}"
        )
    if problems:
        shown = problems[:25] + ([f"... and {len(problems) - 25} more"] if len(problems) > 25 else [])
        raise AssertionError(f"{actual} differs from {expected}:\n  " + "\n  ".join(shown))


def _check_equal_with_applier(actual: Path, applier: Applier, work: Path) -> None:
    ref = Path(tempfile.mkdtemp(prefix="expected-", dir=work))
    try:
        applier(ref)
        check_directory_equal(ref, actual)
    finally:
        shutil.rmtree(ref, ignore_errors=True)


# -- mounting ----------------------------------------------------------------------------------


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], target: Path) -> Iterator[Path]:
    """Mount ``mounts`` on ``target`` (created if needed); unmount it again afterwards, also on
    an exception."""
    if not mounts:
        raise AssertionError(f"expected mounts to have entries (mounting on {target})")
    target.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount(target)


@contextlib.contextmanager
def _temp_mounted(mounts: Sequence[Mount], work: Path, prefix: str) -> Iterator[Path]:
    td = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
    try:
        with mounted(mounts, td):
            yield td
    finally:
        with contextlib.suppress(OSError):
            td.rmdir()


def _raises(kind: type[Exception], what: str, fn: Callable[..., object], *args: Any, **kw: Any) -> Exception:
    try:
        fn(*args, **kw)
    except kind as e:
        return e
    except Exception as e:
        raise AssertionError(f"{what}: expected {kind.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: expected {kind.__name__}, but it succeeded")


def _assert_eq(what: str, got: object, want: object) -> None:
    if got != want:
        raise AssertionError(f"{what}: expected {want!r}, got {got!r}")


def _assert_gone(sn: Snapshotter, key: str, why: str) -> None:
    _raises(NotFound, f"stat({key!r}) {why}", sn.stat, key)


# -- helpers.go --------------------------------------------------------------------------------

_counter = 0


def _unique(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{os.getpid()}-{_counter}-{time.monotonic_ns()}"


def _create_snapshot(sn: Snapshotter, parent: str, work: Path, applier: Applier) -> str:
    """Prepare on ``parent``, apply through a real mount, commit; returns the committed name."""
    name = _unique("layer")
    prepare = f"{name}-prepare"
    mounts = sn.prepare(prepare, parent, _opt())
    with _temp_mounted(mounts, work, "prepare") as td:
        applier(td)
    sn.commit(name, prepare, _opt())
    return name


def _check_snapshot(sn: Snapshotter, work: Path, name: str, expected: Path) -> None:
    """Mount a view of ``name`` and compare it with ``expected``; the view is removed again."""
    view = f"{name}-view"
    mounts = sn.view(view, name, _opt())
    try:
        with _temp_mounted(mounts, work, "check") as td:
            check_directory_equal(expected, td)
    finally:
        sn.remove(view)


def _check_snapshots(sn: Snapshotter, work: Path, *appliers: Applier) -> None:
    """Build a chain of snapshots, one per applier, checking each (through a view) against the
    same changes applied to one plain directory."""
    flat = Path(tempfile.mkdtemp(prefix="flat", dir=work))
    try:
        parent = ""
        for i, a in enumerate(appliers, 1):
            try:
                name = _create_snapshot(sn, parent, work, a)
            except AssertionError:
                raise
            except Exception as e:
                raise AssertionError(f"creating snapshot {i} failed: {type(e).__name__}: {e}") from e
            a(flat)
            try:
                _check_snapshot(sn, work, name, flat)
            except AssertionError as e:
                raise AssertionError(f"snapshot {i} of {len(appliers)}: {e}") from e
            parent = name
    finally:
        shutil.rmtree(flat, ignore_errors=True)


def _check_info(a: Info, b: Info) -> None:
    for field in ("kind", "name", "parent", "labels", "created_at", "updated_at"):
        _assert_eq(f"{a.name}: {field}", getattr(b, field), getattr(a, field))


# -- testsuite.go ------------------------------------------------------------------------------


def check_basic(sn: Snapshotter, work: Path) -> None:
    """The basic workflow: prepare, fill, commit, prepare on top, change, commit, view, remove."""
    initial = apply(
        create_file("/foo", b"foo\n", 0o777),
        create_dir("/a", 0o755),
        create_dir("/a/b", 0o755),
        create_dir("/a/b/c", 0o755),
    )
    diff = apply(
        create_file("/bar", b"bar\n", 0o777),
        create_file("/foo", b"bar\n", 0o777),  # change the content of foo
        remove_all("/a/b"),
    )

    # containerd's suite uses paths as keys; do the same.
    preparing = str(work / "preparing")
    mounts = sn.prepare(preparing, "", _opt())
    with mounted(mounts, work / "preparing") as mp:
        initial(mp)

    committed = str(work / "committed")
    sn.commit(committed, preparing, _opt())
    si = sn.stat(committed)
    _assert_eq(f"parent of {committed}", si.parent, "")
    _assert_eq(f"kind of {committed}", si.kind, Kind.COMMITTED)
    _assert_gone(sn, preparing, "after commit")

    nxt = str(work / "nextlayer")
    mounts = sn.prepare(nxt, committed, _opt())
    with mounted(mounts, work / "nextlayer") as mp:
        _check_equal_with_applier(mp, initial, work)
        diff(mp)

    ni = sn.stat(nxt)
    _assert_eq(f"parent of {nxt}", ni.parent, committed)
    _assert_eq(f"kind of {nxt}", ni.kind, Kind.ACTIVE)

    next_committed = str(work / "committed-next")
    sn.commit(next_committed, nxt, _opt())
    si2 = sn.stat(next_committed)
    _assert_eq(f"parent of {next_committed}", si2.parent, committed)
    _assert_eq(f"kind of {next_committed}", si2.kind, Kind.COMMITTED)
    _assert_gone(sn, nxt, "after commit")

    walked = {i.name: i for i in sn.walk()}
    for want in (si, si2):
        if want.name not in walked:
            raise AssertionError(f"walk did not return {want.name!r} (got {sorted(walked)})")
        _assert_eq(f"walk's info of {want.name!r}", walked[want.name], want)

    nextnext = str(work / "nextnextlayer")
    mounts = sn.view(nextnext, next_committed, _opt())
    with mounted(mounts, work / "nextnextlayer") as mp:
        _check_equal_with_applier(mp, apply(initial, diff), work)
    sn.remove(nextnext)

    err = _raises(FailedPrecondition, f"remove({committed!r}) that has a child", sn.remove, committed)
    if "remove" not in str(err):
        raise AssertionError(f"error removing a parent should mention 'remove': {err}")
    sn.remove(next_committed)
    sn.remove(committed)


def _prepare_write_commit(sn: Snapshotter, work: Path, key: str, name: str, parent: str, data: bytes) -> None:
    mounts = sn.prepare(key, parent, _opt())
    with mounted(mounts, work / key) as mp:
        (mp / "foo").write_bytes(data)
    sn.commit(name, key, _opt())


def check_stat_active(sn: Snapshotter, work: Path) -> None:
    """Stat of a prepared snapshot says Active, its key as name, no parent, its labels."""
    labels = _opt()
    mounts = sn.prepare("preparing", "", labels)
    with mounted(mounts, work / "preparing") as mp:
        (mp / "foo").write_bytes(b"foo\n")
    si = sn.stat("preparing")
    _assert_eq("name", si.name, "preparing")
    _assert_eq("kind", si.kind, Kind.ACTIVE)
    _assert_eq("parent", si.parent, "")
    _assert_eq("labels", si.labels, labels)


def check_stat_committed(sn: Snapshotter, work: Path) -> None:
    """Stat of a committed snapshot says Committed, its name, no parent."""
    _prepare_write_commit(sn, work, "preparing", "committed", "", b"foo\n")
    si = sn.stat("committed")
    _assert_eq("name", si.name, "committed")
    _assert_eq("kind", si.kind, Kind.COMMITTED)
    _assert_eq("parent", si.parent, "")
    _assert_gone(sn, "preparing", "after commit")


def check_transitivity(sn: Snapshotter, work: Path) -> None:
    """A <- B: B's parent is A, A's parent is none; each shows its own version of a file."""
    _prepare_write_commit(sn, work, "preparing", "snapA", "", b"foo\n")
    _prepare_write_commit(sn, work, "next", "snapB", "snapA", b"foo bar\n")
    si_a, si_b = sn.stat("snapA"), sn.stat("snapB")
    si_parent_b = sn.stat(si_b.parent)
    _assert_eq("parent of snapA", si_a.parent, "")
    _assert_eq("parent of snapB", si_b.parent, "snapA")
    _assert_eq("parent of snapB's parent", si_parent_b.parent, "")
    for name, want in (("snapA", b"foo\n"), ("snapB", b"foo bar\n")):
        mounts = sn.view(f"{name}-view", name, _opt())
        with mounted(mounts, work / f"{name}-view") as mp:
            _assert_eq(f"/foo in a view of {name}", (mp / "foo").read_bytes(), want)
        sn.remove(f"{name}-view")


def check_prepare_view_failures(sn: Snapshotter, work: Path) -> None:
    """Prepare and View refuse a taken key (AlreadyExists), a missing parent (NotFound) and a
    parent that is not committed (InvalidArgument); a refused call leaves nothing behind."""
    sn.prepare("preparing", "", _opt())
    sn.commit("snapA", "preparing", _opt())

    sn.prepare("newlayer", "snapA", _opt())
    _raises(AlreadyExists, "view with the key of an active snapshot", sn.view, "newlayer", "snapA", _opt())
    _assert_eq("kind of newlayer after the refused view", sn.stat("newlayer").kind, Kind.ACTIVE)

    sn.prepare("prepLayer", "snapA", _opt())
    _raises(AlreadyExists, "second prepare with the same key", sn.prepare, "prepLayer", "snapA", _opt())

    sn.view("viewLayer", "snapA", _opt())
    _raises(AlreadyExists, "second view with the same key", sn.view, "viewLayer", "snapA", _opt())
    _raises(AlreadyExists, "prepare with the key of a view", sn.prepare, "viewLayer", "", _opt())
    _raises(AlreadyExists, "prepare with the name of a committed snapshot", sn.prepare, "snapA", "", _opt())

    for create in (sn.prepare, sn.view):
        what = create.__name__
        _raises(NotFound, f"{what} on a missing parent", create, "orphan", "does-not-exist", _opt())
        _assert_gone(sn, "orphan", f"after a {what} on a missing parent")
        _raises(InvalidArgument, f"{what} on an active parent", create, "on-active", "newlayer", _opt())
        _assert_gone(sn, "on-active", f"after a {what} on an active parent")
        _raises(InvalidArgument, f"{what} on a view parent", create, "on-view", "viewLayer", _opt())
        _assert_gone(sn, "on-view", f"after a {what} on a view parent")

    # The refused calls must not have used up anything: the keys still work.
    sn.prepare("orphan", "snapA", _opt())
    sn.view("on-view", "", _opt())


def check_deleted_files_in_child_snapshot(sn: Snapshotter, work: Path) -> None:
    """A file removed in a child layer stays removed in the child's children."""
    _check_snapshots(
        sn,
        work,
        apply(create_file("/foo", b"foo\n", 0o777), create_file("/foobar", b"foobar\n", 0o777)),
        apply(remove_all("/foobar")),
        apply(),
    )


def check_remove_intermediate_snapshot(sn: Snapshotter, work: Path) -> None:
    """A snapshot with a child cannot be removed (FailedPrecondition); leaf-first works."""
    mounts = sn.prepare("base", "", _opt())
    with mounted(mounts, work / "base"):
        pass
    sn.commit("committed-base", "base", _opt())
    sn.prepare("intermediate", "committed-base", _opt())
    sn.commit("committed-inter", "intermediate", _opt())
    sn.prepare("toplayer", "committed-inter", _opt())

    _raises(FailedPrecondition, "removing an intermediate snapshot", sn.remove, "committed-inter")
    _raises(FailedPrecondition, "removing the base snapshot", sn.remove, "committed-base")
    _assert_eq("kind after the refused remove", sn.stat("committed-inter").kind, Kind.COMMITTED)
    sn.remove("toplayer")
    sn.remove("committed-inter")
    sn.remove("committed-base")
    if list(sn.walk()):
        raise AssertionError(f"snapshots left after removing all: {[i.name for i in sn.walk()]}")


def _base_test_snapshots(sn: Snapshotter) -> None:
    """c1 (committed), c2 (committed on c1), a1 (active on c2), a2 (active), v1 (view on c2),
    v2 (view)."""
    sn.prepare("c1-a", "", _opt())
    sn.commit("c1", "c1-a", _opt())
    sn.prepare("c2-a", "c1", _opt())
    sn.commit("c2", "c2-a", _opt())
    sn.prepare("a1", "c2", _opt())
    sn.prepare("a2", "", _opt())
    sn.view("v1", "c2", _opt())
    sn.view("v2", "", _opt())


def check_update(sn: Snapshotter, work: Path) -> None:
    """Update changes labels only (whole set, or by ``labels.<key>`` field paths), bumps
    Updated, keeps Created; any other field path is InvalidArgument."""
    t1 = datetime.now(UTC)
    _base_test_snapshots(sn)
    t2 = datetime.now(UTC)
    cases = [
        ("c1", Kind.COMMITTED, ""),
        ("c2", Kind.COMMITTED, "c1"),
        ("a1", Kind.ACTIVE, "c2"),
        ("a2", Kind.ACTIVE, ""),
        ("v1", Kind.VIEW, "c2"),
        ("v2", Kind.VIEW, ""),
    ]
    for name, kind, parent in cases:
        st = sn.stat(name)
        if st.created_at is None or not t1 <= st.created_at <= t2:
            raise AssertionError(f"({name}) created time {st.created_at}: expected between {t1} and {t2}")
        _assert_eq(f"({name}) updated time", st.updated_at, st.created_at)
        _assert_eq(f"({name}) kind", st.kind, kind)
        _assert_eq(f"({name}) parent", st.parent, parent)
        _assert_eq(f"({name}) name", st.name, name)
        created = st.created_at

        root = _opt()
        expected = {"l1": "v1", "l2": "v2", "l3": "v3", **root}
        u1 = datetime.now(UTC)
        st = sn.update(replace(st, parent="doesnotexist", labels=dict(expected)))
        u2 = datetime.now(UTC)
        _assert_eq(f"({name}) created time after update", st.created_at, created)
        if st.updated_at is None or not u1 <= st.updated_at <= u2:
            raise AssertionError(f"({name}) updated time {st.updated_at}: expected between {u1} and {u2}")
        _assert_eq(f"({name}) kind after update", st.kind, kind)
        _assert_eq(f"({name}) parent after update (must not change)", st.parent, parent)
        _assert_eq(f"({name}) name after update", st.name, name)
        _assert_eq(f"({name}) labels after a full update", st.labels, expected)

        st = sn.update(replace(st, labels={"l1": "updated", "l4": "v4"}), "labels.l1", "labels.l2")
        _assert_eq(
            f"({name}) labels after updating labels.l1 and labels.l2",
            st.labels,
            {"l1": "updated", "l3": "v3", **root},
        )

        expected = {"l4": "v4", **root}
        st = sn.update(replace(st, labels=dict(expected)), "labels")
        _assert_eq(f"({name}) labels after updating 'labels'", st.labels, expected)
        _assert_eq(f"({name}) labels seen by stat", sn.stat(name).labels, expected)

        _raises(
            InvalidArgument,
            f"({name}) update with field path 'parent'",
            sn.update,
            replace(st, parent="doesnotexist"),
            "parent",
        )
        _assert_eq(f"({name}) parent after the refused update", sn.stat(name).parent, parent)
        _assert_eq(f"({name}) labels after the refused update", sn.stat(name).labels, expected)

    _raises(NotFound, "update of a missing snapshot", sn.update, Info(Kind.ACTIVE, "missing"))


def check_remove(sn: Snapshotter, work: Path) -> None:
    """A removed key can be used again, as an active snapshot, a view or a commit name."""
    sn.prepare("committed-a", "", _opt())
    sn.commit("committed-1", "committed-a", _opt())
    sn.prepare("reuse-1", "committed-1", _opt())
    sn.remove("reuse-1")
    _assert_gone(sn, "reuse-1", "after remove")
    sn.view("reuse-1", "committed-1", _opt())
    sn.remove("reuse-1")
    sn.prepare("reuse-1", "", _opt())
    sn.remove("committed-1")
    _assert_gone(sn, "committed-1", "after remove")
    sn.commit("committed-1", "reuse-1", _opt())
    _assert_eq("kind of the re-used commit name", sn.stat("committed-1").kind, Kind.COMMITTED)
    _raises(NotFound, "remove of a missing snapshot", sn.remove, "reuse-1")


def check_view_readonly(sn: Snapshotter, work: Path) -> None:
    """A view mounts read-only: writing into it fails. Checked for each mount shape: a view of
    nothing, of one committed snapshot, and of a chain of two."""
    sn.prepare("preparing", "", _opt())
    sn.commit("committed", "preparing", _opt())
    sn.prepare("preparing-2", "committed", _opt())
    sn.commit("committed-2", "preparing-2", _opt())
    for view, parent in (("view-empty", ""), ("view", "committed"), ("view-2", "committed-2")):
        mounts = sn.view(view, parent, _opt())
        with mounted(mounts, work / f"{view}-mount") as mp:
            testfile = mp / "testfile"
            try:
                testfile.write_bytes(b"testcontent")
            except OSError:
                pass  # EROFS expected, another error code is fine too
            else:
                raise AssertionError(f"writing {testfile} in a view of {parent or 'nothing'} should fail")
        sn.remove(view)
    sn.remove("committed-2")
    sn.remove("committed")


def check_move_file_from_lower_layer(sn: Snapshotter, work: Path) -> None:
    """Files moved (linked and removed) out of a lower layer are gone at the old place."""
    _check_snapshots(
        sn,
        work,
        apply(
            create_dir("/dir1", 0o700),
            create_file("/dir1/f1", b"Hello", 0o644),
            create_dir("dir2", 0o700),
            create_file("dir2/f2", b"...", 0o644),
        ),
        apply(
            create_dir("/dir3", 0o700),
            create_file("/dir3/f1", b"Hello", 0o644),
            remove_all("/dir1"),
            link("dir2/f2", "dir3/f2"),
            remove_all("dir2/f2"),
        ),
    )


def check_close_twice(sn: Snapshotter, work: Path) -> None:
    """Close may be called twice."""
    n = _unique("closeTwice")
    sn.prepare(f"{n}-prepare", "", _opt())
    sn.commit(n, f"{n}-prepare", _opt())
    sn.remove(n)
    sn.close()
    sn.close()


def check_root_permission(sn: Snapshotter, work: Path) -> None:
    """The root of a new, empty snapshot is mode 0755."""
    mounts = sn.prepare("preparing", "", _opt())
    with mounted(mounts, work / "preparing") as mp:
        mode = stat.S_IMODE(mp.stat().st_mode)
        if mode != 0o755:
            raise AssertionError(f"root of a new snapshot: expected mode 0755, got 0{mode:o}")


def check_128_layers_mount(sn: Snapshotter, work: Path) -> None:
    """128 committed layers, each adding a file, overwriting one and replacing a directory; an
    active snapshot and a view on top see the whole stack (long ``lowerdir`` options)."""
    layers = [
        apply(
            create_file("/bottom", b"way at the bottom\n", 0o777),
            create_file("/overwriteme", b"FIRST!\n", 0o777),
            create_dir("/addhere", 0o755),
            create_dir("/onlyme", 0o755),
            create_file("/onlyme/bottom", b"bye!\n", 0o777),
        )
    ]
    for i in range(1, 128):
        layers.append(
            apply(
                create_file("/overwriteme", f"{i} WAS HERE!\n".encode(), 0o777),
                create_file(f"/addhere/file-{i}", b"same\n", 0o755),
                remove_all("/onlyme"),
                create_dir("/onlyme", 0o755),
                create_file(f"/onlyme/file-{i}", b"only me!\n", 0o777),
            )
        )
    flat = work / "flat"
    flat.mkdir()
    parent = ""
    for i, layer in enumerate(layers):
        key = f"prepare-layer-{i}"
        mounts = sn.prepare(key, parent, _opt())
        with mounted(mounts, work / "layer") as mp:
            seen = len(os.listdir(mp / "addhere")) if i else 0
            if seen != max(i - 1, 0):
                raise AssertionError(f"[layer {i}] /addhere has {seen} files before apply, expected {i - 1}")
            layer(mp)
        layer(flat)
        parent = f"committed-{i}"
        sn.commit(parent, key, _opt())

    mounts = sn.prepare("top", parent, _opt())
    with mounted(mounts, work / "top") as mp:
        check_directory_equal(flat, mp)
        added = len(os.listdir(mp / "addhere"))
        _assert_eq("files in /addhere of the active snapshot on 128 layers", added, 127)
        (mp / "written-on-top").write_bytes(b"top\n")
        _assert_eq("a file written on top", (mp / "written-on-top").read_bytes(), b"top\n")

    mounts = sn.view("fullview", parent, _opt())
    with mounted(mounts, work / "fullview") as mp:
        check_directory_equal(flat, mp)


def check_walk(sn: Snapshotter, work: Path) -> None:
    """Walk filters: by label (present or value), kind, name, parent; several filters OR'ed."""
    root = {GC_ROOT: "check-walk"}
    sn.prepare("a-np", "", root)
    sn.prepare("p-tmp", "", root)
    sn.commit("p", "p-tmp", root)
    sn.prepare("a", "p", root)
    sn.view("v", "p", root)
    sn.prepare("p-wl-tmp", "", root)
    sn.commit("p-wl", "p-wl-tmp", {"l": "1", **root})
    sn.prepare("a-wl", "p-wl", {"l": "2", **root})
    sn.view("v-wl", "p-wl", {"l": "3", **root})
    sn.prepare("a-np-wl", "", {"l": "2", **root})

    cases: list[tuple[list[str], list[str]]] = [
        (
            ["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"],
            ['labels."containerd.io/gc.root"==check-walk'],
        ),
        (["a-np", "a", "a-wl", "a-np-wl"], ['kind==active,labels."containerd.io/gc.root"==check-walk']),
        (["v", "v-wl"], ['kind==view,labels."containerd.io/gc.root"==check-walk']),
        (["p", "p-wl"], ['kind==committed,labels."containerd.io/gc.root"==check-walk']),
        (["p", "a-np-wl"], ["name==p", "name==a-np-wl"]),
        (["a-wl"], ["name==a-wl,labels.l"]),
        (["a", "v"], ["parent==p"]),
        (["a", "v", "a-wl", "v-wl"], ['parent!="",labels."containerd.io/gc.root"==check-walk']),
        (["p-wl", "a-wl", "v-wl", "a-np-wl"], ["labels.l"]),
        (["a-wl", "a-np-wl"], ["labels.l==2"]),
    ]
    for i, (matches, flts) in enumerate(cases):
        actual = sorted(info.name for info in sn.walk(*flts))
        _assert_eq(f"[{i}] walk({', '.join(flts)})", actual, sorted(matches))


# -- issues.go ---------------------------------------------------------------------------------


def check_layer_file_update(sn: Snapshotter, work: Path) -> None:
    """Updating a file's content and mode in an upper layer (docker#21555); run twice, across
    a second boundary, as containerd does (five times there)."""
    l1 = apply(
        create_dir("/etc", 0o700),
        create_file("/etc/hosts", b"mydomain 10.0.0.1", 0o644),
        create_file("/etc/profile", b"PATH=/usr/bin", 0o644),
    )
    l2 = apply(
        create_file("/etc/hosts", b"mydomain 10.0.0.2", 0o644),
        create_file("/etc/profile", b"PATH=/usr/bin", 0o666),
        create_dir("/root", 0o700),
        create_file("/root/.bashrc", b"PATH=/usr/sbin:/usr/bin", 0o644),
    )
    for attempt in range(2):
        if attempt:
            time.sleep(1 - (time.time() % 1))  # to the next second boundary
        _check_snapshots(sn, work, l1, l2)


def check_remove_directory_in_lower_layer(sn: Snapshotter, work: Path) -> None:
    """A directory removed and re-created hides the lower layer's content (docker#25244)."""
    _check_snapshots(
        sn,
        work,
        apply(create_dir("/lib", 0o700), create_file("/lib/hidden", b"", 0o644)),
        apply(remove_all("/lib"), create_dir("/lib", 0o700), create_file("/lib/not-hidden", b"", 0o644)),
        apply(create_file("/lib/newfile", b"", 0o644)),
    )


def check_chown(sn: Snapshotter, work: Path) -> None:
    """Owners changed in an upper layer, down a directory chain (docker#20240, #24913, #28391)."""
    _check_snapshots(
        sn,
        work,
        apply(
            create_dir("/opt", 0o700),
            create_dir("/opt/a", 0o700),
            create_dir("/opt/a/b", 0o700),
            create_file("/opt/a/b/file.txt", b"hello", 0o644),
        ),
        apply(
            chown("/opt", 1, 1),
            chown("/opt/a", 1, 1),
            chown("/opt/a/b", 1, 1),
            chown("/opt/a/b/file.txt", 1, 1),
        ),
    )


def check_rename(sn: Snapshotter, work: Path, *, skip_rename_dir: bool = False) -> None:
    """Renames in an upper layer (docker#25409): a file renamed over another, a file renamed,
    and - unless ``skip_rename_dir`` (overlay without redirect_dir) - a lower directory."""
    l1 = apply(
        create_dir("/dir1", 0o700),
        create_dir("/somefiles", 0o700),
        create_file("/somefiles/f1", b"was here first!", 0o644),
        create_file("/somefiles/f2", b"nothing interesting", 0o644),
    )
    changes: list[Applier] = [] if skip_rename_dir else [rename("/dir1", "/dir2")]
    changes += [
        create_file("/somefiles/f1-overwrite", b"new content 1", 0o644),
        rename("/somefiles/f1-overwrite", "/somefiles/f1"),
        rename("/somefiles/f2", "/somefiles/f3"),
    ]
    _check_snapshots(sn, work, l1, apply(*changes))


def check_directory_permission_on_commit(sn: Snapshotter, work: Path) -> None:
    """Directory owners survive commits, removal and re-creation (docker#27298)."""
    _check_snapshots(
        sn,
        work,
        apply(
            create_dir("/dir1", 0o700),
            create_dir("/dir2", 0o700),
            create_dir("/dir3", 0o700),
            create_dir("/dir4", 0o700),
            create_file("/dir4/f1", b"...", 0o644),
            create_dir("/dir5", 0o700),
            create_file("/dir5/f1", b"...", 0o644),
            chown("/dir1", 1, 1),
            chown("/dir2", 1, 1),
            chown("/dir3", 1, 1),
            chown("/dir5", 1, 1),
            chown("/dir5/f1", 1, 1),
        ),
        apply(
            chown("/dir2", 0, 0),
            remove_all("/dir3"),
            chown("/dir4", 1, 1),
            chown("/dir4/f1", 1, 1),
        ),
        apply(
            create_dir("/dir3", 0o700),
            chown("/dir3", 1, 1),
            remove_all("/dir5"),
            create_dir("/dir5", 0o700),
            chown("/dir5", 1, 1),
        ),
    )


def check_stat_in_walk(sn: Snapshotter, work: Path) -> None:
    """Stat may be called while walking, and agrees with what walk returned."""
    prefix = "stats-in-walk-"
    c1, c2 = f"{prefix}c1", f"{prefix}c2"
    sn.prepare(f"{c1}-a", "", _opt())
    sn.commit(c1, f"{c1}-a", _opt())
    sn.prepare(f"{c2}-a", c1, _opt())
    sn.commit(c2, f"{c2}-a", _opt())
    sn.prepare(f"{prefix}a1", c2, _opt())
    sn.view(f"{prefix}v1", c2, _opt())
    seen = []
    for info in sn.walk():
        if info.name.startswith(prefix):
            _check_info(info, sn.stat(info.name))
            seen.append(info.name)
    _assert_eq("snapshots walked", sorted(seen), sorted([c1, c2, f"{prefix}a1", f"{prefix}v1"]))


# -- rules from the snapshotter contract (not separate cases in containerd) --------------------


def check_usage(sn: Snapshotter, work: Path) -> None:
    """Usage of an active snapshot follows its files; a committed one keeps what it had at
    commit; a missing key is NotFound."""
    mounts = sn.prepare("active", "", _opt())
    empty = sn.usage("active")
    data = b"x" * 64 * 1024
    with mounted(mounts, work / "active") as mp:
        with open(mp / "big", "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        (mp / "dir").mkdir()
    grown = sn.usage("active")
    if grown.size < empty.size + len(data):
        raise AssertionError(f"usage after writing {len(data)} bytes: {grown} (empty: {empty})")
    if grown.inodes < empty.inodes + 2:
        raise AssertionError(f"usage after adding a file and a directory: {grown} (empty: {empty})")
    sn.commit("committed", "active", _opt())
    committed = sn.usage("committed")
    _assert_eq("inodes of the committed snapshot", committed.inodes, grown.inodes)
    if committed.size < len(data):
        raise AssertionError(f"usage of the committed snapshot {committed}: expected >= {len(data)} bytes")
    _assert_eq("usage of the committed snapshot asked again", sn.usage("committed"), committed)
    _raises(NotFound, "usage of a missing snapshot", sn.usage, "missing")


def check_commit(sn: Snapshotter, work: Path) -> None:
    """Commit only takes an active snapshot (a view or committed one: FailedPrecondition,
    missing: NotFound) to a free name (AlreadyExists); the labels are replaced by the commit's,
    Created is new. Mounts of a committed snapshot: FailedPrecondition."""
    sn.prepare("base-a", "", _opt())
    sn.commit("base", "base-a", _opt())
    sn.view("a-view", "base", _opt())
    sn.prepare("active", "base", {"from-prepare": "1", **_opt()})

    _raises(FailedPrecondition, "commit of a view", sn.commit, "from-view", "a-view", _opt())
    _assert_gone(sn, "from-view", "after a refused commit")
    _assert_eq("kind of the view after a refused commit", sn.stat("a-view").kind, Kind.VIEW)
    _raises(FailedPrecondition, "commit of a committed snapshot", sn.commit, "again", "base", _opt())
    _raises(NotFound, "commit of a missing key", sn.commit, "from-missing", "missing", _opt())
    _raises(AlreadyExists, "commit to a taken name", sn.commit, "base", "active", _opt())
    _raises(AlreadyExists, "commit to the key of a view", sn.commit, "a-view", "active", _opt())
    _assert_eq("kind of the active after a refused commit", sn.stat("active").kind, Kind.ACTIVE)
    _raises(FailedPrecondition, "mounts of a committed snapshot", sn.mounts, "base")
    _raises(NotFound, "mounts of a missing snapshot", sn.mounts, "missing")

    before = sn.stat("active")
    time.sleep(0.01)
    sn.commit("done", "active", {"from-commit": "2"})
    done = sn.stat("done")
    _assert_eq("labels after commit (replaced, nothing inherited)", done.labels, {"from-commit": "2"})
    _assert_eq("parent after commit", done.parent, "base")
    assert done.created_at is not None and before.created_at is not None
    if done.created_at <= before.created_at:
        raise AssertionError(f"commit should set a new Created: {done.created_at} <= {before.created_at}")
    _assert_eq("updated time after commit", done.updated_at, done.created_at)
    _assert_gone(sn, "active", "after commit")
    # mounts of active snapshots and views still work, and agree with what creation returned.
    m = sn.prepare("again", "done", _opt())
    _assert_eq("mounts('again')", sn.mounts("again"), m)
    m = sn.view("view-2", "done", _opt())
    _assert_eq("mounts('view-2')", sn.mounts("view-2"), m)


def _lowerdirs(mounts: Sequence[Mount]) -> list[str]:
    for m in mounts:
        if m.type == "overlay":
            for o in m.options:
                if o.startswith("lowerdir="):
                    return o[len("lowerdir=") :].split(":")
    return []


def check_commit_keeps_id(sn: Snapshotter, work: Path) -> None:
    """Committing keeps the snapshot's data where it is (same id). Observable on overlay: the
    directory bind-mounted for the active snapshot is the child's first lowerdir and the source
    of a one-parent view. Everywhere: the data written before commit is in children."""
    mounts = sn.prepare("keep-a", "", _opt())
    with mounted(mounts, work / "keep-a") as mp:
        (mp / "marker").write_bytes(b"kept\n")
    sn.commit("keep", "keep-a", _opt())
    child = sn.prepare("keep-child", "keep", _opt())
    view = sn.view("keep-view", "keep", _opt())
    if len(mounts) == 1 and mounts[0].type == "bind" and any(m.type == "overlay" for m in child):
        src = mounts[0].source
        _assert_eq("first lowerdir of a child of the committed snapshot", _lowerdirs(child)[:1], [src])
        _assert_eq("source of a one-parent view", [m.source for m in view], [src])
    for key, ms in (("keep-child", child), ("keep-view", view)):
        with mounted(ms, work / key) as mp:
            _assert_eq(f"/marker in {key}", (mp / "marker").read_bytes(), b"kept\n")


CASES: dict[str, Check] = {
    "Basic": check_basic,
    "StatActive": check_stat_active,
    "StatCommitted": check_stat_committed,
    "TransitivityTest": check_transitivity,
    "PreareViewFailingtest": check_prepare_view_failures,
    "Update": check_update,
    "Remove": check_remove,
    "Walk": check_walk,
    "LayerFileupdate": check_layer_file_update,
    "RemoveDirectoryInLowerLayer": check_remove_directory_in_lower_layer,
    "Chown": check_chown,
    "DirectoryPermissionOnCommit": check_directory_permission_on_commit,
    "RemoveIntermediateSnapshot": check_remove_intermediate_snapshot,
    "DeletedFilesInChildSnapshot": check_deleted_files_in_child_snapshot,
    "MoveFileFromLowerLayer": check_move_file_from_lower_layer,
    "ViewReadonly": check_view_readonly,
    "StatInWalk": check_stat_in_walk,
    "CloseTwice": check_close_twice,
    "RootPermission": check_root_permission,
    "Rename": check_rename,
    "128LayersMount": check_128_layers_mount,
    "Usage": check_usage,
    "Commit": check_commit,
    "CommitKeepsID": check_commit_keeps_id,
}
"""containerd's case names (``t.Run`` names) to the checks, plus three for rules of the
snapshotter contract that containerd's suite does not test on its own."""
