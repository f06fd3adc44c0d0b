from __future__ import annotations

import errno
from pathlib import Path

import pytest

import ctrstore
from ctrstore import _core, errdefs


def test_rust_raises_the_python_classes(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid digest") as ei:
        _core.parse_digest("sha256:xyz")
    assert isinstance(ei.value, ValueError)
    with pytest.raises(errdefs.NotFound, match="no active ingest"):
        _core.abort_ingest(tmp_path, "nope")
    w = _core.IngestWriter(tmp_path, "ref")
    with pytest.raises(errdefs.Unavailable, match="locked"):
        _core.IngestWriter(tmp_path, "ref")
    w.write(b"x")
    with pytest.raises(errdefs.FailedPrecondition, match="expected 2"):
        w.commit(2)
    with pytest.raises(errdefs.FailedPrecondition, match="closed"):
        w.write(b"y")


def test_from_oserror_maps_errno() -> None:
    e = errdefs.from_oserror(OSError(errno.ENOENT, "No such file"), "/x")
    assert isinstance(e, errdefs.NotFound)
    assert str(e) == "/x: No such file"
    assert isinstance(errdefs.from_oserror(OSError(errno.EIO, "io"), "/y"), errdefs.Unknown)
    full = errdefs.from_oserror(OSError(errno.ENOSPC, "No space left on device", "/z"), "writing /z")
    assert isinstance(full, errdefs.ResourceExhausted)
    assert full.errno == errno.ENOSPC and full.filename == "/z"
    assert isinstance(full.__cause__, OSError)


def test_one_errno_table_for_both_languages(tmp_path: Path) -> None:
    """The table lives in Rust; Python's from_oserror reads it, and errors raised by the Rust
    core for real OS failures land in the same class, with errno and the OSError as cause."""
    table = dict(_core.errno_kinds())
    # The entries the two old tables disagreed on, and the new resource-exhausted kind.
    assert table[errno.ENOTEMPTY] == "failed precondition"
    assert table[errno.EBUSY] == "unavailable"
    assert table[errno.EROFS] == "permission denied"
    assert table[errno.ENAMETOOLONG] == "invalid argument"
    assert table[errno.ENOSPC] == table[errno.EDQUOT] == "resource exhausted"
    assert _core.errno_kind(errno.EIO) == "unknown"
    for n, kind in table.items():
        assert errdefs.from_oserror(OSError(n, "x"), "y").kind == kind, errno.errorcode[n]
    # Real failures in Rust: ENOTDIR, ENAMETOOLONG and ENOENT under the content root.
    (tmp_path / "file").write_bytes(b"")
    cases = [
        (tmp_path / "file", errno.ENOTDIR),  # root is a file: mkdir root/ingest fails
        (tmp_path / ("n" * 300), errno.ENAMETOOLONG),
    ]
    for root, n in cases:
        with pytest.raises(errdefs.CtrstoreError) as ei:
            _core.IngestWriter(root, "ref")
        assert ei.value.kind == table[n], (ei.value, errno.errorcode[n])
        assert ei.value.errno == n
        assert isinstance(ei.value.__cause__, OSError) and ei.value.__cause__.errno == n
        with pytest.raises(OSError) as oe:
            (root / "ingest").mkdir(parents=True)
        assert type(errdefs.from_oserror(oe.value, "x")) is type(ei.value)


def test_every_kind_is_exported_and_distinct() -> None:
    kinds = [
        getattr(errdefs, n)
        for n in errdefs.__all__
        if n not in ("CtrstoreError", "class_of_kind", "from_oserror")
    ]
    assert len({k.kind for k in kinds}) == len(kinds)
    for k in kinds:
        assert issubclass(k, errdefs.CtrstoreError)
        assert getattr(ctrstore, k.__name__) is k


def test_all_is_complete() -> None:
    public = {n for n in dir(ctrstore) if not n.startswith("_") and n[0].isupper()}
    missing = public - set(ctrstore.__all__)
    assert not missing, f"public names missing from __all__: {missing}"
    for name in ctrstore.__all__:
        assert hasattr(ctrstore, name), name


def test_class_of_kind() -> None:
    assert errdefs.class_of_kind("not found") is errdefs.NotFound
    assert errdefs.class_of_kind("unknown") is errdefs.Unknown
    assert errdefs.class_of_kind("resource exhausted") is errdefs.ResourceExhausted
    assert errdefs.class_of_kind("no such kind") is errdefs.Unknown


def test_every_kind_of_the_errno_table_has_its_class() -> None:
    """Each kind the Rust table gives an errno is a Python class of that kind (a kind Python
    lacked would turn into Unknown without a word), and the Python classes cover every kind the
    table uses: the two sides agree on the names."""
    table = _core.errno_kinds()
    assert len({n for n, _ in table}) == len(table), "an errno is listed twice"
    by_kind = {cls.kind: cls for cls in errdefs.CtrstoreError.__subclasses__()}
    for n, kind in table:
        assert kind in by_kind, (errno.errorcode.get(n, n), kind)
        assert errdefs.class_of_kind(kind) is by_kind[kind]
        assert _core.errno_kind(n) == kind
    # And errnos the table does not list are Unknown on both sides.
    unlisted = next(n for n in sorted(errno.errorcode) if n not in dict(table))
    assert _core.errno_kind(unlisted) == "unknown"
    assert isinstance(errdefs.from_oserror(OSError(unlisted, "x"), "y"), errdefs.Unknown)
